//! Aggregation rules: SIMD results against a scalar reference, the properties each rule promises, and
//! input validation.

use proptest::prelude::*;
use shoal_engine::model::SplitMix;
use shoal_engine::oracle;
use shoal_engine::rules::{FedAvg, Mean, Median, Rule, RuleError, TrimmedMean, Update};

fn inputs(n: usize, len: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f32>) {
    let mut rng = SplitMix::new(seed);
    let xs = (0..n).map(|_| (0..len).map(|_| rng.uniform(-10.0, 10.0)).collect()).collect();
    let ws = (0..n).map(|_| rng.uniform(0.0, 100.0).round()).collect();
    (xs, ws)
}

fn updates<'a>(xs: &'a [Vec<f32>], ws: &[f32]) -> Vec<Update<'a>> {
    xs.iter().zip(ws).enumerate().map(|(i, (x, &w))| Update { sender: i as u32, weight: w, values: x }).collect()
}

fn run(rule: &mut dyn Rule, ups: &[Update], len: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; len];
    rule.aggregate(ups, None, &mut out).unwrap();
    out
}

/// Per-coordinate sort, then reduce: the definition the network-based rules must match bit for bit.
fn reference(xs: &[Vec<f32>], len: usize, reduce: impl Fn(&[f32]) -> f32) -> Vec<f32> {
    (0..len)
        .map(|j| {
            let mut col: Vec<f32> = xs.iter().map(|x| x[j]).collect();
            col.sort_by(f32::total_cmp);
            reduce(&col)
        })
        .collect()
}

proptest! {
    #[test]
    fn median_and_trimmed_mean_equal_a_per_coordinate_sort(n in 1usize..40, len in 0usize..70, beta in 0.0f32..0.49, seed in any::<u64>()) {
        let (xs, ws) = inputs(n, len, seed);
        let ups = updates(&xs, &ws);
        let (lo, hi) = ((n - 1) / 2, n / 2);
        prop_assert_eq!(run(&mut Median, &ups, len), reference(&xs, len, |s| (s[lo] + s[hi]) * 0.5));
        let k = (beta as f64 * n as f64).floor() as usize;
        let inv = 1.0 / (n - 2 * k) as f32;
        let mut tm = TrimmedMean::new(beta).unwrap();
        prop_assert_eq!(run(&mut tm, &ups, len), reference(&xs, len, |s| s[k..n - k].iter().sum::<f32>() * inv));
    }

    #[test]
    fn mean_and_fedavg_match_the_oracle(n in 1usize..20, len in 0usize..100, seed in any::<u64>()) {
        let (xs, ws) = inputs(n, len, seed);
        let ups = updates(&xs, &ws);
        let views: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let total: f32 = ws.iter().sum();
        for (got, weights) in [
            (run(&mut Mean, &ups, len), vec![1.0 / n as f32; n]),
            (run(&mut FedAvg, &ups, len), if total > 0.0 { ws.iter().map(|w| w / total).collect() } else { vec![1.0 / n as f32; n] }),
        ] {
            let mut want = vec![0.0; len];
            oracle::weighted_sum(&views, &weights, &mut want);
            for j in 0..len {
                prop_assert!((got[j] - want[j]).abs() <= 1e-5 * (1.0 + want[j].abs()), "{} vs {}", got[j], want[j]);
            }
        }
    }

    #[test]
    fn every_rule_is_permutation_invariant_bounded_and_idempotent(n in 1usize..16, len in 1usize..40, seed in any::<u64>(), rot in 0usize..16) {
        let (xs, ws) = inputs(n, len, seed);
        let ups = updates(&xs, &ws);
        let mut rotated = ups.clone();
        rotated.rotate_left(rot % n);
        let rules: Vec<Box<dyn Rule>> = vec![Box::new(Mean), Box::new(FedAvg), Box::new(Median), Box::new(TrimmedMean::new(0.2).unwrap())];
        for mut rule in rules {
            let a = run(rule.as_mut(), &ups, len);
            let b = run(rule.as_mut(), &rotated, len);
            for j in 0..len {
                let (lo, hi) = xs.iter().fold((f32::MAX, f32::MIN), |(l, h), x| (l.min(x[j]), h.max(x[j])));
                let slack = 1e-5 * (1.0 + lo.abs().max(hi.abs()));
                prop_assert!(a[j] >= lo - slack && a[j] <= hi + slack, "{}: {} outside [{lo}, {hi}]", rule.name(), a[j]);
                prop_assert!((a[j] - b[j]).abs() <= slack, "{}: order changed the result", rule.name());
            }
            // N identical inputs give that input.
            let same: Vec<Update> = (0..n).map(|i| Update { sender: i as u32, weight: 1.0 + i as f32, values: &xs[0] }).collect();
            let c = run(rule.as_mut(), &same, len);
            for j in 0..len {
                prop_assert!((c[j] - xs[0][j]).abs() <= 1e-5 * (1.0 + xs[0][j].abs()), "{}: not idempotent", rule.name());
            }
        }
    }

    #[test]
    fn robust_rules_stay_in_the_honest_range_under_outliers(honest in 5usize..20, f in 1usize..4, len in 1usize..30, seed in any::<u64>()) {
        let (mut xs, ws) = inputs(honest + f, len, seed);
        for x in xs.iter_mut().take(f) {
            x.iter_mut().for_each(|v| *v = 1e30);
        }
        let ups = updates(&xs, &ws);
        let beta = (f as f32 + 0.5) / (honest + f) as f32;
        for mut rule in [Box::new(Median) as Box<dyn Rule>, Box::new(TrimmedMean::new(beta.min(0.49)).unwrap())] {
            let out = run(rule.as_mut(), &ups, len);
            for j in 0..len {
                let (lo, hi) = xs[f..].iter().fold((f32::MAX, f32::MIN), |(l, h), x| (l.min(x[j]), h.max(x[j])));
                prop_assert!(out[j] >= lo && out[j] <= hi, "{} at {j}: {} outside honest [{lo}, {hi}]", rule.name(), out[j]);
            }
        }
    }
}

