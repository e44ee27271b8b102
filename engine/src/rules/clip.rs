//! Norm clipping: every update longer than τ is scaled down to norm τ, then an inner rule aggregates.
//! It bounds how far any single update can move the result, whatever the inner rule.

use super::{Rule, RuleError, Update};
use crate::kernels::{norm2, scale};

pub struct Clip {
    pub tau: f32,
    pub inner: Box<dyn Rule>,
    /// Scaled copies of the updates that needed clipping (reused across calls).
    scratch: Vec<Vec<f32>>,
}

impl Clip {
    pub fn new(tau: f32, inner: Box<dyn Rule>) -> Result<Self, RuleError> {
        if !(tau.is_finite() && tau > 0.0) {
            return Err(RuleError::Precondition {
                rule: "clip",
                detail: format!("tau must be a positive number, got {tau}"),
            });
        }
        Ok(Self { tau, inner, scratch: Vec::new() })
    }
}

impl Rule for Clip {
    fn name(&self) -> &'static str {
        "clip"
    }

    fn check(&self, n: usize) -> Result<(), RuleError> {
        self.inner.check(n)
    }

    fn check_len(&self, len: usize) -> Result<(), RuleError> {
        self.inner.check_len(len)
    }

    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        // Copy and scale only the updates that exceed tau; the others are used in place.
        let long: Vec<(usize, f32)> = valid
            .iter()
            .enumerate()
            .filter_map(|(i, u)| {
                let norm = norm2(u.values).sqrt();
                (norm > self.tau).then_some((i, self.tau / norm))
            })
            .collect();
        self.scratch.resize_with(long.len(), Vec::new);
        for (buf, &(i, factor)) in self.scratch.iter_mut().zip(&long) {
            buf.clear();
            buf.extend_from_slice(valid[i].values);
            scale(factor, buf);
        }
        let mut clipped: Vec<Update> = valid.to_vec();
        for (buf, &(i, _)) in self.scratch.iter().zip(&long) {
            clipped[i].values = buf;
        }
        self.inner.combine(&clipped, out)
    }

    fn selected(&self) -> Option<&[usize]> {
        self.inner.selected()
    }
}
