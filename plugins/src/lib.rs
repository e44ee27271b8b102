//! shoal-plugins: aggregation rules by name, or loaded from shared libraries.
//!
//! # Why this crate exists
//!
//! Researchers write their own aggregation rules (robust, private, adaptive) and load them into a running
//! cluster without rebuilding shoal. A rule crosses a C ABI (defined in `shoal-rule-sdk`), so the host
//! never trusts it: the ABI version and struct layouts are checked before anything else is called,
//! inputs are validated before they reach the rule, panics are caught inside the plugin (by the SDK),
//! and what comes back is checked (length, finite values, selected positions) before anyone uses it.
//! A loaded library stays loaded while any rule made from it exists, so no call can run into
//! unmapped code.
//!
//! - [`load`]: the loader and [`PluginRule`], a plugin seen through the engine's `Rule` trait;
//! - [`registry`]: one function that turns `mean`, `krum` or `./librule.so` plus options into a rule;
//! - [`conformance`]: the property suite every built-in passes, runnable by a plugin author on theirs.

#![deny(unsafe_code)]

pub mod conformance;
pub mod load;
pub mod registry;

pub use load::{PluginError, PluginLibrary, PluginRule};
pub use registry::{BUILTIN_RULES, build_rule};
pub use shoal_rule_sdk::{ABI_VERSION, Options};
