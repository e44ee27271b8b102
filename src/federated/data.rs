//! What a federated job's nodes hold: MNIST images and Adult rows. Every process of a job loads both
//! from the fetched data folder and derives the same split from the job file, so no data ever moves.

use std::path::Path;

use crate::data::adult::{self, Adult};
use crate::data::mnist::{self, Mnist};
use crate::data::{DataDir, DataError, Samples};

pub struct JobData {
    pub mnist: Mnist,
    pub adult: Adult,
}

/// An encoder type's data: input width, classes, and the splits the master evaluates on.
pub struct TypeData<'a> {
    pub input: usize,
    pub classes: usize,
    pub train: &'a dyn Samples,
    pub val: &'a dyn Samples,
    pub test: &'a dyn Samples,
}

impl JobData {
    /// MNIST (converted at fetch time) and Adult from `dir`.
    pub fn load(dir: &DataDir) -> Result<Self, DataError> {
        Ok(Self { mnist: Mnist::load(&dir.mnist())?, adult: Adult::load(&dir.adult())? })
    }

    /// Whether everything `load` reads is there.
    pub fn is_fetched(dir: &DataDir) -> bool {
        Mnist::is_converted(&dir.mnist()) && Path::new(&dir.adult()).exists()
    }

    /// The data of encoder type `kind` (`image28x28` or `tabular-adult`; config validation admits no other).
    pub fn of_type(&self, kind: &str) -> TypeData<'_> {
        match kind {
            "tabular-adult" => TypeData {
                input: self.adult.train.dim,
                classes: adult::CLASSES,
                train: &self.adult.train,
                val: &self.adult.val,
                test: &self.adult.test,
            },
            _ => TypeData {
                input: mnist::PIXELS,
                classes: mnist::CLASSES,
                train: &self.mnist.train,
                val: &self.mnist.val,
                test: &self.mnist.test,
            },
        }
    }
}