#[test]
fn invalid_inputs_are_rejected_and_reported() {
    let good = vec![1.0f32; 8];
    let nan = {
        let mut v = good.clone();
        v[3] = f32::NAN;
        v
    };
    let inf = {
        let mut v = good.clone();
        v[0] = f32::INFINITY;
        v
    };
    let short = vec![1.0f32; 7];
    let big = vec![100.0f32; 8];
    let ups = [
        Update { sender: 1, weight: 1.0, values: &good },
        Update { sender: 2, weight: 1.0, values: &nan },
        Update { sender: 3, weight: 1.0, values: &inf },
        Update { sender: 4, weight: 1.0, values: &short },
        Update { sender: 5, weight: 1.0, values: &big },
        Update { sender: 6, weight: f32::NAN, values: &good },
    ];
    let mut out = vec![0.0; 8];
    let report = Mean.aggregate(&ups, Some(10.0), &mut out).unwrap();
    assert_eq!(report.used, vec![1]);
    let rejected: Vec<u32> = report.rejected.iter().map(|r| r.0).collect();
    assert_eq!(rejected, vec![2, 3, 4, 5, 6]);
    assert!(report.rejected[3].1.contains("exceeds the bound"), "{:?}", report.rejected);
    assert_eq!(out, good);
    assert!(matches!(Mean.aggregate(&ups[1..4], None, &mut out), Err(RuleError::NoInputs { rejected: 3, .. })));
}

