//! Krum and Multi-Krum (Blanchard et al. 2017): score every update by the summed squared distance to
//! its n − f − 2 nearest neighbours, keep the best-scoring one (Krum) or average the m best (Multi-Krum).
//! Multi-Krum's m is either fixed or n − f of each call ([`Keep::AllButF`]): in a federated round the
//! number of updates n varies with stragglers, and a fixed m above n − f lets attackers in by
//! construction.
//!
//! All pairwise distances come from one Gram matrix G = X·Xᵀ (see [`gram`]), so the updates are read
//! about once instead of once per pair; ‖xᵢ − xⱼ‖² = Gᵢᵢ + Gⱼⱼ − 2·Gᵢⱼ in f64, clamped at 0 against
//! rounding.

use super::{Report, Rule, RuleError, Update, weighted};

/// How many of the best-scored updates Multi-Krum averages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Exactly this many (1 is Krum).
    Best(usize),
    /// n − f of each call's n valid updates.
    AllButF,
}

/// Krum (`Keep::Best(1)`) or Multi-Krum tolerating `f` Byzantine updates.
#[derive(Clone, Debug)]
pub struct Krum {
    pub f: usize,
    pub keep: Keep,
    /// Scores of the last call, by input position (smaller is more central).
    pub last_scores: Vec<f64>,
    /// Input positions the last call selected.
    pub last_selected: Vec<usize>,
}

impl Krum {
    /// Krum (`m = 1`) or Multi-Krum averaging a fixed `m` updates.
    pub fn new(f: usize, m: usize) -> Result<Self, RuleError> {
        if m == 0 {
            return Err(RuleError::Precondition { rule: "krum", detail: "m must be at least 1".into() });
        }
        Ok(Self::keeping(f, Keep::Best(m)))
    }

    /// Multi-Krum averaging n − f of each call's n updates.
    pub fn all_but_f(f: usize) -> Self {
        Self::keeping(f, Keep::AllButF)
    }

    fn keeping(f: usize, keep: Keep) -> Self {
        Self { f, keep, last_scores: Vec::new(), last_selected: Vec::new() }
    }

    /// How many updates a call with `n` valid inputs averages.
    pub fn m(&self, n: usize) -> usize {
        match self.keep {
            Keep::Best(m) => m,
            Keep::AllButF => n.saturating_sub(self.f),
        }
    }
}

/// Floats of every update per Gram work item: 32 updates x 2 KiB stay in L2 while all pairs are taken.
const GRAM_CHUNK: usize = 512;

/// The Gram matrix G[i][j] = xᵢ·xⱼ of the updates (n x n, row-major, f64).
///
/// For a few dozen updates of a million floats, G is a tall-skinny product that a BLIS GEMM handles
/// badly (thousands of KC slabs, each a fork-join, after copying every update into one matrix). Instead
/// the updates are walked in L2-sized chunks, every pair's dot product taken on the chunk, and the f32
/// chunk sums accumulated in f64; chunks are spread over rayon's threads. Each update is read from
/// memory once.
pub fn gram(valid: &[Update]) -> Vec<f64> {
    if crate::Isa::active() == crate::Isa::Avx512F {
        gram_blocked::<4>(valid, |a, b| crate::simd::dots::dots_block_4x4(a, b).expect("AVX-512F is active"))
    } else {
        gram_blocked::<2>(valid, crate::kernels::gram::dots_block)
    }
}

/// The Gram matrix with rows taken four at a time against `C` others by `block` (a register-blocked
/// block of dot products: 4 x 4 on AVX-512, 4 x 2 on AVX2); a block past the end repeats the last row
/// and drops those results.
fn gram_blocked<const C: usize>(
    valid: &[Update],
    block: impl Fn([&[f32]; 4], [&[f32]; C]) -> [[f32; C]; 4] + Sync,
) -> Vec<f64> {
    use rayon::prelude::*;
    let n = valid.len();
    let p = valid.first().map_or(0, |u| u.values.len());
    const R: usize = 4;
    let rows = |start: usize| std::array::from_fn::<usize, R, _>(|k| (start + k).min(n - 1));
    let cols = |start: usize| std::array::from_fn::<usize, C, _>(|k| (start + k).min(n - 1));
    let chunk_gram = |mut acc: Vec<f64>, c: usize| {
        let r = c * GRAM_CHUNK..((c + 1) * GRAM_CHUNK).min(p);
        for bi in (0..n).step_by(R) {
            // 32 input streams are more than the hardware prefetcher follows: while this chunk is
            // multiplied, ask for the next chunk of these four updates.
            for u in &valid[bi..(bi + R).min(n)] {
                for at in (r.end..r.end + GRAM_CHUNK).step_by(16) {
                    crate::simd::prefetch(u.values, at);
                }
            }
            let is = rows(bi);
            let a = is.map(|i| &valid[i].values[r.clone()]);
            for bj in (bi - bi % C..n).step_by(C) {
                let js = cols(bj);
                let block = block(a, js.map(|j| &valid[j].values[r.clone()]));
                for (x, &i) in is.iter().enumerate().filter(|&(x, _)| bi + x < n) {
                    for (y, &j) in js.iter().enumerate().filter(|&(y, _)| bj + y < n) {
                        if j >= i {
                            acc[i * n + j] += block[x][y] as f64;
                        }
                    }
                }
            }
        }
        acc
    };
    let chunks = p.div_ceil(GRAM_CHUNK);
    let mut g = if chunks > 1 && rayon::current_num_threads() > 1 {
        (0..chunks).into_par_iter().fold(|| vec![0.0f64; n * n], chunk_gram).reduce(
            || vec![0.0f64; n * n],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        )
    } else {
        (0..chunks).fold(vec![0.0f64; n * n], chunk_gram)
    };
    for i in 0..n {
        for j in 0..i {
            g[i * n + j] = g[j * n + i];
        }
    }
    g
}

