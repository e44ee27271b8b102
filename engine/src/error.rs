use thiserror::Error;

/// Errors the engine reports instead of panicking: shapes and names that come from configuration or files.
/// Kernels themselves take slices whose lengths are checked with `assert!` (a mismatch there is a bug in the
/// caller, exactly as for `copy_from_slice`).
#[derive(Debug, Error, PartialEq)]
pub enum EngineError {
    #[error("parameter layout has no slot named `{0}`")]
    UnknownSlot(String),
    #[error("parameter layout already has a slot named `{0}`")]
    DuplicateSlot(String),
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    Shape { what: &'static str, expected: usize, got: usize },
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("label {label} out of range for {classes} classes")]
    LabelOutOfRange { label: u32, classes: usize },
}
