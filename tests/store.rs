//! The parameter store: a model-based property test, injected sync faults, and corrupted files.

use std::path::PathBuf;

use proptest::prelude::*;
use shoal_engine::model::ParamLayout;
use shoal_engine::store::{FaultInjector, PAGE, SlotState, Store, StoreError};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.shoal", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn layout() -> ParamLayout {
    let mut l = ParamLayout::new();
    l.push("encoder.0.weight", &[37, 29]).unwrap();
    l.push("encoder.0.bias", &[29]).unwrap();
    l.push("opt.momentum", &[1100]).unwrap();
    l
}

fn initial(l: &ParamLayout) -> Vec<f32> {
    (0..l.total_len()).map(|i| i as f32 * 0.5).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        at: usize,
        value: f32,
    },
    Commit {
        counter: u64,
    },
    Reopen,
    /// A commit whose `nth` sync fails (0: data, 1: header), optionally tearing the write.
    FailingCommit {
        nth: u64,
        tear: bool,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0usize..10_000, -1e6f32..1e6).prop_map(|(at, value)| Op::Write { at, value }),
        3 => any::<u64>().prop_map(|counter| Op::Commit { counter }),
        2 => Just(Op::Reopen),
        1 => (0u64..2, any::<bool>()).prop_map(|(nth, tear)| Op::FailingCommit { nth, tear }),
    ];
    prop::collection::vec(op, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.min(64), ..ProptestConfig::default() })]

    /// After every reopen the store equals the model at its last successful commit, bit for bit.
    #[test]
    fn store_matches_a_model_across_commits_reopens_and_faults(ops in ops()) {
        let path = scratch("model");
        let l = layout();
        let mut committed = initial(&l);
        let mut working = committed.clone();
        let mut version = 0u64;
        let mut counter = None;
        let mut store = Store::create(&path, &l, &committed).unwrap();
        for op in ops {
            match op {
                Op::Write { at, value } => {
                    let at = at % working.len();
                    working[at] = value;
                    store.params_mut().unwrap()[at] = value;
                }
                Op::Commit { counter: c } => {
                    version = store.commit(&[("step", c)]).unwrap();
                    committed = working.clone();
                    counter = Some(c);
                }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                    working = committed.clone();
                }
                Op::FailingCommit { nth, tear } => {
                    let backend = if tear { FaultInjector::tearing_on(nth) } else { FaultInjector::failing_on(nth) };
                    store.set_sync_backend(Box::new(backend));
                    let failed = matches!(store.commit(&[("step", 0)]), Err(StoreError::Sync { .. }));
                    prop_assert!(failed, "an injected sync failure must fail the commit");
                    // The handle is poisoned; a fresh open must see the last good commit.
                    let poisoned = matches!(store.params_mut(), Err(StoreError::Poisoned { .. }));
                    prop_assert!(poisoned, "a failed sync poisons the handle");
                    drop(store);
                    store = Store::open(&path).unwrap();
                    working = committed.clone();
                }
            }
            prop_assert_eq!(store.params(), &working[..]);
            prop_assert_eq!(store.version(), version);
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        prop_assert_eq!(store.params(), &committed[..]);
        prop_assert_eq!(store.version(), version);
        prop_assert_eq!(store.counter("step"), counter);
        store.verify().unwrap();
        drop(store);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn every_failing_sync_of_a_commit_is_reported_and_leaves_the_previous_version() {
    let l = layout();
    for nth in 0..2 {
        for tear in [false, true] {
            let path = scratch(&format!("fault-{nth}-{tear}"));
            let mut store = Store::create(&path, &l, &initial(&l)).unwrap();
            store.params_mut().unwrap()[3] = 99.0;
            store.commit(&[("round", 1)]).unwrap();
            store.params_mut().unwrap()[3] = 123.0;
            let backend = if tear { FaultInjector::tearing_on(nth) } else { FaultInjector::failing_on(nth) };
            store.set_sync_backend(Box::new(backend));
            let err = store.commit(&[("round", 2)]).unwrap_err();
            assert!(err.to_string().contains("commit failed"), "{err}");
            assert!(err.to_string().contains(path.to_str().unwrap()), "error names the file: {err}");
            assert!(matches!(store.commit(&[]), Err(StoreError::Poisoned { .. })));
            drop(store);
            let store = Store::open(&path).unwrap();
            assert_eq!(
                (store.version(), store.counter("round"), store.params()[3]),
                (1, Some(1), 99.0),
                "nth={nth} tear={tear}"
            );
            store.verify().unwrap();
            drop(store);
            std::fs::remove_file(&path).unwrap();
        }
    }
}

fn committed_twice(name: &str) -> (PathBuf, u64) {
    let path = scratch(name);
    let l = layout();
    let mut store = Store::create(&path, &l, &initial(&l)).unwrap();
    store.params_mut().unwrap()[0] = 1.0;
    store.commit(&[("round", 1)]).unwrap();
    store.params_mut().unwrap()[0] = 2.0;
    store.commit(&[("round", 2)]).unwrap();
    let len = store.file_len();
    (path, len)
}

fn flip(path: &PathBuf, byte: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[byte as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    // Superblock and layout: open refuses, naming the file and the region.
    for (byte, region) in [(17u64, "superblock"), (3 * PAGE as u64 + 5, "layout")] {
        let (path, _) = committed_twice("flip-meta");
        flip(&path, byte);
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains(path.to_str().unwrap()) && err.contains(region), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
    // The newest header (version 2, slot 0): open falls back to version 1 after checking its data.
    let (path, _) = committed_twice("flip-header");
    let newest = {
        let s = Store::open(&path).unwrap();
        s.committed_slot()
    };
    flip(&path, (PAGE * (1 + newest) + 9) as u64);
    let store = Store::open(&path).unwrap();
    assert_eq!((store.version(), store.params()[0]), (1, 1.0));
    assert!(matches!(store.slots()[newest], SlotState::Invalid(_)));
    drop(store);
    // Both headers damaged: refused.
    flip(&path, (PAGE * (2 - newest) + 9) as u64);
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("neither header slot is valid"), "{err}");
    std::fs::remove_file(&path).unwrap();
    // Data of the committed copy: verify() reports it.
    let (path, _) = committed_twice("flip-data");
    let store = Store::open(&path).unwrap();
    let committed_first_float = store.params()[0];
    drop(store);
    let bytes = std::fs::read(&path).unwrap();
    let needle = committed_first_float.to_le_bytes();
    // The committed copy is the one whose first float is 2.0 (the other holds 1.0).
    let data_start = (3 * PAGE..bytes.len()).step_by(PAGE).find(|&at| bytes[at..at + 4] == needle).unwrap();
    flip(&path, (data_start + 4 * 7) as u64);
    let store = Store::open(&path).unwrap();
    let err = store.verify().unwrap_err().to_string();
    assert!(err.contains("fails its checksum") && err.contains("version 2"), "{err}");
    drop(store);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn truncated_foreign_and_locked_files_are_refused() {
    let (path, len) = committed_twice("truncated");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1).unwrap();
    drop(f);
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("truncated or extended"), "{err}");
    std::fs::write(&path, vec![7u8; 100]).unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("not a shoal store"), "{err}");
    std::fs::remove_file(&path).unwrap();

    let (path, _) = committed_twice("locked");
    let _first = Store::open(&path).unwrap();
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("locked"), "{err}");
    assert!(Store::create(&path, &layout(), &initial(&layout())).is_err(), "create never overwrites");
    drop(_first);
    std::fs::remove_file(&path).unwrap();
}