proptest! {
    /// Median, trimmed mean and Krum take validation's norms in their own pass over the inputs; the result
    /// and the report must be exactly those of validating first and combining the survivors, whether
    /// every input passes or some carry NaN, infinity or a norm above the bound.
    #[test]
    fn validation_in_the_same_pass_equals_validating_first(
        n in 5usize..20,
        len in 1usize..90,
        seed in any::<u64>(),
        poison in 0usize..4,
        bound_at in 0usize..3,
    ) {
        let (mut xs, ws) = inputs(n, len, seed);
        match poison {
            1 => xs[0][len / 2] = f32::NAN,
            2 => xs[n - 1][0] = f32::INFINITY,
            3 => xs[1].iter_mut().for_each(|x| *x *= 1e3),
            _ => {}
        }
        let mut norms: Vec<f32> = xs.iter().map(|x| x.iter().map(|v| v * v).sum::<f32>().sqrt()).collect();
        norms.sort_by(f32::total_cmp);
        // No bound, a bound that rejects the largest few, or one far above everything finite.
        let bound = match bound_at { 0 => None, 1 => Some(norms[n - 3]), _ => Some(1e9) };
        let ups = updates(&xs, &ws);
        let rules: Vec<Box<dyn Fn() -> Box<dyn Rule>>> = vec![
            Box::new(|| Box::new(Median)),
            Box::new(|| Box::new(TrimmedMean::new(0.2).unwrap())),
            Box::new(|| Box::new(shoal_engine::rules::Krum::new(1, 1).unwrap())),
            Box::new(|| Box::new(shoal_engine::rules::Krum::new(1, 3).unwrap())),
        ];
        for make in &rules {
            let (mut fused, mut plain) = (make(), make());
            let mut got = vec![f32::NAN; len];
            let report = fused.aggregate(&ups, bound, &mut got);
            let (valid, rejected) = shoal_engine::rules::validate(&ups, len, bound);
            let mut want = vec![f32::NAN; len];
            let expected = plain.check(valid.len()).and_then(|()| plain.combine(&valid, &mut want));
            match (report, expected) {
                (Ok(r), Ok(())) => {
                    prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{}", fused.name());
                    prop_assert_eq!(&r.rejected, &rejected, "{}", fused.name());
                    let used: Vec<u32> = match plain.selected() {
                        Some(p) => p.iter().map(|&i| valid[i].sender).collect(),
                        None => valid.iter().map(|u| u.sender).collect(),
                    };
                    prop_assert_eq!(r.used, used, "{}", fused.name());
                }
                (Err(_), Err(_)) => {}
                (r, e) => prop_assert!(false, "{}: fused {:?}, plain {:?}", fused.name(), r, e),
            }
        }
    }
}

proptest! {
    /// Folding updates in as they arrive gives the batch rule's result (up to rounding) and report.
    #[test]
    fn streaming_mean_and_fedavg_equal_the_batch_rules(
        n in 1usize..20,
        len in 0usize..120,
        seed in any::<u64>(),
        bad in proptest::option::of(0usize..20),
        zero_weights in any::<bool>(),
    ) {
        use shoal_engine::rules::{StreamingKind, StreamingMean};
        let (mut xs, mut ws) = inputs(n, len, seed);
        if let Some(b) = bad.filter(|&b| b < n && len > 0) {
            xs[b][0] = f32::NAN;
        }
        if zero_weights {
            ws.iter_mut().for_each(|w| *w = 0.0);
        }
        let ups = updates(&xs, &ws);
        for (kind, batch) in [(StreamingKind::Mean, &mut Mean as &mut dyn Rule), (StreamingKind::FedAvg, &mut FedAvg)] {
            let mut fold = StreamingMean::new(kind, len, None);
            for u in &ups {
                fold.add(*u);
            }
            let mut got = vec![0.0; len];
            let mut want = vec![0.0; len];
            match (fold.finish(&mut got), batch.aggregate(&ups, None, &mut want)) {
                (Ok(a), Ok(b)) => {
                    prop_assert_eq!(a, b);
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!((g - w).abs() <= 1e-4 * w.abs().max(1.0), "{:?}: {} vs {}", kind, g, w);
                    }
                }
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "{:?}: streaming {:?}, batch {:?}", kind, a, b),
            }
        }
    }
}

#[test]
fn trimmed_mean_refuses_a_beta_outside_its_range() {
    for beta in [0.5, 0.7, -0.1, f32::NAN] {
        let err = TrimmedMean::new(beta).unwrap_err().to_string();
        assert!(err.contains("beta must be in [0, 0.5)"), "{beta}: {err}");
    }
    assert!(TrimmedMean::new(0.0).is_ok() && TrimmedMean::new(0.49).is_ok());
}

mod krum {
    use super::*;
    use shoal_engine::rules::Krum;

