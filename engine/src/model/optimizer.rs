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
        let mut state = self.state.iter_mut().map(|s| s.as_mut_slice());
        let (a, b) = (state.next(), state.next());
        apply(self.kind, self.step, params, grads, a, b);
    }

    /// `grads = Σ weights[i] · inputs[i]`, then one step with those gradients: the same result, bit for
    /// bit, as [`weighted_sum`](crate::kernels::weighted_sum) followed by [`Optimizer::step`], in one
    /// parallel pass. Each tile of `grads` is summed and applied to its tile of `params` (and of the
    /// state) while it is in cache, and the step no longer runs on one thread after the sum.
    ///
    /// # Panics
    /// If `weights.len() != inputs.len()` or any input, `grads` or `params` differ in length from the
    /// optimizer's state.
    pub fn step_weighted(&mut self, params: &mut [f32], grads: &mut [f32], inputs: &[&[f32]], weights: &[f32]) {
        use crate::kernels::aggregate::{PARALLEL_MIN, TILE, tile_sum};
        use rayon::prelude::*;
        assert_eq!(inputs.len(), weights.len(), "step_weighted: one weight per input");
        assert_eq!(params.len(), grads.len(), "step_weighted: params and grads differ in length");
        for x in inputs {
            assert_eq!(x.len(), grads.len(), "step_weighted: input length differs from the gradient's");
        }
        for s in &self.state {
            assert_eq!(s.len(), params.len(), "step_weighted: the optimizer was made for another length");
        }
        self.step += 1;
        let (kind, t, len) = (self.kind, self.step, params.len());
        let mut state = self.state.iter_mut().map(|s| s.as_mut_slice().chunks_mut(TILE));
        let (mut a, mut b) = (state.next(), state.next());
        let tiles: Vec<_> = params
            .chunks_mut(TILE)
            .zip(grads.chunks_mut(TILE))
            .enumerate()
            .map(|(i, (params, grads))| Tile {
                start: i * TILE,
                params,
                grads,
                a: a.as_mut().and_then(Iterator::next),
                b: b.as_mut().and_then(Iterator::next),
            })
            .collect();
        let run = |tile: Tile| {
            tile_sum(inputs, weights, tile.start, tile.grads);
            apply(kind, t, tile.params, tile.grads, tile.a, tile.b);
        };
        if len < PARALLEL_MIN || rayon::current_num_threads() == 1 {
            tiles.into_iter().for_each(run);
        } else {
            tiles.into_par_iter().for_each(run);
        }
    }
}

/// One tile of [`Optimizer::step_weighted`]: where it starts, and its pieces of every buffer.
struct Tile<'a> {
    start: usize,
    params: &'a mut [f32],
    grads: &'a mut [f32],
    a: Option<&'a mut [f32]>,
    b: Option<&'a mut [f32]>,
}

/// One optimizer update of `params` with `grads` and the state buffers `a`, `b` (as many as the kind
/// keeps), at step `t`. Every kernel is elementwise, so any tiling of the buffers gives the same result.
fn apply(kind: OptimizerKind, t: u64, params: &mut [f32], grads: &[f32], a: Option<&mut [f32]>, b: Option<&mut [f32]>) {
    match (kind, a, b) {
        (OptimizerKind::Sgd { lr }, _, _) => optim::sgd(params, grads, lr),
        (OptimizerKind::Momentum { lr, mu }, Some(v), _) => optim::momentum(params, grads, v, lr, mu),
        (OptimizerKind::Adagrad { lr, eps }, Some(h), _) => optim::adagrad(params, grads, h, lr, eps),
        (OptimizerKind::Adam(p), Some(m), Some(v)) => optim::adam(params, grads, m, v, p, t),
        _ => unreachable!("state buffers are allocated to match the kind in Optimizer::new"),
    }
}
