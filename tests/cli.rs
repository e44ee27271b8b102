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
    for cmd in ["info", "data", "demo", "local", "master", "worker", "keygen", "train", "aggregate", "inspect"] {
        assert!(text.contains(cmd), "{text}");
    }
    // A command's help lists only what it takes: `--config` belongs to the demo (the others take the job
    // file as their argument), and `--output` says that it resumes a run in that folder.
    let help = |cmd: &str| String::from_utf8(shoal().args([cmd, "--help"]).output().unwrap().stdout).unwrap();
    assert!(help("demo").contains("--config"));
    for cmd in ["local", "master"] {
        let text = help(cmd);
        assert!(!text.contains("--config") && text.contains("resumes it"), "{cmd}: {text}");
    }
}

#[test]
fn train_with_a_bad_option_fails_in_one_line() {
    let out = shoal().args(["train", "--lr", "-1"]).output().unwrap();
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
        table.get_or_insert_with(id * 977, |r| (r[0], r[8]) = (id as f32, -(id as f32))).unwrap();
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

fn write_npy(path: &std::path::Path, shape: &[usize], values: &[f32]) {
    let mut bytes = shoal::exchange::npy_header(shape);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).unwrap();
}

fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    shoal::exchange::parse_npy(&std::fs::read(path).unwrap(), path).unwrap()
}

#[test]
fn aggregate_runs_rules_on_npy_files_and_reports_rejections() {
    let dir = scratch("aggregate");
    let inputs: Vec<PathBuf> = (0..5)
        .map(|i| {
            let p = dir.join(format!("u{i}.npy"));
            let v: Vec<f32> = (0..6).map(|j| (i * 10 + j) as f32).collect();
            write_npy(&p, &[2, 3], &v);
            p
        })
        .collect();
    let bad = dir.join("bad.npy");
    write_npy(&bad, &[2, 3], &[1.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]);
    let out = dir.join("out.npy");
    let run = |args: &[&str], files: &[&PathBuf]| {
        let mut cmd = shoal();
        cmd.arg("aggregate").args(args).arg("-o").arg(&out).args(files);
        cmd.output().unwrap()
    };
    let files: Vec<&PathBuf> = inputs.iter().chain([&bad]).collect();
    let o = run(&["--rule", "fedavg", "--weights", "1,1,1,1,4,9"], &files);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("used       5") && text.contains("rejected   ") && text.contains("bad.npy: contains NaN"),
        "{text}"
    );
    let (shape, got) = read_npy(&out);
    assert_eq!(shape, vec![2, 3]);
    // Weights 1,1,1,1,4 over rows 0,10,20,30,40 (+ j): (0+10+20+30+160)/8 = 27.5.
    for (j, &g) in got.iter().enumerate() {
        assert!((g - (27.5 + j as f32)).abs() < 1e-4, "{g}");
    }
    // Krum without f: a one-line error that names the missing option.
    let o = run(&["--rule", "krum"], &files);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.trim().lines().count() == 1 && err.contains("needs option `f`"), "{err}");
    // A shape mismatch names the file.
    let odd = dir.join("odd.npy");
    write_npy(&odd, &[6], &[0.0; 6]);
    let o = run(&["--rule", "mean"], &[&inputs[0], &odd]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("odd.npy") && err.contains("differs"), "{err}");
    // A server optimizer keeps its state between calls in --state.
    let state = dir.join("state");
    let state_arg = state.to_str().unwrap();
    let first = run(&["--rule", "fedavgm", "--lr", "1", "--state", state_arg], &files[..5]);
    assert!(first.status.success());
    let (_, step1) = read_npy(&out);
    let second = run(&["--rule", "fedavgm", "--lr", "1", "--state", state_arg], &files[..5]);
    assert!(String::from_utf8_lossy(&second.stdout).contains("round 2"));
    let (_, step2) = read_npy(&out);
    // Momentum 0.9: the second step is 1.9 times the first.
    for (a, b) in step1.iter().zip(&step2) {
        assert!((b - 1.9 * a).abs() < 1e-3 * (1.0 + a.abs()), "{a} {b}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_job_file_is_refused_in_one_line_naming_the_field() {
    let dir = scratch("badjob");
    for (body, want) in [
        ("job = \"j\"\n[encoder]\ntype = \"audio\"\nhidden = [8]\n", "encoder.type"),
        ("job = \"j\"\n[encoder]\ntype = \"image28x28\"\nhidden = [8]\n[rule]\nname = \"krum\"\n", "needs option `f`"),
        (
            "job = \"j\"\n[encoder]\ntype = \"image28x28\"\nhidden = [8]\n[training]\nrunds = 3\n",
            "unknown field `runds`",
        ),
    ] {
        let path = dir.join("job.toml");
        std::fs::write(&path, body).unwrap();
        let out = shoal().args(["local", "--quiet"]).arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.trim().lines().count() == 1 && err.contains(want), "{want}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tcp_without_keys_is_refused_unless_insecure_and_keygen_writes_private_keys() {
    let dir = scratch("tcpkeys");
    let job = dir.join("job.toml");
    std::fs::write(&job, "job = \"j\"\n[encoder]\ntype = \"image28x28\"\nhidden = [8]\n").unwrap();
    // Refused before any data is read or socket bound.
    for cmd in [
        &["master", "--endpoint", "tcp://127.0.0.1:1"][..],
        &["worker", "--id", "1", "--endpoint", "tcp://127.0.0.1:1"],
    ] {
        let out = shoal().args(cmd).arg(&job).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.trim().lines().count() == 1, "{cmd:?}: {err}");
        assert!(err.contains("transport.keys") && err.contains("--insecure") && err.contains("shoal keygen"), "{err}");
    }
    // --insecure is accepted and said loudly (the run then fails on the missing data folder: that is fine).
    let out = shoal()
        .args(["worker", "--id", "1", "--insecure", "--endpoint", "tcp://127.0.0.1:1", "--data-dir"])
        .arg(dir.join("no-data"))
        .arg(&job)
        .env("SHOAL_PIP", "false")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WARNING: worker 1: --insecure") && err.contains("neither authenticated nor encrypted"),
        "{err}"
    );

    let keys = dir.join("keys");
    let out = shoal().args(["keygen", "--nodes", "0,2-3", "--out"]).arg(&keys).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    for n in [0, 2, 3] {
        let mode = std::fs::metadata(keys.join(format!("node-{n}.key"))).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(keys.join(format!("node-{n}.pub")).exists());
    }
    assert!(!keys.join("node-1.pub").exists());
    // A second run never overwrites a secret key.
    let out = shoal().args(["keygen", "--nodes", "2", "--out"]).arg(&keys).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("node-2.key"), "{err}");
    let out = shoal().args(["keygen", "--nodes", "5-2", "--out"]).arg(&keys).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("low-high"));
    let _ = std::fs::remove_dir_all(&dir);
}
