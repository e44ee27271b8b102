//! The aggregation core: `out = Σ wᵢ·xᵢ` over N equally long inputs, in one pass over memory.
//!
//! Every mean-type aggregation rule and the server-side merge of updates reduce to this. The inputs are
//! read exactly once and `out` written once: `out` is cut into L1-sized tiles and each tile accumulates
//! four inputs per sweep (four concurrent read streams the prefetchers track well), so the partial sums
//! stay in L1 instead of round-tripping through memory N times. Tiles are spread over rayon's threads;
//! nothing is allocated.

use rayon::prelude::*;

use super::lanes::{LANES, f32x8, load, store};

/// Floats per L1 tile (16 KiB of output, well inside a 48 KiB L1 next to the input lines in flight).
const TILE: usize = 4096;
/// Below this many output floats the work is too small to be worth handing to other threads.
const PARALLEL_MIN: usize = 1 << 16;

/// `out[j] = Σ_i weights[i] * inputs[i][j]`. With no inputs, `out` is zeroed.
///
/// # Panics
/// If `weights.len() != inputs.len()` or any input's length differs from `out.len()`.
pub fn weighted_sum(inputs: &[&[f32]], weights: &[f32], out: &mut [f32]) {
    assert_eq!(inputs.len(), weights.len(), "weighted_sum: one weight per input");
    for x in inputs {
        assert_eq!(x.len(), out.len(), "weighted_sum: input length differs from output length");
    }
    if out.len() < PARALLEL_MIN || rayon::current_num_threads() == 1 {
        for (t, tile) in out.chunks_mut(TILE).enumerate() {
            tile_sum(inputs, weights, t * TILE, tile);
        }
    } else {
        out.par_chunks_mut(TILE).enumerate().for_each(|(t, tile)| tile_sum(inputs, weights, t * TILE, tile));
    }
}

fn tile_sum(inputs: &[&[f32]], weights: &[f32], start: usize, out: &mut [f32]) {
    let end = start + out.len();
    let mut first = true;
    let mut i = 0;
    while i < inputs.len() {
        let take = (inputs.len() - i).min(4);
        let xs: [&[f32]; 4] = std::array::from_fn(|q| if q < take { &inputs[i + q][start..end] } else { &[][..] });
        let ws: [f32; 4] = std::array::from_fn(|q| if q < take { weights[i + q] } else { 0.0 });
        match take {
            4 => fold::<4>(&xs, &ws, out, first),
            3 => fold::<3>(&xs, &ws, out, first),
            2 => fold::<2>(&xs, &ws, out, first),
            _ => fold::<1>(&xs, &ws, out, first),
        }
        first = false;
        i += take;
    }
    if first {
        out.fill(0.0);
    }
}

/// out (+)= Σ_{q<K} ws[q]·xs[q], overwriting instead of adding on the first sweep.
#[inline(always)]
fn fold<const K: usize>(xs: &[&[f32]; 4], ws: &[f32; 4], out: &mut [f32], first: bool) {
    let wv: [f32x8; K] = std::array::from_fn(|q| f32x8::splat(ws[q]));
    let n = out.len() - out.len() % LANES;
    let mut j = 0;
    while j < n {
        let mut acc = if first { f32x8::ZERO } else { load(&out[j..]) };
        for q in 0..K {
            acc = wv[q].mul_add(load(&xs[q][j..]), acc);
        }
        store(acc, &mut out[j..]);
        j += LANES;
    }
    for (jj, o) in out.iter_mut().enumerate().skip(n) {
        let mut acc = if first { 0.0 } else { *o };
        for q in 0..K {
            acc = ws[q].mul_add(xs[q][jj], acc);
        }
        *o = acc;
    }
}
