//! Layers and networks over a flat parameter buffer described by a [`ParamLayout`].
//!
//! Parameters never live inside layer structs: a layer is a description (shapes, slot indices) and
//! every call takes the buffer. That is what lets a parameter server, a rule plugin or a memory-mapped
//! store own the bytes while the same layer code trains on them.

pub mod dense;
pub mod embedding;
pub mod head;
pub mod init;
pub mod layout;
pub mod network;
pub mod optimizer;

pub use dense::Dense;
pub use embedding::EmbeddingBag;
pub use head::{Head, HeadKind, Targets};
pub use init::SplitMix;
pub use layout::{ParamLayout, Slot};
pub use network::{Network, NetworkSpec, Workspace};
pub use optimizer::{Optimizer, OptimizerKind};
