//! Aggregation rules: the "first preset rule" that merges N updates into one.
//!
//! One trait serves the federated master, sync-mode parameter servers and the `shoal aggregate` tool. A
//! rule states its precondition ([`Rule::check`]), and every call first validates its inputs ([`validate`]):
//! wrong lengths, NaN/∞ and updates above a norm bound are rejected and reported, never aggregated.
//! Mean-type rules reduce to the weighted-sum kernel (one pass at memory bandwidth). Median and trimmed
//! mean sort the N values of 8 coordinates at once through a sorting network of lane-wise min/max
//! ([`network`]) instead of sorting every coordinate on its own.

pub mod bulyan;
pub mod clip;
pub mod krum;
pub mod network;
pub mod server;

pub use bulyan::Bulyan;
pub use clip::Clip;
pub use krum::Krum;
pub use server::{ServerKind, ServerOpt};

use crate::kernels::lanes::{LANES, f32x8, load, store};
use crate::kernels::{norm2, weighted_sum};

/// One update: the sender, its weight (e.g. its sample count) and its values.
#[derive(Clone, Copy, Debug)]
pub struct Update<'a> {
    pub sender: u32,
    pub weight: f32,
    pub values: &'a [f32],
}

/// What a rule did with its inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Senders whose updates went into the result.
    pub used: Vec<u32>,
    /// Senders whose updates were refused, with the reason.
    pub rejected: Vec<(u32, String)>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("{rule}: {detail}")]
    Precondition { rule: &'static str, detail: String },
    #[error("{rule}: no valid updates to aggregate ({rejected} rejected)")]
    NoInputs { rule: &'static str, rejected: usize },
    /// A rule loaded from a plugin failed or misbehaved (the host caught it).
    #[error("plugin rule `{rule}`: {detail}")]
    Plugin { rule: String, detail: String },
}

/// An aggregation rule.
/// `Any` lets a caller reach a concrete rule's extra API (a server optimizer's state) behind `dyn Rule`.
pub trait Rule: Send + std::any::Any {
    fn name(&self) -> &'static str;
    /// Whether `n` valid inputs satisfy the rule's precondition (none, unless a rule states one).
    fn check(&self, _n: usize) -> Result<(), RuleError> {
        Ok(())
    }
    /// Whether updates of `len` values suit the rule (stateful rules hold state of one length).
    fn check_len(&self, _len: usize) -> Result<(), RuleError> {
        Ok(())
    }
    /// Aggregates the `valid` inputs (already validated) into `out`.
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError>;

    /// Positions (in the valid inputs) that the last `combine` actually used, for rules that select
    /// (Krum); `None` means all of them.
    fn selected(&self) -> Option<&[usize]> {
        None
    }

    /// Validates, checks the precondition, aggregates, and reports.
    fn aggregate(&mut self, updates: &[Update], norm_bound: Option<f32>, out: &mut [f32]) -> Result<Report, RuleError> {
        self.check_len(out.len())?;
        let (valid, rejected) = validate(updates, out.len(), norm_bound);
        if valid.is_empty() {
            return Err(RuleError::NoInputs { rule: self.name(), rejected: rejected.len() });
        }
        self.check(valid.len())?;
        self.combine(&valid, out)?;
        let used = match self.selected() {
            Some(positions) => positions.iter().map(|&i| valid[i].sender).collect(),
            None => valid.iter().map(|u| u.sender).collect(),
        };
        Ok(Report { used, rejected })
    }
}

/// Splits `updates` into those fit to aggregate and those refused (wrong length, a non-finite value, a
/// non-finite or negative weight, an L2 norm above `norm_bound`).
pub fn validate<'a>(
    updates: &[Update<'a>],
    len: usize,
    norm_bound: Option<f32>,
) -> (Vec<Update<'a>>, Vec<(u32, String)>) {
    use rayon::prelude::*;
    // The squared norms are the whole cost (one read of every update): take them in parallel, in
    // blocks, when there is enough to read to pay for the fork-join.
    const BLOCK: usize = 1 << 16;
    let norm2s: Vec<f32> = if updates.len() * len >= 1 << 18 && rayon::current_num_threads() > 1 {
        updates
            .par_iter()
            .map(|u| if u.values.len() == len { u.values.par_chunks(BLOCK).map(norm2).sum() } else { 0.0 })
            .collect()
    } else {
        updates.iter().map(|u| if u.values.len() == len { norm2(u.values) } else { 0.0 }).collect()
    };
    let mut valid = Vec::with_capacity(updates.len());
    let mut rejected = Vec::new();
    for (u, &n2) in updates.iter().zip(&norm2s) {
        let reason = if u.values.len() != len {
            Some(format!("has {} values, expected {len}", u.values.len()))
        } else if !(u.weight.is_finite() && u.weight >= 0.0) {
            Some(format!("weight {} is not a finite non-negative number", u.weight))
        } else if !n2.is_finite() {
            // A non-finite value makes the squared norm non-finite: one pass checks both.
            Some("contains NaN or infinite values (or overflows)".to_string())
        } else {
            norm_bound
                .filter(|&b| n2.sqrt() > b)
                .map(|bound| format!("norm {:.4e} exceeds the bound {bound:.4e}", n2.sqrt()))
        };
        match reason {
            Some(r) => rejected.push((u.sender, r)),
            None => valid.push(*u),
        }
    }
    (valid, rejected)
}

/// `out = Σ weights[i] · valid[i]`, on the weighted-sum kernel.
fn weighted(valid: &[Update], weights: &[f32], out: &mut [f32]) {
    let views: Vec<&[f32]> = valid.iter().map(|u| u.values).collect();
    weighted_sum(&views, weights, out);
}

/// The plain mean.
#[derive(Clone, Debug, Default)]
pub struct Mean;

impl Rule for Mean {
    fn name(&self) -> &'static str {
        "mean"
    }
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        weighted(valid, &vec![1.0 / valid.len() as f32; valid.len()], out);
        Ok(())
    }
}

