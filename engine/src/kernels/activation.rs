//! Elementwise layer kernels: bias add / bias gradient and the activations with their backward.
//!
//! Backward takes both the pre-activation `z` and the output `a`: ReLU, tanh and sigmoid derive from `a`
//! (cheaper, no transcendental), GELU needs `z`.

use std::fmt;
use std::str::FromStr;

use super::lanes::{LANES, f32x8, load, store};
use super::math;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Identity,
    Relu,
    Tanh,
    Sigmoid,
    /// GELU, tanh approximation: 0.5·z·(1 + tanh(√(2/π)·(z + 0.044715·z³))).
    Gelu,
}

impl Activation {
    pub const ALL: [Activation; 5] =
        [Activation::Identity, Activation::Relu, Activation::Tanh, Activation::Sigmoid, Activation::Gelu];

    pub fn name(self) -> &'static str {
        match self {
            Activation::Identity => "identity",
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Gelu => "gelu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown activation `{s}` (expected identity, relu, tanh, sigmoid or gelu)"))
    }
}

const GELU_C: f32 = 0.797_884_6;
const GELU_A: f32 = 0.044_715;

#[inline(always)]
fn sigmoid_v(z: f32x8) -> f32x8 {
    f32x8::ONE / (f32x8::ONE + math::exp(-z))
}

#[inline(always)]
fn sigmoid_s(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// Applies `vf` to full vectors and `sf` to the tail: out[i] = f(x[i]).
#[inline(always)]
fn map1(x: &[f32], out: &mut [f32], vf: impl Fn(f32x8) -> f32x8, sf: impl Fn(f32) -> f32) {
    assert_eq!(x.len(), out.len(), "activation: length mismatch");
    let mut xc = x.chunks_exact(LANES);
    let mut oc = out.chunks_exact_mut(LANES);
    for (xs, os) in (&mut xc).zip(&mut oc) {
        store(vf(load(xs)), os);
    }
    for (xi, oi) in xc.remainder().iter().zip(oc.into_remainder()) {
        *oi = sf(*xi);
    }
}

/// out[i] = f(x[i], y[i], w[i]).
#[inline(always)]
fn map3(
    x: &[f32],
    y: &[f32],
    w: &[f32],
    out: &mut [f32],
    vf: impl Fn(f32x8, f32x8, f32x8) -> f32x8,
    sf: impl Fn(f32, f32, f32) -> f32,
) {
    assert!(x.len() == out.len() && y.len() == out.len() && w.len() == out.len(), "activation: length mismatch");
    let n = out.len() - out.len() % LANES;
    let mut i = 0;
    while i < n {
        store(vf(load(&x[i..]), load(&y[i..]), load(&w[i..])), &mut out[i..]);
        i += LANES;
    }
    for j in n..out.len() {
        out[j] = sf(x[j], y[j], w[j]);
    }
}

/// a = act(z).
pub fn forward(act: Activation, z: &[f32], a: &mut [f32]) {
    match act {
        Activation::Identity => a.copy_from_slice(z),
        Activation::Relu => map1(z, a, |v| v.max(f32x8::ZERO), |v| v.max(0.0)),
        Activation::Tanh => map1(z, a, math::tanh, f32::tanh),
        Activation::Sigmoid => map1(z, a, sigmoid_v, sigmoid_s),
        Activation::Gelu => map1(
            z,
            a,
            |v| {
                let u = f32x8::splat(GELU_C) * (v + f32x8::splat(GELU_A) * v * v * v);
                f32x8::splat(0.5) * v * (f32x8::ONE + math::tanh(u))
            },
            |v| 0.5 * v * (1.0 + (GELU_C * (v + GELU_A * v * v * v)).tanh()),
        ),
    }
}

/// dz = da ⊙ act'(z), given z (pre-activation) and a = act(z).
pub fn backward(act: Activation, z: &[f32], a: &[f32], da: &[f32], dz: &mut [f32]) {
    match act {
        Activation::Identity => dz.copy_from_slice(da),
        Activation::Relu => map3(
            z,
            a,
            da,
            dz,
            |zv, _, g| zv.simd_gt(f32x8::ZERO).select(g, f32x8::ZERO),
            |zv, _, g| if zv > 0.0 { g } else { 0.0 },
        ),
        Activation::Tanh => map3(z, a, da, dz, |_, av, g| g * (f32x8::ONE - av * av), |_, av, g| g * (1.0 - av * av)),
        Activation::Sigmoid => {
            map3(z, a, da, dz, |_, av, g| g * av * (f32x8::ONE - av), |_, av, g| g * av * (1.0 - av))
        }
        Activation::Gelu => map3(
            z,
            a,
            da,
            dz,
            |v, _, g| {
                let (c, k) = (f32x8::splat(GELU_C), f32x8::splat(GELU_A));
                let half = f32x8::splat(0.5);
                let t = math::tanh(c * (v + k * v * v * v));
                let du = c * (f32x8::ONE + f32x8::splat(3.0) * k * v * v);
                g * (half * (f32x8::ONE + t) + half * v * (f32x8::ONE - t * t) * du)
            },
            |v, _, g| {
                let t = (GELU_C * (v + GELU_A * v * v * v)).tanh();
                let du = GELU_C * (1.0 + 3.0 * GELU_A * v * v);
                g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du)
            },
        ),
    }
}

/// Adds `bias` to every row of the row-major matrix `x` (rows x bias.len()).
pub fn add_bias_rows(x: &mut [f32], bias: &[f32]) {
    let cols = bias.len();
    assert!(
        cols > 0 && x.len().is_multiple_of(cols),
        "add_bias_rows: matrix length is not a multiple of the bias length"
    );
    for row in x.chunks_exact_mut(cols) {
        super::blas1::axpy(1.0, bias, row);
    }
}

/// db += Σ_rows dy[row] (the bias gradient of a dense layer).
pub fn bias_grad_rows(dy: &[f32], db: &mut [f32]) {
    let cols = db.len();
    assert!(
        cols > 0 && dy.len().is_multiple_of(cols),
        "bias_grad_rows: matrix length is not a multiple of the bias length"
    );
    for row in dy.chunks_exact(cols) {
        super::blas1::axpy(1.0, row, db);
    }
}
