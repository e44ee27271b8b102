//! The register-blocked GEMM microkernel: C[MR x NR] (+)= Ã[MR x kc] · B̃[kc x NR] over packed panels.
//!
//! Packed A holds MR floats per k step (column of the sliver), packed B holds NR floats per k step (row of
//! the sliver); see `crate::gemm::pack`. The kernel keeps MR x NR/LANES accumulators in registers: 12 x 2
//! zmm on AVX-512 (24 of 32 registers), 6 x 2 ymm on AVX2 (12 of 16).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::gemm::blocking::{AVX2, AVX512, Blocking};

/// A SIMD register of f32 lanes, only ever used inside a `#[target_feature]` function of the same ISA.
///
/// # Safety
/// Every method requires the CPU to support the implementing type's instruction set, and pointer
/// arguments to be valid for `LANES` floats (aligned to the vector size for `load`).
trait Vector: Copy {
    const LANES: usize;
    unsafe fn zero() -> Self;
    unsafe fn broadcast(p: *const f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn loadu(p: *const f32) -> Self;
    unsafe fn storeu(self, p: *mut f32);
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m512 {
    const LANES: usize = 16;
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn broadcast(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is valid for one read.
        unsafe { _mm512_set1_ps(*p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 16 readable floats at a 64-byte aligned `p`.
        unsafe { _mm512_load_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn loadu(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 16 readable floats at `p`.
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn storeu(self, p: *mut f32) {
        // SAFETY: the caller guarantees 16 writable floats at `p`.
        unsafe { _mm512_storeu_ps(p, self) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm512_add_ps(a, b)
    }
}

#[cfg(target_arch = "x86_64")]
impl Vector for __m256 {
    const LANES: usize = 8;
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn zero() -> Self {
        _mm256_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn broadcast(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is valid for one read.
        unsafe { _mm256_broadcast_ss(&*p) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable floats at a 32-byte aligned `p`.
        unsafe { _mm256_load_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn loadu(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable floats at `p`.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn storeu(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable floats at `p`.
        unsafe { _mm256_storeu_ps(p, self) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add(a: Self, b: Self) -> Self {
        _mm256_add_ps(a, b)
    }
}

/// The algorithm, written once. `NV` vectors make up NR = NV · LANES columns.
///
/// # Safety
/// The CPU supports `V`'s instruction set; `a` holds `kc · MR` floats; `b` holds `kc · NR` floats and is
/// aligned to the vector size; `c` is valid for rows `0..MR`, each `NR` floats, `ldc` floats apart.
#[inline(always)]
unsafe fn body<V: Vector, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    overwrite: bool,
) {
    // SAFETY (whole body): the caller's contract above covers every pointer offset computed here: p < kc,
    // i < MR, v < NV.
    unsafe {
        let mut acc = [[V::zero(); NV]; MR];
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kc {
            let mut bv = [V::zero(); NV];
            for (v, slot) in bv.iter_mut().enumerate() {
                *slot = V::load(bp.add(v * V::LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = V::broadcast(ap.add(i));
                for v in 0..NV {
                    row[v] = V::fmadd(av, bv[v], row[v]);
                }
            }
            ap = ap.add(MR);
            bp = bp.add(NV * V::LANES);
        }
        for (i, row) in acc.iter().enumerate() {
            let cr = c.add(i * ldc);
            for (v, &value) in row.iter().enumerate() {
                let p = cr.add(v * V::LANES);
                if overwrite {
                    value.storeu(p);
                } else {
                    V::add(V::loadu(p), value).storeu(p);
                }
            }
        }
    }
}

macro_rules! microkernel {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $vector:ty, $blocking:expr) => {
        $(#[$doc])*
        /// # Safety
        /// The CPU supports the instruction set named in the `target_feature`; the pointers satisfy the
        /// contract of `body` for this kernel's MR and NR (see `crate::gemm::blocking`).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, overwrite: bool) {
            const MR: usize = $blocking.mr;
            const NV: usize = $blocking.nr / <$vector as Vector>::LANES;
            // SAFETY: forwarded contract; the target feature is enabled on this function.
            unsafe { body::<$vector, MR, NV>(kc, a, b, c, ldc, overwrite) }
        }
    };
}

microkernel!(
    /// 12 x 32 AVX-512F microkernel.
    kernel_avx512,
    "avx512f",
    __m512,
    AVX512
);
microkernel!(
    /// 6 x 16 AVX2 + FMA microkernel.
    kernel_avx2,
    "avx2,fma",
    __m256,
    AVX2
);

/// A microkernel entry point, paired with the blocking it was generated for.
#[derive(Clone, Copy)]
pub(crate) struct Microkernel {
    pub blocking: Blocking,
    kernel: unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool),
}

impl Microkernel {
    /// The kernel for `isa`, or `None` for the scalar path or an ISA this CPU lacks.
    pub fn for_isa(isa: crate::Isa) -> Option<Self> {
        if !isa.is_supported() {
            return None;
        }
        match isa {
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx512F => Some(Self { blocking: AVX512, kernel: kernel_avx512 }),
            #[cfg(target_arch = "x86_64")]
            crate::Isa::Avx2Fma => Some(Self { blocking: AVX2, kernel: kernel_avx2 }),
            _ => None,
        }
    }

    /// Runs the kernel on one full tile.
    ///
    /// `a` is one packed A sliver (kc · MR floats), `b` one packed B sliver (kc · NR floats, 64-byte
    /// aligned), and `c` starts at the tile's top-left element with `ldc` floats per row.
    pub fn run(&self, kc: usize, a: &[f32], b: &[f32], c: &mut [f32], ldc: usize, overwrite: bool) {
        let Blocking { mr, nr, .. } = self.blocking;
        assert!(a.len() >= kc * mr && b.len() >= kc * nr, "microkernel: packed panel too short");
        assert!(ldc >= nr && c.len() >= (mr - 1) * ldc + nr, "microkernel: C tile out of bounds");
        assert_eq!(b.as_ptr() as usize % 64, 0, "microkernel: packed B must be 64-byte aligned");
        // SAFETY: `for_isa` only builds a Microkernel for a supported ISA, and the asserts above establish
        // the pointer contract: a and b hold kc steps of MR / NR floats, b is aligned, and every row
        // i < MR of the tile (i · ldc + NR floats) lies inside `c`.
        unsafe { (self.kernel)(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, overwrite) }
    }
}
