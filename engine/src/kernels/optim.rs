//! Optimizer updates on flat slices, and the same updates applied to a set of rows of a sparse table.
//!
//! Dense forms take the whole parameter slice; row forms take a [`SparseGrad`] whose rows are unique by
//! construction (see [`super::sparse::SparseGrad::coalesce`]), so stateful optimizers see each row once
//! per step, exactly as their dense form would.

use super::lanes::{LANES, f32x8, load, store};
use super::sparse::SparseGrad;

/// w ← w − lr·g.
pub fn sgd(w: &mut [f32], g: &[f32], lr: f32) {
    super::blas1::axpy(-lr, g, w);
}

/// v ← μ·v + g; w ← w − lr·v (the PyTorch convention).
pub fn momentum(w: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, mu: f32) {
    assert!(g.len() == w.len() && v.len() == w.len(), "momentum: length mismatch");
    let (lrv, muv) = (f32x8::splat(lr), f32x8::splat(mu));
    let n = w.len() - w.len() % LANES;
    let mut i = 0;
    while i < n {
        let vi = muv.mul_add(load(&v[i..]), load(&g[i..]));
        store(vi, &mut v[i..]);
        store((-lrv).mul_add(vi, load(&w[i..])), &mut w[i..]);
        i += LANES;
    }
    for j in n..w.len() {
        v[j] = mu.mul_add(v[j], g[j]);
        w[j] = (-lr).mul_add(v[j], w[j]);
    }
}

/// h ← h + g²; w ← w − lr·g / (√h + ε).
pub fn adagrad(w: &mut [f32], g: &[f32], h: &mut [f32], lr: f32, eps: f32) {
    assert!(g.len() == w.len() && h.len() == w.len(), "adagrad: length mismatch");
    let (lrv, epsv) = (f32x8::splat(lr), f32x8::splat(eps));
    let n = w.len() - w.len() % LANES;
    let mut i = 0;
    while i < n {
        let gi = load(&g[i..]);
        let hi = gi.mul_add(gi, load(&h[i..]));
        store(hi, &mut h[i..]);
        store(load(&w[i..]) - lrv * gi / (hi.sqrt() + epsv), &mut w[i..]);
        i += LANES;
    }
    for j in n..w.len() {
        h[j] = g[j].mul_add(g[j], h[j]);
        w[j] -= lr * g[j] / (h[j].sqrt() + eps);
    }
}

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// One Adam step at time `t` (1-based) with bias correction.
pub fn adam(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], p: AdamParams, t: u64) {
    assert!(g.len() == w.len() && m.len() == w.len() && v.len() == w.len(), "adam: length mismatch");
    assert!(t >= 1, "adam: the step counter starts at 1");
    let c1 = 1.0 - (p.beta1 as f64).powi(t.min(i32::MAX as u64) as i32);
    let c2 = 1.0 - (p.beta2 as f64).powi(t.min(i32::MAX as u64) as i32);
    // w -= lr/c1 · m / (sqrt(v/c2) + eps) = step · m / (sqrt(v)·s2 + eps)
    let step = (p.lr as f64 / c1) as f32;
    let s2 = (1.0 / c2.sqrt()) as f32;
    let (b1, b2) = (p.beta1, p.beta2);
    let (b1v, b2v, ob1, ob2) = (f32x8::splat(b1), f32x8::splat(b2), f32x8::splat(1.0 - b1), f32x8::splat(1.0 - b2));
    let (stepv, s2v, epsv) = (f32x8::splat(step), f32x8::splat(s2), f32x8::splat(p.eps));
    let n = w.len() - w.len() % LANES;
    let mut i = 0;
    while i < n {
        let gi = load(&g[i..]);
        let mi = b1v.mul_add(load(&m[i..]), ob1 * gi);
        let vi = b2v.mul_add(load(&v[i..]), ob2 * gi * gi);
        store(mi, &mut m[i..]);
        store(vi, &mut v[i..]);
        store(load(&w[i..]) - stepv * mi / vi.sqrt().mul_add(s2v, epsv), &mut w[i..]);
        i += LANES;
    }
    for j in n..w.len() {
        m[j] = b1.mul_add(m[j], (1.0 - b1) * g[j]);
        v[j] = b2.mul_add(v[j], (1.0 - b2) * g[j] * g[j]);
        w[j] -= step * m[j] / v[j].sqrt().mul_add(s2, p.eps);
    }
}

fn rows_of(table: &mut [f32], dim: usize, row: u32) -> &mut [f32] {
    let r = row as usize;
    &mut table[r * dim..(r + 1) * dim]
}

/// Row form of [`sgd`].
pub fn sgd_rows(table: &mut [f32], grad: &SparseGrad, lr: f32) {
    for (row, g) in grad.iter() {
        sgd(rows_of(table, grad.dim(), row), g, lr);
    }
}

/// Row form of [`momentum`]; `v` has the table's shape.
pub fn momentum_rows(table: &mut [f32], grad: &SparseGrad, v: &mut [f32], lr: f32, mu: f32) {
    for (row, g) in grad.iter() {
        momentum(rows_of(table, grad.dim(), row), g, rows_of(v, grad.dim(), row), lr, mu);
    }
}

/// Row form of [`adagrad`]; `h` has the table's shape.
pub fn adagrad_rows(table: &mut [f32], grad: &SparseGrad, h: &mut [f32], lr: f32, eps: f32) {
    for (row, g) in grad.iter() {
        adagrad(rows_of(table, grad.dim(), row), g, rows_of(h, grad.dim(), row), lr, eps);
    }
}

/// Row form of [`adam`] (the "lazy Adam" of sparse embeddings: rows absent from the step keep their
/// moments untouched); `m` and `v` have the table's shape.
pub fn adam_rows(table: &mut [f32], grad: &SparseGrad, m: &mut [f32], v: &mut [f32], p: AdamParams, t: u64) {
    let dim = grad.dim();
    for (row, g) in grad.iter() {
        adam(rows_of(table, dim, row), g, rows_of(m, dim, row), rows_of(v, dim, row), p, t);
    }
}
