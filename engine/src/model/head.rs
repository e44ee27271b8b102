//! Task heads: a final linear layer plus the loss that matches the task.

use super::dense::Dense;
use super::layout::ParamLayout;
use crate::EngineError;
use crate::kernels::activation::Activation;
use crate::kernels::loss;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// Regression: identity output, ½·MSE.
    Linear,
    /// Independent binary targets: sigmoid cross-entropy per output.
    Logistic,
    /// One class out of `outputs`: softmax cross-entropy.
    Softmax,
}

/// What a head is trained against.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Class indices, one per row (softmax heads).
    Classes(&'a [u32]),
    /// Real targets, `rows x outputs` (linear and logistic heads).
    Values(&'a [f32]),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    pub kind: HeadKind,
    pub dense: Dense,
}

impl Head {
    pub fn new(
        layout: &mut ParamLayout,
        prefix: &str,
        kind: HeadKind,
        in_dim: usize,
        outputs: usize,
    ) -> Result<Self, EngineError> {
        Ok(Self { kind, dense: Dense::new(layout, prefix, in_dim, outputs, Activation::Identity)? })
    }

    pub fn outputs(&self) -> usize {
        self.dense.out_dim
    }

    /// Mean loss of `logits` (`rows x outputs`) and its gradient w.r.t. the logits.
    pub fn loss(&self, logits: &[f32], targets: Targets, grad: &mut [f32]) -> Result<f32, EngineError> {
        match (self.kind, targets) {
            (HeadKind::Softmax, Targets::Classes(labels)) => {
                loss::softmax_cross_entropy(logits, self.outputs(), labels, grad)
            }
            (HeadKind::Logistic, Targets::Values(t)) => loss::sigmoid_bce(logits, t, grad),
            (HeadKind::Linear, Targets::Values(t)) => loss::mse(logits, t, grad),
            (kind, _) => Err(EngineError::InvalidModel(format!("{kind:?} head given the wrong kind of targets"))),
        }
    }
}
