//! The parameter store: a model's parameters (and optimizer state) in a memory-mapped file that survives
//! `kill -9` at any instant.
//!
//! # The commit protocol
//!
//! The file holds **two data copies** and **two header slots** (byte diagrams in docs/store-format.md).
//! A header slot names a version, the copy holding it and that copy's checksum. At any time one slot is
//! the committed one and its copy is never written.
//!
//! - The first mutable access after a commit copies the committed copy into the other one (the
//!   *working* copy); all writes go there.
//! - `commit()` (1) checksums the working copy, (2) msyncs it, (3) writes a header with version + 1
//!   into the *other* slot, (4) msyncs that page. Only then is the commit reported, and the working copy
//!   becomes the committed one.
//! - `open()` reads both slots and takes the valid one (magic + checksum) with the highest version.
//!
//! A crash before (4) completes leaves the old slot, and the old copy it points to, untouched: open finds
//! the previous version whole. A crash after (4) finds the new one, whose data was durable before its
//! header was written. A torn header fails its checksum and is ignored. Opening is O(1) in the data size:
//! only the three metadata pages and the layout are read, except when a written header slot is damaged,
//! where open re-checks the data checksum of the version it falls back to. `verify()` re-checks data
//! checksums on demand.
//!
//! A failed sync is fatal to the commit and to the handle: the store is poisoned (every later mutation
//! or commit is refused), because after an msync error the page cache can no longer be trusted to match
//! the disk. A header whose sync failed is zeroed, so it cannot surface later.

mod format;
mod mmap;
pub mod sparse;
mod sync;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use shoal_checksum::xxh3;

pub use format::{FORMAT_VERSION, FormatError, Header, MAX_COUNTERS, PAGE, Tensor};
use format::{LAYOUT_OFFSET, Superblock, decode_layout, encode_layout, slot_offset};
use mmap::Mapping;
pub use sparse::{SparseTable, TableSpec};
pub use sync::{FaultInjector, OsSync, SyncBackend};

use crate::model::ParamLayout;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {op}: {cause}")]
    Io { path: PathBuf, op: &'static str, cause: std::io::Error },
    #[error("{path}: {region}: {cause}")]
    Format { path: PathBuf, region: &'static str, cause: FormatError },
    #[error(
        "{path}: file is {actual} bytes, its superblock describes {expected} (truncated or extended by someone else)"
    )]
    Size { path: PathBuf, expected: u64, actual: u64 },
    #[error("{path}: neither header slot is valid ({first}; {second})")]
    NoValidHeader { path: PathBuf, first: FormatError, second: FormatError },
    #[error("{path}: already open in another process (the store is locked)")]
    Locked { path: PathBuf },
    #[error("{path}: commit failed, nothing was committed: {op}: {cause}")]
    Sync { path: PathBuf, op: &'static str, cause: std::io::Error },
    #[error("{path}: an earlier sync failed, so this handle refuses further writes; reopen the store")]
    Poisoned { path: PathBuf },
    #[error("{path}: data copy {copy} (version {version}) fails its checksum")]
    DataChecksum { path: PathBuf, copy: u32, version: u64 },
    #[error("{path}: chunk {chunk} of version {version} fails its checksum")]
    ChunkChecksum { path: PathBuf, chunk: usize, version: u64 },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// What one header slot holds, for `shoal inspect`.
#[derive(Clone, Debug, PartialEq)]
pub enum SlotState {
    Valid(Header),
    Invalid(FormatError),
}

/// An open store, exclusively locked by this process until dropped.
pub struct Store {
    path: PathBuf,
    // Keeps the lock (and the file the mapping refers to) alive as long as the mapping.
    file: File,
    map: Mapping,
    sb: Superblock,
    tensors: Vec<Tensor>,
    committed_slot: usize,
    committed: Header,
    working: Option<u32>,
    sync: Box<dyn SyncBackend>,
    poisoned: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).field("version", &self.committed.version).finish()
    }
}

