//! Portable SIMD kernels over `wide::f32x8`.
//!
//! Each kernel is written once over the vector type and has a plain definition in [`crate::oracle`] that
//! the property tests compare it with. Memory-bound kernels live here; the compute-bound GEMM, which
//! benefits from run-time AVX-512 selection, lives in [`crate::gemm`].

pub mod activation;
pub mod aggregate;
pub mod blas1;
pub mod gram;
pub(crate) mod lanes;
pub mod loss;
pub mod math;
pub mod optim;
pub mod sparse;

pub use activation::Activation;
pub use aggregate::weighted_sum;
pub use blas1::{all_finite, axpy, dot, norm2, scale, sum};
