//! Vectorised `exp` and `tanh` for the activations and losses.
//!
//! `wide`'s own versions handle subnormal results and every special case through per-lane selects;
//! these run 3-5x faster and stay within a few ulp where training uses them:
//! - `exp`: Cephes-style range reduction x = n·ln2 + r (ln2 split in two constants), a degree-6
//!   polynomial on r, and 2ⁿ built from exponent bits in two halves so every intermediate stays normal.
//!   Results below f32's normal range flush to 0 (x < −87.34) and overflow to +∞ (x > 88.72); NaN stays
//!   NaN. Measured max relative error ~2 ulp (property-tested against f64).
//! - `tanh`: Cephes' odd polynomial for |x| < 0.625 (where 1 − 2/(e^{2x} + 1) would lose all relative
//!   precision to cancellation), that formula above it.

use bytemuck::cast;
use wide::i32x8;

use super::lanes::{LANES, f32x8, load, store};

const EXP_HI: f32 = 88.722_83;
const EXP_LO: f32 = -87.336_55;

/// 2^k for integer k in [−126, 127]: k + 127 written straight into the exponent bits.
#[inline(always)]
fn pow2(k: i32x8) -> f32x8 {
    cast((k + i32x8::splat(127)) << 23)
}

#[inline(always)]
pub fn exp(x: f32x8) -> f32x8 {
    let xc = x.fast_max(f32x8::splat(EXP_LO)).fast_min(f32x8::splat(EXP_HI));
    // One vcvtps2dq (round to nearest even) instead of a float round: the whole kernel is instruction bound.
    let ni = (xc * f32x8::splat(std::f32::consts::LOG2_E)).fast_round_int();
    let n = ni.round_float();
    let r = n.mul_neg_add(f32x8::splat(0.693_359_4), xc);
    let r = n.mul_neg_add(f32x8::splat(-0.00021219444), r);
    let mut p = f32x8::splat(0.00019875693);
    for c in [0.0013981999, 0.008333452, 0.041665796, 0.16666666, 0.5] {
        p = p.mul_add(r, f32x8::splat(c));
    }
    let y = p.mul_add(r * r, r) + f32x8::ONE;
    // n ∈ [−126, 128]: split so both factors are normal powers of two.
    let n1 = ni >> 1;
    let y = y * pow2(n1) * pow2(ni - n1);
    let y = x.simd_gt(f32x8::splat(EXP_HI)).select(f32x8::splat(f32::INFINITY), y);
    let y = x.simd_lt(f32x8::splat(EXP_LO)).select(f32x8::ZERO, y);
    x.is_nan().select(x, y)
}

#[inline(always)]
pub fn tanh(x: f32x8) -> f32x8 {
    // tanh is odd: evaluate on |x| and put x's sign bit back (which also keeps tanh(−0) = −0).
    let ax = x.abs();
    // Small |x|: |x| + |x|·s·P(s), s = x².
    let s = x * x;
    let mut p = f32x8::splat(-0.0057049887);
    for c in [0.02063909, -0.053739715, 0.13331442, -0.3333328] {
        p = p.mul_add(s, f32x8::splat(c));
    }
    let small = (p * s).mul_add(ax, ax);
    // Large |x|: 1 − 2 / (e^{2|x|} + 1).
    let large = f32x8::ONE - f32x8::splat(2.0) / (exp(ax + ax) + f32x8::ONE);
    let magnitude = ax.simd_lt(f32x8::splat(0.625)).select(small, large);
    let magnitude = x.is_nan().select(x, magnitude);
    magnitude | (x & f32x8::splat(-0.0))
}

/// `out[i] = exp(x[i])` with the vector kernel (the tail goes through a padded vector, so every element
/// gets the same rounding).
pub fn exp_slice(x: &[f32], out: &mut [f32]) {
    map(x, out, exp)
}

/// `out[i] = tanh(x[i])`.
pub fn tanh_slice(x: &[f32], out: &mut [f32]) {
    map(x, out, tanh)
}

fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32x8) -> f32x8) {
    assert_eq!(x.len(), out.len(), "math: length mismatch");
    let mut xc = x.chunks_exact(LANES);
    let mut oc = out.chunks_exact_mut(LANES);
    for (xs, os) in (&mut xc).zip(&mut oc) {
        store(f(load(xs)), os);
    }
    let (xt, ot) = (xc.remainder(), oc.into_remainder());
    if !xt.is_empty() {
        let mut pad = [0.0f32; LANES];
        pad[..xt.len()].copy_from_slice(xt);
        let v = f(f32x8::new(pad));
        ot.copy_from_slice(&v.as_array()[..ot.len()]);
    }
}