/// Maps an I/O error of operation `op` on `path` to a `StoreError` naming both.
fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |cause| StoreError::Io { path: path.to_path_buf(), op, cause }
}

/// The 4096-byte page of header slot `i`.
fn slot_page(bytes: &[u8], i: usize) -> &[u8] {
    &bytes[slot_offset(i)..slot_offset(i) + PAGE]
}

/// The valid header slot with the higher version: its index and header, and whether a slot that was
/// written no longer decodes. Such a slot (torn by a crash, or damaged on the medium) means open falls
/// back to the older version, whose data a later working copy may have overwritten: only then must the
/// caller re-check the data checksums. A never-written (all-zero) slot is normal.
fn newest_slot<H>(
    head: &[u8],
    path: &Path,
    decode: impl Fn(&[u8]) -> Result<H, FormatError>,
    version: impl Fn(&H) -> u64,
) -> Result<(usize, H, bool), StoreError> {
    let slots = [0, 1].map(|i| decode(slot_page(head, i)));
    let damaged = (0..2).any(|i| slots[i].is_err() && slot_page(head, i).iter().any(|&b| b != 0));
    let (slot, header) = match slots {
        [Ok(a), Ok(b)] => {
            if version(&b) > version(&a) {
                (1, b)
            } else {
                (0, a)
            }
        }
        [Ok(a), Err(_)] => (0, a),
        [Err(_), Ok(b)] => (1, b),
        [Err(first), Err(second)] => {
            return Err(StoreError::NoValidHeader { path: path.to_path_buf(), first, second });
        }
    };
    Ok((slot, header, damaged))
}

/// Step (4)-(5) of a commit, for dense stores and sparse tables alike: writes `page` into header slot
/// `slot` of `map` and syncs it. If the sync fails, the slot is zeroed, so a header whose commit was
/// reported as failed can never reach the disk later.
fn write_header_slot(
    map: &mut Mapping,
    sync: &mut dyn SyncBackend,
    slot: usize,
    page: &[u8; PAGE],
) -> std::io::Result<()> {
    let at = slot_offset(slot);
    map.bytes_mut()[at..at + PAGE].copy_from_slice(page);
    sync.sync(map, at, PAGE).inspect_err(|_| {
        map.bytes_mut()[at..at + PAGE].fill(0);
        let _ = map.flush_range(at, PAGE);
    })
}

fn lock(file: &File, path: &Path) -> Result<(), StoreError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked { path: path.to_path_buf() }),
        Err(std::fs::TryLockError::Error(cause)) => Err(StoreError::Io { path: path.to_path_buf(), op: "lock", cause }),
    }
}

impl Store {
    /// Creates a new store at `path` (which must not exist) holding `initial` as version 0.
    pub fn create(path: &Path, layout: &ParamLayout, initial: &[f32]) -> Result<Store, StoreError> {
        let p = path.to_path_buf();
        if initial.len() != layout.total_len() {
            return Err(StoreError::Invalid {
                path: p,
                detail: format!("initial data has {} floats, the layout {}", initial.len(), layout.total_len()),
            });
        }
        let tensors: Vec<Tensor> = layout
            .slots()
            .iter()
            .map(|s| Tensor { name: s.name.clone(), shape: s.shape.clone(), offset: s.offset, len: s.len })
            .collect();
        let layout_bytes = encode_layout(&tensors);
        let sb = Superblock::for_layout(&layout_bytes, initial.len() as u64 * 4);
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(io(path, "create"))?;
        lock(&file, path)?;
        file.set_len(sb.file_len()).map_err(io(path, "set length"))?;
        let mut map = Mapping::new(&file, sb.file_len() as usize).map_err(io(path, "map"))?;
        let data = bytemuck::cast_slice::<f32, u8>(initial);
        let header = Header { version: 0, copy: 0, data_checksum: xxh3(data), counters: Vec::new() };
        {
            let bytes = map.bytes_mut();
            bytes[..PAGE].copy_from_slice(&sb.encode());
            bytes[LAYOUT_OFFSET..LAYOUT_OFFSET + layout_bytes.len()].copy_from_slice(&layout_bytes);
            let at = sb.copy_offset(0) as usize;
            bytes[at..at + data.len()].copy_from_slice(data);
            bytes[slot_offset(0)..slot_offset(0) + PAGE].copy_from_slice(
                &header.encode().map_err(|cause| StoreError::Format { path: p.clone(), region: "header", cause })?,
            );
        }
        map.flush_range(0, sb.file_len() as usize).map_err(io(path, "sync"))?;
        file.sync_all().map_err(io(path, "sync"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(path, "sync directory"))?;
        }
        Ok(Store {
            path: p,
            file,
            map,
            sb,
            tensors,
            committed_slot: 0,
            committed: header,
            working: None,
            sync: Box::new(OsSync),
            poisoned: false,
        })
    }

