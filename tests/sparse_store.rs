//! Sparse tables: a model-based property test across inserts, updates, commits, reopens and injected
//! sync faults; growth across chunks and segments; corrupted files.

use std::collections::HashMap;
use std::path::PathBuf;

use proptest::prelude::*;
use shoal_engine::store::sparse::ROWS_PER_CHUNK;
use shoal_engine::store::{FaultInjector, SparseTable, StoreError, TableSpec};

const DIM: usize = 3;
const STATE: usize = 2;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sparse-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.shoal", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// Two chunks (1024 rows) per segment, so a few thousand rows cross several segments.
fn spec() -> TableSpec {
    TableSpec::new(DIM).with_state(STATE, "adagrad").with_chunks_per_segment(2)
}

fn record(seed: u64) -> Vec<f32> {
    (0..DIM + STATE).map(|j| (seed.wrapping_mul(31).wrapping_add(j as u64) % 10_007) as f32 - 5000.0).collect()
}

/// What the table must hold: rows in insertion order.
#[derive(Clone, Default, PartialEq, Debug)]
struct Model {
    rows: Vec<(u64, Vec<f32>)>,
    at: HashMap<u64, usize>,
}

impl Model {
    fn upsert(&mut self, id: u64, value: Vec<f32>) {
        match self.at.get(&id) {
            Some(&r) => self.rows[r].1 = value,
            None => {
                self.at.insert(id, self.rows.len());
                self.rows.push((id, value));
            }
        }
    }
}

fn upsert(table: &mut SparseTable, id: u64, value: &[f32]) {
    table.get_or_insert_with(id, |_| {}).unwrap().copy_from_slice(value);
}

