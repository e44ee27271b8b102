//! Analytic gradients of every layer, activation, head and the embedding bag against central finite
//! differences of an independent f64 reference forward pass.

use shoal_engine::kernels::Activation;
use shoal_engine::kernels::sparse::{Bags, row_of};
use shoal_engine::kernels::weighted_sum;
use shoal_engine::model::{
    EmbeddingBag, HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, ParamLayout, SplitMix, Targets,
};
use shoal_engine::oracle;

/// The network's loss computed from scratch in f64 with plain loops.
fn reference_loss(net: &Network, params: &[f64], x: &[f32], targets: &RefTargets) -> f64 {
    let rows = x.len() / net.input_dim();
    let mut h: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let layers = net.encoder.iter().chain([&net.head.dense]);
    for layer in layers {
        let w = &params[net.layout.slot(layer.weight).range()];
        let b = &params[net.layout.slot(layer.bias).range()];
        let mut out = vec![0.0; rows * layer.out_dim];
        for r in 0..rows {
            for j in 0..layer.out_dim {
                let mut z = b[j];
                for i in 0..layer.in_dim {
                    z += h[r * layer.in_dim + i] * w[i * layer.out_dim + j];
                }
                out[r * layer.out_dim + j] = oracle::activation(layer.act, z);
            }
        }
        h = out;
    }
    let k = net.head.outputs();
    match (net.head.kind, targets) {
        (HeadKind::Softmax, RefTargets::Classes(labels)) => {
            (0..rows)
                .map(|r| {
                    let z = &h[r * k..(r + 1) * k];
                    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let lse = z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
                    lse - z[labels[r] as usize]
                })
                .sum::<f64>()
                / rows as f64
        }
        (HeadKind::Logistic, RefTargets::Values(t)) => {
            h.iter().zip(t).map(|(&z, &y)| z.max(0.0) - z * y as f64 + (-z.abs()).exp().ln_1p()).sum::<f64>()
                / h.len() as f64
        }
        (HeadKind::Linear, RefTargets::Values(t)) => {
            h.iter().zip(t).map(|(&z, &y)| 0.5 * (z - y as f64).powi(2)).sum::<f64>() / h.len() as f64
        }
        _ => unreachable!(),
    }
}

enum RefTargets {
    Classes(Vec<u32>),
    Values(Vec<f32>),
}

fn check_network(act: Activation, head: HeadKind, seed: u64) {
    check_widths(&[7, 9, 5], act, head, seed);
}

fn check_widths(encoder: &[usize], act: Activation, head: HeadKind, seed: u64) {
    let spec = NetworkSpec { encoder: encoder.to_vec(), activation: act, head, outputs: 4 };
    let net = Network::new(spec).unwrap();
    let mut rng = SplitMix::new(seed);
    let params = net.init_params(seed);
    // Non-zero biases so ReLU kinks are not aligned with zero inputs.
    let mut params = params.to_vec();
    for slot in net.layout.slots().iter().filter(|s| s.name.ends_with(".bias")) {
        for v in &mut params[slot.range()] {
            *v = rng.uniform(-0.3, 0.3);
        }
    }
    let rows = 6;
    let x: Vec<f32> = (0..rows * encoder[0]).map(|_| rng.uniform(-1.5, 1.5)).collect();
    let targets = match head {
        HeadKind::Softmax => RefTargets::Classes((0..rows).map(|_| rng.below(4) as u32).collect()),
        HeadKind::Logistic => RefTargets::Values((0..rows * 4).map(|_| rng.below(2) as f32).collect()),
        HeadKind::Linear => RefTargets::Values((0..rows * 4).map(|_| rng.uniform(-2.0, 2.0)).collect()),
    };
    let t = match &targets {
        RefTargets::Classes(c) => Targets::Classes(c),
        RefTargets::Values(v) => Targets::Values(v),
    };
    let mut ws = net.workspace(rows);
    let mut grads = vec![0.0; params.len()];
    let loss = net.loss_and_grad(&params, &x, t, &mut ws, &mut grads).unwrap();

    let p64: Vec<f64> = params.iter().map(|&v| v as f64).collect();
    let ref_loss = reference_loss(&net, &p64, &x, &targets);
    assert!(
        (loss as f64 - ref_loss).abs() <= 1e-5 * ref_loss.abs().max(1.0),
        "{act} {head:?}: loss {loss} vs {ref_loss}"
    );

    let eps = 1e-6;
    for slot in net.layout.slots() {
        for i in slot.range() {
            let mut plus = p64.clone();
            plus[i] += eps;
            let mut minus = p64.clone();
            minus[i] -= eps;
            let fd =
                (reference_loss(&net, &plus, &x, &targets) - reference_loss(&net, &minus, &x, &targets)) / (2.0 * eps);
            let g = grads[i] as f64;
            assert!(
                (g - fd).abs() <= 2e-4 * fd.abs().max(g.abs()) + 2e-5,
                "{act} {head:?}: d loss / d {}[{}] = {g}, finite difference {fd}",
                slot.name,
                i - slot.offset
            );
        }
    }
}

