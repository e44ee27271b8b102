//! Instruction-set selection and the raw-intrinsic GEMM microkernels: the engine's only `unsafe` code.
//!
//! The portable kernels (`crate::kernels`) use `wide`, whose instruction set is fixed at compile time
//! (AVX2 + FMA under the default `target-cpu=x86-64-v3`). GEMM is compute-bound and gains ~2x from 512-bit
//! registers, but a binary compiled for AVX-512 would not start on an AVX2-only machine, so GEMM picks its
//! microkernel at run time with `is_x86_feature_detected!` and calls a `#[target_feature]` function.
//!
//! The microkernel is written once, generically over a private [`Vector`] trait, and instantiated per ISA
//! by a macro (the memchr / matrixmultiply pattern). The trait's methods carry the same
//! `#[target_feature]` as the entry point, so after inlining the loop body is straight intrinsics.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

pub(crate) mod dots;
pub(crate) mod microkernel;
pub(crate) mod sortnet;

/// A GEMM code path. Ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// No SIMD microkernel: a plain loop nest (any CPU, and the reference the others are tested against).
    Scalar,
    /// 256-bit AVX2 + FMA microkernel.
    Avx2Fma,
    /// 512-bit AVX-512F microkernel.
    Avx512F,
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512F];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512F => "avx512",
        }
    }

    /// Human-readable instruction-set label, as `shoal info` prints it.
    pub fn label(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2Fma => "AVX2+FMA",
            Isa::Avx512F => "AVX-512F",
        }
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512F => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU supports, best first.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().rev().filter(|i| i.is_supported()).collect()
    }

    /// The path GEMM uses by default: the best supported one, unless `SHOAL_ISA` (scalar, avx2, avx512)
    /// asks for a lower one (to compare paths or to work around a CPU erratum). Read once per process.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = Isa::supported()[0];
            match std::env::var("SHOAL_ISA").ok().and_then(|v| v.parse::<Isa>().ok()) {
                Some(wanted) if wanted.is_supported() && wanted <= best => wanted,
                _ => best,
            }
        })
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isa {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown instruction set `{s}` (expected scalar, avx2 or avx512)"))
    }
}

/// The instruction set the portable (`wide`) kernels were compiled for.
pub fn portable_label() -> &'static str {
    if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "AVX2+FMA"
    } else if cfg!(target_feature = "avx") {
        "AVX"
    } else if cfg!(target_feature = "sse2") {
        "SSE2"
    } else {
        "scalar"
    }
}

/// Hints the CPU to start loading the cache line holding `s[i]` into L1; does nothing past the end.
#[inline(always)]
pub(crate) fn prefetch(s: &[f32], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if i < s.len() {
        #[allow(unsafe_code)]
        // SAFETY: `i` is in bounds, so the pointer is valid; a prefetch never faults and writes nothing.
        // SSE (and so PREFETCHT0) is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(s.as_ptr().add(i).cast())
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (s, i);
}
