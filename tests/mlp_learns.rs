//! The network actually learns: a generated nonlinear problem is solved to a stated loss and accuracy.

use shoal_engine::kernels::Activation;
use shoal_engine::model::{HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, SplitMix, Targets};

/// Four classes given by the signs of two random projections of a 16-dimensional Gaussian point (an
/// XOR-like problem: no linear model gets above ~50%).
fn problem(n: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = SplitMix::new(seed);
    let mut proj = SplitMix::new(99);
    let u: Vec<f32> = (0..16).map(|_| proj.uniform(-1.0, 1.0)).collect();
    let v: Vec<f32> = (0..16).map(|_| proj.uniform(-1.0, 1.0)).collect();
    let mut x = Vec::with_capacity(n * 16);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let p: Vec<f32> = (0..16).map(|_| rng.uniform(-1.0, 1.0) + rng.uniform(-1.0, 1.0)).collect();
        let a = p.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>() > 0.0;
        let b = p.iter().zip(&v).map(|(a, b)| a * b).sum::<f32>() > 0.0;
        y.push((a as u32) * 2 + (a ^ b) as u32);
        x.extend(p);
    }
    (x, y)
}

#[test]
fn mlp_solves_a_nonlinear_problem() {
    let net = Network::new(NetworkSpec {
        encoder: vec![16, 64, 32],
        activation: Activation::Relu,
        head: HeadKind::Softmax,
        outputs: 4,
    })
    .unwrap();
    let (x, y) = problem(8000, 1);
    let (tx, ty) = problem(2000, 2);
    let mut params = net.init_params(3);
    let mut opt = Optimizer::new(OptimizerKind::Adam(Default::default()), params.len());
    let mut grads = vec![0.0; params.len()];
    let batch = 64;
    let mut ws = net.workspace(batch);
    for _epoch in 0..30 {
        for (xb, yb) in x.chunks(batch * 16).zip(y.chunks(batch)) {
            net.train_step(&mut params, &mut opt, xb, Targets::Classes(yb), &mut ws, &mut grads).unwrap();
        }
    }
    let mut pred = Vec::new();
    let mut eval_ws = net.workspace(tx.len() / 16);
    net.predict_classes(&params, &tx, &mut eval_ws, &mut pred).unwrap();
    let acc = pred.iter().zip(&ty).filter(|(a, b)| a == b).count() as f64 / ty.len() as f64;
    let mut g = vec![0.0; params.len()];
    let test_loss = net.loss_and_grad(&params, &tx, Targets::Classes(&ty), &mut eval_ws, &mut g).unwrap();
    assert!(acc >= 0.95, "test accuracy {acc}");
    assert!(test_loss <= 0.15, "test loss {test_loss}");
}

#[test]
fn every_optimizer_decreases_the_loss() {
    let net = Network::new(NetworkSpec {
        encoder: vec![16, 32],
        activation: Activation::Tanh,
        head: HeadKind::Softmax,
        outputs: 4,
    })
    .unwrap();
    let (x, y) = problem(512, 4);
    for (name, lr) in [("sgd", 0.5), ("momentum", 0.1), ("adagrad", 0.1), ("adam", 0.01)] {
        let mut params = net.init_params(5);
        let mut opt = Optimizer::new(OptimizerKind::with_lr(name, lr).unwrap(), params.len());
        let mut grads = vec![0.0; params.len()];
        let mut ws = net.workspace(512);
        let first = net.loss_and_grad(&params, &x, Targets::Classes(&y), &mut ws, &mut grads).unwrap();
        for _ in 0..50 {
            net.train_step(&mut params, &mut opt, &x, Targets::Classes(&y), &mut ws, &mut grads).unwrap();
        }
        let last = net.loss_and_grad(&params, &x, Targets::Classes(&y), &mut ws, &mut grads).unwrap();
        assert!(last < 0.8 * first, "{name}: loss {first} -> {last}");
    }
}
