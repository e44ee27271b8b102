//! Optimizers with their state, applied to a whole flat parameter buffer.

use std::fmt;
use std::str::FromStr;

use crate::aligned::AlignedVec;
use crate::kernels::optim::{self, AdamParams};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    Sgd { lr: f32 },
    Momentum { lr: f32, mu: f32 },
    Adagrad { lr: f32, eps: f32 },
    Adam(AdamParams),
}

impl OptimizerKind {
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Momentum { .. } => "momentum",
            OptimizerKind::Adagrad { .. } => "adagrad",
            OptimizerKind::Adam(_) => "adam",
        }
    }

    /// The same optimizer with defaults for everything but the learning rate.
    pub fn with_lr(name: &str, lr: f32) -> Result<Self, String> {
        let mut kind: OptimizerKind = name.parse()?;
        match &mut kind {
            OptimizerKind::Sgd { lr: l }
            | OptimizerKind::Momentum { lr: l, .. }
            | OptimizerKind::Adagrad { lr: l, .. } => *l = lr,
            OptimizerKind::Adam(p) => p.lr = lr,
        }
        Ok(kind)
    }

    /// How many state buffers of the parameters' size the optimizer keeps.
    pub fn state_buffers(&self) -> usize {
        match self {
            OptimizerKind::Sgd { .. } => 0,
            OptimizerKind::Momentum { .. } | OptimizerKind::Adagrad { .. } => 1,
            OptimizerKind::Adam(_) => 2,
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OptimizerKind {
    type Err = String;
    /// Parses a name into the optimizer with its default hyper-parameters.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd { lr: 0.01 }),
            "momentum" => Ok(OptimizerKind::Momentum { lr: 0.01, mu: 0.9 }),
            "adagrad" => Ok(OptimizerKind::Adagrad { lr: 0.01, eps: 1e-10 }),
            "adam" => Ok(OptimizerKind::Adam(AdamParams::default())),
            _ => Err(format!("unknown optimizer `{s}` (expected sgd, momentum, adagrad or adam)")),
        }
    }
}

/// An optimizer and its state for a buffer of fixed length.
#[derive(Clone, Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    state: Vec<AlignedVec>,
    step: u64,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, len: usize) -> Self {
        Self { kind, state: (0..kind.state_buffers()).map(|_| AlignedVec::zeros(len)).collect(), step: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The optimizer's state buffers (momentum, accumulators, moments), for saving.
    pub fn state(&self) -> &[AlignedVec] {
        &self.state
    }

    pub fn step(&mut self, params: &mut [f32], grads: &[f32]) {
        self.step += 1;
        match (self.kind, self.state.as_mut_slice()) {
            (OptimizerKind::Sgd { lr }, _) => optim::sgd(params, grads, lr),
            (OptimizerKind::Momentum { lr, mu }, [v]) => optim::momentum(params, grads, v, lr, mu),
            (OptimizerKind::Adagrad { lr, eps }, [h]) => optim::adagrad(params, grads, h, lr, eps),
            (OptimizerKind::Adam(p), [m, v]) => optim::adam(params, grads, m, v, p, self.step),
            _ => unreachable!("state buffers are allocated to match the kind in Optimizer::new"),
        }
    }
}
