//! Strategies and tolerances shared by the property suites.
#![allow(dead_code)]

use proptest::prelude::*;

/// Floats with a random sign, mantissa and binary exponent in `-e..=e` (covers tiny and huge magnitudes).
pub fn wide_f32(e: i32) -> impl Strategy<Value = f32> {
    (any::<bool>(), 1.0f32..2.0, -e..=e).prop_map(|(neg, m, x)| if neg { -m } else { m } * 2f32.powi(x))
}

/// A vector of `len` values behind an `offset` of 0..16 floats: slicing `v[offset..]` gives every 64-byte
/// alignment, so SIMD loads meet every misalignment and every tail length.
pub fn offset_vec(max_len: usize, e: i32) -> impl Strategy<Value = (Vec<f32>, usize)> {
    (0..=max_len, 0usize..16)
        .prop_flat_map(move |(len, off)| (prop::collection::vec(wide_f32(e), len + off), Just(off)))
}

/// Two vectors of the same length at independent offsets.
pub fn offset_pair(max_len: usize, e: i32) -> impl Strategy<Value = ((Vec<f32>, usize), (Vec<f32>, usize))> {
    (0..=max_len, 0usize..16, 0usize..16).prop_flat_map(move |(len, o1, o2)| {
        (
            (prop::collection::vec(wide_f32(e), len + o1), Just(o1)),
            (prop::collection::vec(wide_f32(e), len + o2), Just(o2)),
        )
    })
}

/// The rounding bound of an f32 sum of `n` terms whose absolute values add up to `abs_sum`.
pub fn sum_bound(n: usize, abs_sum: f64) -> f64 {
    (n as f64 + 2.0) * f32::EPSILON as f64 * abs_sum + 1e-37 * (n as f64 + 1.0)
}

/// |got − want| within `rel·|want| + abs`.
pub fn close(got: f32, want: f64, rel: f64, abs: f64) -> bool {
    (got as f64 - want).abs() <= rel * want.abs() + abs
}

/// `len` deterministic bytes from a xorshift stream seeded by `seed`: no period a test could line up
/// with (a repeating pattern could hide a wrong stripe order or a swapped chunk).
pub fn xorshift_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