    /// Opens an existing store: O(1) in its size (metadata pages and layout only).
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.to_path_buf();
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path, "open"))?;
        lock(&file, path)?;
        let actual = file.metadata().map_err(io(path, "stat"))?.len();
        if actual < 3 * PAGE as u64 {
            let mut head = [0u8; 8];
            use std::io::Read;
            let n = (&file).read(&mut head).map_err(io(path, "read"))?;
            let cause = if n >= 8 && head == format::SUPERBLOCK_MAGIC {
                FormatError::Invalid(format!("truncated to {actual} bytes"))
            } else {
                FormatError::BadMagic
            };
            return Err(StoreError::Format { path: p, region: "superblock", cause });
        }
        let map = Mapping::new(&file, 3 * PAGE).map_err(io(path, "map"))?;
        let sb = Superblock::decode(&map.bytes()[..PAGE]).map_err(|cause| StoreError::Format {
            path: p.clone(),
            region: "superblock",
            cause,
        })?;
        if actual != sb.file_len() {
            return Err(StoreError::Size { path: p, expected: sb.file_len(), actual });
        }
        drop(map);
        let map = Mapping::new(&file, sb.file_len() as usize).map_err(io(path, "map"))?;
        let layout_bytes = &map.bytes()[LAYOUT_OFFSET..LAYOUT_OFFSET + sb.layout_len as usize];
        if xxh3(layout_bytes) != sb.layout_checksum {
            return Err(StoreError::Format {
                path: p,
                region: "layout",
                cause: FormatError::Checksum { what: "layout" },
            });
        }
        let tensors = decode_layout(layout_bytes, sb.data_len as usize / 4).map_err(|cause| StoreError::Format {
            path: p.clone(),
            region: "layout",
            cause,
        })?;
        let (committed_slot, committed, damaged) = newest_slot(map.bytes(), &p, Header::decode, |h| h.version)?;
        let store = Store {
            path: p,
            file,
            map,
            sb,
            tensors,
            committed_slot,
            committed,
            working: None,
            sync: Box::new(OsSync),
            poisoned: false,
        };
        if damaged {
            store.verify()?;
        }
        Ok(store)
    }

    /// Replaces how commits make data durable (tests use [`FaultInjector`]).
    pub fn set_sync_backend(&mut self, backend: Box<dyn SyncBackend>) {
        self.sync = backend;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// The committed version (0 after `create`).
    pub fn version(&self) -> u64 {
        self.committed.version
    }

    /// The counters stored with the committed version.
    pub fn counters(&self) -> &[(String, u64)] {
        &self.committed.counters
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        self.committed.counters.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// Bytes of one data copy.
    pub fn data_len(&self) -> u64 {
        self.sb.data_len
    }

    /// Size of the file (both copies and the metadata pages).
    pub fn file_len(&self) -> u64 {
        self.sb.file_len()
    }

    fn copy_range(&self, copy: u32) -> std::ops::Range<usize> {
        let at = self.sb.copy_offset(copy) as usize;
        at..at + self.sb.data_len as usize
    }

    fn floats(&self, copy: u32) -> &[f32] {
        bytemuck::cast_slice(&self.map.bytes()[self.copy_range(copy)])
    }

    /// The parameters as they are now: the working copy if this handle has written since the last
    /// commit, else the committed version.
    pub fn params(&self) -> &[f32] {
        self.floats(self.working.unwrap_or(self.committed.copy))
    }

    /// The parameters for writing. The first call after a commit copies the committed version into the
    /// working copy (the committed copy itself is never written).
    pub fn params_mut(&mut self) -> Result<&mut [f32], StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        let working = match self.working {
            Some(w) => w,
            None => {
                let (from, to) = (self.copy_range(self.committed.copy), self.copy_range(1 - self.committed.copy));
                self.map.bytes_mut().copy_within(from, to.start);
                let w = 1 - self.committed.copy;
                self.working = Some(w);
                w
            }
        };
        let range = self.copy_range(working);
        Ok(bytemuck::cast_slice_mut(&mut self.map.bytes_mut()[range]))
    }

    /// The current values of one tensor.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        let t = self.tensors.iter().find(|t| t.name == name)?;
        Some(&self.params()[t.offset..t.offset + t.len])
    }

    /// Makes the working copy the new committed version, with `counters` stored beside it.
    /// Returns the new version. On error nothing was committed and the handle is poisoned.
    pub fn commit(&mut self, counters: &[(&str, u64)]) -> Result<u64, StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        self.params_mut()?;
        let working = self.working.expect("params_mut made a working copy");
        let header = Header {
            version: self.committed.version + 1,
            copy: working,
            data_checksum: xxh3(&self.map.bytes()[self.copy_range(working)]),
            counters: counters.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        };
        let page =
            header.encode().map_err(|cause| StoreError::Format { path: self.path.clone(), region: "header", cause })?;
        // Someone else shrinking the file would turn the syncs below into SIGBUS: check first.
        let actual = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if actual != self.sb.file_len() {
            self.poisoned = true;
            return Err(StoreError::Size { path: self.path.clone(), expected: self.sb.file_len(), actual });
        }
        let range = self.copy_range(working);
        if let Err(cause) = self.sync.sync(&mut self.map, range.start, range.len()) {
            self.poisoned = true;
            return Err(StoreError::Sync { path: self.path.clone(), op: "sync of the data copy", cause });
        }
        let slot = 1 - self.committed_slot;
        if let Err(cause) = write_header_slot(&mut self.map, self.sync.as_mut(), slot, &page) {
            self.poisoned = true;
            return Err(StoreError::Sync { path: self.path.clone(), op: "sync of the header", cause });
        }
        self.committed_slot = slot;
        self.committed = header;
        self.working = None;
        Ok(self.committed.version)
    }

    /// Both header slots as they are on disk.
    pub fn slots(&self) -> [SlotState; 2] {
        [0, 1].map(|i| match Header::decode(slot_page(self.map.bytes(), i)) {
            Ok(h) => SlotState::Valid(h),
            Err(e) => SlotState::Invalid(e),
        })
    }

    /// Index (0 or 1) of the slot holding the committed version.
    pub fn committed_slot(&self) -> usize {
        self.committed_slot
    }

    /// Re-checks the committed copy against its checksum (the slow path: reads every byte).
    pub fn verify(&self) -> Result<(), StoreError> {
        let copy = self.committed.copy;
        if xxh3(&self.map.bytes()[self.copy_range(copy)]) != self.committed.data_checksum {
            return Err(StoreError::DataChecksum { path: self.path.clone(), copy, version: self.committed.version });
        }
        Ok(())
    }
}
