//! The IDX format (MNIST's native one): a big-endian header `0 0 type ndim`, ndim u32 dimensions, then
//! the data. shoal stores MNIST as u8 IDX files (type 0x08) after conversion.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::error::{DataError, io_err};

/// An unsigned-byte IDX tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct IdxU8 {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn format_err(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::Format { path: path.to_path_buf(), detail: detail.into() }
}

/// Parses an IDX u8 file's bytes; `path` only names the file in errors.
pub fn parse_u8(bytes: &[u8], path: &Path) -> Result<IdxU8, DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_err(path, "not an IDX file (bad magic)"));
    }
    if bytes[2] != 0x08 {
        return Err(format_err(path, format!("IDX element type 0x{:02x}, expected unsigned byte (0x08)", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    if ndim == 0 || ndim > 4 {
        return Err(format_err(path, format!("IDX with {ndim} dimensions")));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format_err(path, "truncated IDX header"));
    }
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match count {
        Some(n) if n == bytes.len() - header => Ok(IdxU8 { dims, data: bytes[header..].to_vec() }),
        Some(n) => Err(format_err(
            path,
            format!("IDX dimensions {dims:?} need {n} bytes of data, the file has {}", bytes.len() - header),
        )),
        None => Err(format_err(path, "IDX dimensions overflow")),
    }
}

pub fn read_u8(path: &Path) -> Result<IdxU8, DataError> {
    if !path.exists() {
        return Err(DataError::NotFetched { path: path.to_path_buf() });
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    parse_u8(&bytes, path)
}

pub fn encode_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Writes atomically: a temporary file in the same folder, synced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    let tmp = path.with_extension("partial");
    let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_u8(&bytes, Path::new("fuzz.idx"));
        }
    }

    #[test]
    fn round_trip_and_errors_name_the_file() {
        let p = Path::new("x.idx");
        let bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(parse_u8(&bytes, p).unwrap(), IdxU8 { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] });
        let err = parse_u8(&bytes[..bytes.len() - 1], p).unwrap_err().to_string();
        assert!(err.starts_with("x.idx:") && err.contains("need 6 bytes"), "{err}");
        assert!(parse_u8(&[1, 2, 3], p).unwrap_err().to_string().contains("bad magic"));
        let mut wrong = bytes.clone();
        wrong[2] = 0x0d;
        assert!(parse_u8(&wrong, p).unwrap_err().to_string().contains("0x0d"));
    }
}
