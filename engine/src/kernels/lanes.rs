//! Loads and stores between slices and `wide::f32x8`, the vector every portable kernel is written over.
//!
//! With the default `target-cpu=x86-64-v3` an `f32x8` is one AVX2 register and `mul_add` is one FMA.
//! Slices are taken with `chunks_exact`, so bounds checks disappear and the tail is handled once, by the
//! caller, in plain scalar code.

pub use wide::f32x8;

/// Lanes in the portable vector.
pub const LANES: usize = 8;

#[inline(always)]
pub fn load(s: &[f32]) -> f32x8 {
    let a: [f32; LANES] = s[..LANES].try_into().expect("slice of at least LANES floats");
    f32x8::new(a)
}

#[inline(always)]
pub fn store(v: f32x8, s: &mut [f32]) {
    s[..LANES].copy_from_slice(v.as_array());
}
