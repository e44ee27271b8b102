//! Bulyan (El Mhamdi et al. 2018): pick θ = n − 2f updates by applying Krum again and again to those
//! not yet picked, then, coordinate by coordinate, average the β = θ − 2f picked values closest to
//! their median. It needs n ≥ 4f + 3.
//!
//! The pairwise distances come from one Gram matrix, computed once: the repeated Krum passes only
//! re-rank the remaining candidates. The coordinate phase sorts through the same lane-wise network as
//! the median.

use super::krum::pairwise_sq_distances;
use super::{Rule, RuleError, Update, sorted_reduce};

#[derive(Clone, Debug)]
pub struct Bulyan {
    pub f: usize,
    /// Input positions the Krum phase picked, in the order it picked them.
    pub last_selected: Vec<usize>,
}

impl Bulyan {
    pub fn new(f: usize) -> Self {
        Self { f, last_selected: Vec::new() }
    }
}

/// The mean of the `beta` values of `sorted` closest to its median (ties go to the smaller value).
/// They form a window around the middle, grown one value at a time towards the closer side.
pub fn mean_closest_to_median(sorted: &[f32], beta: usize) -> f32 {
    let n = sorted.len();
    let median = (sorted[(n - 1) / 2] + sorted[n / 2]) * 0.5;
    let (mut lo, mut hi) = (n / 2, n / 2);
    let mut sum = 0.0f32;
    for _ in 0..beta {
        let take_low = match (lo > 0, hi < n) {
            (true, true) => (median - sorted[lo - 1]) <= (sorted[hi] - median),
            (low, _) => low,
        };
        if take_low {
            lo -= 1;
            sum += sorted[lo];
        } else {
            sum += sorted[hi];
            hi += 1;
        }
    }
    sum / beta as f32
}

impl Rule for Bulyan {
    fn name(&self) -> &'static str {
        "bulyan"
    }

    fn check(&self, n: usize) -> Result<(), RuleError> {
        if n < 4 * self.f + 3 {
            return Err(RuleError::Precondition {
                rule: "bulyan",
                detail: format!(
                    "needs n >= 4f + 3 inputs: f = {} requires at least {}, got {n}",
                    self.f,
                    4 * self.f + 3
                ),
            });
        }
        Ok(())
    }

    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let n = valid.len();
        let d = pairwise_sq_distances(valid);
        let theta = n - 2 * self.f;
        let mut remaining: Vec<usize> = (0..n).collect();
        self.last_selected.clear();
        let mut row = Vec::with_capacity(n);
        while self.last_selected.len() < theta {
            let neighbours = remaining.len().saturating_sub(self.f + 2);
            let score = |i: usize, row: &mut Vec<f64>| -> f64 {
                row.clear();
                row.extend(remaining.iter().filter(|&&j| j != i).map(|&j| d[i * n + j]));
                row.sort_by(f64::total_cmp);
                row[..neighbours].iter().sum()
            };
            let (pos, _) = remaining
                .iter()
                .enumerate()
                .map(|(pos, &i)| (pos, (score(i, &mut row), valid[i].sender)))
                .min_by(|a, b| a.1.0.total_cmp(&b.1.0).then(a.1.1.cmp(&b.1.1)))
                .expect("candidates remain while fewer than theta are picked");
            self.last_selected.push(remaining.remove(pos));
        }
        let picked: Vec<Update> = self.last_selected.iter().map(|&i| valid[i]).collect();
        let beta = theta - 2 * self.f;
        let middle = picked.len();
        sorted_reduce(
            crate::Isa::active(),
            &picked,
            out,
            |_| true,
            |sorted, o| {
                // The window differs per lane: finish each sorted column on its own.
                let w = o.len();
                let mut col = vec![0.0f32; middle];
                for (lane, r) in o.iter_mut().enumerate() {
                    for (i, c) in col.iter_mut().enumerate() {
                        *c = sorted[i * w + lane];
                    }
                    *r = mean_closest_to_median(&col, beta);
                }
            },
            |s| mean_closest_to_median(s, beta),
            false,
        );
        Ok(())
    }

    fn selected(&self) -> Option<&[usize]> {
        Some(&self.last_selected)
    }
}
