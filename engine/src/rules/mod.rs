//! Aggregation rules: the "first preset rule" that merges N updates into one.
//!
//! One trait serves the federated master, sync-mode parameter servers and the `shoal aggregate` tool. A
//! rule states its precondition ([`Rule::check`]), and every call first validates its inputs ([`validate`]):
//! wrong lengths, NaN/∞ and updates above a norm bound are rejected and reported, never aggregated.
//! Mean-type rules reduce to the weighted-sum kernel (one pass at memory bandwidth), or fold updates in
//! as they arrive ([`streaming`]: memory is one model, not N). Median and trimmed mean sort the N values
//! of 16 coordinates at once (8 without AVX-512) through a sorting network of lane-wise min/max
//! ([`network`]) instead of sorting every coordinate on its own, and take the validation's norms from the
//! same loads; Krum takes them from its Gram matrix's diagonal.

pub mod bulyan;
pub mod clip;
pub mod krum;
pub mod network;
pub mod server;
pub mod streaming;

pub use bulyan::Bulyan;
pub use clip::Clip;
pub use krum::{Keep, Krum};
pub use server::{ServerKind, ServerOpt};
pub use streaming::{StreamingKind, StreamingMean};

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
        validate_then_combine(self, updates, norm_bound, out)
    }
}

/// The plain path of [`Rule::aggregate`]: [`validate`], check the precondition on what passed, combine it.
pub fn validate_then_combine<R: Rule + ?Sized>(
    rule: &mut R,
    updates: &[Update],
    norm_bound: Option<f32>,
    out: &mut [f32],
) -> Result<Report, RuleError> {
    rule.check_len(out.len())?;
    let (valid, rejected) = validate(updates, out.len(), norm_bound);
    if valid.is_empty() {
        return Err(RuleError::NoInputs { rule: rule.name(), rejected: rejected.len() });
    }
    rule.check(valid.len())?;
    rule.combine(&valid, out)?;
    Ok(Report { used: used_senders(rule, &valid), rejected })
}

/// The senders whose updates went into the result: the rule's selection, or every input.
fn used_senders<R: Rule + ?Sized>(rule: &R, inputs: &[Update]) -> Vec<u32> {
    match rule.selected() {
        Some(positions) => positions.iter().map(|&i| inputs[i].sender).collect(),
        None => inputs.iter().map(|u| u.sender).collect(),
    }
}

/// Rules that read every input once anyway (the sorting rules, Krum's Gram pass) take the validation's
/// norms from that pass. `fast(rule, inputs, out)` aggregates all inputs and returns their squared norms;
/// when every input passes (the common case) that pass is the whole call. Otherwise, or when the inputs'
/// shapes or the precondition already fail, the plain path runs ([`validate_then_combine`]), so the
/// result and report are always exactly the plain path's.
pub(crate) fn validated_in_pass<R: Rule + ?Sized>(
    rule: &mut R,
    updates: &[Update],
    norm_bound: Option<f32>,
    out: &mut [f32],
    fast: impl FnOnce(&mut R, &[Update], &mut [f32]) -> Result<Vec<f64>, RuleError>,
) -> Result<Report, RuleError> {
    let shapes_ok = updates.iter().all(|u| u.values.len() == out.len() && u.weight.is_finite() && u.weight >= 0.0);
    if shapes_ok && !updates.is_empty() && rule.check_len(out.len()).is_ok() && rule.check(updates.len()).is_ok() {
        let norms = fast(rule, updates, out)?;
        // Clearly inside the bound only: a norm within rounding of it is left to `validate` to decide.
        let passes = |n2: f64| n2.is_finite() && norm_bound.is_none_or(|b| n2.sqrt() * (1.0 + 1e-5) < b as f64);
        if norms.iter().all(|&n2| passes(n2)) {
            return Ok(Report { used: used_senders(rule, updates), rejected: Vec::new() });
        }
    }
    validate_then_combine(rule, updates, norm_bound, out)
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

impl Median {
    fn run(valid: &[Update], out: &mut [f32], with_norms: bool) -> Vec<f64> {
        let n = valid.len();
        let (lo, hi) = ((n - 1) / 2, n / 2);
        let half = f32x8::splat(0.5);
        sorted_reduce(
            crate::Isa::active(),
            valid,
            out,
            |i| i == lo || i == hi,
            |s, o| {
                let w = o.len();
                each_group(o, |c| (load(&s[lo * w + c..]) + load(&s[hi * w + c..])) * half)
            },
            |s| (s[lo] + s[hi]) * 0.5,
            with_norms,
        )
    }
}

impl Rule for Median {
    fn name(&self) -> &'static str {
        "median"
    }
    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        Self::run(valid, out, false);
        Ok(())
    }
    fn aggregate(&mut self, updates: &[Update], norm_bound: Option<f32>, out: &mut [f32]) -> Result<Report, RuleError> {
        validated_in_pass(self, updates, norm_bound, out, |_, inputs, out| Ok(Self::run(inputs, out, true)))
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
        self.run(valid, out, false);
        Ok(())
    }
    fn aggregate(&mut self, updates: &[Update], norm_bound: Option<f32>, out: &mut [f32]) -> Result<Report, RuleError> {
        validated_in_pass(self, updates, norm_bound, out, |rule, inputs, out| Ok(rule.run(inputs, out, true)))
    }
}