    /// Krum scores from direct f64 distances: the definition.
    fn reference_scores(xs: &[Vec<f32>], f: usize) -> Vec<f64> {
        let n = xs.len();
        (0..n)
            .map(|i| {
                let mut d: Vec<f64> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| xs[i].iter().zip(&xs[j]).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum())
                    .collect();
                d.sort_by(f64::total_cmp);
                d[..n - f - 2].iter().sum()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn krum_picks_an_input_and_scores_like_the_definition(f in 0usize..4, extra in 1usize..8, len in 1usize..200, seed in any::<u64>()) {
            let n = 2 * f + 2 + extra;
            let (xs, ws) = inputs(n, len, seed);
            let ups = updates(&xs, &ws);
            let mut k = Krum::new(f, 1).unwrap();
            let out = run(&mut k, &ups, len);
            prop_assert!(xs.iter().any(|x| x == &out), "Krum must return one of its inputs");
            let want = reference_scores(&xs, f);
            for (got, want) in k.last_scores.iter().zip(&want) {
                prop_assert!((got - want).abs() <= 1e-4 * want.abs() + 1e-3, "score {got} vs {want}");
            }
        }

        #[test]
        fn krum_and_multi_krum_exclude_far_outliers(f in 1usize..4, honest in 5usize..12, len in 1usize..64, seed in any::<u64>()) {
            let n = honest + f;
            prop_assume!(n > 2 * f + 2);
            let (mut xs, ws) = inputs(n, len, seed);
            for x in xs.iter_mut().take(f) {
                x.iter_mut().for_each(|v| *v = *v * 0.1 + 1e3);
            }
            let ups = updates(&xs, &ws);
            for m in [1, honest] {
                let mut k = Krum::new(f, m).unwrap();
                let mut out = vec![0.0; len];
                let report = k.aggregate(&ups, None, &mut out).unwrap();
                prop_assert!(report.used.iter().all(|&s| s as usize >= f), "m={m}: an outlier was selected: {:?}", report.used);
                prop_assert_eq!(report.used.len(), m);
                for j in 0..len {
                    let (lo, hi) = xs[f..].iter().fold((f32::MAX, f32::MIN), |(l, h), x| (l.min(x[j]), h.max(x[j])));
                    prop_assert!(out[j] >= lo - 1e-4 && out[j] <= hi + 1e-4);
                }
            }
        }

        #[test]
        fn krum_selection_does_not_depend_on_input_order(f in 0usize..3, extra in 1usize..6, len in 1usize..50, seed in any::<u64>(), rot in 0usize..16) {
            let n = 2 * f + 2 + extra;
            let (xs, ws) = inputs(n, len, seed);
            let ups = updates(&xs, &ws);
            let mut rotated = ups.clone();
            rotated.rotate_left(rot % n);
            let (mut a, mut b) = (vec![0.0; len], vec![0.0; len]);
            let ra = Krum::new(f, 1).unwrap().aggregate(&ups, None, &mut a).unwrap();
            let rb = Krum::new(f, 1).unwrap().aggregate(&rotated, None, &mut b).unwrap();
            prop_assert_eq!(ra.used, rb.used);
            prop_assert_eq!(a, b);
        }

        /// `Keep::AllButF` is a fixed m = n − f chosen per call: the same selection and the same bits,
        /// whatever n the call brings.
        #[test]
        fn multi_krum_all_but_f_is_m_equal_n_minus_f(f in 0usize..4, extra in 1usize..8, len in 1usize..100, seed in any::<u64>()) {
            let n = 2 * f + 2 + extra;
            let (xs, ws) = inputs(n, len, seed);
            let ups = updates(&xs, &ws);
            let (mut a, mut b) = (vec![0.0; len], vec![0.0; len]);
            let mut auto = Krum::all_but_f(f);
            let ra = auto.aggregate(&ups, None, &mut a).unwrap();
            let rb = Krum::new(f, n - f).unwrap().aggregate(&ups, None, &mut b).unwrap();
            prop_assert_eq!(ra.used.len(), n - f);
            prop_assert_eq!(ra.used, rb.used);
            prop_assert_eq!(a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), b.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            prop_assert_eq!(shoal_engine::rules::Rule::name(&auto), "multi-krum");
        }
    }

    #[test]
    fn krum_states_and_enforces_its_precondition() {
        let (xs, ws) = inputs(6, 4, 1);
        let ups = updates(&xs, &ws);
        let mut out = vec![0.0; 4];
        let err = Krum::new(2, 1).unwrap().aggregate(&ups, None, &mut out).unwrap_err().to_string();
        assert!(err.contains("needs n > 2f + 2") && err.contains("at least 7, got 6"), "{err}");
        assert!(Krum::new(1, 1).unwrap().aggregate(&ups, None, &mut out).is_ok());
        assert!(Krum::new(1, 7).unwrap().aggregate(&ups, None, &mut out).is_err(), "m larger than n");
        assert!(Krum::new(1, 0).is_err());
    }
}

mod clip {
    use super::*;
    use shoal_engine::rules::{Clip, Krum};

