//! The `shoal` binary as a user runs it: real processes, real files.

use std::path::PathBuf;
use std::process::Command;

fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn info_names_the_instruction_set_of_every_kernel_family() {
    let out = shoal().arg("info").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for family in ["gemm", "blas-1 / aggregation", "activations / losses", "optimizers", "sparse rows", "rayon threads"]
    {
        assert!(text.contains(family), "missing {family} in:\n{text}");
    }
    let best = shoal_engine::Isa::supported()[0];
    assert!(text.contains(best.label()), "GEMM should use {} here:\n{text}", best.label());
}

#[test]
fn help_explains_every_command() {
    let out = shoal().arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["info", "data", "demo"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn demo_with_a_bad_option_fails_in_one_line() {
    let out = shoal().args(["demo", "--lr", "-1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--lr"), "{err}");
}

#[test]
fn corrupt_dataset_is_reported_with_its_path() {
    let dir = scratch("corrupt");
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for split in ["train", "val", "test"] {
        std::fs::write(mnist.join(format!("{split}-images.idx")), [0u8, 0, 8, 3, 0, 0, 0]).unwrap();
        std::fs::write(mnist.join(format!("{split}-labels.idx")), [0u8, 0, 8, 1, 0, 0, 0, 0]).unwrap();
    }
    let out = shoal().args(["demo", "--quiet", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("train-images.idx") && err.contains("truncated"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_without_data_says_to_fetch() {
    let dir = scratch("empty");
    let out = shoal().args(["data", "verify", "--data-dir"]).arg(&dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("shoal data fetch"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_shows_the_store_and_verify_catches_a_flipped_bit() {
    use shoal_engine::model::ParamLayout;
    use shoal_engine::store::Store;
    let dir = scratch("inspect");
    let path = dir.join("model.shoal");
    let mut layout = ParamLayout::new();
    layout.push("encoder.0.weight", &[8, 4]).unwrap();
    layout.push("head.bias", &[3]).unwrap();
    let mut store = Store::create(&path, &layout, &vec![0.25; layout.total_len()]).unwrap();
    store.params_mut().unwrap()[0] = 1.0;
    store.commit(&[("round", 7)]).unwrap();
    drop(store);

    let out = shoal().arg("inspect").arg("--verify").arg(&path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for want in
        ["version 1 in slot 1", "round=7", "encoder.0.weight", "[8, 4]", "head.bias", "checksum of version 1 ok"]
    {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }

    // Flip a bit of the committed data: plain inspect still opens (O(1)), --verify fails in one line.
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = 1.0f32.to_le_bytes();
    let at = (3 * 4096..bytes.len()).step_by(4096).find(|&a| bytes[a..a + 4] == needle).unwrap();
    bytes[at + 8] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert!(shoal().arg("inspect").arg(&path).status().unwrap().success());
    let out = shoal().arg("inspect").arg("--verify").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("fails its checksum") && err.contains("model.shoal"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inspect_reads_a_sparse_table() {
    use shoal_engine::store::{SparseTable, TableSpec};
    let dir = scratch("inspect-sparse");
    let path = dir.join("embeddings.shoal");
    let mut table = SparseTable::create(&path, &TableSpec::new(8).with_state(8, "adagrad")).unwrap();
    for id in 0..1500u64 {
        table.get_or_insert_with(id * 977, |r| r[0] = id as f32).unwrap();
    }
    table.commit(&[("step", 40)]).unwrap();
    drop(table);
    let out = shoal().arg("inspect").arg("--verify").arg(&path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    for want in
        ["sparse table", "value 8, state 8 (adagrad)", "1500 in 3 chunks", "step=40", "checksums of all 3 chunks"]
    {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
