//! shoal-engine: the hand-vectorized CPU core of shoal.
//!
//! # Why this crate exists
//!
//! A CPU cluster trains as fast as its slowest inner loop. Every job shoal runs (federated encoder
//! generation, two-tier parameter-server training, multi-task training) spends its time in the same few
//! places: dense layers (GEMM), elementwise activations and losses, optimizer updates, sparse embedding
//! rows, and the weighted sums that merge updates from many nodes. This crate owns exactly those, and
//! nothing about networking or storage (the `bus` crate and the store know nothing of each other, and
//! this crate knows neither).
//!
//! # How it is organised
//!
//! - [`kernels`]: memory-bound kernels written once over `wide::f32x8`, whose instruction set is fixed at
//!   compile time (AVX2 + FMA under the default `target-cpu=x86-64-v3`).
//! - [`gemm`]: the compute-bound matrix multiply, BLIS-structured, with a microkernel chosen at run time
//!   (AVX-512 where the CPU has it) by [`simd`], the one module allowed to contain `unsafe` code.
//! - [`oracle`]: the plain scalar definition of every kernel, kept apart from the fast paths; property tests
//!   compare each fast kernel against it on every length and alignment.
//! - [`model`]: layers over a flat parameter buffer with a named layout, so a parameter server, an
//!   aggregation rule and the store all see a model as named slices of one aligned vector.
//!
//! Kernels never allocate; layers take their scratch space from a workspace sized once per batch size.
#![deny(unsafe_code)]

pub mod aligned;
mod error;
pub mod gemm;
pub mod kernels;
pub mod model;
pub mod oracle;
pub mod rules;
pub mod simd;
pub mod store;

pub use aligned::AlignedVec;
pub use error::EngineError;
pub use simd::Isa;

/// What `shoal info` reports about the compute paths of this build on this CPU.
#[derive(Clone, Debug)]
pub struct IsaReport {
    /// Instruction set of the portable kernels (BLAS-1, aggregation, activations, optimizers, sparse).
    pub portable: &'static str,
    /// Instruction set GEMM uses.
    pub gemm: Isa,
    /// Every GEMM path this CPU supports, best first.
    pub gemm_supported: Vec<Isa>,
}

pub fn isa_report() -> IsaReport {
    IsaReport { portable: simd::portable_label(), gemm: Isa::active(), gemm_supported: Isa::supported() }
}
