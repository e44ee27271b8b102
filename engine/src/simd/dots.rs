//! A 4 x 4 block of dot products on 512-bit registers, for Krum's Gram matrix.
//!
//! The portable block (`crate::kernels::gram::dots_block`, 4 x 2 on AVX2) is limited by its 16 registers
//! to six loads per eight FMAs. With 32 zmm registers a 4 x 4 block keeps 16 accumulators and eight
//! operands: eight loads per sixteen FMAs, each FMA twice as wide.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `out[i][j] = a[i] · b[j]` for four rows `a` and four rows `b`, all of one length; `None` when the CPU
/// has no AVX-512F (the caller then uses the portable block).
pub(crate) fn dots_block_4x4(a: [&[f32]; 4], b: [&[f32]; 4]) -> Option<[[f32; 4]; 4]> {
    let len = a[0].len();
    assert!(a.iter().chain(&b).all(|s| s.len() == len), "dots_block_4x4: slices of different lengths");
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::Avx512F.is_supported() {
        // SAFETY: AVX-512F was detected just above, and every slice has `len` values (asserted).
        return Some(unsafe { dots_4x4_avx512(a, b) });
    }
    None
}

/// # Safety
/// The CPU supports AVX-512F and all eight slices have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dots_4x4_avx512(a: [&[f32]; 4], b: [&[f32]; 4]) -> [[f32; 4]; 4] {
    const W: usize = 16;
    let len = a[0].len();
    let full = len - len % W;
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let mut t = 0;
    while t < full {
        // SAFETY: t + 16 ≤ full ≤ len, the length of every slice.
        let y = unsafe {
            [
                _mm512_loadu_ps(b[0].as_ptr().add(t)),
                _mm512_loadu_ps(b[1].as_ptr().add(t)),
                _mm512_loadu_ps(b[2].as_ptr().add(t)),
                _mm512_loadu_ps(b[3].as_ptr().add(t)),
            ]
        };
        for (row, s) in acc.iter_mut().zip(&a) {
            // SAFETY: as above.
            let x = unsafe { _mm512_loadu_ps(s.as_ptr().add(t)) };
            for (cell, &yj) in row.iter_mut().zip(&y) {
                *cell = _mm512_fmadd_ps(x, yj, *cell);
            }
        }
        t += W;
    }
    let mut out = [[0.0f32; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            let tail: f32 = (full..len).map(|k| a[i][k] * b[j][k]).sum();
            out[i][j] = _mm512_reduce_add_ps(acc[i][j]) + tail;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_cell_is_the_oracle_dot(len in 0usize..300, offset in 0usize..16, seed in any::<u64>()) {
            let mut rng = crate::model::SplitMix::new(seed);
            let rows: Vec<Vec<f32>> = (0..8).map(|_| (0..len + offset).map(|_| rng.uniform(-2.0, 2.0)).collect()).collect();
            let a = [0, 1, 2, 3].map(|i| &rows[i][offset..]);
            let b = [4, 5, 6, 7].map(|i| &rows[i][offset..]);
            let Some(got) = dots_block_4x4(a, b) else { return Ok(()) };
            for i in 0..4 {
                for j in 0..4 {
                    let want = crate::oracle::dot(a[i], b[j]);
                    prop_assert!((got[i][j] as f64 - want).abs() <= 1e-4 * (1.0 + len as f64), "{i},{j}: {} vs {want}", got[i][j]);
                }
            }
        }
    }
}
