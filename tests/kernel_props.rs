//! Every portable SIMD kernel against the scalar oracle, on lengths 0..=300 and every alignment.

mod common;

use common::*;
use proptest::prelude::*;
use shoal_engine::kernels::{self, Activation, activation, loss, optim, sparse};
use shoal_engine::oracle;

proptest! {
    #[test]
    fn dot_matches_oracle(((x, ox), (y, oy)) in offset_pair(300, 60)) {
        let (x, y) = (&x[ox..], &y[oy..]);
        let abs: f64 = x.iter().zip(y).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        let got = kernels::dot(x, y);
        prop_assert!((got as f64 - oracle::dot(x, y)).abs() <= sum_bound(x.len(), abs), "got {got}");
    }

    #[test]
    fn sum_and_norm2_match_oracle((x, o) in offset_vec(300, 60)) {
        let x = &x[o..];
        let abs: f64 = x.iter().map(|a| (*a as f64).abs()).sum();
        prop_assert!((kernels::sum(x) as f64 - oracle::sum(x)).abs() <= sum_bound(x.len(), abs));
        let n2 = oracle::norm2(x);
        prop_assert!((kernels::norm2(x) as f64 - n2).abs() <= sum_bound(x.len(), n2));
    }

    #[test]
    fn all_finite_matches_a_scalar_scan((x, o) in offset_vec(300, 60), poison in proptest::option::of((0usize..300, 0u8..3))) {
        let mut x = x[o..].to_vec();
        if let Some((at, kind)) = poison.filter(|(at, _)| *at < x.len()) {
            x[at] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][kind as usize];
        }
        prop_assert_eq!(kernels::all_finite(&x), x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn axpy_matches_oracle(((x, ox), (y, oy)) in offset_pair(300, 60), a in wide_f32(60)) {
        let x = &x[ox..];
        let mut got = y[oy..].to_vec();
        let mut want = got.clone();
        kernels::axpy(a, x, &mut got);
        oracle::axpy(a, x, &mut want);
        for i in 0..x.len() {
            // Fused vs f64-then-rounded: at most one rounding apart.
            let scale = (a as f64 * x[i] as f64).abs() + (y[oy + i] as f64).abs();
            prop_assert!((got[i] as f64 - want[i] as f64).abs() <= 2.0 * f32::EPSILON as f64 * scale + 1e-38);
        }
    }

    #[test]
    fn scale_is_exact((x, o) in offset_vec(300, 60), a in wide_f32(60)) {
        let mut got = x[o..].to_vec();
        let mut want = got.clone();
        kernels::scale(a, &mut got);
        oracle::scale(a, &mut want);
        // An f32 product is exact in f64, so one rounding gives the same result both ways.
        prop_assert_eq!(got, want);
    }

    #[test]
    fn weighted_sum_matches_oracle(
        n in 0usize..9,
        len in 0usize..=300,
        off in 0usize..16,
        seed in any::<u64>(),
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let inputs: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..len + off).map(|_| rng.uniform(-1.0, 1.0) * 2f32.powi(rng.below(40) as i32 - 20)).collect())
            .collect();
        let weights: Vec<f32> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let views: Vec<&[f32]> = inputs.iter().map(|v| &v[off..]).collect();
        let mut got = vec![f32::NAN; len];
        let mut want = vec![0.0; len];
        kernels::weighted_sum(&views, &weights, &mut got);
        oracle::weighted_sum(&views, &weights, &mut want);
        for j in 0..len {
            let abs: f64 = views.iter().zip(&weights).map(|(x, w)| (x[j] as f64 * *w as f64).abs()).sum();
            prop_assert!((got[j] as f64 - want[j] as f64).abs() <= sum_bound(n, abs) + f32::EPSILON as f64 * (want[j] as f64).abs());
        }
    }

    #[test]
    fn activations_match_oracle(
        zs in prop::collection::vec(prop_oneof![-12.0f32..12.0, -1000.0f32..1000.0, wide_f32(8)], 0..=300),
        das in prop::collection::vec(-2.0f32..2.0, 300),
        off in 0usize..16,
    ) {
        let mut zpad = vec![0.0; off];
        zpad.extend_from_slice(&zs);
        let z = &zpad[off..];
        let da = &das[..z.len()];
        for act in Activation::ALL {
            let mut a = vec![0.0; z.len()];
            activation::forward(act, z, &mut a);
            let mut dz = vec![0.0; z.len()];
            activation::backward(act, z, &a, da, &mut dz);
            for i in 0..z.len() {
                let want = oracle::activation(act, z[i] as f64);
                prop_assert!(close(a[i], want, 2e-5, 2e-6), "{act} forward at {}: {} vs {want}", z[i], a[i]);
                let want_d = oracle::activation_derivative(act, z[i] as f64) * da[i] as f64;
                prop_assert!(close(dz[i], want_d, 1e-4, 1e-5), "{act} backward at {}: {} vs {want_d}", z[i], dz[i]);
            }
        }
    }

    #[test]
    fn bias_rows_match_oracle(rows in 0usize..9, cols in 1usize..40, seed in any::<u64>()) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let bias: Vec<f32> = (0..cols).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.uniform(-3.0, 3.0)).collect();
        let mut got = x.clone();
        activation::add_bias_rows(&mut got, &bias);
        let mut db = vec![0.0; cols];
        activation::bias_grad_rows(&x, &mut db);
        for r in 0..rows {
            for c in 0..cols {
                prop_assert_eq!(got[r * cols + c], x[r * cols + c] + bias[c]);
            }
        }
        for c in 0..cols {
            let want: f64 = (0..rows).map(|r| x[r * cols + c] as f64).sum();
            prop_assert!(close(db[c], want, 1e-5, 1e-5));
        }
    }

    #[test]
    fn softmax_cross_entropy_matches_oracle(
        rows in 0usize..6,
        classes in 1usize..40,
        seed in any::<u64>(),
        spread in prop_oneof![Just(1.0f32), Just(30.0), Just(1e4)],
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let logits: Vec<f32> = (0..rows * classes).map(|_| rng.uniform(-spread, spread)).collect();
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(classes) as u32).collect();
        let mut got = vec![0.0; logits.len()];
        let mut want = vec![0.0; logits.len()];
        let l = loss::softmax_cross_entropy(&logits, classes, &labels, &mut got).unwrap();
        let wl = if rows == 0 { 0.0 } else { oracle::softmax_cross_entropy(&logits, classes, &labels, &mut want) };
        prop_assert!(l.is_finite());
        prop_assert!(close(l, wl, 1e-5, 1e-5), "loss {l} vs {wl}");
        for i in 0..got.len() {
            prop_assert!(close(got[i], want[i] as f64, 1e-4, 1e-6), "grad {} vs {}", got[i], want[i]);
        }
    }

    #[test]
    fn sigmoid_bce_matches_oracle(
        n in 0usize..=100,
        seed in any::<u64>(),
        spread in prop_oneof![Just(1.0f32), Just(30.0), Just(1e4)],
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let z: Vec<f32> = (0..n).map(|_| rng.uniform(-spread, spread)).collect();
        let t: Vec<f32> = (0..n).map(|_| if rng.below(3) == 0 { rng.next_f32() } else { rng.below(2) as f32 }).collect();
        let mut got = vec![0.0; n];
        let mut want = vec![0.0; n];
        let l = loss::sigmoid_bce(&z, &t, &mut got).unwrap();
        let wl = if n == 0 { 0.0 } else { oracle::sigmoid_bce(&z, &t, &mut want) };
        prop_assert!(close(l, wl, 1e-5, 1e-6), "loss {l} vs {wl}");
        for i in 0..n {
            prop_assert!(close(got[i], want[i] as f64, 1e-5, 1e-7));
        }
    }

    #[test]
    fn mse_matches_oracle(n in 0usize..=100, seed in any::<u64>()) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let y: Vec<f32> = (0..n).map(|_| rng.uniform(-5.0, 5.0)).collect();
        let t: Vec<f32> = (0..n).map(|_| rng.uniform(-5.0, 5.0)).collect();
        let (mut got, mut want) = (vec![0.0; n], vec![0.0; n]);
        let l = loss::mse(&y, &t, &mut got).unwrap();
        let wl = if n == 0 { 0.0 } else { oracle::mse(&y, &t, &mut want) };
        prop_assert!(close(l, wl, 1e-5, 1e-6));
        for i in 0..n {
            prop_assert!(close(got[i], want[i] as f64, 1e-6, 1e-7));
        }
    }

    #[test]
    fn optimizers_match_oracle(len in 0usize..=300, off in 0usize..16, seed in any::<u64>(), t in 1u64..50) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let mut draw = |lo: f32, hi: f32| -> Vec<f32> { (0..len + off).map(|_| rng.uniform(lo, hi)).collect() };
        let (w0, g0, s0, s1) = (draw(-2.0, 2.0), draw(-1.0, 1.0), draw(0.0, 0.5), draw(0.0, 0.5));
        let (w0, g) = (&w0[off..], &g0[off..]);
        let (s0, s1) = (&s0[off..], &s1[off..]);
        let check = |got: &[f32], want: &[f32], what: &str| -> Result<(), TestCaseError> {
            for i in 0..got.len() {
                let step = (want[i] as f64 - w0[i] as f64).abs();
                prop_assert!(close(got[i], want[i] as f64, 4.0 * f32::EPSILON as f64, 1e-4 * step + 1e-7), "{what}: {} vs {}", got[i], want[i]);
            }
            Ok(())
        };
        let (mut a, mut b) = (w0.to_vec(), w0.to_vec());
        optim::sgd(&mut a, g, 0.1);
        oracle::sgd(&mut b, g, 0.1);
        check(&a, &b, "sgd")?;

        let (mut a, mut b) = (w0.to_vec(), w0.to_vec());
        let (mut va, mut vb) = (s0.to_vec(), s0.to_vec());
        optim::momentum(&mut a, g, &mut va, 0.1, 0.9);
        oracle::momentum(&mut b, g, &mut vb, 0.1, 0.9);
        check(&a, &b, "momentum")?;

        let (mut a, mut b) = (w0.to_vec(), w0.to_vec());
        let (mut ha, mut hb) = (s0.to_vec(), s0.to_vec());
        optim::adagrad(&mut a, g, &mut ha, 0.1, 1e-8);
        oracle::adagrad(&mut b, g, &mut hb, 0.1, 1e-8);
        check(&a, &b, "adagrad")?;

        let (mut a, mut b) = (w0.to_vec(), w0.to_vec());
        let (mut ma, mut mb, mut va, mut vb) = (s0.to_vec(), s0.to_vec(), s1.to_vec(), s1.to_vec());
        let p = optim::AdamParams { lr: 0.01, ..Default::default() };
        optim::adam(&mut a, g, &mut ma, &mut va, p, t);
        oracle::adam(&mut b, g, &mut mb, &mut vb, p.lr, p.beta1, p.beta2, p.eps, t);
        check(&a, &b, "adam")?;
    }

    #[test]
    fn row_optimizers_equal_dense_ones_on_their_rows(
        rows in 1usize..20,
        dim in 1usize..20,
        picks in prop::collection::vec(0usize..1000, 0..30),
        seed in any::<u64>(),
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let table: Vec<f32> = (0..rows * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let ids: Vec<u32> = picks.iter().map(|p| (p % rows) as u32).collect();
        let vals: Vec<f32> = (0..ids.len() * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let grad = sparse::SparseGrad::coalesce(dim, &ids, &vals);
        // The dense equivalent: scatter the coalesced gradient into a full-size buffer.
        let mut dense_g = vec![0.0; rows * dim];
        sparse::scatter_add_rows(&mut dense_g, dim, &ids, &vals);
        let p = optim::AdamParams { lr: 0.05, ..Default::default() };
        let (mut a, mut b) = (table.clone(), table.clone());
        let (mut ma, mut va) = (vec![0.0; rows * dim], vec![0.0; rows * dim]);
        optim::adam_rows(&mut a, &grad, &mut ma, &mut va, p, 1);
        for (r, g) in grad.iter() {
            let (r, d) = (r as usize, dim);
            let (mut m, mut v) = (vec![0.0; d], vec![0.0; d]);
            optim::adam(&mut b[r * d..(r + 1) * d], &dense_g[r * d..(r + 1) * d], &mut m, &mut v, p, 1);
            prop_assert_eq!(g, &dense_g[r * d..(r + 1) * d]);
        }
        prop_assert_eq!(&a, &b);
        let (mut a, mut b) = (table.clone(), table.clone());
        optim::sgd_rows(&mut a, &grad, 0.1);
        optim::sgd(&mut b, &dense_g, 0.1);
        for i in 0..a.len() {
            prop_assert!(close(a[i], b[i] as f64, 2.0 * f32::EPSILON as f64, 1e-7));
        }
    }

    #[test]
    fn gather_scatter_match_oracle(
        rows in 1usize..30,
        dim in 0usize..40,
        picks in prop::collection::vec(0usize..1000, 0..40),
        seed in any::<u64>(),
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let table: Vec<f32> = (0..rows * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let ids: Vec<u32> = picks.iter().map(|p| (p % rows) as u32).collect();
        let (mut got, mut want) = (vec![0.0; ids.len() * dim], vec![0.0; ids.len() * dim]);
        sparse::gather_rows(&table, dim, &ids, &mut got);
        oracle::gather_rows(&table, dim, &ids, &mut want);
        prop_assert_eq!(&got, &want);
        let src: Vec<f32> = (0..ids.len() * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let (mut ta, mut tb) = (table.clone(), table.clone());
        sparse::scatter_add_rows(&mut ta, dim, &ids, &src);
        oracle::scatter_add_rows(&mut tb, dim, &ids, &src);
        prop_assert_eq!(ta, tb);
    }

    #[test]
    fn embedding_bag_is_the_sum_of_hashed_rows(
        rows in 1usize..50,
        dim in 1usize..20,
        bags in prop::collection::vec(prop::collection::vec(any::<u64>(), 0..6), 0..8),
        seed in any::<u64>(),
    ) {
        let mut rng = shoal_engine::model::SplitMix::new(seed);
        let table: Vec<f32> = (0..rows * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b = sparse::Bags::from_lists(&bags);
        let mut out = vec![f32::NAN; bags.len() * dim];
        sparse::embedding_bag_sum(&table, dim, &b, &mut out);
        for (k, bag) in bags.iter().enumerate() {
            for d in 0..dim {
                let want: f64 = bag.iter().map(|&id| table[sparse::row_of(id, rows) as usize * dim + d] as f64).sum();
                prop_assert!(close(out[k * dim + d], want, 1e-6, 1e-6));
            }
        }
        // Backward: every touched row receives the sum of its bags' gradients.
        let dout: Vec<f32> = (0..bags.len() * dim).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let g = sparse::embedding_bag_backward(rows, dim, &b, &dout);
        let mut dense = vec![0.0f64; rows * dim];
        for (k, bag) in bags.iter().enumerate() {
            for &id in bag {
                let r = sparse::row_of(id, rows) as usize;
                for d in 0..dim {
                    dense[r * dim + d] += dout[k * dim + d] as f64;
                }
            }
        }
        prop_assert!(g.rows().windows(2).all(|w| w[0] < w[1]), "rows sorted and unique");
        for (r, vals) in g.iter() {
            for d in 0..dim {
                prop_assert!(close(vals[d], dense[r as usize * dim + d], 1e-5, 1e-6));
            }
        }
        let touched: f64 = g.iter().map(|(r, _)| r as f64).sum();
        let expect_touched: f64 = (0..rows).filter(|r| bags.iter().flatten().any(|&id| sparse::row_of(id, rows) as usize == *r)).map(|r| r as f64).sum();
        prop_assert_eq!(touched, expect_touched);
    }
}

#[test]
fn row_of_spreads_adjacent_ids() {
    let rows = 1000;
    let mut hits = vec![0u32; rows];
    for id in 0..100_000u64 {
        hits[sparse::row_of(id, rows) as usize] += 1;
    }
    // 100 per row on average; a uniform hash keeps every row within a generous band.
    assert!(
        hits.iter().all(|&h| (50..=160).contains(&h)),
        "min {} max {}",
        hits.iter().min().unwrap(),
        hits.iter().max().unwrap()
    );
}

#[test]
fn losses_reject_bad_shapes_and_labels() {
    let mut g = vec![0.0; 4];
    assert!(loss::softmax_cross_entropy(&[0.0; 4], 2, &[0, 2], &mut g).is_err());
    assert!(loss::softmax_cross_entropy(&[0.0; 4], 3, &[0, 1], &mut g).is_err());
    assert!(loss::sigmoid_bce(&[0.0; 4], &[0.0; 3], &mut g).is_err());
}
