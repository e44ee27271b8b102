//! kill -9 tests: a child process writes and commits in a loop and is killed with SIGKILL at random
//! moments; after each kill the store must hold exactly one committed version, bit for bit.
//!
//! CI runs 30 kills; `SHOAL_CRASH_KILLS=1000 cargo test --release --test store_crash` is the soak.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_engine::model::{ParamLayout, SplitMix};
use shoal_engine::store::Store;

const CHILD_ENV: &str = "SHOAL_STORE_CRASH_CHILD";

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

#[test]
fn store_holds_one_whole_version_after_every_sigkill() {
    let kills: usize = std::env::var("SHOAL_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(30);
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
    let exe = std::env::current_exe().unwrap();
    let mut last_version = 0;
    let mut versions_seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    for kill in 0..kills {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Land anywhere in the loop: before the child opened the store, mid-write, mid-commit.
        std::thread::sleep(Duration::from_micros(2_000 + rng.below(80_000) as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

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