/// FedAvg: the mean weighted by each update's weight (its sample count).
#[derive(Clone, Debug, Default)]
pub struct FedAvg;

impl Rule for FedAvg {
    fn name(&self) -> &'static str {
        "fedavg"
    }
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let total: f64 = valid.iter().map(|u| u.weight as f64).sum();
        // All weights zero: fall back to the plain mean rather than dividing by zero.
        let w: Vec<f32> = if total > 0.0 {
            valid.iter().map(|u| (u.weight as f64 / total) as f32).collect()
        } else {
            vec![1.0 / valid.len() as f32; valid.len()]
        };
        weighted(valid, &w, out);
        Ok(())
    }
}

/// Coordinate-wise median (the mean of the two middle values for an even count).
#[derive(Clone, Debug, Default)]
pub struct Median;

impl Rule for Median {
    fn name(&self) -> &'static str {
        "median"
    }
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let n = valid.len();
        let (lo, hi) = ((n - 1) / 2, n / 2);
        sorted_reduce(valid, out, |sorted| (sorted[lo] + sorted[hi]) * f32x8::splat(0.5), |s| (s[lo] + s[hi]) * 0.5);
        Ok(())
    }
}

/// Coordinate-wise trimmed mean: drop the ⌊β·N⌋ smallest and largest values, average the rest.
#[derive(Clone, Debug)]
pub struct TrimmedMean {
    pub beta: f32,
}

impl TrimmedMean {
    pub fn new(beta: f32) -> Result<Self, RuleError> {
        if !(0.0..0.5).contains(&beta) {
            return Err(RuleError::Precondition {
                rule: "trimmed-mean",
                detail: format!("beta must be in [0, 0.5), got {beta}"),
            });
        }
        Ok(Self { beta })
    }
    fn cut(&self, n: usize) -> usize {
        (self.beta as f64 * n as f64).floor() as usize
    }
}

impl Rule for TrimmedMean {
    fn name(&self) -> &'static str {
        "trimmed-mean"
    }
    fn check(&self, n: usize) -> Result<(), RuleError> {
        // With beta < 0.5 (enforced by `new`) at least one value always remains; this guards the
        // invariant should the constructor ever change.
        if n <= 2 * self.cut(n) {
            return Err(RuleError::Precondition {
                rule: "trimmed-mean",
                detail: format!("beta {} cuts all of {n} inputs", self.beta),
            });
        }
        Ok(())
    }
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let n = valid.len();
        let k = self.cut(n);
        let inv = 1.0 / (n - 2 * k) as f32;
        sorted_reduce(
            valid,
            out,
            |sorted| sorted[k..n - k].iter().fold(f32x8::ZERO, |a, &v| a + v) * f32x8::splat(inv),
            |s| s[k..n - k].iter().sum::<f32>() * inv,
        );
        Ok(())
    }
}

/// Coordinates per parallel work item of the sorting rules.
const SORT_BLOCK: usize = 4096;

/// For every coordinate, sorts the N inputs' values and reduces them: 8 coordinates at a time through
/// the sorting network, the tail coordinate by coordinate. Blocks of coordinates are spread over rayon's
/// threads when there is enough work to pay for the fork-join.
pub(crate) fn sorted_reduce(
    valid: &[Update],
    out: &mut [f32],
    reduce_v: impl Fn(&[f32x8]) -> f32x8 + Sync,
    reduce_s: impl Fn(&[f32]) -> f32 + Sync,
) {
    use rayon::prelude::*;
    let n = valid.len();
    let pairs = network::batcher_pairs(n);
    let block = |(b, chunk): (usize, &mut [f32])| {
        let start = b * SORT_BLOCK;
        let mut buf = vec![f32x8::ZERO; n];
        let full = chunk.len() - chunk.len() % LANES;
        let mut j = 0;
        while j < full {
            for (v, u) in buf.iter_mut().zip(valid) {
                *v = load(&u.values[start + j..]);
            }
            for &(a, c) in &pairs {
                let (x, y) = (buf[a], buf[c]);
                buf[a] = x.fast_min(y);
                buf[c] = x.fast_max(y);
            }
            store(reduce_v(&buf), &mut chunk[j..]);
            j += LANES;
        }
        let mut col = vec![0.0f32; n];
        for (jj, o) in chunk.iter_mut().enumerate().skip(full) {
            for (c, u) in col.iter_mut().zip(valid) {
                *c = u.values[start + jj];
            }
            col.sort_by(f32::total_cmp);
            *o = reduce_s(&col);
        }
    };
    if out.len() * n >= 1 << 16 && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(SORT_BLOCK).enumerate().for_each(block);
    } else {
        out.chunks_mut(SORT_BLOCK).enumerate().for_each(block);
    }
}
