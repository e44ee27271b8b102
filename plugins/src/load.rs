//! Loading rule plugins: the host side of the ABI in `shoal_rule_sdk::abi`. This module is the
//! crate's only unsafe code.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::Library;
use shoal_engine::rules::{Rule, RuleError, Update};
use shoal_rule_sdk::Options;
use shoal_rule_sdk::abi::{
    ABI_VERSION, ENTRY_SYMBOL, MAX_NAME, RawOutcome, RawUpdate, RuleEntry, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
    VERSION_SYMBOL,
};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{path}: cannot load the library: {cause}")]
    Load { path: PathBuf, cause: libloading::Error },
    #[error("{path}: not a shoal rule plugin (no `{symbol}` symbol; was it built with shoal_rule_sdk::export_rule!?)")]
    MissingSymbol { path: PathBuf, symbol: &'static str },
    #[error(
        "{path}: plugin speaks rule ABI version {found}, this shoal speaks {expected}; rebuild the plugin against shoal-rule-sdk {expected}"
    )]
    AbiVersion { path: PathBuf, found: u32, expected: u32 },
    #[error("{path}: {detail}")]
    Layout { path: PathBuf, detail: String },
    #[error("{path}: creating rule `{rule}` failed: {detail}")]
    Create { path: PathBuf, rule: String, detail: String },
}

/// A loaded plugin library and its entry table.
pub struct PluginLibrary {
    path: PathBuf,
    name: &'static str,
    entry: *const RuleEntry,
    // Declared last so it is dropped (unloaded) last; rules hold an Arc to this struct, so the library
    // outlives every call into it.
    _lib: Library,
}

// SAFETY: `entry` points at an immutable static inside `_lib` (the SDK declares it Sync), valid as long
// as `_lib` is loaded, which is as long as this struct lives.
unsafe impl Send for PluginLibrary {}
// SAFETY: as above; the struct is never mutated after load.
unsafe impl Sync for PluginLibrary {}

impl std::fmt::Debug for PluginLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLibrary").field("path", &self.path).field("name", &self.name).finish()
    }
}

impl PluginLibrary {
    /// Loads the plugin at `path` and checks its ABI version, struct layouts and name.
    pub fn load(path: &Path) -> Result<Arc<Self>, PluginError> {
        // dlopen searches the library path for a bare name: make it explicit.
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let p = || path.clone();
        // SAFETY: loading a library runs its initialisers. That is the trust a user gives a plugin
        // by naming it (docs/plugins.md); shoal's plugins have none beyond Rust's own.
        let lib = unsafe { Library::new(&path) }.map_err(|cause| PluginError::Load { path: p(), cause })?;
        // SAFETY: the symbol is declared by the SDK as `extern "C" fn() -> u32`; a library that
        // exports the name with another type breaks the ABI contract.
        let version = unsafe { lib.get::<extern "C" fn() -> u32>(VERSION_SYMBOL) }
            .map_err(|_| PluginError::MissingSymbol { path: p(), symbol: "shoal_rule_abi_version" })?;
        let found = version();
        if found != ABI_VERSION {
            return Err(PluginError::AbiVersion { path: p(), found, expected: ABI_VERSION });
        }
        // SAFETY: same contract, for `extern "C" fn() -> *const RuleEntry` (checked version 1).
        let entry_fn = unsafe { lib.get::<extern "C" fn() -> *const RuleEntry>(ENTRY_SYMBOL) }
            .map_err(|_| PluginError::MissingSymbol { path: p(), symbol: "shoal_rule_entry" })?;
        let entry = entry_fn();
        if entry.is_null() {
            return Err(PluginError::Layout { path: p(), detail: "the entry table is null".into() });
        }
        // SAFETY: non-null, and for ABI version 1 it points at a static RuleEntry. Only its first
        // four u32 fields are read before their sizes are checked; they are at the same offsets in
        // every version of the table.
        let head = unsafe { &*entry.cast::<[u32; 4]>() };
        let want =
            [ABI_VERSION, size_of::<RuleEntry>() as u32, size_of::<RawUpdate>() as u32, size_of::<RawOutcome>() as u32];
        if *head != want {
            return Err(PluginError::Layout {
                path: p(),
                detail: format!(
                    "entry table header (abi version, entry, update, outcome sizes) is {head:?}, the host expects {want:?}"
                ),
            });
        }
        // SAFETY: the layout matches, so the whole table can be read; `name` is a static C string.
        let name = unsafe { &*entry }.name;
        if name.is_null() {
            return Err(PluginError::Layout { path: p(), detail: "the rule has no name".into() });
        }
        // SAFETY: as above, a NUL-terminated static string.
        let name = unsafe { CStr::from_ptr(name) }.to_str().ok().filter(|n| !n.is_empty() && n.len() <= MAX_NAME);
        let Some(name) = name else {
            return Err(PluginError::Layout {
                path: p(),
                detail: format!("the rule name must be 1..={MAX_NAME} bytes of UTF-8"),
            });
        };
        // The engine's `Rule::name` is `&'static str`: one small leak per library load.
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        Ok(Arc::new(Self { path, name, entry, _lib: lib }))
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn entry(&self) -> &RuleEntry {
        // SAFETY: checked in `load`; valid while `_lib` is loaded (as long as `self`).
        unsafe { &*self.entry }
    }

    /// Creates a rule instance with `options`.
    pub fn create(self: &Arc<Self>, options: &Options) -> Result<PluginRule, PluginError> {
        let text = options.to_text();
        let mut message = vec![0u8; MESSAGE_CAP];
        let mut outcome = empty_outcome(&mut message, &mut []);
        let mut state: *mut c_void = std::ptr::null_mut();
        // SAFETY: the ABI contract: options bytes readable for the call, state and outcome writable.
        let status = unsafe { (self.entry().create)(text.as_ptr(), text.len(), &mut state, &mut outcome) };
        if status != STATUS_OK || state.is_null() {
            return Err(PluginError::Create {
                path: self.path.clone(),
                rule: self.name.to_string(),
                detail: describe(status, &outcome, &message),
            });
        }
        Ok(PluginRule {
            state,
            lib: Arc::clone(self),
            selected: Vec::new(),
            positions: Vec::new(),
            message,
            raw: Vec::new(),
        })
    }
}

const MESSAGE_CAP: usize = 1024;

fn empty_outcome(message: &mut [u8], selected: &mut [u32]) -> RawOutcome {
    RawOutcome {
        written: 0,
        selected: selected.as_mut_ptr(),
        selected_cap: selected.len(),
        selected_len: 0,
        message: message.as_mut_ptr(),
        message_cap: message.len(),
        message_len: 0,
    }
}

/// The plugin's message for a failed call.
fn describe(status: i32, outcome: &RawOutcome, message: &[u8]) -> String {
    let text = String::from_utf8_lossy(&message[..outcome.message_len.min(message.len())]).into_owned();
    match status {
        STATUS_OK => "returned no state".to_string(),
        STATUS_ERROR if !text.is_empty() => text,
        STATUS_ERROR => "failed without a message".to_string(),
        STATUS_PANIC => text,
        other => format!("returned unknown status {other} ({text})"),
    }
}

/// A rule made by a plugin, used like a built-in one.
pub struct PluginRule {
    state: *mut c_void,
    selected: Vec<usize>,
    positions: Vec<u32>,
    message: Vec<u8>,
    raw: Vec<RawUpdate>,
    // Dropped after `Drop::drop` destroyed the state, keeping the library loaded until then.
    lib: Arc<PluginLibrary>,
}

// SAFETY: the SDK requires rule states to be `Send`; the host uses one state from one thread at a time
// (every call takes `&mut self` or `&self` of a value that is not `Sync`).
unsafe impl Send for PluginRule {}

impl PluginRule {
    pub fn library(&self) -> &Arc<PluginLibrary> {
        &self.lib
    }

