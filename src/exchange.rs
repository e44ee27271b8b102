//! Moving parameters between a shoal store and the formats PyTorch and numpy read: a `.safetensors` file
//! or a folder of `.npy` files (one per tensor, plus `manifest.txt` listing them in layout order).
//!
//! Export takes the committed version. Import builds a new store from either format with the same
//! names, shapes and order. Only little-endian f32 in C order is accepted; anything else is refused with
//! the file and the reason.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use shoal_engine::model::ParamLayout;
use shoal_engine::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{path}: {detail}")]
    Format { path: PathBuf, detail: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExchangeError + '_ {
    move |cause| ExchangeError::Io { path: path.to_path_buf(), cause }
}

fn bad(path: &Path, detail: impl Into<String>) -> ExchangeError {
    ExchangeError::Format { path: path.to_path_buf(), detail: detail.into() }
}

const ORDER_KEY: &str = "shoal.order";

/// Writes the store's committed version to `out` as safetensors; the tensor order, version and counters
/// go into the file's metadata.
pub fn export_safetensors(store: &Store, out: &Path) -> Result<(), ExchangeError> {
    let params = store.params();
    let views = store
        .tensors()
        .iter()
        .map(|t| {
            let bytes: &[u8] = bytemuck::cast_slice(&params[t.offset..t.offset + t.len]);
            let view = TensorView::new(Dtype::F32, t.shape.clone(), bytes).map_err(|e| bad(out, e.to_string()))?;
            Ok((t.name.clone(), view))
        })
        .collect::<Result<Vec<_>, ExchangeError>>()?;
    let mut meta = HashMap::new();
    meta.insert(ORDER_KEY.to_string(), store.tensors().iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","));
    meta.insert("shoal.version".to_string(), store.version().to_string());
    for (name, value) in store.counters() {
        meta.insert(format!("shoal.counter.{name}"), value.to_string());
    }
    safetensors::serialize_to_file(views, Some(meta), out).map_err(|e| bad(out, e.to_string()))
}

/// The npy v1.0 header for a little-endian f32 C-order array of `shape`, padded so data starts on a
/// 64-byte boundary.
pub fn npy_header(shape: &[usize]) -> Vec<u8> {
    npy_header_of("<f4", shape)
}

/// The npy v1.0 header for a little-endian C-order array of numpy type `descr` (`<f4`, `<u8`).
pub fn npy_header_of(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    let total = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Parses an `.npy` file's bytes: returns the shape and the f32 data. Only `<f4`, C order.
pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<f32>), ExchangeError> {
    let (shape, data) = parse_npy_of(bytes, path, "<f4", "little-endian float32")?;
    Ok((shape, data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
}

/// Parses an `.npy` file of little-endian uint64 (`<u8`): its shape and values.
pub fn parse_npy_u64(bytes: &[u8], path: &Path) -> Result<(Vec<usize>, Vec<u64>), ExchangeError> {
    let (shape, data) = parse_npy_of(bytes, path, "<u8", "little-endian uint64")?;
    Ok((shape, data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()))
}

/// Parses an `.npy` file whose dtype must be `descr` (4- or 8-byte elements): its shape and data bytes.
fn parse_npy_of<'a>(
    bytes: &'a [u8],
    path: &Path,
    descr_want: &str,
    what: &str,
) -> Result<(Vec<usize>, &'a [u8]), ExchangeError> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad(path, "not an .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| bad(path, "truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, ".npy header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr").ok_or_else(|| bad(path, ".npy header has no descr"))?;
    if !descr.starts_with(&format!("'{descr_want}'")) {
        return Err(bad(
            path,
            format!("dtype {} is not {what} ('{descr_want}')", descr.split(',').next().unwrap_or("")),
        ));
    }
    let size = if descr_want.ends_with('8') { 8 } else { 4 };
    if !field("fortran_order").is_some_and(|f| f.starts_with("False")) {
        return Err(bad(path, "Fortran-ordered arrays are not supported"));
    }
    let shape_text = field("shape").ok_or_else(|| bad(path, ".npy header has no shape"))?;
    let inner =
        shape_text.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad(path, "malformed shape"))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad(path, format!("malformed shape entry `{s}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(path, "shape overflows"))?;
    let data = &bytes[start + header_len..];
    if Some(data.len()) != count.checked_mul(size) {
        return Err(bad(
            path,
            format!("shape {shape:?} needs {} bytes of data, the file has {}", count.saturating_mul(size), data.len()),
        ));
    }
    Ok((shape, data))
}

fn check_name(name: &str, out: &Path) -> Result<(), ExchangeError> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return Err(bad(out, format!("tensor name `{name}` cannot be a file name")));
    }
    Ok(())
}