/// Squared pairwise distances of the updates (n x n, row-major), from their Gram matrix.
pub fn pairwise_sq_distances(valid: &[Update]) -> Vec<f64> {
    distances_from_gram(&gram(valid), valid.len())
}

/// Squared pairwise distances (n x n) from a Gram matrix (n x n).
fn distances_from_gram(g: &[f64], n: usize) -> Vec<f64> {
    let mut d = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            let v = g[i * n + i] + g[j * n + j] - 2.0 * g[i * n + j];
            // NaN cannot arise from validated inputs (their squared norms are finite), but would make an
            // update look central: treat it as infinitely far.
            d[i * n + j] = if i == j {
                0.0
            } else if v.is_nan() {
                f64::INFINITY
            } else {
                v.max(0.0)
            };
        }
    }
    d
}

impl Rule for Krum {
    fn name(&self) -> &'static str {
        if self.keep == Keep::Best(1) { "krum" } else { "multi-krum" }
    }

    fn check(&self, n: usize) -> Result<(), RuleError> {
        if n <= 2 * self.f + 2 {
            return Err(RuleError::Precondition {
                rule: self.name(),
                detail: format!(
                    "needs n > 2f + 2 inputs: f = {} requires at least {}, got {n}",
                    self.f,
                    2 * self.f + 3
                ),
            });
        }
        // With n > 2f + 2, n − f is at least f + 3: only a fixed m can exceed n.
        if self.m(n) > n {
            return Err(RuleError::Precondition {
                rule: self.name(),
                detail: format!("m = {} exceeds the {n} inputs", self.m(n)),
            });
        }
        Ok(())
    }

    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        self.combine_with_gram(valid, &gram(valid), out)
    }

    /// The Gram matrix reads every input once, and its diagonal is every input's squared norm: the
    /// validation comes from the same pass ([`super::validated_in_pass`]).
    fn aggregate(&mut self, updates: &[Update], norm_bound: Option<f32>, out: &mut [f32]) -> Result<Report, RuleError> {
        super::validated_in_pass(self, updates, norm_bound, out, |rule, inputs, out| {
            let n = inputs.len();
            let g = gram(inputs);
            rule.combine_with_gram(inputs, &g, out)?;
            Ok((0..n).map(|i| g[i * n + i]).collect())
        })
    }

    fn selected(&self) -> Option<&[usize]> {
        Some(&self.last_selected)
    }
}

impl Krum {
    fn combine_with_gram(&mut self, valid: &[Update], g: &[f64], out: &mut [f32]) -> Result<(), RuleError> {
        let n = valid.len();
        let d = distances_from_gram(g, n);
        let neighbours = n - self.f - 2;
        self.last_scores = (0..n)
            .map(|i| {
                let mut row: Vec<f64> = (0..n).filter(|&j| j != i).map(|j| d[i * n + j]).collect();
                row.sort_by(f64::total_cmp);
                row[..neighbours].iter().sum()
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        // Exact ties are real (two updates that are each other's nearest neighbour score the same):
        // break them by sender id, so the result does not depend on the order updates arrived in.
        order.sort_by(|&a, &b| {
            self.last_scores[a].total_cmp(&self.last_scores[b]).then(valid[a].sender.cmp(&valid[b].sender))
        });
        let m = self.m(n);
        self.last_selected = order[..m].to_vec();
        let chosen: Vec<Update> = self.last_selected.iter().map(|&i| valid[i]).collect();
        if m == 1 {
            out.copy_from_slice(chosen[0].values);
        } else {
            weighted(&chosen, &vec![1.0 / m as f32; m], out);
        }
        Ok(())
    }
}