    proptest! {
        #[test]
        fn clipped_mean_matches_its_definition_and_is_bounded(n in 1usize..12, len in 1usize..80, tau in 0.5f32..60.0, seed in any::<u64>()) {
            let (xs, ws) = inputs(n, len, seed);
            let ups = updates(&xs, &ws);
            let mut rule = Clip::new(tau, Box::new(Mean)).unwrap();
            let out = run(&mut rule, &ups, len);
            // Definition, in f64: scale each update by min(1, tau / |u|), then average.
            let mut want = vec![0.0f64; len];
            for x in &xs {
                let norm = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                let k = if norm > tau as f64 { tau as f64 / norm } else { 1.0 };
                for j in 0..len {
                    want[j] += k * x[j] as f64 / n as f64;
                }
            }
            for j in 0..len {
                prop_assert!((out[j] as f64 - want[j]).abs() <= 1e-5 * (1.0 + want[j].abs()), "{} vs {}", out[j], want[j]);
            }
            let norm = out.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            prop_assert!(norm <= tau as f64 * (1.0 + 1e-5), "result norm {norm} above tau {tau}");
        }
    }

    #[test]
    fn short_updates_pass_unchanged_and_selection_is_reported() {
        let (xs, ws) = inputs(9, 16, 3);
        let ups = updates(&xs, &ws);
        let mut plain = vec![0.0; 16];
        Mean.aggregate(&ups, None, &mut plain).unwrap();
        let mut clipped = vec![0.0; 16];
        Clip::new(1e9, Box::new(Mean)).unwrap().aggregate(&ups, None, &mut clipped).unwrap();
        assert_eq!(plain, clipped, "a tau above every norm changes nothing");
        let mut out = vec![0.0; 16];
        let report =
            Clip::new(5.0, Box::new(Krum::new(2, 1).unwrap())).unwrap().aggregate(&ups, None, &mut out).unwrap();
        assert_eq!(report.used.len(), 1, "Krum's selection passes through the clip");
        assert!(Clip::new(0.0, Box::new(Mean)).is_err() && Clip::new(f32::NAN, Box::new(Mean)).is_err());
    }
}

mod bulyan {
    use super::*;
    use shoal_engine::rules::Bulyan;
    use shoal_engine::rules::bulyan::mean_closest_to_median;
    use shoal_engine::rules::krum::pairwise_sq_distances;