/// Writes the store's committed version to the folder `out` (created if missing): `NAME.npy` per tensor
/// and `manifest.txt` with the names in layout order.
pub fn export_npy(store: &Store, out: &Path) -> Result<(), ExchangeError> {
    fs::create_dir_all(out).map_err(io(out))?;
    let params = store.params();
    let mut manifest = String::new();
    for t in store.tensors() {
        check_name(&t.name, out)?;
        let path = out.join(format!("{}.npy", t.name));
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(&npy_header(&t.shape)).map_err(io(&path))?;
        f.write_all(bytemuck::cast_slice(&params[t.offset..t.offset + t.len])).map_err(io(&path))?;
        manifest.push_str(&t.name);
        manifest.push('\n');
    }
    let path = out.join("manifest.txt");
    fs::write(&path, manifest).map_err(io(&path))
}

/// Writes a sparse table's committed rows (as this handle sees them: a freshly opened table holds
/// exactly its committed version) to the folder `out`: `ids.npy` (uint64, in row order),
/// `values.npy` (float32, rows x dim), `state.npy` (float32, rows x state floats, if the table keeps
/// optimizer state) and `manifest.txt`.
pub fn export_sparse_npy(table: &shoal_engine::store::SparseTable, out: &Path) -> Result<(), ExchangeError> {
    fs::create_dir_all(out).map_err(io(out))?;
    let rows = table.committed_rows();
    let (dim, width) = (table.dim(), table.row_floats());
    let ids: Vec<u64> = table.ids().take(rows as usize).collect();
    let write = |name: &str, header: Vec<u8>, body: &[u8]| -> Result<(), ExchangeError> {
        let path = out.join(name);
        let mut f = fs::File::create(&path).map_err(io(&path))?;
        f.write_all(&header).map_err(io(&path))?;
        f.write_all(body).map_err(io(&path))
    };
    write("ids.npy", npy_header_of("<u8", &[ids.len()]), bytemuck::cast_slice(&ids))?;
    let mut values = Vec::with_capacity(ids.len() * dim);
    let mut state = Vec::with_capacity(ids.len() * (width - dim));
    for r in 0..rows {
        let row = table.row_at(r).expect("row below the committed count");
        values.extend_from_slice(&row[..dim]);
        state.extend_from_slice(&row[dim..]);
    }
    write("values.npy", npy_header(&[ids.len(), dim]), bytemuck::cast_slice(&values))?;
    let mut manifest = "ids\nvalues\n".to_string();
    if width > dim {
        write("state.npy", npy_header(&[ids.len(), width - dim]), bytemuck::cast_slice(&state))?;
        manifest.push_str(&format!("state {}\n", table.superblock().label));
    }
    let path = out.join("manifest.txt");
    fs::write(&path, manifest).map_err(io(&path))
}

