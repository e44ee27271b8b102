//! Deterministic parameter initialisation (a seed gives the same model on every machine).

use super::dense::Dense;
use super::layout::ParamLayout;
use crate::kernels::activation::Activation;
use crate::kernels::sparse::mix64;

/// A small counter-based generator (splitmix64): reproducible, no dependency, good enough for weights.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Shuffles `v` in place (Fisher-Yates, from the back).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// He-uniform for ReLU-like activations, Glorot-uniform otherwise; biases zero.
pub fn init_dense(layer: &Dense, layout: &ParamLayout, params: &mut [f32], rng: &mut SplitMix) {
    let (fan_in, fan_out) = (layer.in_dim as f32, layer.out_dim as f32);
    let limit = match layer.act {
        Activation::Relu | Activation::Gelu => (6.0 / fan_in).sqrt(),
        _ => (6.0 / (fan_in + fan_out)).sqrt(),
    };
    for w in layout.view_mut(params, layer.weight) {
        *w = rng.uniform(-limit, limit);
    }
    layout.view_mut(params, layer.bias).fill(0.0);
}
