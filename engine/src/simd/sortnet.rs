//! The sorting network of the coordinate-wise rules (median, trimmed mean, Bulyan) on 512-bit registers.
//!
//! The portable path (`crate::rules::sorted_reduce`) sorts 8 coordinates per comparator with `wide`'s
//! AVX2 min/max. With AVX-512 one comparator sorts 16 coordinates, and the loads that feed the network
//! also accumulate every input's squared norm, so the validation of the inputs costs no second pass over
//! memory. The network itself is the same comparator list (`crate::rules::network`).
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Coordinates per group on this path.
pub(crate) const WIDTH: usize = 16;

/// How far ahead of the group being loaded each input is prefetched, in floats.
const PREFETCH_AHEAD: usize = 128;

/// One block of coordinates for [`sort_block`]: the inputs, where the block starts, and the scratch.
pub(crate) struct Block<'a> {
    /// One slice per input; every slice holds at least `start + out.len()` values.
    pub rows: &'a [&'a [f32]],
    pub start: usize,
    /// The comparators, in order.
    pub pairs: &'a [(usize, usize)],
    /// Per input, 16 lanes of running squared sums (`rows.len() · 16` floats), or empty to skip norms.
    pub norms: &'a mut [f32],
}

/// Sorts, for each group of 16 coordinates of `out`, the inputs' values through the network and hands the
/// sorted columns to `reduce(sorted, out16)`: `sorted[i · 16 + lane]` is the i-th smallest value of
/// coordinate `lane`. `out.len()` must be a multiple of 16. Returns `false` (and does nothing) when the CPU
/// has no AVX-512F.
pub(crate) fn sort_block(block: Block<'_>, out: &mut [f32], reduce: &mut dyn FnMut(&[f32], &mut [f32])) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let n = block.rows.len();
        assert_eq!(out.len() % WIDTH, 0, "whole groups of 16 coordinates only");
        assert!(block.rows.iter().all(|r| r.len() >= block.start + out.len()), "every input covers the block");
        assert!(block.pairs.iter().all(|&(a, b)| a < n && b < n), "comparators within the inputs");
        assert!(block.norms.is_empty() || block.norms.len() == n * WIDTH, "one 16-lane accumulator per input");
        if crate::Isa::Avx512F.is_supported() {
            // SAFETY: AVX-512F was detected just above; the asserts establish the bounds the kernel relies
            // on (rows long enough, comparator indices and norm accumulators within n).
            unsafe { sort_block_avx512(block, out, reduce) };
            return true;
        }
    }
    let _ = (block, out, reduce);
    false
}

/// # Safety
/// The CPU supports AVX-512F, and `block` and `out` satisfy [`sort_block`]'s asserted preconditions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sort_block_avx512(block: Block<'_>, out: &mut [f32], reduce: &mut dyn FnMut(&[f32], &mut [f32])) {
    let n = block.rows.len();
    let with_norms = !block.norms.is_empty();
    let mut buf: Vec<__m512> = vec![_mm512_setzero_ps(); n];
    let mut norms: Vec<__m512> = Vec::with_capacity(if with_norms { n } else { 0 });
    for i in 0..norms.capacity() {
        // SAFETY: `norms` holds n · 16 floats (asserted by the caller), so each 16-float load is in bounds.
        norms.push(unsafe { _mm512_loadu_ps(block.norms.as_ptr().add(i * WIDTH)) });
    }
    let mut sorted = vec![0.0f32; n * WIDTH];
    for (g, out16) in out.chunks_exact_mut(WIDTH).enumerate() {
        let at = block.start + g * WIDTH;
        for (i, (slot, row)) in buf.iter_mut().zip(block.rows).enumerate() {
            // SAFETY: every row holds at least start + out.len() ≥ at + 16 values.
            let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(at)) };
            // 32 input streams are more than the hardware prefetcher follows: ask for the line a few
            // groups ahead.
            super::prefetch(row, at + PREFETCH_AHEAD);
            *slot = v;
            if with_norms {
                norms[i] = _mm512_fmadd_ps(v, v, norms[i]);
            }
        }
        for &(a, b) in block.pairs {
            let (x, y) = (buf[a], buf[b]);
            buf[a] = _mm512_min_ps(x, y);
            buf[b] = _mm512_max_ps(x, y);
        }
        for (i, v) in buf.iter().enumerate() {
            // SAFETY: `sorted` holds n · 16 floats; i < n.
            unsafe { _mm512_storeu_ps(sorted.as_mut_ptr().add(i * WIDTH), *v) };
        }
        reduce(&sorted, out16);
    }
    for (i, v) in norms.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { _mm512_storeu_ps(block.norms.as_mut_ptr().add(i * WIDTH), *v) };
    }
}