impl TrimmedMean {
    fn run(&self, valid: &[Update], out: &mut [f32], with_norms: bool) -> Vec<f64> {
        let n = valid.len();
        let k = self.cut(n);
        let inv = 1.0 / (n - 2 * k) as f32;
        sorted_reduce(
            crate::Isa::active(),
            valid,
            out,
            |i| (k..n - k).contains(&i),
            |s, o| {
                let w = o.len();
                each_group(o, |c| (k..n - k).fold(f32x8::ZERO, |a, i| a + load(&s[i * w + c..])) * f32x8::splat(inv))
            },
            |s| s[k..n - k].iter().sum::<f32>() * inv,
            with_norms,
        )
    }
}

/// Coordinates per parallel work item of the sorting rules.
const SORT_BLOCK: usize = 4096;

/// For every coordinate, sorts the N inputs' values and reduces them. Groups of coordinates go through
/// the sorting network (16 at a time on AVX-512, else 8 with `wide`), trimmed to the comparators whose
/// results reach a position `needed` says the reduction reads; the tail goes coordinate by coordinate.
/// `reduce(sorted, out)` gets a group's sorted columns, `sorted[i · w + lane]` being the i-th smallest
/// value of coordinate `lane`, for `w = out.len()` coordinates (8 or 16); `reduce_s` does one coordinate.
/// With `with_norms`, also returns every input's squared L2 norm, taken from the same loads (f64 sums of
/// f32 partial sums). Blocks of coordinates are spread over rayon's threads when there is enough work.
/// `isa` picks the group width: AVX-512F (when the CPU has it) 16, anything else `wide`'s 8; callers pass
/// [`crate::Isa::active`], tests every supported ISA.
pub(crate) fn sorted_reduce(
    isa: crate::Isa,
    valid: &[Update],
    out: &mut [f32],
    needed: impl Fn(usize) -> bool,
    reduce: impl Fn(&[f32], &mut [f32]) + Sync,
    reduce_s: impl Fn(&[f32]) -> f32 + Sync,
    with_norms: bool,
) -> Vec<f64> {
    use crate::simd::sortnet;
    use rayon::prelude::*;
    let n = valid.len();
    let pairs = network::pruned(&network::batcher_pairs(n), n, needed);
    let rows: Vec<&[f32]> = valid.iter().map(|u| u.values).collect();
    let wide512 = isa == crate::Isa::Avx512F && isa.is_supported();
    let block = |(b, chunk): (usize, &mut [f32])| -> Vec<f64> {
        let start = b * SORT_BLOCK;
        let mut norms = vec![0.0f64; if with_norms { n } else { 0 }];
        let mut done = 0;
        if wide512 {
            done = chunk.len() - chunk.len() % sortnet::WIDTH;
            let mut acc = vec![0.0f32; if with_norms { n * sortnet::WIDTH } else { 0 }];
            let group = sortnet::Block { rows: &rows, start, pairs: &pairs, norms: &mut acc };
            if sortnet::sort_block(group, &mut chunk[..done], &mut |s, o| reduce(s, o)) {
                for (total, lanes) in norms.iter_mut().zip(acc.chunks_exact(sortnet::WIDTH)) {
                    *total += lanes.iter().map(|&x| x as f64).sum::<f64>();
                }
            } else {
                done = 0;
            }
        }
        if done == 0 {
            done = chunk.len() - chunk.len() % LANES;
            let mut buf = vec![f32x8::ZERO; n];
            let mut acc = vec![f32x8::ZERO; if with_norms { n } else { 0 }];
            let mut sorted = vec![0.0f32; n * LANES];
            for j in (0..done).step_by(LANES) {
                for (i, (v, row)) in buf.iter_mut().zip(&rows).enumerate() {
                    *v = load(&row[start + j..]);
                    if with_norms {
                        acc[i] = v.mul_add(*v, acc[i]);
                    }
                }
                for &(a, c) in &pairs {
                    let (x, y) = (buf[a], buf[c]);
                    buf[a] = x.fast_min(y);
                    buf[c] = x.fast_max(y);
                }
                for (v, dst) in buf.iter().zip(sorted.chunks_exact_mut(LANES)) {
                    store(*v, dst);
                }
                reduce(&sorted, &mut chunk[j..j + LANES]);
            }
            for (total, lanes) in norms.iter_mut().zip(&acc) {
                *total += lanes.to_array().iter().map(|&x| x as f64).sum::<f64>();
            }
        }
        let mut col = vec![0.0f32; n];
        for (jj, o) in chunk.iter_mut().enumerate().skip(done) {
            for (i, (c, row)) in col.iter_mut().zip(&rows).enumerate() {
                *c = row[start + jj];
                if with_norms {
                    norms[i] += (*c as f64) * (*c as f64);
                }
            }
            col.sort_by(f32::total_cmp);
            *o = reduce_s(&col);
        }
        norms
    };
    let add = |mut a: Vec<f64>, b: Vec<f64>| {
        a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
        a
    };
    let zero = || vec![0.0f64; if with_norms { n } else { 0 }];
    if out.len() * n >= 1 << 16 && rayon::current_num_threads() > 1 {
        out.par_chunks_mut(SORT_BLOCK).enumerate().map(block).reduce(zero, add)
    } else {
        out.chunks_mut(SORT_BLOCK).enumerate().map(block).fold(zero(), add)
    }
}

