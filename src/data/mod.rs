//! Real datasets: the pinned fetch step and the loaders.

mod error;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod pickle;
pub mod pins;

pub use error::DataError;
pub use fetch::DataDir;
