//! The C ABI between the host and a rule plugin (version 1). docs/plugins.md has the full contract.
//!
//! Loading goes in this order, and stops at the first mismatch:
//! 1. `shoal_rule_abi_version() -> u32` must return [`ABI_VERSION`];
//! 2. `shoal_rule_entry() -> *const RuleEntry`: the table's own `abi_version` and the sizes of the
//!    three structs must equal the host's, and `name` must be UTF-8 of at most 64 bytes;
//! 3. `create`, then any number of `check` / `aggregate`, then `destroy`.
//!
//! Every function returns a [`Status`] and reports errors through the host's message buffer in
//! [`RawOutcome`]; none may unwind.

use std::ffi::{c_char, c_void};

/// The ABI version this SDK speaks. It changes whenever a struct or a signature below changes.
pub const ABI_VERSION: u32 = 1;
/// `extern "C" fn() -> u32`: the ABI version the plugin was built for.
pub const VERSION_SYMBOL: &str = "shoal_rule_abi_version";
/// `extern "C" fn() -> *const RuleEntry`: the plugin's entry table.
pub const ENTRY_SYMBOL: &str = "shoal_rule_entry";
/// Longest rule name accepted.
pub const MAX_NAME: usize = 64;

/// What a call returns.
pub type Status = i32;
pub const STATUS_OK: Status = 0;
/// The rule returned an error; the message buffer says why.
pub const STATUS_ERROR: Status = 1;
/// The rule panicked; the SDK caught it and put the panic message in the buffer.
pub const STATUS_PANIC: Status = 2;

/// One input update. `values` points at `len` floats (the `len` of the `aggregate` call), valid for
/// the duration of the call only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RawUpdate {
    pub sender: u32,
    pub weight: f32,
    pub values: *const f32,
}

/// Host-owned buffers a call reports through.
#[repr(C)]
#[derive(Debug)]
pub struct RawOutcome {
    /// Set by `aggregate`: how many output values the plugin wrote.
    pub written: usize,
    /// Host buffer of `selected_cap` positions; `aggregate` writes the positions it used there.
    pub selected: *mut u32,
    pub selected_cap: usize,
    /// Set by `aggregate`: positions written to `selected`, or `usize::MAX` for "all inputs".
    pub selected_len: usize,
    /// Host buffer for a UTF-8 error message (not NUL-terminated).
    pub message: *mut u8,
    pub message_cap: usize,
    /// Set on error: bytes written to `message`.
    pub message_len: usize,
}

/// The plugin's entry table, a static inside the plugin.
#[repr(C)]
#[derive(Debug)]
pub struct RuleEntry {
    pub abi_version: u32,
    /// `size_of::<RuleEntry>()`, `size_of::<RawUpdate>()` and `size_of::<RawOutcome>()` as the plugin
    /// was compiled: a mismatch means the two sides disagree on the layout.
    pub entry_size: u32,
    pub update_size: u32,
    pub outcome_size: u32,
    /// NUL-terminated UTF-8 name, static.
    pub name: *const c_char,
    /// Creates the rule from `options_len` bytes of `key=value` lines; writes the new state to `*state`.
    pub create: unsafe extern "C" fn(
        options: *const u8,
        options_len: usize,
        state: *mut *mut c_void,
        outcome: *mut RawOutcome,
    ) -> Status,
    /// Checks the precondition for `n` valid updates.
    pub check: unsafe extern "C" fn(state: *mut c_void, n: usize, outcome: *mut RawOutcome) -> Status,
    /// Aggregates `n >= 1` updates of `len` floats each into `out` (`len` floats).
    pub aggregate: unsafe extern "C" fn(
        state: *mut c_void,
        updates: *const RawUpdate,
        n: usize,
        len: usize,
        out: *mut f32,
        outcome: *mut RawOutcome,
    ) -> Status,
    /// Frees the state `create` made. Called exactly once, after the last other call.
    pub destroy: unsafe extern "C" fn(state: *mut c_void),
}

#[allow(unsafe_code)]
// SAFETY: the table is immutable and its one pointer (`name`) points at a static string, so sharing
// it between threads is sound.
unsafe impl Sync for RuleEntry {}