fn assert_matches(table: &SparseTable, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len(), model.rows.len() as u64);
    let ids: Vec<u64> = table.ids().collect();
    prop_assert_eq!(ids.len(), model.rows.len());
    for (r, (id, value)) in model.rows.iter().enumerate() {
        prop_assert_eq!(ids[r], *id);
        prop_assert_eq!(table.get(*id), Some(&value[..]), "row {} (id {})", r, id);
        prop_assert_eq!(table.row_at(r as u64), Some(&value[..]));
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        id: u64,
        seed: u64,
    },
    /// Inserts `n` fresh ids at once: crosses chunk and segment boundaries.
    Grow {
        n: usize,
        seed: u64,
    },
    Commit {
        counter: u64,
    },
    Reopen,
    /// A commit whose `nth` sync fails or tears (if it has that many syncs, else it succeeds).
    FaultyCommit {
        nth: u64,
        tear: bool,
    },
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (prop_oneof![0u64..64, any::<u64>()], any::<u64>()).prop_map(|(id, seed)| Op::Upsert { id, seed }),
        2 => (1usize..1500, any::<u64>()).prop_map(|(n, seed)| Op::Grow { n, seed }),
        3 => any::<u64>().prop_map(|counter| Op::Commit { counter }),
        2 => Just(Op::Reopen),
        2 => (0u64..4, any::<bool>()).prop_map(|(nth, tear)| Op::FaultyCommit { nth, tear }),
    ];
    prop::collection::vec(op, 1..30)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: ProptestConfig::default().cases.min(48), ..ProptestConfig::default() })]

    /// After every reopen the table equals the model at its last successful commit, bit for bit.
    #[test]
    fn table_matches_a_model_across_commits_reopens_and_faults(ops in ops()) {
        let path = scratch("model");
        let mut table = SparseTable::create(&path, &spec()).unwrap();
        let (mut working, mut committed) = (Model::default(), Model::default());
        let (mut version, mut counter) = (0u64, None);
        let mut next_fresh = 1u64 << 40;
        for op in ops {
            match op {
                Op::Upsert { id, seed } => {
                    upsert(&mut table, id, &record(seed));
                    working.upsert(id, record(seed));
                }
                Op::Grow { n, seed } => {
                    for k in 0..n as u64 {
                        upsert(&mut table, next_fresh, &record(seed ^ k));
                        working.upsert(next_fresh, record(seed ^ k));
                        next_fresh += 7;
                    }
                }
                Op::Commit { counter: c } => {
                    version = table.commit(&[("step", c)]).unwrap();
                    committed = working.clone();
                    counter = Some(c);
                }
                Op::Reopen => {
                    drop(table);
                    table = SparseTable::open(&path).unwrap();
                    working = committed.clone();
                }
                Op::FaultyCommit { nth, tear } => {
                    let backend = if tear { FaultInjector::tearing_on(nth) } else { FaultInjector::failing_on(nth) };
                    table.set_sync_backend(Box::new(backend));
                    match table.commit(&[("step", 1)]) {
                        Ok(v) => {
                            version = v;
                            committed = working.clone();
                            counter = Some(1);
                            table.set_sync_backend(Box::new(shoal_engine::store::OsSync));
                        }
                        Err(StoreError::Sync { .. }) => {
                            let poisoned = matches!(table.get_mut(0), Err(StoreError::Poisoned { .. }));
                            prop_assert!(poisoned, "a failed sync poisons the handle");
                            drop(table);
                            table = SparseTable::open(&path).unwrap();
                            working = committed.clone();
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            }
            prop_assert_eq!(table.version(), version);
            assert_matches(&table, &working)?;
        }
        drop(table);
        let table = SparseTable::open(&path).unwrap();
        assert_matches(&table, &committed)?;
        prop_assert_eq!(table.version(), version);
        prop_assert_eq!(table.counter("step"), counter);
        table.verify().unwrap();
        drop(table);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn rows_never_move_and_segments_grow_at_the_end() {
    let path = scratch("grow");
    let mut table = SparseTable::create(&path, &spec()).unwrap();
    assert_eq!(table.segment_count(), 0);
    let n = 5 * ROWS_PER_CHUNK as u64 + 3;
    for id in 0..n {
        table.get_or_insert_with(id * 1_000_003, |r| r[0] = id as f32).unwrap();
    }
    assert_eq!((table.chunk_count(), table.segment_count()), (6, 3));
    table.commit(&[]).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(len, table.file_len());
    // Updating one row dirties one chunk, nothing else.
    table.get_mut(7 * 1_000_003).unwrap().unwrap()[1] = 5.0;
    assert_eq!(table.dirty_chunks(), 1);
    assert!(table.get_mut(12345).unwrap().is_none());
    table.commit(&[]).unwrap();
    drop(table);
    let table = SparseTable::open(&path).unwrap();
    for id in 0..n {
        let row = table.get(id * 1_000_003).unwrap();
        assert_eq!(row[0], id as f32);
        assert_eq!(row[1], if id == 7 { 5.0 } else { 0.0 });
    }
    assert_eq!(table.superblock().label, "adagrad");
    drop(table);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn uncommitted_growth_is_cut_off_at_open() {
    let path = scratch("cut");
    let mut table = SparseTable::create(&path, &spec()).unwrap();
    for id in 0..100 {
        table.get_or_insert_with(id, |_| {}).unwrap();
    }
    table.commit(&[]).unwrap();
    for id in 100..3000 {
        table.get_or_insert_with(id, |_| {}).unwrap();
    }
    let committed_len = spec_file_len(&table, 100);
    assert!(std::fs::metadata(&path).unwrap().len() > committed_len);
    // Leave without committing (as a crash would); metadata of the abandoned segments must not be used.
    drop(table);
    let table = SparseTable::open(&path).unwrap();
    assert_eq!(table.len(), 100);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), committed_len);
    drop(table);
    std::fs::remove_file(&path).unwrap();
}

fn spec_file_len(table: &SparseTable, rows: u64) -> u64 {
    table.superblock().file_len_for(rows)
}

#[test]
fn a_flipped_bit_in_a_chunk_is_found_by_verify_and_a_torn_header_falls_back() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = scratch("corrupt");
    let mut table = SparseTable::create(&path, &spec()).unwrap();
    for id in 0..2000 {
        table.get_or_insert_with(id, |r| r[0] = id as f32).unwrap();
    }
    table.commit(&[("round", 1)]).unwrap();
    table.get_mut(5).unwrap().unwrap()[0] = -1.0;
    table.commit(&[("round", 2)]).unwrap();
    let first_chunk = table.superblock().segment_offset(0) + 2 * 4096;
    let chunk_bytes = table.superblock().chunk_bytes();
    drop(table);
    let flip = |at: u64| {
        let mut f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut b = [0u8];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&[b[0] ^ 0x10]).unwrap();
    };
    // Chunk 1 (rows 512..1024) was never rewritten, so it sits in home 0. Damage one of its rows.
    flip(first_chunk + 2 * chunk_bytes + 4096 + 40);
    let table = SparseTable::open(&path).unwrap();
    let err = table.verify().unwrap_err();
    assert!(matches!(err, StoreError::ChunkChecksum { chunk: 1, .. }), "{err}");
    drop(table);
    flip(first_chunk + 2 * chunk_bytes + 4096 + 40);
    // Tear the newest header (slot 0 after two commits): open falls back to version 1 and checks it whole.
    let table = SparseTable::open(&path).unwrap();
    let slot = table.committed_slot() as u64;
    drop(table);
    flip(4096 * (1 + slot) + 100);
    let table = SparseTable::open(&path).unwrap();
    assert_eq!(table.version(), 1);
    assert_eq!(table.counter("round"), Some(1));
    assert_eq!(table.get(5).unwrap()[0], 5.0);
    drop(table);
    // A foreign file and a truncated one are refused with their path.
    std::fs::write(&path, b"not a table at all").unwrap();
    let err = SparseTable::open(&path).unwrap_err().to_string();
    assert!(err.contains("not a shoal store") && err.contains("corrupt"), "{err}");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn the_table_is_locked_and_shapes_are_checked() {
    let path = scratch("lock");
    let table = SparseTable::create(&path, &spec()).unwrap();
    assert!(matches!(SparseTable::open(&path), Err(StoreError::Locked { .. })));
    drop(table);
    std::fs::remove_file(&path).unwrap();
    let err = SparseTable::create(&path, &TableSpec::new(0)).unwrap_err().to_string();
    assert!(err.contains("floats"), "{err}");
}
