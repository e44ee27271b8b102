//! A fully connected layer: Z = X·W + b, A = act(Z). W is `in x out`, row-major.

use super::layout::ParamLayout;
use crate::EngineError;
use crate::gemm::{MatRef, gemm};
use crate::kernels::activation::{self, Activation, add_bias_rows, bias_grad_rows};

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub in_dim: usize,
    pub out_dim: usize,
    pub act: Activation,
    /// Slot index of W in the layout.
    pub weight: usize,
    /// Slot index of b in the layout.
    pub bias: usize,
}

impl Dense {
    /// Registers `{prefix}.weight` and `{prefix}.bias` in `layout`.
    pub fn new(
        layout: &mut ParamLayout,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        act: Activation,
    ) -> Result<Self, EngineError> {
        if in_dim == 0 || out_dim == 0 {
            return Err(EngineError::InvalidModel(format!("layer `{prefix}` has a zero dimension")));
        }
        let weight = layout.push(format!("{prefix}.weight"), &[in_dim, out_dim])?;
        let bias = layout.push(format!("{prefix}.bias"), &[out_dim])?;
        Ok(Self { in_dim, out_dim, act, weight, bias })
    }

    /// Writes Z and A (each `batch x out`) for input X (`batch x in`).
    pub fn forward(&self, layout: &ParamLayout, params: &[f32], x: &[f32], z: &mut [f32], a: &mut [f32]) {
        let batch = x.len() / self.in_dim;
        let w = layout.view(params, self.weight);
        gemm(1.0, MatRef::new(x, batch, self.in_dim), MatRef::new(w, self.in_dim, self.out_dim), 0.0, z);
        add_bias_rows(z, layout.view(params, self.bias));
        activation::forward(self.act, z, a);
    }

    /// Given dA (`batch x out`), writes dZ into `dz`, writes (not adds) dW and db into this layer's slots
    /// of `grads` (a buffer with the same layout as `params`), and writes dX (`batch x in`) if asked.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        layout: &ParamLayout,
        params: &[f32],
        x: &[f32],
        z: &[f32],
        a: &[f32],
        da: &[f32],
        dz: &mut [f32],
        grads: &mut [f32],
        dx: Option<&mut [f32]>,
    ) {
        let batch = x.len() / self.in_dim;
        activation::backward(self.act, z, a, da, dz);
        let xm = MatRef::new(x, batch, self.in_dim);
        let dzm = MatRef::new(dz, batch, self.out_dim);
        gemm(1.0, xm.t(), dzm, 0.0, layout.view_mut(grads, self.weight));
        let db = layout.view_mut(grads, self.bias);
        db.fill(0.0);
        bias_grad_rows(dz, db);
        if let Some(dx) = dx {
            let w = layout.view(params, self.weight);
            gemm(1.0, dzm, MatRef::new(w, self.in_dim, self.out_dim).t(), 0.0, dx);
        }
    }
}