    /// Bulyan by its definition, written plainly: repeated Krum on f64 distances, then per coordinate the
    /// β values closest to the median found by sorting on distance.
    fn reference(xs: &[Vec<f32>], f: usize) -> (Vec<usize>, Vec<f32>) {
        let n = xs.len();
        let ups = updates(xs, &vec![1.0; n]);
        let d = pairwise_sq_distances(&ups);
        let theta = n - 2 * f;
        let mut remaining: Vec<usize> = (0..n).collect();
        let mut picked = Vec::new();
        while picked.len() < theta {
            let k = remaining.len().saturating_sub(f + 2);
            let scores: Vec<(f64, usize)> = remaining
                .iter()
                .map(|&i| {
                    let mut row: Vec<f64> = remaining.iter().filter(|&&j| j != i).map(|&j| d[i * n + j]).collect();
                    row.sort_by(f64::total_cmp);
                    (row[..k].iter().sum(), i)
                })
                .collect();
            let best = scores.iter().min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))).unwrap().1;
            remaining.retain(|&i| i != best);
            picked.push(best);
        }
        let beta = theta - 2 * f;
        let len = xs[0].len();
        let out = (0..len)
            .map(|j| {
                let mut col: Vec<f32> = picked.iter().map(|&i| xs[i][j]).collect();
                col.sort_by(f32::total_cmp);
                let med = (col[(theta - 1) / 2] + col[theta / 2]) * 0.5;
                let mut by_distance: Vec<usize> = (0..theta).collect();
                by_distance.sort_by(|&a, &b| (col[a] - med).abs().total_cmp(&(col[b] - med).abs()).then(a.cmp(&b)));
                by_distance[..beta].iter().map(|&i| col[i] as f64).sum::<f64>() as f32 / beta as f32
            })
            .collect();
        (picked, out)
    }

    proptest! {
        #[test]
        fn bulyan_matches_its_definition(f in 0usize..3, extra in 0usize..6, len in 1usize..50, seed in any::<u64>()) {
            let n = 4 * f + 3 + extra;
            let (xs, _) = inputs(n, len, seed);
            let ws = vec![1.0; n];
            let mut rule = Bulyan::new(f);
            let got = run(&mut rule, &updates(&xs, &ws), len);
            let (picked, want) = reference(&xs, f);
            prop_assert_eq!(&rule.last_selected, &picked);
            for j in 0..len {
                prop_assert!((got[j] - want[j]).abs() <= 1e-4 * (1.0 + want[j].abs()), "{j}: {} vs {}", got[j], want[j]);
            }
        }

        #[test]
        fn bulyan_ignores_f_huge_outliers_and_is_order_free(f in 1usize..3, honest in 0usize..6, len in 1usize..40, seed in any::<u64>(), rot in 0usize..16) {
            let n = 4 * f + 3 + honest;
            let (mut xs, _) = inputs(n, len, seed);
            for x in xs.iter_mut().take(f) {
                x.iter_mut().for_each(|v| *v = -1e15);
            }
            let ws = vec![1.0; n];
            let ups = updates(&xs, &ws);
            let out = run(&mut Bulyan::new(f), &ups, len);
            let mut rotated = ups.clone();
            rotated.rotate_left(rot % n);
            let again = run(&mut Bulyan::new(f), &rotated, len);
            for j in 0..len {
                let (lo, hi) = xs[f..].iter().fold((f32::MAX, f32::MIN), |(l, h), x| (l.min(x[j]), h.max(x[j])));
                prop_assert!(out[j] >= lo && out[j] <= hi, "{j}: {} outside honest [{lo}, {hi}]", out[j]);
                prop_assert!((out[j] - again[j]).abs() <= 1e-5 * (1.0 + out[j].abs()));
            }
        }
    }

    #[test]
    fn closest_window_takes_the_nearest_values() {
        assert_eq!(mean_closest_to_median(&[0.0, 1.0, 2.0, 10.0, 11.0], 3), 1.0);
        assert_eq!(mean_closest_to_median(&[-100.0, 4.0, 5.0, 6.0], 2), 4.5);
        assert_eq!(mean_closest_to_median(&[1.0], 1), 1.0);
    }

    #[test]
    fn bulyan_states_its_precondition() {
        let (xs, ws) = inputs(10, 4, 1);
        let mut out = vec![0.0; 4];
        let err = Bulyan::new(2).aggregate(&updates(&xs, &ws), None, &mut out).unwrap_err().to_string();
        assert!(err.contains("n >= 4f + 3") && err.contains("at least 11") && err.contains("got 10"), "{err}");
        assert!(Bulyan::new(2).aggregate(&updates(&xs[..10], &ws), None, &mut out).is_err());
        let (xs, ws) = inputs(11, 4, 1);
        assert!(Bulyan::new(2).aggregate(&updates(&xs, &ws), None, &mut out).is_ok());
    }
}

mod server {
    use super::*;
    use shoal_engine::rules::{ServerKind, ServerOpt};

