//! Real datasets: the pinned fetch step and the loaders.

pub mod adult;
mod error;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod pickle;
pub mod pins;

pub use error::DataError;
pub use fetch::DataDir;

/// Labelled rows a model trains on, whatever the dataset: batches come out as dense f32 rows.
pub trait Samples: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Floats per row.
    fn dim(&self) -> usize;
    /// Writes the rows `indices` into `x` (row after row) and their labels into `y`.
    fn fill_batch(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<u32>);
}

impl Samples for mnist::Split {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn dim(&self) -> usize {
        mnist::PIXELS
    }
    fn fill_batch(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        mnist::Split::fill_batch(self, indices, x, y)
    }
}

impl Samples for adult::Table {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn fill_batch(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        adult::Table::fill_batch(self, indices, x, y)
    }
}
