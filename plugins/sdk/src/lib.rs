//! shoal-rule-sdk: write an aggregation rule for shoal as a native plugin.
//!
//! # Why this crate exists
//!
//! People who study federated learning write their own aggregation rules, and a cluster should load
//! them without a rebuild of shoal. A plugin is a shared library (`crate-type = ["cdylib"]`) that talks
//! to shoal through a small C ABI ([`abi`]): C because Rust has no stable ABI, so the host and the
//! plugin may be built by different compilers. This crate is all a plugin author needs: implement
//! [`RulePlugin`] and call [`export_rule!`] once. The macro generates the `extern "C"` entry points;
//! every call into the rule runs inside `catch_unwind`, so a panic becomes an error message for the
//! host instead of unwinding across the C boundary (which would abort the host process).
//!
//! ```ignore
//! use shoal_rule_sdk::{Options, Outcome, RulePlugin, Update, export_rule};
//!
//! struct Midrange;
//!
//! impl RulePlugin for Midrange {
//!     const NAME: &'static std::ffi::CStr = c"midrange";
//!     fn create(_options: &Options) -> Result<Self, String> {
//!         Ok(Midrange)
//!     }
//!     fn aggregate(&mut self, updates: &[Update], out: &mut [f32]) -> Result<Outcome, String> {
//!         for (j, o) in out.iter_mut().enumerate() {
//!             let (lo, hi) = updates.iter().fold((f32::MAX, f32::MIN), |(l, h), u| (l.min(u.values[j]), h.max(u.values[j])));
//!             *o = 0.5 * (lo + hi);
//!         }
//!         Ok(Outcome::all())
//!     }
//! }
//!
//! export_rule!(Midrange);
//! ```
//!
//! The host (crate `shoal-plugins`) checks the ABI version and struct sizes before anything else,
//! validates inputs before they reach the rule, and checks what comes back (length, finiteness,
//! selected positions). docs/plugins.md describes the ABI and the safety rules.

#![deny(unsafe_code)]

pub mod abi;
#[doc(hidden)]
pub mod ffi;

use std::collections::BTreeMap;

pub use abi::ABI_VERSION;

/// One update as a rule sees it: already validated by the host (right length, finite values, finite
/// non-negative weight).
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    pub sender: u32,
    /// The update's weight, e.g. its sample count.
    pub weight: f32,
    pub values: &'a [f32],
}

/// What a call produced besides the output values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Positions (in the updates given) that the rule used; `None`: all of them.
    pub selected: Option<Vec<usize>>,
    /// How many output values the rule wrote, if not all of them. The host refuses a short output;
    /// a rule that cannot produce every value should return an error instead.
    pub written: Option<usize>,
}

impl Outcome {
    /// Every update was used and every output value written.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only the updates at `positions` were used (a selecting rule, like Krum).
    pub fn selected(positions: Vec<usize>) -> Self {
        Self { selected: Some(positions), written: None }
    }
}

/// The `key=value` options a rule is created with (from `--opt key=value`, or a job's config).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parses `key=value` lines (blank lines are skipped).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').ok_or_else(|| format!("option `{line}` is not key=value"))?;
            values.insert(k.trim().to_string(), v.trim().to_string());
        }
        Ok(Self { values })
    }

    /// The options as `key=value` lines, the form they cross the ABI in.
    pub fn to_text(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    pub fn insert(&mut self, key: &str, value: &str) {
        self.values.insert(key.to_string(), value.to_string());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Option `key` parsed as `T`, or `default` when absent; a value that does not parse is an error
    /// naming the key.
    pub fn parse_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("option {key}={v} is not a valid value")),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

/// An aggregation rule built as a plugin.
///
/// The host calls `check` before every `aggregate` with the number of valid updates, and only calls
/// `aggregate` with at least one update, all of `out.len()` values. A rule's state moves between
/// threads (hence `Send`) but is never used by two threads at once.
pub trait RulePlugin: Sized + Send + 'static {
    /// The rule's name, as reports and errors show it.
    const NAME: &'static std::ffi::CStr;

    /// Builds the rule from its options; unknown or malformed options should be errors.
    fn create(options: &Options) -> Result<Self, String>;

    /// Whether `n` valid updates satisfy the rule's precondition (e.g. Krum's n > 2f + 2).
    fn check(&self, _n: usize) -> Result<(), String> {
        Ok(())
    }

    /// Aggregates `updates` (at least one, each of `out.len()` values) into `out`.
    fn aggregate(&mut self, updates: &[Update], out: &mut [f32]) -> Result<Outcome, String>;
}

/// Exports `$rule` (a type implementing [`RulePlugin`]) as this library's rule: the ABI version
/// symbol and the entry table the host looks up. Use it once per plugin crate.
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        /// The ABI version this plugin speaks: the host reads it before anything else.
        #[unsafe(no_mangle)]
        pub extern "C" fn shoal_rule_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// The entry table of this plugin's rule.
        #[unsafe(no_mangle)]
        pub extern "C" fn shoal_rule_entry() -> *const $crate::abi::RuleEntry {
            static ENTRY: $crate::abi::RuleEntry = $crate::ffi::entry::<$rule>();
            &ENTRY
        }
    };
}
