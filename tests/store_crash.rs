//! kill -9 tests: a child process writes and commits in a loop and is killed with SIGKILL at random
//! moments; after each kill the store must hold exactly one committed version, bit for bit.
//!
//! The same for sparse tables: the child inserts rows (growing across chunks and segments) and
//! rewrites a seventh of them per commit.
//!
//! CI runs 30 kills of each; `SHOAL_CRASH_KILLS=1000 cargo test --release --test store_crash` is the soak.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_engine::model::{ParamLayout, SplitMix};
use shoal_engine::store::{SparseTable, Store, TableSpec};

const CHILD_ENV: &str = "SHOAL_STORE_CRASH_CHILD";
const SPARSE_CHILD_ENV: &str = "SHOAL_SPARSE_CRASH_CHILD";

/// The value every float `i` holds in version `v`: any mix of two versions is detectable.
fn value(v: u64, i: usize) -> f32 {
    ((v.wrapping_mul(2_654_435_761) ^ (i as u64).wrapping_mul(40_503)) % 1_000_003) as f32
}

/// The child: only does something when the parent re-executes this binary with CHILD_ENV set.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let mut store = Store::open(Path::new(&path)).expect("child opens the store");
    loop {
        let v = store.version() + 1;
        for (i, x) in store.params_mut().expect("writable").iter_mut().enumerate() {
            *x = value(v, i);
        }
        store.commit(&[("version", v)]).expect("commit");
    }
}

fn kills() -> usize {
    std::env::var("SHOAL_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(30)
}

/// Runs the named child test of this binary with `env` = `path` and kills it with SIGKILL after a
/// random delay that lands anywhere in its loop: before it opened the file, mid-write, mid-commit.
fn spawn_and_kill(child_test: &str, env: &str, path: &Path, rng: &mut SplitMix) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child_test, "--nocapture", "--test-threads", "1"])
        .env(env, path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(2_000 + rng.below(80_000) as u64));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn store_holds_one_whole_version_after_every_sigkill() {
    let kills = kills();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-crash");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("crash-{}.shoal", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut layout = ParamLayout::new();
    layout.push("encoder.0.weight", &[1024, 1024]).unwrap();
    layout.push("encoder.0.bias", &[1024]).unwrap();
    layout.push("opt.momentum", &[1024 * 1025]).unwrap();
    let init: Vec<f32> = (0..layout.total_len()).map(|i| value(0, i)).collect();
    drop(Store::create(&path, &layout, &init).unwrap());

    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut rng = SplitMix::new(seed);
    let mut last_version = 0;
    let mut versions_seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    for kill in 0..kills {
        spawn_and_kill("crash_child", CHILD_ENV, &path, &mut rng);

        let store = Store::open(&path).unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): {e}"));
        let v = store.version();
        assert!(v >= last_version, "kill {kill} (seed {seed}): version went back from {last_version} to {v}");
        if v > 0 {
            assert_eq!(store.counter("version"), Some(v), "kill {kill} (seed {seed}): counters of another version");
        }
        if let Some(i) = store.params().iter().enumerate().position(|(i, &x)| x.to_bits() != value(v, i).to_bits()) {
            panic!("kill {kill} (seed {seed}): float {i} does not belong to version {v}: torn commit");
        }
        store.verify().unwrap();
        last_version = v;
        versions_seen.insert(v);
    }
    eprintln!(
        "{kills} SIGKILLs in {:.1} s: every reopen held one whole committed version; final version {last_version}, {} distinct versions seen (seed {seed})",
        started.elapsed().as_secs_f64(),
        versions_seen.len()
    );
    assert!(last_version > 0, "the child never committed: the test did not exercise anything");
    std::fs::remove_file(&path).unwrap();
}

/// Rows the sparse table holds at version `v`: it grows for the first few thousand versions, so kills
/// land mid-growth as often as mid-update.
const SPARSE_GROWTH: u64 = 11;
const SPARSE_MAX_ROWS: u64 = 30_000;
fn sparse_rows(v: u64) -> u64 {
    (v * SPARSE_GROWTH).min(SPARSE_MAX_ROWS)
}

fn sparse_id(row: u64) -> u64 {
    row.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1
}

/// The version whose write row `row` holds at version `v`: the one that inserted it, or the last one
/// after that which rewrote its seventh of the rows.
fn sparse_last_write(v: u64, row: u64) -> u64 {
    let inserted = row / SPARSE_GROWTH + 1;
    assert!(row < SPARSE_MAX_ROWS && inserted <= v, "row {row} does not exist at version {v}");
    (inserted + 1..=v).rev().find(|u| u % 7 == row % 7).unwrap_or(inserted)
}

#[test]
fn sparse_crash_child() {
    let Ok(path) = std::env::var(SPARSE_CHILD_ENV) else { return };
    let mut table = SparseTable::open(Path::new(&path)).expect("child opens the table");
    loop {
        let v = table.version() + 1;
        let before = table.len();
        for row in (v % 7..before).step_by(7) {
            let record = table.get_mut(sparse_id(row)).expect("writable").expect("row exists");
            record.iter_mut().enumerate().for_each(|(j, x)| *x = value(v, row as usize * 16 + j));
        }
        for row in before..sparse_rows(v) {
            table
                .get_or_insert_with(sparse_id(row), |r| {
                    r.iter_mut().enumerate().for_each(|(j, x)| *x = value(v, row as usize * 16 + j))
                })
                .expect("insert");
        }
        table.commit(&[("version", v)]).expect("commit");
    }
}

#[test]
fn sparse_table_holds_one_whole_version_after_every_sigkill() {
    let kills = kills();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-crash");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("sparse-crash-{}.shoal", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let spec = TableSpec::new(8).with_state(8, "adagrad").with_chunks_per_segment(2);
    drop(SparseTable::create(&path, &spec).unwrap());

    let seed = std::process::id() as u64 ^ 0x51a7;
    let mut rng = SplitMix::new(seed);
    let mut last_version = 0;
    let started = Instant::now();
    for kill in 0..kills {
        spawn_and_kill("sparse_crash_child", SPARSE_CHILD_ENV, &path, &mut rng);
        let table = SparseTable::open(&path).unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): {e}"));
        let v = table.version();
        assert!(v >= last_version, "kill {kill}: version went back from {last_version} to {v}");
        assert_eq!(table.len(), sparse_rows(v), "kill {kill}: rows of another version");
        if v > 0 {
            assert_eq!(table.counter("version"), Some(v), "kill {kill}: counters of another version");
        }
        for (row, id) in table.ids().enumerate() {
            let row = row as u64;
            assert_eq!(id, sparse_id(row), "kill {kill}: row {row} has a foreign id");
            let w = sparse_last_write(v, row);
            let record = table.get(id).expect("indexed");
            for (j, x) in record.iter().enumerate() {
                let want = value(w, row as usize * 16 + j);
                assert_eq!(x.to_bits(), want.to_bits(), "kill {kill}: row {row} is not version {v}'s: torn commit");
            }
        }
        table.verify().unwrap();
        last_version = v;
    }
    eprintln!(
        "{kills} SIGKILLs of a sparse table writer in {:.1} s: every reopen held one whole version; final version {last_version} with {} rows",
        started.elapsed().as_secs_f64(),
        sparse_rows(last_version)
    );
    assert!(last_version > 0, "the child never committed: the test did not exercise anything");
    std::fs::remove_file(&path).unwrap();
}
