//! `shoal demo`: train an MLP on real MNIST on this machine, with progress, and report test accuracy.
//!
//! Until the federated job lands this is the README's main command: it proves the data step, the engine
//! and the training loop on the real dataset, end to end.

use std::time::Instant;

use shoal_engine::EngineError;
use shoal_engine::kernels::Activation;
use shoal_engine::model::{HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, SplitMix, Targets};

use crate::data::mnist::{CLASSES, Mnist, PIXELS};

#[derive(Clone, Debug)]
pub struct DemoConfig {
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub optimizer: OptimizerKind,
    pub epochs: usize,
    pub batch: usize,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            hidden: vec![256, 128],
            activation: Activation::Relu,
            optimizer: OptimizerKind::Momentum { lr: 0.05, mu: 0.9 },
            epochs: 8,
            batch: 64,
            seed: 1,
        }
    }
}

/// Progress events, for the CLI to draw.
pub enum Event<'a> {
    EpochStart { epoch: usize, batches: usize },
    Batch { loss: f32 },
    EpochEnd { epoch: usize, train_loss: f64, val_accuracy: f64, samples_per_sec: f64 },
    Done(&'a DemoReport),
}

#[derive(Clone, Debug)]
pub struct DemoReport {
    pub test_accuracy: f64,
    pub val_accuracy: f64,
    pub epochs: usize,
    pub train_seconds: f64,
    pub samples_per_sec: f64,
    pub parameters: usize,
}

pub fn accuracy(net: &Network, params: &[f32], split: &dyn crate::data::Samples) -> Result<f64, EngineError> {
    let mut ws = net.workspace(1000);
    let (mut x, mut y, mut pred) = (Vec::new(), Vec::new(), Vec::new());
    let mut correct = 0usize;
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(1000) {
        split.fill_batch(chunk, &mut x, &mut y);
        net.predict_classes(params, &x, &mut ws, &mut pred)?;
        correct += pred.iter().zip(&y).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / split.len().max(1) as f64)
}

pub fn run(data: &Mnist, cfg: &DemoConfig, mut progress: impl FnMut(Event)) -> Result<DemoReport, EngineError> {
    let mut encoder = vec![PIXELS];
    encoder.extend(&cfg.hidden);
    let net =
        Network::new(NetworkSpec { encoder, activation: cfg.activation, head: HeadKind::Softmax, outputs: CLASSES })?;
    let mut params = net.init_params(cfg.seed);
    let mut grads = vec![0.0; params.len()];
    let mut opt = Optimizer::new(cfg.optimizer, params.len());
    let mut ws = net.workspace(cfg.batch);
    let mut rng = SplitMix::new(cfg.seed ^ 0x5eed);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let batches = order.len().div_ceil(cfg.batch);
    let mut train_seconds = 0.0;
    let mut val_accuracy = 0.0;
    for epoch in 1..=cfg.epochs {
        rng.shuffle(&mut order);
        progress(Event::EpochStart { epoch, batches });
        let start = Instant::now();
        let mut total = 0.0f64;
        for chunk in order.chunks(cfg.batch) {
            data.train.fill_batch(chunk, &mut x, &mut y);
            let loss = net.train_step(&mut params, &mut opt, &x, Targets::Classes(&y), &mut ws, &mut grads)?;
            total += loss as f64 * chunk.len() as f64;
            progress(Event::Batch { loss });
        }
        let secs = start.elapsed().as_secs_f64();
        train_seconds += secs;
        val_accuracy = accuracy(&net, &params, &data.val)?;
        progress(Event::EpochEnd {
            epoch,
            train_loss: total / order.len() as f64,
            val_accuracy,
            samples_per_sec: order.len() as f64 / secs,
        });
    }
    let report = DemoReport {
        test_accuracy: accuracy(&net, &params, &data.test)?,
        val_accuracy,
        epochs: cfg.epochs,
        train_seconds,
        samples_per_sec: (cfg.epochs * order.len()) as f64 / train_seconds.max(1e-9),
        parameters: net.layout.param_count(),
    };
    progress(Event::Done(&report));
    Ok(report)
}