    fn error(&self, detail: String) -> RuleError {
        RuleError::Plugin { rule: self.lib.name.to_string(), detail }
    }
}

impl Drop for PluginRule {
    fn drop(&mut self) {
        // SAFETY: the state came from this library's `create` and is destroyed exactly once; the
        // library is still loaded (self.lib is dropped after this).
        unsafe { (self.lib.entry().destroy)(self.state) };
    }
}

impl Rule for PluginRule {
    fn name(&self) -> &'static str {
        self.lib.name
    }

    fn check(&self, n: usize) -> Result<(), RuleError> {
        let mut message = vec![0u8; MESSAGE_CAP];
        let mut outcome = empty_outcome(&mut message, &mut []);
        // SAFETY: a live state of this library; outcome buffers live for the call.
        let status = unsafe { (self.lib.entry().check)(self.state, n, &mut outcome) };
        if status != STATUS_OK {
            return Err(self.error(describe(status, &outcome, &message)));
        }
        Ok(())
    }

    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let (n, len) = (valid.len(), out.len());
        if valid.iter().any(|u| u.values.len() != len) {
            return Err(self.error("inputs of the wrong length reached the plugin".into()));
        }
        self.raw.clear();
        self.raw.extend(valid.iter().map(|u| RawUpdate {
            sender: u.sender,
            weight: u.weight,
            values: u.values.as_ptr(),
        }));
        self.positions.resize(n, 0);
        let mut message = std::mem::take(&mut self.message);
        let mut outcome = empty_outcome(&mut message, &mut self.positions);
        // SAFETY: the ABI contract: n updates of `len` floats each (checked above), alive for the call;
        // `out` holds `len` floats and cannot overlap the inputs (it is borrowed mutably).
        let status = unsafe {
            (self.lib.entry().aggregate)(self.state, self.raw.as_ptr(), n, len, out.as_mut_ptr(), &mut outcome)
        };
        let result = if status != STATUS_OK {
            Err(describe(status, &outcome, &message))
        } else if outcome.written != len {
            Err(format!("returned {} values, expected {len}", outcome.written))
        } else if let Some(j) =
            (!shoal_engine::kernels::all_finite(out)).then(|| out.iter().position(|x| !x.is_finite())).flatten()
        {
            Err(format!("returned a non-finite value ({}) at index {j}", out[j]))
        } else if outcome.selected_len == usize::MAX {
            self.selected = (0..n).collect();
            Ok(())
        } else if outcome.selected_len > n {
            Err(format!("reported {} selected inputs of {n}", outcome.selected_len))
        } else if let Some(&p) = self.positions[..outcome.selected_len].iter().find(|&&p| p as usize >= n) {
            Err(format!("selected input {p}, but only {n} were given"))
        } else {
            self.selected = self.positions[..outcome.selected_len].iter().map(|&p| p as usize).collect();
            Ok(())
        };
        self.message = message;
        result.map_err(|detail| self.error(detail))
    }

    fn selected(&self) -> Option<&[usize]> {
        Some(&self.selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/plugins.md states these sizes; a change here is an ABI change (bump ABI_VERSION).
    #[test]
    fn abi_struct_sizes_are_the_documented_ones() {
        assert_eq!(size_of::<RuleEntry>(), 56);
        assert_eq!(size_of::<RawUpdate>(), 16);
        assert_eq!(size_of::<RawOutcome>(), 56);
    }
}