/// No hidden layers: the head alone on the input (a linear model; the federated job's probe head trains
/// this way on the encoder's output).
#[test]
fn a_network_without_hidden_layers_matches_finite_differences() {
    for head in [HeadKind::Softmax, HeadKind::Logistic, HeadKind::Linear] {
        check_widths(&[7], Activation::Identity, head, 90);
    }
}

#[test]
fn every_activation_and_head_matches_finite_differences() {
    for (n, act) in Activation::ALL.into_iter().enumerate() {
        for head in [HeadKind::Softmax, HeadKind::Logistic, HeadKind::Linear] {
            check_network(act, head, 100 + n as u64);
        }
    }
}

#[test]
fn embedding_bag_gradient_matches_finite_differences() {
    // loss = Σ_b Σ_d c[b,d] · out[b,d] with fixed coefficients: d loss / d table is exact and linear.
    let mut layout = ParamLayout::new();
    let emb = EmbeddingBag::new(&mut layout, "emb", 13, 3).unwrap();
    let mut rng = SplitMix::new(5);
    let table: Vec<f32> = (0..layout.total_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let bags = Bags::from_lists(&[vec![1, 2, 3], vec![], vec![7, 7, 40], vec![u64::MAX]]);
    let coef: Vec<f32> = (0..bags.len() * 3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let loss = |t: &[f64]| -> f64 {
        let mut total = 0.0;
        for b in 0..bags.len() {
            for &id in bags.bag(b) {
                let r = row_of(id, 13) as usize;
                for d in 0..3 {
                    total += coef[b * 3 + d] as f64 * t[r * 3 + d];
                }
            }
        }
        total
    };
    let mut out = vec![0.0; bags.len() * 3];
    emb.forward(&layout, &table, &bags, &mut out);
    let grad = emb.backward(&bags, &coef);
    let mut dense = vec![0.0f64; table.len()];
    for (r, g) in grad.iter() {
        for d in 0..3 {
            dense[r as usize * 3 + d] = g[d] as f64;
        }
    }
    let t64: Vec<f64> = table.iter().map(|&v| v as f64).collect();
    for i in 0..table.len() {
        let (mut p, mut m) = (t64.clone(), t64.clone());
        p[i] += 1e-3;
        m[i] -= 1e-3;
        let fd = (loss(&p) - loss(&m)) / 2e-3;
        assert!((dense[i] - fd).abs() < 1e-5, "row {} dim {}: {} vs {fd}", i / 3, i % 3, dense[i]);
    }
}

/// The sharded step (one batch shard per thread) computes the same loss and gradient as the serial one,
/// up to summation order, for every head kind and for uneven shard sizes.
#[test]
fn sharded_gradients_equal_serial_gradients() {
    for head in [HeadKind::Softmax, HeadKind::Logistic, HeadKind::Linear] {
        let net =
            Network::new(NetworkSpec { encoder: vec![20, 48, 24], activation: Activation::Tanh, head, outputs: 3 })
                .unwrap();
        let params = net.init_params(9);
        let mut rng = SplitMix::new(10);
        let rows = 203;
        let x: Vec<f32> = (0..rows * 20).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(3) as u32).collect();
        let values: Vec<f32> = (0..rows * 3).map(|_| rng.below(2) as f32).collect();
        let targets = if head == HeadKind::Softmax { Targets::Classes(&labels) } else { Targets::Values(&values) };
        let mut serial = vec![0.0; params.len()];
        let want = net.loss_and_grad_serial(&params, &x, targets, &mut net.workspace(rows), &mut serial).unwrap();
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut sharded = vec![f32::NAN; params.len()];
            let got = pool
                .install(|| net.loss_and_grad(&params, &x, targets, &mut net.workspace(rows), &mut sharded))
                .unwrap();
            assert!((got - want).abs() <= 1e-5 * want.abs(), "{head:?} x{threads}: loss {got} vs {want}");
            for (i, (a, b)) in sharded.iter().zip(&serial).enumerate() {
                assert!((a - b).abs() <= 1e-5 * b.abs() + 1e-7, "{head:?} x{threads}: grad[{i}] {a} vs {b}");
            }
        }
    }
}