/// `out[c..c + 8] = f(c)` for every 8-lane column group of a `reduce` output.
#[inline(always)]
pub(crate) fn each_group(out: &mut [f32], mut f: impl FnMut(usize) -> f32x8) {
    for c in (0..out.len()).step_by(LANES) {
        store(f(c), &mut out[c..]);
    }
}

#[cfg(test)]
mod sort_paths {
    use super::*;
    use proptest::prelude::*;

    /// The scalar oracle: sort each coordinate's values, take the two middle ones; and the squared norms.
    fn oracle(rows: &[&[f32]], len: usize) -> (Vec<f32>, Vec<f64>) {
        let n = rows.len();
        let med = (0..len)
            .map(|j| {
                let mut col: Vec<f32> = rows.iter().map(|r| r[j]).collect();
                col.sort_by(f32::total_cmp);
                (col[(n - 1) / 2] + col[n / 2]) * 0.5
            })
            .collect();
        let norms = rows.iter().map(|r| r[..len].iter().map(|&x| x as f64 * x as f64).sum()).collect();
        (med, norms)
    }

    proptest! {
        /// Both network paths (16-wide AVX-512 groups, 8-wide portable groups) and the scalar tail, on
        /// lengths that leave every tail, on sub-slices starting at every alignment.
        #[test]
        fn median_on_every_isa_equals_the_oracle(n in 1usize..34, len in 0usize..300, offset in 0usize..16, seed in any::<u64>()) {
            let mut rng = crate::model::SplitMix::new(seed);
            let data: Vec<Vec<f32>> = (0..n).map(|_| (0..len + offset).map(|_| rng.next_f32() * 8.0 - 4.0).collect()).collect();
            let rows: Vec<&[f32]> = data.iter().map(|d| &d[offset..]).collect();
            let ups: Vec<Update> = rows.iter().enumerate().map(|(i, r)| Update { sender: i as u32, weight: 1.0, values: r }).collect();
            let (want, want_norms) = oracle(&rows, len);
            let (lo, hi) = ((n - 1) / 2, n / 2);
            for isa in crate::Isa::supported() {
                let mut out = vec![f32::NAN; len];
                let norms = sorted_reduce(
                    isa,
                    &ups,
                    &mut out,
                    |i| i == lo || i == hi,
                    |s, o| {
                        let w = o.len();
                        each_group(o, |c| (load(&s[lo * w + c..]) + load(&s[hi * w + c..])) * f32x8::splat(0.5))
                    },
                    |s| (s[lo] + s[hi]) * 0.5,
                    true,
                );
                prop_assert_eq!(&out, &want, "{:?}", isa);
                for (got, want) in norms.iter().zip(&want_norms) {
                    prop_assert!((got - want).abs() <= 1e-5 * want.max(1.0), "{:?}: norm {} vs {}", isa, got, want);
                }
            }
        }
    }
}
