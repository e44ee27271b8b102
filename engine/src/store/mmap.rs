//! The memory mapping behind a store: the store's only `unsafe` code.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{MmapMut, MmapOptions};

/// A read-write mapping of a store file, or of one segment of it.
pub struct Mapping {
    map: MmapMut,
}

impl Mapping {
    /// Maps the first `len` bytes of `file`.
    ///
    /// The caller must hold the file's exclusive lock and have checked that the file is at least `len`
    /// bytes long: see `Store::open`.
    pub fn new(file: &File, len: usize) -> io::Result<Self> {
        Self::at(file, 0, len)
    }

    /// Maps `len` bytes of `file` from byte `offset` (a multiple of the page size), under the same
    /// conditions as [`Mapping::new`].
    pub fn at(file: &File, offset: u64, len: usize) -> io::Result<Self> {
        // SAFETY: memmap2 requires that no one else modifies or truncates the file while it is mapped,
        // or reads through the map could observe torn values or fault with SIGBUS. Every shoal process
        // takes an exclusive lock on the file before mapping it and keeps it (with the `File`) for the
        // mapping's lifetime, and the length was checked against the file's size just before. What this
        // cannot exclude, a non-shoal process ignoring the advisory lock, is documented in
        // docs/store-format.md.
        let map = unsafe { MmapOptions::new().offset(offset).len(len).map_mut(file)? };
        Ok(Self { map })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Faults a range in for writing with one call (MADV_POPULATE_WRITE) instead of one page fault per
    /// page. Best effort: kernels before 5.14 lack it, and the pages then fault in on first write.
    pub fn populate_write(&self, offset: usize, len: usize) {
        let _ = self.map.advise_range(memmap2::Advice::PopulateWrite, offset, len);
    }

    /// msync(MS_SYNC) of a byte range: returns once the range is on the storage device.
    pub fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(offset, len)
    }
}
