//! `shoal inspect`: what a parameter store holds, and whether its checksums hold.

use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

use shoal_engine::store::sparse::{ROWS_PER_CHUNK, TABLE_FORMAT_VERSION, is_sparse_table};
use shoal_engine::store::{FORMAT_VERSION, SlotState, SparseTable, Store, StoreError};

fn mib(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// The `committed` line: version, slot and the counters stored with it.
fn committed_line(version: u64, slot: usize, counters: &[(String, u64)]) -> String {
    let counters: Vec<String> = counters.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let tail = if counters.is_empty() { String::new() } else { format!("; counters {}", counters.join(", ")) };
    format!("committed    version {version} in slot {slot}{tail}\n")
}

/// The report for `path`; with `verify`, re-reads the committed copy and checks its checksum
/// (an error if it fails).
pub fn report(path: &Path, verify: bool) -> Result<String, StoreError> {
    if is_sparse_table(path) {
        return sparse_report(path, verify);
    }
    let store = Store::open(path)?;
    let mut s = String::new();
    let floats = store.data_len() / 4;
    let _ = writeln!(s, "store        {}", path.display());
    let _ = writeln!(
        s,
        "format       version {FORMAT_VERSION}; file {}; one data copy {} ({floats} floats, two copies)",
        mib(store.file_len()),
        mib(store.data_len())
    );
    s.push_str(&committed_line(store.version(), store.committed_slot(), store.counters()));
    for (i, slot) in store.slots().iter().enumerate() {
        let line = match slot {
            SlotState::Valid(h) => {
                format!("valid, version {}, data copy {}, checksum {:016x}", h.version, h.copy, h.data_checksum)
            }
            SlotState::Invalid(e) => format!("not valid ({e})"),
        };
        let _ = writeln!(s, "slot {i}       {line}");
    }
    let _ = writeln!(s, "tensors      {}", store.tensors().len());
    for t in store.tensors() {
        let _ = writeln!(
            s,
            "  {:<32} {:<16} offset {:>10}  {:>10} floats",
            t.name,
            format!("{:?}", t.shape),
            t.offset,
            t.len
        );
    }
    if verify {
        let start = Instant::now();
        store.verify()?;
        let _ = writeln!(
            s,
            "verify       data checksum of version {} ok ({} in {:.1} ms)",
            store.version(),
            mib(store.data_len()),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(s)
}

/// The report for a sparse table: row shape, rows, fill of the last chunk, segments, slots.
fn sparse_report(path: &Path, verify: bool) -> Result<String, StoreError> {
    let open_started = Instant::now();
    let table = SparseTable::open(path)?;
    let open_ms = open_started.elapsed().as_secs_f64() * 1e3;
    let sb = table.superblock();
    let mut s = String::new();
    let _ = writeln!(s, "sparse table {}", path.display());
    let state = if sb.label.is_empty() { String::new() } else { format!(" ({})", sb.label) };
    let _ = writeln!(
        s,
        "format       version {TABLE_FORMAT_VERSION}; rows of {} floats: value {}, state {}{state}",
        sb.row_floats,
        sb.dim,
        sb.row_floats - sb.dim
    );
    let chunks = table.chunk_count();
    let capacity = (table.segment_count() * sb.chunks_per_segment as usize * ROWS_PER_CHUNK) as u64;
    let _ = writeln!(
        s,
        "rows         {} in {chunks} chunks of {ROWS_PER_CHUNK}, {} segments ({} each); {:.1}% of the mapped rows used",
        table.len(),
        table.segment_count(),
        mib(sb.segment_bytes()),
        if capacity == 0 { 0.0 } else { 100.0 * table.len() as f64 / capacity as f64 }
    );
    let _ = writeln!(
        s,
        "size         file {}; index in memory {} (rebuilt at open in {open_ms:.1} ms)",
        mib(table.file_len()),
        mib(table.index_bytes() as u64)
    );
    s.push_str(&committed_line(table.version(), table.committed_slot(), table.counters()));
    for (i, slot) in table.slots().iter().enumerate() {
        let line = match slot {
            Ok(h) => format!("valid, version {}, {} rows", h.version, h.rows),
            Err(e) => format!("not valid ({e})"),
        };
        let _ = writeln!(s, "slot {i}       {line}");
    }
    if verify {
        let start = Instant::now();
        table.verify()?;
        let _ = writeln!(
            s,
            "verify       checksums of all {chunks} chunks of version {} ok (in {:.1} ms)",
            table.version(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    Ok(s)
}