fn every_optimizer() -> [OptimizerKind; 4] {
    ["sgd", "momentum", "adagrad", "adam"].map(|name| OptimizerKind::with_lr(name, 0.05).unwrap())
}

/// `step_weighted` (sum the inputs and step, tile by tile, in parallel) is bit-identical to
/// `weighted_sum` followed by `step`, for every optimizer, on lengths around the 16384-float tiles and
/// above the parallel threshold (65536), over several steps (the state carries over).
#[test]
fn the_fused_sum_and_step_equals_the_sum_then_the_step() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for len in [0, 1, 17, 16383, 16384, 16385, 65535, 65536, 100_003] {
        for kind in every_optimizer() {
            let mut rng = SplitMix::new(len as u64 + 1);
            let inputs: Vec<Vec<f32>> = (0..3).map(|_| (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()).collect();
            let views: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
            let weights = [0.5, 0.25, 0.25];
            let start: Vec<f32> = (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let (mut p_ref, mut p_fused) = (start.clone(), start);
            let (mut o_ref, mut o_fused) = (Optimizer::new(kind, len), Optimizer::new(kind, len));
            let (mut g_ref, mut g_fused) = (vec![0.0; len], vec![f32::NAN; len]);
            pool.install(|| {
                for _ in 0..3 {
                    weighted_sum(&views, &weights, &mut g_ref);
                    o_ref.step(&mut p_ref, &g_ref);
                    o_fused.step_weighted(&mut p_fused, &mut g_fused, &views, &weights);
                }
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&g_fused), bits(&g_ref), "{kind} len {len}: gradients");
            assert_eq!(bits(&p_fused), bits(&p_ref), "{kind} len {len}: parameters");
            for (a, b) in o_fused.state().iter().zip(o_ref.state()) {
                assert_eq!(bits(a), bits(b), "{kind} len {len}: optimizer state");
            }
        }
    }
}

/// The sharded training step (shard gradients combined and applied in one pass) leaves the same
/// parameters and gradients, bit for bit, as `loss_and_grad` followed by `step` on the same threads.
#[test]
fn the_sharded_train_step_equals_loss_and_grad_then_step() {
    // 79k parameters: above the fused pass's parallel threshold.
    let net = Network::new(NetworkSpec {
        encoder: vec![300, 256],
        activation: Activation::Relu,
        head: HeadKind::Softmax,
        outputs: 10,
    })
    .unwrap();
    let mut rng = SplitMix::new(5);
    let rows = 130;
    let x: Vec<f32> = (0..rows * 300).map(|_| rng.uniform(0.0, 1.0)).collect();
    let labels: Vec<u32> = (0..rows).map(|_| rng.below(10) as u32).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for kind in every_optimizer() {
        let (mut p_ref, mut p_step) = (net.init_params(6).to_vec(), net.init_params(6).to_vec());
        let n = p_ref.len();
        let (mut o_ref, mut o_step) = (Optimizer::new(kind, n), Optimizer::new(kind, n));
        let (mut g_ref, mut g_step) = (vec![0.0; n], vec![0.0; n]);
        let (mut ws_ref, mut ws_step) = (net.workspace(rows), net.workspace(rows));
        pool.install(|| {
            for _ in 0..3 {
                let want = net.loss_and_grad(&p_ref, &x, Targets::Classes(&labels), &mut ws_ref, &mut g_ref).unwrap();
                o_ref.step(&mut p_ref, &g_ref);
                let got = net
                    .train_step(&mut p_step, &mut o_step, &x, Targets::Classes(&labels), &mut ws_step, &mut g_step)
                    .unwrap();
                assert_eq!(got.to_bits(), want.to_bits(), "{kind}: loss");
            }
        });
        assert!(p_step.iter().zip(&p_ref).all(|(a, b)| a.to_bits() == b.to_bits()), "{kind}: parameters differ");
        assert!(g_step.iter().zip(&g_ref).all(|(a, b)| a.to_bits() == b.to_bits()), "{kind}: gradients differ");
    }
}

#[test]
fn wrong_target_counts_are_refused_on_both_paths() {
    let net = Network::new(NetworkSpec {
        encoder: vec![4, 8],
        activation: Activation::Relu,
        head: HeadKind::Softmax,
        outputs: 3,
    })
    .unwrap();
    let params = net.init_params(1);
    let x = vec![0.5; 128 * 4];
    let labels = vec![0u32; 129];
    let mut g = vec![0.0; params.len()];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let r =
            pool.install(|| net.loss_and_grad(&params, &x, Targets::Classes(&labels), &mut net.workspace(128), &mut g));
        assert!(r.is_err(), "{threads} threads accepted 129 labels for 128 rows");
        let mut p = params.to_vec();
        let mut opt = Optimizer::new(OptimizerKind::Sgd { lr: 0.1 }, p.len());
        let r = pool.install(|| {
            net.train_step(&mut p, &mut opt, &x, Targets::Classes(&labels), &mut net.workspace(128), &mut g)
        });
        assert!(r.is_err(), "{threads} threads: train_step accepted 129 labels for 128 rows");
        assert!(p.iter().zip(params.iter()).all(|(a, b)| a == b), "a refused step changed the parameters");
    }
}

