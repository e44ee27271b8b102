//! A sum-pooled embedding bag over a hashed table: sparse categorical features in, a dense vector out.

use super::layout::ParamLayout;
use crate::EngineError;
use crate::kernels::sparse::{Bags, SparseGrad, embedding_bag_backward, embedding_bag_sum};

#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddingBag {
    pub rows: usize,
    pub dim: usize,
    /// Slot index of the table (`rows x dim`).
    pub table: usize,
}

impl EmbeddingBag {
    pub fn new(layout: &mut ParamLayout, name: &str, rows: usize, dim: usize) -> Result<Self, EngineError> {
        if rows == 0 || dim == 0 || rows > u32::MAX as usize {
            return Err(EngineError::InvalidModel(format!("embedding `{name}` needs 1..=2^32-1 rows and dim >= 1")));
        }
        let table = layout.push(name, &[rows, dim])?;
        Ok(Self { rows, dim, table })
    }

    /// `out[b]` = sum of the rows of bag b's ids.
    pub fn forward(&self, layout: &ParamLayout, params: &[f32], bags: &Bags, out: &mut [f32]) {
        embedding_bag_sum(layout.view(params, self.table), self.dim, bags, out);
    }

    /// Row gradients for the table, given d(out).
    pub fn backward(&self, bags: &Bags, dout: &[f32]) -> SparseGrad {
        embedding_bag_backward(self.rows, self.dim, bags, dout)
    }
}
