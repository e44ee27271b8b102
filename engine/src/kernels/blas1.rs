//! Reductions and BLAS-1 over flat slices.
//!
//! Reductions keep four independent accumulators (32 floats per iteration) so the FMA latency is hidden
//! and the summation is partly pairwise, which also tightens the rounding error compared to one running sum.

use super::lanes::{LANES, f32x8, load, store};

const UNROLL: usize = 4;
const BLOCK: usize = LANES * UNROLL;

#[inline(always)]
fn reduce<F: Fn(f32x8, &[f32], &[f32]) -> f32x8, S: Fn(f32, f32, f32) -> f32>(
    x: &[f32],
    y: &[f32],
    step: F,
    scalar: S,
) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let mut acc = [f32x8::ZERO; UNROLL];
    let (xb, yb) = (x.chunks_exact(BLOCK), y.chunks_exact(BLOCK));
    let (xr, yr) = (xb.remainder(), yb.remainder());
    for (a, b) in xb.zip(yb) {
        for u in 0..UNROLL {
            acc[u] = step(acc[u], &a[u * LANES..], &b[u * LANES..]);
        }
    }
    let (xl, yl) = (xr.chunks_exact(LANES), yr.chunks_exact(LANES));
    let (xt, yt) = (xl.remainder(), yl.remainder());
    for (a, b) in xl.zip(yl) {
        acc[0] = step(acc[0], a, b);
    }
    let v = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    let tail = xt.iter().zip(yt).fold(0.0f32, |s, (&a, &b)| scalar(s, a, b));
    v.reduce_add() + tail
}

/// Σ x·y.
pub fn dot(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "dot: length mismatch");
    reduce(x, y, |acc, a, b| load(a).mul_add(load(b), acc), |s, a, b| a.mul_add(b, s))
}

/// Σ x.
pub fn sum(x: &[f32]) -> f32 {
    reduce(x, x, |acc, a, _| acc + load(a), |s, a, _| s + a)
}

/// Σ x² (squared Euclidean norm).
pub fn norm2(x: &[f32]) -> f32 {
    reduce(
        x,
        x,
        |acc, a, _| {
            let v = load(a);
            v.mul_add(v, acc)
        },
        |s, a, _| a.mul_add(a, s),
    )
}

/// Whether every value is finite (no NaN, no ±∞): x − x is 0 for a finite x and NaN otherwise, and a sum
/// of those is 0 exactly when all are finite. Branch-free, so it runs at load speed.
#[allow(clippy::eq_op)] // x − x is the point: it is NaN exactly for the non-finite x.
pub fn all_finite(x: &[f32]) -> bool {
    reduce(x, x, |acc, a, _| acc + (load(a) - load(a)), |s, a, _| s + (a - a)) == 0.0
}

/// y ← a·x + y.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: length mismatch");
    let av = f32x8::splat(a);
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact_mut(LANES);
    for (xs, ys) in (&mut xc).zip(&mut yc) {
        store(av.mul_add(load(xs), load(ys)), ys);
    }
    for (xi, yi) in xc.remainder().iter().zip(yc.into_remainder()) {
        *yi = a.mul_add(*xi, *yi);
    }
}

/// x ← a·x.
pub fn scale(a: f32, x: &mut [f32]) {
    let av = f32x8::splat(a);
    let mut xc = x.chunks_exact_mut(LANES);
    for xs in &mut xc {
        store(av * load(xs), xs);
    }
    for xi in xc.into_remainder() {
        *xi *= a;
    }
}
