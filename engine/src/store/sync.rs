//! How a commit makes bytes durable, behind a trait so tests can inject failures.

use std::io;

use super::mmap::Mapping;

/// Makes a byte range of the mapping durable.
pub trait SyncBackend: Send {
    fn sync(&mut self, map: &mut Mapping, offset: usize, len: usize) -> io::Result<()>;

    /// Makes several `(offset, len)` ranges of one mapping durable. The default syncs each in turn; a
    /// backend may sync them in one call over their span, since clean pages cost nothing to sync.
    fn sync_ranges(&mut self, map: &mut Mapping, ranges: &[(usize, usize)]) -> io::Result<()> {
        ranges.iter().try_for_each(|&(offset, len)| self.sync(map, offset, len))
    }
}

/// The real thing: msync(MS_SYNC).
#[derive(Debug, Default)]
pub struct OsSync;

impl SyncBackend for OsSync {
    fn sync(&mut self, map: &mut Mapping, offset: usize, len: usize) -> io::Result<()> {
        map.flush_range(offset, len)
    }

    fn sync_ranges(&mut self, map: &mut Mapping, ranges: &[(usize, usize)]) -> io::Result<()> {
        let start = ranges.iter().map(|r| r.0).min();
        let end = ranges.iter().map(|r| r.0 + r.1).max();
        match (start, end) {
            (Some(start), Some(end)) => map.flush_range(start, end - start),
            _ => Ok(()),
        }
    }
}

/// A backend that syncs for real but fails on chosen calls, as a failing disk would.
#[derive(Debug, Default, Clone)]
pub struct FaultInjector {
    calls: u64,
    /// Fail the n-th sync (0-based) with an I/O error, leaving the bytes as they are.
    pub fail_on: Option<u64>,
    /// Tear the n-th sync: only the first half of the range "reaches the disk" (the second half is
    /// zeroed, as after a crash mid-write), then fail.
    pub tear_on: Option<u64>,
}

impl FaultInjector {
    pub fn failing_on(call: u64) -> Self {
        Self { fail_on: Some(call), ..Self::default() }
    }

    pub fn tearing_on(call: u64) -> Self {
        Self { tear_on: Some(call), ..Self::default() }
    }

    /// Syncs attempted so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }
}

impl SyncBackend for FaultInjector {
    fn sync(&mut self, map: &mut Mapping, offset: usize, len: usize) -> io::Result<()> {
        let call = self.calls;
        self.calls += 1;
        if self.tear_on == Some(call) {
            map.bytes_mut()[offset + len / 2..offset + len].fill(0);
            return Err(io::Error::other(format!("injected torn write on sync #{call}")));
        }
        if self.fail_on == Some(call) {
            return Err(io::Error::other(format!("injected failure on sync #{call}")));
        }
        map.flush_range(offset, len)
    }
}
