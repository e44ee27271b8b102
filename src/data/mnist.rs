//! MNIST: conversion of the pinned pickle into IDX files at fetch time, and the loader used for training.

use std::path::{Path, PathBuf};

use super::error::{DataError, io_err};
use super::idx::{encode_u8, read_u8, write_atomic};
use super::pickle::{self, Value};
use super::pins::MNIST_SPLITS;

pub const ROWS: usize = 28;
pub const COLS: usize = 28;
pub const PIXELS: usize = ROWS * COLS;
pub const CLASSES: usize = 10;

/// One split: `n` images of 28x28 bytes and their labels.
#[derive(Clone, Debug)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Writes the images `indices` as floats in [0, 1] into `x` and their labels into `y`.
    pub fn fill_batch(&self, indices: &[usize], x: &mut Vec<f32>, y: &mut Vec<u32>) {
        x.clear();
        y.clear();
        for &i in indices {
            x.extend(self.pixels[i * PIXELS..(i + 1) * PIXELS].iter().map(|&p| p as f32 * (1.0 / 255.0)));
            y.push(self.labels[i] as u32);
        }
    }
}

#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Split,
    pub val: Split,
    pub test: Split,
}

fn idx_paths(dir: &Path, split: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{split}-images.idx")), dir.join(format!("{split}-labels.idx")))
}

impl Mnist {
    /// Loads the converted IDX files from `dir` (`data/mnist` by default).
    pub fn load(dir: &Path) -> Result<Self, DataError> {
        let mut splits = Vec::new();
        for (name, n) in MNIST_SPLITS {
            let (ip, lp) = idx_paths(dir, name);
            let images = read_u8(&ip)?;
            let labels = read_u8(&lp)?;
            if images.dims != [n, ROWS, COLS] {
                return Err(DataError::Format {
                    path: ip,
                    detail: format!("dimensions {:?}, expected [{n}, {ROWS}, {COLS}]", images.dims),
                });
            }
            if labels.dims != [n] {
                return Err(DataError::Format {
                    path: lp,
                    detail: format!("dimensions {:?}, expected [{n}]", labels.dims),
                });
            }
            if let Some(bad) = labels.data.iter().find(|&&l| l as usize >= CLASSES) {
                return Err(DataError::Format { path: lp, detail: format!("label {bad} is not a digit") });
            }
            splits.push(Split { pixels: images.data, labels: labels.data });
        }
        let test = splits.pop().unwrap();
        let val = splits.pop().unwrap();
        let train = splits.pop().unwrap();
        Ok(Self { train, val, test })
    }

    pub fn is_converted(dir: &Path) -> bool {
        MNIST_SPLITS.iter().all(|(name, _)| {
            let (i, l) = idx_paths(dir, name);
            i.exists() && l.exists()
        })
    }
}

/// Converts the pinned `mnist.pkl.gz` into six IDX files in `out_dir`.
///
/// The pickle stores each pixel as float32 `byte / 256`; the conversion recovers the byte exactly and
/// refuses any value that is not of that form, so a silently altered file cannot slip through.
pub fn convert_pickle(pkl_gz: &Path, out_dir: &Path) -> Result<(), DataError> {
    use std::io::Read;
    let file = std::fs::File::open(pkl_gz).map_err(io_err(pkl_gz))?;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file)
        .take(512 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| DataError::Format { path: pkl_gz.to_path_buf(), detail: format!("gzip: {e}") })?;
    let bad = |detail: String| DataError::Format { path: pkl_gz.to_path_buf(), detail };
    let top = pickle::parse(&raw).map_err(|e| DataError::Pickle {
        path: pkl_gz.to_path_buf(),
        offset: e.offset,
        detail: e.detail,
    })?;
    let Value::Tuple(splits) = top else { return Err(bad("top level is not a tuple of splits".into())) };
    if splits.len() != MNIST_SPLITS.len() {
        return Err(bad(format!("{} splits, expected 3", splits.len())));
    }
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    for (split, (name, n)) in splits.iter().zip(MNIST_SPLITS) {
        let Value::Tuple(pair) = split else { return Err(bad(format!("{name}: not an (images, labels) pair"))) };
        let [xs, ys] = pair.as_slice() else { return Err(bad(format!("{name}: not an (images, labels) pair"))) };
        let x = pickle::ndarray(xs, &raw).map_err(|e| bad(format!("{name} images: {e}")))?;
        let y = pickle::ndarray(ys, &raw).map_err(|e| bad(format!("{name} labels: {e}")))?;
        if x.shape != [n, PIXELS] || x.dtype != "f4" {
            return Err(bad(format!("{name} images: {:?} {}, expected [{n}, {PIXELS}] f4", x.shape, x.dtype)));
        }
        if y.shape != [n] || y.dtype != "i8" {
            return Err(bad(format!("{name} labels: {:?} {}, expected [{n}] i8", y.shape, y.dtype)));
        }
        let mut pixels = Vec::with_capacity(n * PIXELS);
        for chunk in raw[x.data.clone()].chunks_exact(4) {
            let v = f32::from_le_bytes(chunk.try_into().unwrap()) * 256.0;
            if !(0.0..=255.0).contains(&v) || v.fract() != 0.0 {
                return Err(bad(format!("{name} images: pixel value {} is not byte/256", v / 256.0)));
            }
            pixels.push(v as u8);
        }
        let mut labels = Vec::with_capacity(n);
        for chunk in raw[y.data.clone()].chunks_exact(8) {
            let l = i64::from_le_bytes(chunk.try_into().unwrap());
            if !(0..CLASSES as i64).contains(&l) {
                return Err(bad(format!("{name} labels: {l} is not a digit")));
            }
            labels.push(l as u8);
        }
        let (ip, lp) = idx_paths(out_dir, name);
        write_atomic(&ip, &encode_u8(&[n, ROWS, COLS], &pixels))?;
        write_atomic(&lp, &encode_u8(&[n], &labels))?;
    }
    Ok(())
}