/// `encode` runs the encoder alone: the head of the same network on its output gives `forward`'s logits;
/// the encoder's slots alone are enough parameters, fewer are refused, and so is a network without
/// hidden layers.
#[test]
fn encode_is_the_encoder_part_of_forward() {
    let net = Network::new(NetworkSpec {
        encoder: vec![6, 9, 5],
        activation: Activation::Tanh,
        head: HeadKind::Linear,
        outputs: 3,
    })
    .unwrap();
    let params = net.init_params(5);
    let mut rng = SplitMix::new(6);
    let x: Vec<f32> = (0..4 * 6).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut ws = net.workspace(4);
    let logits = net.forward(&params, &x, &mut ws).unwrap().to_vec();
    let encoder_end = net.layout.find("encoder.1.bias").unwrap().range().end;
    let feats = net.encode(&params[..encoder_end], &x, &mut ws).unwrap().to_vec();
    let head = Network::new(NetworkSpec {
        encoder: vec![5],
        activation: Activation::Identity,
        head: HeadKind::Linear,
        outputs: 3,
    })
    .unwrap();
    let mut head_params = vec![0.0; head.layout.total_len()];
    for name in ["head.weight", "head.bias"] {
        head_params[head.layout.find(name).unwrap().range()]
            .copy_from_slice(&params[net.layout.find(name).unwrap().range()]);
    }
    let mut head_ws = head.workspace(4);
    assert_eq!(head.forward(&head_params, &feats, &mut head_ws).unwrap(), &logits[..]);
    assert!(net.encode(&params[..encoder_end - 1], &x, &mut ws).is_err(), "a cut encoder is refused");
    assert!(head.encode(&head_params, &feats, &mut head_ws).is_err(), "no hidden layer, no encoding");
}
