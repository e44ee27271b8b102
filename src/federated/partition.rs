//! Splitting the training set over children: IID, pathological non-IID label shards (McMahan et al.
//! 2017: sort by label, cut into shards, give each child a few), or a Dirichlet(α) label mix (Hsu et al.
//! 2019). Deterministic in the seed, so every process of a multi-process job computes the same split.

use shoal_engine::model::SplitMix;

/// Each child's sample indices into `labels` (`children` lists, disjoint, covering every sample
/// except the remainder of an uneven shard cut).
pub fn partition(labels: &[u8], children: usize, how: &Partition, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = SplitMix::new(seed ^ 0x9a27_17e0);
    let mut all: Vec<usize> = (0..labels.len()).collect();
    rng.shuffle(&mut all);
    match *how {
        Partition::Iid => {
            let mut out = vec![Vec::new(); children];
            for (k, i) in all.into_iter().enumerate() {
                out[k % children].push(i);
            }
            out
        }
        Partition::Shards { per_child } => {
            // Stable sort of a shuffled order: label-sorted, random within a label.
            all.sort_by_key(|&i| labels[i]);
            let shards = children * per_child;
            let size = all.len() / shards;
            let mut ids: Vec<usize> = (0..shards).collect();
            rng.shuffle(&mut ids);
            ids.chunks(per_child)
                .map(|mine| mine.iter().flat_map(|&s| all[s * size..(s + 1) * size].iter().copied()).collect())
                .collect()
        }
        Partition::Dirichlet { alpha } => {
            let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut out = vec![Vec::new(); children];
            for c in 0..classes {
                let members: Vec<usize> = all.iter().copied().filter(|&i| labels[i] as usize == c).collect();
                let weights: Vec<f64> = (0..children).map(|_| gamma(alpha, &mut rng)).collect();
                let total: f64 = weights.iter().sum();
                let mut start = 0usize;
                let mut acc = 0.0;
                for (k, w) in weights.iter().enumerate() {
                    acc += w / total;
                    let end =
                        if k + 1 == children { members.len() } else { (acc * members.len() as f64).round() as usize };
                    out[k].extend_from_slice(&members[start..end.max(start)]);
                    start = end.max(start);
                }
            }
            out
        }
    }
}

/// How to split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Partition {
    Iid,
    Shards { per_child: usize },
    Dirichlet { alpha: f64 },
}

fn normal(rng: &mut SplitMix) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u = 1.0 - rng.uniform(0.0, 1.0) as f64;
    let v = rng.uniform(0.0, 1.0) as f64;
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A Gamma(shape, 1) sample (Marsaglia and Tsang 2000; shape < 1 by the boost u^(1/shape)).
fn gamma(shape: f64, rng: &mut SplitMix) -> f64 {
    if shape < 1.0 {
        let u = 1.0 - rng.uniform(0.0, 1.0) as f64;
        return gamma(shape + 1.0, rng) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = 1.0 - rng.uniform(0.0, 1.0) as f64;
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<u8> {
        (0..10_000).map(|i| ((i * 7919) % 10) as u8).collect()
    }

    fn disjoint(parts: &[Vec<usize>]) -> bool {
        let mut seen = std::collections::HashSet::new();
        parts.iter().flatten().all(|&i| seen.insert(i))
    }

    #[test]
    fn iid_is_balanced_and_disjoint() {
        let parts = partition(&labels(), 100, &Partition::Iid, 1);
        assert!(disjoint(&parts) && parts.iter().all(|p| p.len() == 100));
        assert_eq!(parts, partition(&labels(), 100, &Partition::Iid, 1), "deterministic in the seed");
    }

    #[test]
    fn shards_give_each_child_few_labels() {
        let l = labels();
        let parts = partition(&l, 100, &Partition::Shards { per_child: 2 }, 3);
        assert!(disjoint(&parts));
        for p in &parts {
            let distinct: std::collections::BTreeSet<u8> = p.iter().map(|&i| l[i]).collect();
            assert!(distinct.len() <= 2, "{distinct:?}");
            assert_eq!(p.len(), 100);
        }
    }

    #[test]
    fn dirichlet_covers_everything_and_skews_with_small_alpha() {
        let l = labels();
        let parts = partition(&l, 10, &Partition::Dirichlet { alpha: 0.1 }, 5);
        assert!(disjoint(&parts));
        assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), l.len());
        // With alpha = 0.1 most children hold few classes in bulk.
        let skewed = parts
            .iter()
            .filter(|p| {
                let mut counts = [0usize; 10];
                p.iter().for_each(|&i| counts[l[i] as usize] += 1);
                counts.iter().max().copied().unwrap_or(0) * 2 > p.len()
            })
            .count();
        assert!(skewed >= 5, "{skewed}");
    }
}