    /// One round of each optimizer in f64, straight from Reddi et al. 2021 (Algorithm 2).
    fn reference(kind: ServerKind, lr: f64, tau: f64, deltas: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let p = deltas[0].len();
        let (mut m, mut v) = (vec![0.0f64; p], vec![tau * tau; p]);
        let mut steps = Vec::new();
        for d in deltas {
            let mut step = vec![0.0; p];
            for i in 0..p {
                let g = d[i];
                step[i] = match kind {
                    ServerKind::AvgM { beta } => {
                        m[i] = beta as f64 * m[i] + g;
                        lr * m[i]
                    }
                    ServerKind::Adagrad => {
                        v[i] += g * g;
                        lr * g / (v[i].sqrt() + tau)
                    }
                    ServerKind::Adam { beta1, beta2 } => {
                        m[i] = beta1 as f64 * m[i] + (1.0 - beta1 as f64) * g;
                        v[i] = beta2 as f64 * v[i] + (1.0 - beta2 as f64) * g * g;
                        lr * m[i] / (v[i].sqrt() + tau)
                    }
                    ServerKind::Yogi { beta1, beta2 } => {
                        m[i] = beta1 as f64 * m[i] + (1.0 - beta1 as f64) * g;
                        let s = (v[i] - g * g).signum() * if v[i] == g * g { 0.0 } else { 1.0 };
                        v[i] -= (1.0 - beta2 as f64) * g * g * s;
                        lr * m[i] / (v[i].sqrt() + tau)
                    }
                };
            }
            steps.push(step);
        }
        steps
    }

    proptest! {
        #[test]
        fn server_optimizers_match_the_paper_over_rounds(which in 0usize..4, rounds in 1usize..6, n in 1usize..6, len in 1usize..40, seed in any::<u64>()) {
            let kind = ServerKind::by_name(["fedavgm", "fedadagrad", "fedadam", "fedyogi"][which]).unwrap();
            let (lr, tau) = (0.05f32, 1e-2f32);
            let mut rule = ServerOpt::new(kind, lr, tau, Box::new(Mean)).unwrap();
            let mut deltas = Vec::new();
            let mut got = Vec::new();
            for r in 0..rounds {
                let (xs, ws) = inputs(n, len, seed ^ r as u64);
                let ups = updates(&xs, &ws);
                deltas.push((0..len).map(|j| xs.iter().map(|x| x[j] as f64).sum::<f64>() / n as f64).collect::<Vec<f64>>());
                got.push(run(&mut rule, &ups, len));
            }
            let want = reference(kind, lr as f64, tau as f64, &deltas);
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                for j in 0..len {
                    prop_assert!((g[j] as f64 - w[j]).abs() <= 1e-4 * (1.0 + w[j].abs()), "{} round {r} at {j}: {} vs {}", kind.name(), g[j], w[j]);
                }
            }
            prop_assert_eq!(rule.rounds(), rounds as u64);
        }
    }

    #[test]
    fn state_carries_across_instances_and_lengths_are_checked() {
        let (xs, ws) = inputs(4, 16, 9);
        let ups = updates(&xs, &ws);
        let kind = ServerKind::by_name("fedadam").unwrap();
        let mut a = ServerOpt::new(kind, 0.1, 1e-3, Box::new(FedAvg)).unwrap();
        let mut b = ServerOpt::new(kind, 0.1, 1e-3, Box::new(FedAvg)).unwrap();
        run(&mut a, &ups, 16);
        let saved: Vec<(&str, Vec<f32>)> = a.state().into_iter().map(|(n, v)| (n, v.to_vec())).collect();
        b.restore(a.rounds(), &saved).unwrap();
        assert_eq!(run(&mut a, &ups, 16), run(&mut b, &ups, 16));
        let mut short = vec![0.0; 8];
        let short_ups: Vec<Update> = ups.iter().map(|u| Update { values: &u.values[..8], ..*u }).collect();
        let err = a.aggregate(&short_ups, None, &mut short).unwrap_err().to_string();
        assert!(err.contains("16 parameters") && err.contains("8"), "{err}");
        assert!(ServerOpt::new(kind, -1.0, 1e-3, Box::new(Mean)).is_err());
        assert!(ServerOpt::new(ServerKind::Adam { beta1: 1.0, beta2: 0.9 }, 0.1, 1e-3, Box::new(Mean)).is_err());
        assert!(b.restore(0, &[("q", vec![])]).is_err());
    }
}
