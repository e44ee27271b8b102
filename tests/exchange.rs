//! Export to safetensors / .npy and import back: the round trip is exact, and bad inputs are refused.

use std::path::PathBuf;

use shoal::exchange::{export_npy, export_safetensors, import, npy_header, parse_npy};
use shoal_engine::model::ParamLayout;
use shoal_engine::store::Store;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("exchange-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A committed store with tensors of rank 0..=3 and distinctive values (including -0.0, NaN, subnormals).
pub fn sample_store(path: &std::path::Path) -> Store {
    let mut layout = ParamLayout::new();
    layout.push("encoder.0.weight", &[7, 5]).unwrap();
    layout.push("encoder.0.bias", &[5]).unwrap();
    layout.push("head.weight", &[2, 3, 4]).unwrap();
    layout.push("scale", &[]).unwrap();
    let mut store = Store::create(path, &layout, &vec![0.0; layout.total_len()]).unwrap();
    let specials = [-0.0f32, f32::NAN, 1e-40, f32::MAX, -1.5];
    for (i, x) in store.params_mut().unwrap().iter_mut().enumerate() {
        *x = if i < specials.len() { specials[i] } else { i as f32 * 0.25 - 3.0 };
    }
    store.commit(&[("round", 4)]).unwrap();
    store
}

fn same_tensors(a: &Store, b: &Store) {
    assert_eq!(a.tensors().len(), b.tensors().len());
    for (ta, tb) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!((&ta.name, &ta.shape), (&tb.name, &tb.shape));
        let (va, vb) = (a.tensor(&ta.name).unwrap(), b.tensor(&tb.name).unwrap());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(va), bits(vb), "{}", ta.name);
    }
}

#[test]
fn safetensors_round_trip_is_bit_exact_and_keeps_order() {
    let dir = scratch("st");
    let store = sample_store(&dir.join("a.shoal"));
    export_safetensors(&store, &dir.join("a.safetensors")).unwrap();
    let back = import(&dir.join("a.safetensors"), &dir.join("b.shoal")).unwrap();
    same_tensors(&store, &back);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npy_round_trip_is_bit_exact_and_keeps_order() {
    let dir = scratch("npy");
    let store = sample_store(&dir.join("a.shoal"));
    export_npy(&store, &dir.join("npy")).unwrap();
    let back = import(&dir.join("npy"), &dir.join("b.shoal")).unwrap();
    same_tensors(&store, &back);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn npy_headers_follow_the_format() {
    for shape in [vec![], vec![3], vec![7, 5], vec![2, 3, 4]] {
        let h = npy_header(&shape);
        assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
        assert_eq!(h.len() % 64, 0, "data starts on a 64-byte boundary");
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
        assert_eq!(*h.last().unwrap(), b'\n');
        let n: usize = shape.iter().product();
        let mut file = h.clone();
        file.extend((0..n).flat_map(|i| (i as f32).to_le_bytes()));
        let (s, v) = parse_npy(&file, std::path::Path::new("x.npy")).unwrap();
        assert_eq!((s, v.len()), (shape, n));
    }
}

#[test]
fn bad_inputs_are_refused_with_the_file_named() {
    let dir = scratch("bad");
    let store = sample_store(&dir.join("a.shoal"));
    export_npy(&store, &dir.join("npy")).unwrap();
    // Truncated data.
    let p = dir.join("npy").join("encoder.0.bias.npy");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
    let err = import(&dir.join("npy"), &dir.join("b.shoal")).unwrap_err().to_string();
    assert!(err.contains("encoder.0.bias.npy") && err.contains("needs 20 bytes"), "{err}");
    // Wrong dtype.
    let mut f64_file = bytes.clone();
    let text = String::from_utf8_lossy(&f64_file[10..]).replace("'<f4'", "'<f8'");
    f64_file.splice(10.., text.into_bytes());
    std::fs::write(&p, &f64_file).unwrap();
    let err = import(&dir.join("npy"), &dir.join("c.shoal")).unwrap_err().to_string();
    assert!(err.contains("not little-endian float32"), "{err}");
    // Not a safetensors file at all.
    std::fs::write(dir.join("junk.safetensors"), b"junk").unwrap();
    let err = import(&dir.join("junk.safetensors"), &dir.join("d.shoal")).unwrap_err().to_string();
    assert!(err.contains("junk.safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
