//! shoal-plugins: aggregation rules loaded from shared libraries.
//!
//! # Why this crate exists
//!
//! Researchers write their own aggregation rules (robust, private, adaptive) and load them into a running
//! cluster without rebuilding shoal. A rule crosses a C ABI, so the host must never trust it: versions and
//! struct layouts are checked at load, panics are caught at the boundary and outputs are validated. That
//! host-side discipline and the ABI definition live here, apart from the engine that runs the built-in rules.
//!
//! The ABI, the SDK macro and the loader land with the rules issue; today the crate holds the ABI version
//! every plugin will be checked against.

/// The plugin ABI version a rule library must declare to be loaded.
pub const ABI_VERSION: u32 = 1;
