//! `shoal inspect`: what a parameter store holds, and whether its checksums hold.

use std::fmt::Write;
use std::path::Path;
use std::time::Instant;

use shoal_engine::store::{FORMAT_VERSION, SlotState, Store, StoreError};

fn mib(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

/// The report for `path`; with `verify`, re-reads the committed copy and checks its checksum
/// (an error if it fails).
pub fn report(path: &Path, verify: bool) -> Result<String, StoreError> {
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
    let counters: Vec<String> = store.counters().iter().map(|(n, v)| format!("{n}={v}")).collect();
    let _ = writeln!(
        s,
        "committed    version {} in slot {}{}",
        store.version(),
        store.committed_slot(),
        if counters.is_empty() { String::new() } else { format!("; counters {}", counters.join(", ")) }
    );
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
