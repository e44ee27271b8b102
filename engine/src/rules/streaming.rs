//! The mean and FedAvg folded in as updates arrive: memory is one model however many updates come.
//!
//! A batch rule holds all N updates until the last arrives (N models of memory). The mean-type rules do
//! not need to: each update is validated on its own (length, finite values and weight, norm bound) and
//! added into a running weighted sum with the AXPY kernel, and `finish` divides by the total weight. The
//! result equals the batch rule's up to float rounding (the sums are taken in another order); the report
//! lists the same senders as used and rejected.

use super::{Report, RuleError, Update, validate};
use crate::kernels::{axpy, scale};

/// How a streaming mean weighs its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamingKind {
    /// Every accepted update counts once (the `mean` rule).
    Mean,
    /// Each update counts by its weight, e.g. its sample count (the `fedavg` rule); all-zero weights fall
    /// back to the plain mean, as the batch rule does.
    FedAvg,
}

/// A running weighted sum of accepted updates.
#[derive(Clone, Debug)]
pub struct StreamingMean {
    kind: StreamingKind,
    norm_bound: Option<f32>,
    /// Σ wᵢ·xᵢ over the accepted updates (for FedAvg) or Σ xᵢ (for the mean and the all-zero fallback).
    weighted: Vec<f32>,
    /// Σ xᵢ, kept for FedAvg only while every weight so far is zero.
    plain: Option<Vec<f32>>,
    total_weight: f64,
    report: Report,
}

impl StreamingMean {
    /// A fold over updates of `len` values, refusing those whose L2 norm exceeds `norm_bound`.
    pub fn new(kind: StreamingKind, len: usize, norm_bound: Option<f32>) -> Self {
        Self {
            kind,
            norm_bound,
            weighted: vec![0.0; len],
            plain: (kind == StreamingKind::FedAvg).then(|| vec![0.0; len]),
            total_weight: 0.0,
            report: Report::default(),
        }
    }

    /// Values per update (and in the result).
    pub fn len(&self) -> usize {
        self.weighted.len()
    }

    /// Whether updates have zero values.
    pub fn is_empty(&self) -> bool {
        self.weighted.is_empty()
    }

    /// Validates `update` and folds it in; returns whether it was accepted (a refusal is in the report).
    pub fn add(&mut self, update: Update) -> bool {
        let (valid, rejected) = validate(std::slice::from_ref(&update), self.weighted.len(), self.norm_bound);
        if valid.is_empty() {
            self.report.rejected.extend(rejected);
            return false;
        }
        match self.kind {
            StreamingKind::Mean => axpy(1.0, update.values, &mut self.weighted),
            StreamingKind::FedAvg => {
                axpy(update.weight, update.values, &mut self.weighted);
                self.total_weight += update.weight as f64;
                // The plain sum is only needed while no weight is positive.
                if self.total_weight > 0.0 {
                    self.plain = None;
                } else if let Some(p) = &mut self.plain {
                    axpy(1.0, update.values, p);
                }
            }
        }
        self.report.used.push(update.sender);
        true
    }

    /// Updates accepted so far.
    pub fn accepted(&self) -> usize {
        self.report.used.len()
    }

    /// Writes the mean into `out` and returns the report.
    pub fn finish(self, out: &mut [f32]) -> Result<Report, RuleError> {
        let n = self.report.used.len();
        if n == 0 {
            let rule = if self.kind == StreamingKind::Mean { "mean" } else { "fedavg" };
            return Err(RuleError::NoInputs { rule, rejected: self.report.rejected.len() });
        }
        let (sum, divisor) = match (self.kind, self.plain) {
            (StreamingKind::FedAvg, None) => (self.weighted, self.total_weight),
            (StreamingKind::FedAvg, Some(plain)) => (plain, n as f64),
            (StreamingKind::Mean, _) => (self.weighted, n as f64),
        };
        out.copy_from_slice(&sum);
        scale((1.0 / divisor) as f32, out);
        Ok(self.report)
    }
}
