//! The scalar oracle: the plain definition of every kernel, kept apart from the fast paths.
//!
//! These functions are written for obviousness, not speed: one loop, f64 accumulation where a sum is
//! involved, no blocking, no SIMD. Property tests compare every SIMD kernel and every GEMM path against
//! them. Nothing in the engine's hot paths calls this module.

use crate::kernels::activation::Activation;

pub fn dot(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

pub fn sum(x: &[f32]) -> f64 {
    x.iter().map(|&a| a as f64).sum()
}

pub fn norm2(x: &[f32]) -> f64 {
    x.iter().map(|&a| a as f64 * a as f64).sum()
}

pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = (a as f64 * xi as f64 + *yi as f64) as f32;
    }
}

pub fn scale(a: f32, x: &mut [f32]) {
    for xi in x {
        *xi = (a as f64 * *xi as f64) as f32;
    }
}

/// `out[j] = Σ_i w[i] * inputs[i][j]`.
pub fn weighted_sum(inputs: &[&[f32]], weights: &[f32], out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        *o = inputs.iter().zip(weights).map(|(x, &w)| w as f64 * x[j] as f64).sum::<f64>() as f32;
    }
}

/// `C = alpha * op(A) · op(B) + beta * C` in f64, where op(A) is m x k and op(B) is k x n, each given by
/// its row and column strides. C is row-major m x n.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                acc += a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64;
            }
            let old = if beta == 0.0 { 0.0 } else { beta as f64 * c[i * n + j] as f64 };
            c[i * n + j] = (alpha as f64 * acc + old) as f32;
        }
    }
}

pub fn activation(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Identity => z,
        Activation::Relu => z.max(0.0),
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Gelu => {
            let u = GELU_C * (z + 0.044715 * z * z * z);
            0.5 * z * (1.0 + u.tanh())
        }
    }
}

/// d activation / dz at `z`.
pub fn activation_derivative(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s)
        }
        Activation::Gelu => {
            let u = GELU_C * (z + 0.044715 * z * z * z);
            let t = u.tanh();
            let du = GELU_C * (1.0 + 3.0 * 0.044715 * z * z);
            0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * du
        }
    }
}

/// sqrt(2/pi), the GELU tanh-approximation constant.
pub const GELU_C: f64 = 0.797_884_560_802_865_4;

/// Mean softmax cross-entropy over rows, and its gradient w.r.t. the logits (already divided by rows).
pub fn softmax_cross_entropy(logits: &[f32], classes: usize, labels: &[u32], grad: &mut [f32]) -> f64 {
    let rows = labels.len();
    let mut total = 0.0;
    for r in 0..rows {
        let z = &logits[r * classes..(r + 1) * classes];
        let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let denom: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
        let log_denom = denom.ln() + max;
        total += log_denom - z[labels[r] as usize] as f64;
        for (c, g) in grad[r * classes..(r + 1) * classes].iter_mut().enumerate() {
            let p = (z[c] as f64 - log_denom).exp();
            let y = if c == labels[r] as usize { 1.0 } else { 0.0 };
            *g = ((p - y) / rows as f64) as f32;
        }
    }
    total / rows as f64
}

/// Mean sigmoid binary cross-entropy over all entries, and its gradient (already divided by the count).
pub fn sigmoid_bce(logits: &[f32], targets: &[f32], grad: &mut [f32]) -> f64 {
    let n = logits.len();
    let mut total = 0.0;
    for i in 0..n {
        let z = logits[i] as f64;
        let y = targets[i] as f64;
        total += z.max(0.0) - z * y + (-z.abs()).exp().ln_1p();
        grad[i] = ((1.0 / (1.0 + (-z).exp()) - y) / n as f64) as f32;
    }
    total / n as f64
}

pub fn sgd(w: &mut [f32], g: &[f32], lr: f32) {
    for (wi, &gi) in w.iter_mut().zip(g) {
        *wi = (*wi as f64 - lr as f64 * gi as f64) as f32;
    }
}

pub fn momentum(w: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, mu: f32) {
    for i in 0..w.len() {
        let vi = mu as f64 * v[i] as f64 + g[i] as f64;
        v[i] = vi as f32;
        w[i] = (w[i] as f64 - lr as f64 * vi) as f32;
    }
}

pub fn adagrad(w: &mut [f32], g: &[f32], h: &mut [f32], lr: f32, eps: f32) {
    for i in 0..w.len() {
        let hi = h[i] as f64 + g[i] as f64 * g[i] as f64;
        h[i] = hi as f32;
        w[i] = (w[i] as f64 - lr as f64 * g[i] as f64 / (hi.sqrt() + eps as f64)) as f32;
    }
}

#[allow(clippy::too_many_arguments)]
pub fn adam(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], lr: f32, b1: f32, b2: f32, eps: f32, t: u64) {
    let (b1, b2) = (b1 as f64, b2 as f64);
    let c1 = 1.0 - b1.powi(t as i32);
    let c2 = 1.0 - b2.powi(t as i32);
    for i in 0..w.len() {
        let gi = g[i] as f64;
        let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
        m[i] = mi as f32;
        v[i] = vi as f32;
        w[i] = (w[i] as f64 - lr as f64 * (mi / c1) / ((vi / c2).sqrt() + eps as f64)) as f32;
    }
}

pub fn gather_rows(table: &[f32], dim: usize, rows: &[u32], out: &mut [f32]) {
    for (k, &r) in rows.iter().enumerate() {
        for d in 0..dim {
            out[k * dim + d] = table[r as usize * dim + d];
        }
    }
}

pub fn scatter_add_rows(table: &mut [f32], dim: usize, rows: &[u32], src: &[f32]) {
    for (k, &r) in rows.iter().enumerate() {
        for d in 0..dim {
            table[r as usize * dim + d] += src[k * dim + d];
        }
    }
}

pub fn mse(outputs: &[f32], targets: &[f32], grad: &mut [f32]) -> f64 {
    let n = outputs.len();
    let mut total = 0.0;
    for i in 0..n {
        let d = outputs[i] as f64 - targets[i] as f64;
        total += 0.5 * d * d;
        grad[i] = (d / n as f64) as f32;
    }
    total / n as f64
}