/// Builds a new sparse table at `out` from a folder written by [`export_sparse_npy`] (or by numpy:
/// `ids.npy` uint64 `[n]`, `values.npy` float32 `[n, dim]`, optionally `state.npy` float32 `[n, s]` and
/// `manifest.txt` naming the state's label), committed as version 1.
pub fn import_sparse_npy(dir: &Path, out: &Path) -> Result<shoal_engine::store::SparseTable, ExchangeError> {
    use shoal_engine::store::{SparseTable, TableSpec};
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read(&path).map(|b| (path.clone(), b)).map_err(io(&path))
    };
    let (ids_path, ids_bytes) = read("ids.npy")?;
    let (ids_shape, ids) = parse_npy_u64(&ids_bytes, &ids_path)?;
    let (values_path, values_bytes) = read("values.npy")?;
    let (vshape, values) = parse_npy(&values_bytes, &values_path)?;
    let n = ids.len();
    if ids_shape.len() != 1 || vshape.len() != 2 || vshape[0] != n || vshape[1] == 0 {
        return Err(bad(
            &values_path,
            format!("shapes {ids_shape:?} (ids) and {vshape:?} (values) do not describe n rows"),
        ));
    }
    let dim = vshape[1];
    let (state_width, state, label) = if dir.join("state.npy").exists() {
        let (path, bytes) = read("state.npy")?;
        let (shape, state) = parse_npy(&bytes, &path)?;
        if shape.len() != 2 || shape[0] != n {
            return Err(bad(&path, format!("shape {shape:?} does not have the {n} rows of ids.npy")));
        }
        let manifest = fs::read_to_string(dir.join("manifest.txt")).unwrap_or_default();
        let label = manifest.lines().find_map(|l| l.strip_prefix("state ")).unwrap_or("").trim().to_string();
        (shape[1], state, label)
    } else {
        (0, Vec::new(), String::new())
    };
    let mut table = SparseTable::create(out, &TableSpec::new(dim).with_state(state_width, &label))?;
    let mut seen = std::collections::HashSet::with_capacity(n);
    for (r, &id) in ids.iter().enumerate() {
        if !seen.insert(id) {
            drop(table);
            let _ = fs::remove_file(out);
            return Err(bad(&ids_path, format!("id {id} appears twice (row {r})")));
        }
        let row = table.get_or_insert_with(id, |_| {})?;
        row[..dim].copy_from_slice(&values[r * dim..(r + 1) * dim]);
        row[dim..].copy_from_slice(&state[r * state_width..(r + 1) * state_width]);
    }
    table.commit(&[])?;
    Ok(table)
}

/// Builds a new store at `out` from a `.safetensors` file or an `.npy` folder.
pub fn import(input: &Path, out: &Path) -> Result<Store, ExchangeError> {
    let tensors = if input.is_dir() { read_npy_dir(input)? } else { read_safetensors(input)? };
    let mut layout = ParamLayout::new();
    for (name, shape, _) in &tensors {
        layout.push(name.clone(), shape).map_err(|e| bad(input, e.to_string()))?;
    }
    let mut data = vec![0.0f32; layout.total_len()];
    for (slot, (_, _, values)) in layout.slots().iter().zip(&tensors) {
        data[slot.range()].copy_from_slice(values);
    }
    Ok(Store::create(out, &layout, &data)?)
}

type Named = (String, Vec<usize>, Vec<f32>);

fn read_safetensors(path: &Path) -> Result<Vec<Named>, ExchangeError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    if let Some(order) = meta.metadata().as_ref().and_then(|m| m.get(ORDER_KEY)) {
        let ordered: Vec<String> = order.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
        let mut check = ordered.clone();
        check.sort();
        if check != names {
            return Err(bad(path, format!("metadata `{ORDER_KEY}` does not list exactly the file's tensors")));
        }
        names = ordered;
    }
    names
        .into_iter()
        .map(|name| {
            let t = st.tensor(&name).map_err(|e| bad(path, e.to_string()))?;
            if t.dtype() != Dtype::F32 {
                return Err(bad(path, format!("tensor `{name}` is {:?}, only F32 can be imported", t.dtype())));
            }
            let values = t.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            Ok((name, t.shape().to_vec(), values))
        })
        .collect()
}

fn read_npy_dir(dir: &Path) -> Result<Vec<Named>, ExchangeError> {
    let manifest = dir.join("manifest.txt");
    let names: Vec<String> = if manifest.exists() {
        fs::read_to_string(&manifest)
            .map_err(io(&manifest))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    } else {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".npy").map(String::from))
            .collect();
        names.sort();
        names
    };
    if names.is_empty() {
        return Err(bad(dir, "no .npy files to import"));
    }
    names
        .into_iter()
        .map(|name| {
            check_name(&name, dir)?;
            let path = dir.join(format!("{name}.npy"));
            let bytes = fs::read(&path).map_err(io(&path))?;
            let (shape, values) = parse_npy(&bytes, &path)?;
            Ok((name, shape, values))
        })
        .collect()
}
