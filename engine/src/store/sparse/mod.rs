//! Sparse tables: u64 feature id -> a row of `dim` f32 plus its optimizer state, in a memory-mapped file
//! that grows as new ids arrive and survives `kill -9` at any instant.
//!
//! # Design (byte diagrams in docs/store-format.md)
//!
//! Rows are appended in arrival order into **chunks** of 512 rows: a page of their ids, then the rows.
//! Chunks live in **segments** that are added at the end of the file as the table grows; existing rows
//! never move, and each segment is mapped on its own, so growing never remaps what is already there.
//!
//! Each chunk has **two homes** and the dense store's protocol, applied chunk by chunk: the first write
//! to a chunk after a commit copies its committed home into the other one, and writes go there. A commit
//! checksums the dirty chunks, writes each changed segment's metadata page (chunk homes and checksums,
//! tagged with the new version) into the older of the segment's two metadata pages, syncs those, then
//! writes and syncs the table header naming the version and the row count. Open reads, for each segment,
//! the metadata page with the highest version not above the header's.
//!
//! The id -> row index lives in memory and is rebuilt at open from the id pages (see `index.rs`).

mod format;
mod index;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use shoal_checksum::xxh3;

use super::format::{FormatError, PAGE, slot_offset};
use super::mmap::Mapping;
use super::sync::{OsSync, SyncBackend};
use super::{StoreError, io, lock, newest_slot, slot_page, write_header_slot};
pub use format::{
    ChunkEntry, MAX_ROW_FLOATS, ROWS_PER_CHUNK, SegmentMeta, TABLE_FORMAT_VERSION, TableHeader, TableSuperblock,
};
use format::{SEGMENTS_OFFSET, TABLE_MAGIC};
use index::IdIndex;

/// The most rows one table holds (the index stores rows as u32).
pub const MAX_ROWS: u64 = u32::MAX as u64 - 1;

struct Segment {
    map: Mapping,
    /// Which of the two metadata pages describes the committed version.
    meta_page: u8,
}

#[derive(Clone, Copy)]
struct Chunk {
    /// The committed home and its checksum. A chunk created since the last commit has no committed home:
    /// it is marked as home 1, so that its working home is 0.
    committed: ChunkEntry,
    /// Written since the last commit: the working home (the other one) holds its current rows.
    dirty: bool,
}

impl Chunk {
    fn current_home(&self) -> u8 {
        if self.dirty { 1 - self.committed.home } else { self.committed.home }
    }
}

/// The shape of a new table's rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    /// Floats of a row's value (the embedding).
    pub dim: usize,
    /// Floats of optimizer state after the value (e.g. `dim` for Adagrad, `2 * dim` for Adam).
    pub state_floats: usize,
    /// What the state holds, recorded in the file for readers (`adagrad`, `adam`, or empty).
    pub label: String,
    /// Chunks of 512 rows per segment; by default segments are about 64 MiB.
    pub chunks_per_segment: Option<u32>,
}

impl TableSpec {
    /// Rows of `dim` floats with no optimizer state.
    pub fn new(dim: usize) -> Self {
        Self { dim, state_floats: 0, label: String::new(), chunks_per_segment: None }
    }

    pub fn with_state(mut self, floats: usize, label: &str) -> Self {
        self.state_floats = floats;
        self.label = label.to_string();
        self
    }

    pub fn with_chunks_per_segment(mut self, chunks: u32) -> Self {
        self.chunks_per_segment = Some(chunks);
        self
    }
}

/// Segment and byte range (within the segment's mapping) of one home of chunk `c`.
fn home_range(sb: &TableSuperblock, c: usize, home: u8) -> (usize, std::ops::Range<usize>) {
    let cps = sb.chunks_per_segment as usize;
    let at = sb.home_offset(c % cps, home);
    (c / cps, at..at + sb.chunk_bytes() as usize)
}

/// XXH3 of one home of every chunk `pick` selects, in parallel (a commit after a pass over a big table
/// may have thousands of dirty chunks).
fn checksum_homes(
    sb: &TableSuperblock,
    segments: &[Segment],
    chunks: &[Chunk],
    pick: impl Fn(&Chunk) -> Option<u8> + Sync,
) -> Vec<Option<ChunkEntry>> {
    use rayon::prelude::*;
    (0..chunks.len())
        .into_par_iter()
        .map(|c| {
            pick(&chunks[c]).map(|home| {
                let (s, range) = home_range(sb, c, home);
                ChunkEntry { home, checksum: xxh3(&segments[s].map.bytes()[range]) }
            })
        })
        .collect()
}

/// An open sparse table, exclusively locked by this process until dropped.
pub struct SparseTable {
    path: PathBuf,
    file: File,
    head: Mapping,
    sb: TableSuperblock,
    segments: Vec<Segment>,
    chunks: Vec<Chunk>,
    rows: u64,
    index: IdIndex,
    committed: TableHeader,
    committed_slot: usize,
    sync: Box<dyn SyncBackend>,
    poisoned: bool,
}

impl std::fmt::Debug for SparseTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseTable")
            .field("path", &self.path)
            .field("version", &self.committed.version)
            .field("rows", &self.rows)
            .finish()
    }
}

/// True when the file at `path` starts with a sparse table's magic (`shoal inspect` uses it).
pub fn is_sparse_table(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && magic == TABLE_MAGIC
}

impl SparseTable {
    /// Creates an empty table at `path` (which must not exist) with rows of the given shape.
    pub fn create(path: &Path, spec: &TableSpec) -> Result<Self, StoreError> {
        let p = path.to_path_buf();
        let sb = TableSuperblock::new(spec.dim, spec.state_floats, &spec.label, spec.chunks_per_segment)
            .map_err(|cause| StoreError::Format { path: p.clone(), region: "superblock", cause })?;
        let header = TableHeader { version: 0, rows: 0, counters: Vec::new() };
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(io(path, "create"))?;
        lock(&file, path)?;
        file.set_len(SEGMENTS_OFFSET).map_err(io(path, "set length"))?;
        let mut head = Mapping::new(&file, SEGMENTS_OFFSET as usize).map_err(io(path, "map"))?;
        let page = header.encode().map_err(|cause| StoreError::Format { path: p.clone(), region: "header", cause })?;
        head.bytes_mut()[..PAGE].copy_from_slice(&sb.encode());
        head.bytes_mut()[slot_offset(0)..slot_offset(0) + PAGE].copy_from_slice(&page);
        head.flush_range(0, SEGMENTS_OFFSET as usize).map_err(io(path, "sync"))?;
        file.sync_all().map_err(io(path, "sync"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io(path, "sync directory"))?;
        }
        Ok(Self {
            path: p,
            file,
            head,
            sb,
            segments: Vec::new(),
            chunks: Vec::new(),
            rows: 0,
            index: IdIndex::with_capacity(0),
            committed: header,
            committed_slot: 0,
            sync: Box::new(OsSync),
            poisoned: false,
        })
    }

    /// Opens an existing table: reads the metadata pages, then rebuilds the index from one id page per
    /// 512 rows. Uncommitted growth left by a crash is cut off.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let p = path.to_path_buf();
        let format_err = |region: &'static str| {
            let p = p.clone();
            move |cause: FormatError| StoreError::Format { path: p, region, cause }
        };
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path, "open"))?;
        lock(&file, path)?;
        let actual = file.metadata().map_err(io(path, "stat"))?.len();
        if actual < SEGMENTS_OFFSET {
            let cause = if is_sparse_table(path) {
                FormatError::Invalid(format!("truncated to {actual} bytes"))
            } else {
                FormatError::BadMagic
            };
            return Err(StoreError::Format { path: p, region: "superblock", cause });
        }
        let head = Mapping::new(&file, SEGMENTS_OFFSET as usize).map_err(io(path, "map"))?;
        let sb = TableSuperblock::decode(&head.bytes()[..PAGE]).map_err(format_err("superblock"))?;
        let (committed_slot, committed, damaged) = newest_slot(head.bytes(), &p, TableHeader::decode, |h| h.version)?;
        if committed.rows > MAX_ROWS {
            return Err(StoreError::Format {
                path: p,
                region: "header",
                cause: FormatError::Invalid(format!("{} rows is more than a table holds", committed.rows)),
            });
        }
        let expected = sb.file_len_for(committed.rows);
        if actual < expected {
            return Err(StoreError::Size { path: p, expected, actual });
        }
        if actual > expected {
            // Segments added after the last commit hold nothing committed.
            file.set_len(expected).map_err(io(path, "cut uncommitted growth"))?;
        }
        let chunk_count = committed.rows.div_ceil(ROWS_PER_CHUNK as u64) as usize;
        let cps = sb.chunks_per_segment as usize;
        let mut segments = Vec::new();
        let mut chunks = Vec::with_capacity(chunk_count);
        for s in 0..sb.segments_for(committed.rows) {
            let mut map = Mapping::at(&file, sb.segment_offset(s), sb.segment_bytes() as usize)
                .map_err(io(path, "map a segment"))?;
            let metas = [0, 1].map(|i| SegmentMeta::decode(&map.bytes()[i * PAGE..(i + 1) * PAGE]));
            // Pages written by a commit that never completed are newer than the header: erase them, so a
            // later commit with the same version number cannot pick them up.
            for (i, meta) in metas.iter().enumerate() {
                if matches!(meta, Ok(m) if m.version > committed.version) {
                    map.bytes_mut()[i * PAGE..(i + 1) * PAGE].fill(0);
                    map.flush_range(i * PAGE, PAGE).map_err(io(path, "erase uncommitted metadata"))?;
                }
            }
            let usable = |m: &Result<SegmentMeta, FormatError>| match m {
                Ok(m) if m.version <= committed.version => Some(m.version),
                _ => None,
            };
            let page = match (usable(&metas[0]), usable(&metas[1])) {
                (Some(a), Some(b)) => usize::from(b > a),
                (Some(_), None) => 0,
                (None, Some(_)) => 1,
                (None, None) => {
                    let cause = match &metas[0] {
                        Err(e) => e.clone(),
                        Ok(_) => FormatError::Invalid("no metadata page at or below the committed version".into()),
                    };
                    return Err(StoreError::Format { path: p, region: "segment metadata", cause });
                }
            };
            let Ok(meta) = &metas[page] else { unreachable!("page {page} was found usable") };
            let wanted = (chunk_count - s * cps).min(cps);
            if meta.segment != s as u64 || meta.chunks.len() < wanted {
                return Err(StoreError::Format {
                    path: p,
                    region: "segment metadata",
                    cause: FormatError::Invalid(format!(
                        "segment {s}: metadata describes segment {} with {} chunks, {wanted} expected",
                        meta.segment,
                        meta.chunks.len()
                    )),
                });
            }
            chunks.extend(meta.chunks[..wanted].iter().map(|&committed| Chunk { committed, dirty: false }));
            segments.push(Segment { map, meta_page: page as u8 });
        }
        let mut table = Self {
            path: p,
            file,
            head,
            sb,
            segments,
            chunks,
            rows: committed.rows,
            index: IdIndex::with_capacity(committed.rows as usize),
            committed,
            committed_slot,
            sync: Box::new(OsSync),
            poisoned: false,
        };
        if damaged {
            table.verify()?;
        }
        table.rebuild_index()?;
        Ok(table)
    }

    fn rebuild_index(&mut self) -> Result<(), StoreError> {
        for c in 0..self.chunks.len() {
            let first = (c * ROWS_PER_CHUNK) as u64;
            let n = (self.rows - first).min(ROWS_PER_CHUNK as u64) as usize;
            let (s, range) = self.home_range(c, self.chunks[c].current_home());
            let ids: &[u64] = bytemuck::cast_slice(&self.segments[s].map.bytes()[range.start..range.start + 8 * n]);
            for (i, &id) in ids.iter().enumerate() {
                if let Err(earlier) = self.index.insert(id, (first + i as u64) as u32) {
                    return Err(StoreError::Invalid {
                        path: self.path.clone(),
                        detail: format!("id {id} appears in rows {earlier} and {} (corrupt table)", first + i as u64),
                    });
                }
            }
        }
        Ok(())
    }

    /// Replaces how commits make data durable (tests use [`super::FaultInjector`]).
    pub fn set_sync_backend(&mut self, backend: Box<dyn SyncBackend>) {
        self.sync = backend;
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn superblock(&self) -> &TableSuperblock {
        &self.sb
    }

    /// Floats of a row's value.
    pub fn dim(&self) -> usize {
        self.sb.dim as usize
    }

    /// Floats of a whole row record (value, then optimizer state).
    pub fn row_floats(&self) -> usize {
        self.sb.row_floats as usize
    }

    /// Rows now, including inserts not yet committed.
    pub fn len(&self) -> u64 {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn version(&self) -> u64 {
        self.committed.version
    }

    pub fn committed_rows(&self) -> u64 {
        self.committed.rows
    }

    pub fn counters(&self) -> &[(String, u64)] {
        &self.committed.counters
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        self.committed.counters.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Chunks written since the last commit.
    pub fn dirty_chunks(&self) -> usize {
        self.chunks.iter().filter(|c| c.dirty).count()
    }

    /// Bytes of memory the in-memory index holds.
    pub fn index_bytes(&self) -> usize {
        self.index.heap_bytes()
    }

    /// The file size the current rows need.
    pub fn file_len(&self) -> u64 {
        self.sb.file_len_for(self.rows)
    }

    /// Both header slots as they are on disk.
    pub fn slots(&self) -> [Result<TableHeader, FormatError>; 2] {
        [0, 1].map(|i| TableHeader::decode(slot_page(self.head.bytes(), i)))
    }

    pub fn committed_slot(&self) -> usize {
        self.committed_slot
    }

    fn home_range(&self, c: usize, home: u8) -> (usize, std::ops::Range<usize>) {
        home_range(&self.sb, c, home)
    }

    /// Byte range of row `i` of a chunk home, relative to the home's start.
    fn row_range(&self, i: usize) -> std::ops::Range<usize> {
        let at = PAGE + i * self.row_floats() * 4;
        at..at + self.row_floats() * 4
    }

    fn record(&self, row: u64) -> &[f32] {
        let (c, i) = (row as usize / ROWS_PER_CHUNK, row as usize % ROWS_PER_CHUNK);
        let (s, home) = self.home_range(c, self.chunks[c].current_home());
        let r = self.row_range(i);
        bytemuck::cast_slice(&self.segments[s].map.bytes()[home.start + r.start..home.start + r.end])
    }

    /// Row `row` for writing; its chunk must be dirty.
    fn record_mut(&mut self, row: u64) -> &mut [f32] {
        let (c, i) = (row as usize / ROWS_PER_CHUNK, row as usize % ROWS_PER_CHUNK);
        debug_assert!(self.chunks[c].dirty);
        let (s, home) = self.home_range(c, self.chunks[c].current_home());
        let r = self.row_range(i);
        bytemuck::cast_slice_mut(&mut self.segments[s].map.bytes_mut()[home.start + r.start..home.start + r.end])
    }

    /// Makes chunk `c` writable: the first time after a commit, its committed home is copied into the
    /// other home, which from then on holds its current rows.
    fn make_dirty(&mut self, c: usize) {
        if !self.chunks[c].dirty {
            let (s, from) = self.home_range(c, self.chunks[c].committed.home);
            let (_, to) = self.home_range(c, 1 - self.chunks[c].committed.home);
            self.segments[s].map.populate_write(to.start, to.len());
            self.segments[s].map.bytes_mut().copy_within(from, to.start);
            self.chunks[c].dirty = true;
        }
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.poisoned {
            return Err(StoreError::Poisoned { path: self.path.clone() });
        }
        Ok(())
    }

    /// The row of `id` (value, then optimizer state), if the table has it.
    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.index.get(id).map(|row| self.record(row as u64))
    }

    /// The row of `id` for writing, if the table has it.
    pub fn get_mut(&mut self, id: u64) -> Result<Option<&mut [f32]>, StoreError> {
        self.check_writable()?;
        let Some(row) = self.index.get(id) else { return Ok(None) };
        self.make_dirty(row as usize / ROWS_PER_CHUNK);
        Ok(Some(self.record_mut(row as u64)))
    }

    /// The row of `id` for writing; a new id gets a row of zeros that `init` then fills.
    pub fn get_or_insert_with(&mut self, id: u64, init: impl FnOnce(&mut [f32])) -> Result<&mut [f32], StoreError> {
        self.check_writable()?;
        let row = self.rows;
        if row >= MAX_ROWS {
            return Err(StoreError::Invalid { path: self.path.clone(), detail: format!("table is full ({row} rows)") });
        }
        let found = self.index.get_or_insert(id, row as u32) as u64;
        if found != row {
            self.make_dirty(found as usize / ROWS_PER_CHUNK);
            return Ok(self.record_mut(found));
        }
        let (c, i) = (row as usize / ROWS_PER_CHUNK, row as usize % ROWS_PER_CHUNK);
        if i == 0 {
            if let Err(e) = self.add_chunk() {
                self.poisoned = true; // the index already holds the id
                return Err(e);
            }
        } else {
            self.make_dirty(c);
        }
        let (s, home) = self.home_range(c, self.chunks[c].current_home());
        self.segments[s].map.bytes_mut()[home.start + 8 * i..home.start + 8 * i + 8].copy_from_slice(&id.to_le_bytes());
        self.rows += 1;
        let record = self.record_mut(row);
        record.fill(0.0);
        init(record);
        Ok(record)
    }

    fn add_chunk(&mut self) -> Result<(), StoreError> {
        let c = self.chunks.len();
        let s = c / self.sb.chunks_per_segment as usize;
        if s == self.segments.len() {
            let len = self.sb.segment_offset(s + 1);
            self.file.set_len(len).map_err(io(&self.path, "grow"))?;
            let map = Mapping::at(&self.file, self.sb.segment_offset(s), self.sb.segment_bytes() as usize)
                .map_err(io(&self.path, "map a segment"))?;
            self.segments.push(Segment { map, meta_page: 1 });
        }
        self.chunks.push(Chunk { committed: ChunkEntry { home: 1, checksum: 0 }, dirty: true });
        let (s, home) = self.home_range(c, 0);
        self.segments[s].map.populate_write(home.start, home.len());
        Ok(())
    }

    /// Ids in row order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.chunks.len()).flat_map(move |c| {
            let first = c * ROWS_PER_CHUNK;
            let n = (self.rows as usize - first).min(ROWS_PER_CHUNK);
            let (s, home) = self.home_range(c, self.chunks[c].current_home());
            let ids: &[u64] = bytemuck::cast_slice(&self.segments[s].map.bytes()[home.start..home.start + 8 * n]);
            ids.iter().copied()
        })
    }

    /// Row `row` in insertion order (value, then optimizer state).
    pub fn row_at(&self, row: u64) -> Option<&[f32]> {
        (row < self.rows).then(|| self.record(row))
    }

    /// Makes every change since the last commit durable as version + 1, with `counters` beside it.
    /// On error nothing was committed and the handle is poisoned.
    pub fn commit(&mut self, counters: &[(&str, u64)]) -> Result<u64, StoreError> {
        self.check_writable()?;
        let header = TableHeader {
            version: self.committed.version + 1,
            rows: self.rows,
            counters: counters.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        };
        let page =
            header.encode().map_err(|cause| StoreError::Format { path: self.path.clone(), region: "header", cause })?;
        let actual = self.file.metadata().map(|m| m.len()).unwrap_or(0);
        if actual < self.file_len() {
            self.poisoned = true;
            return Err(StoreError::Size { path: self.path.clone(), expected: self.file_len(), actual });
        }
        let cps = self.sb.chunks_per_segment as usize;
        let new_entries = self.checksum_dirty_chunks();
        for s in 0..self.segments.len() {
            let first = s * cps;
            let last = (first + cps).min(self.chunks.len());
            if !self.chunks[first..last].iter().any(|c| c.dirty) {
                continue;
            }
            let mut ranges = Vec::new();
            let mut meta = SegmentMeta { segment: s as u64, version: header.version, chunks: Vec::new() };
            for (c, (chunk, new)) in self.chunks.iter().zip(&new_entries).enumerate().take(last).skip(first) {
                meta.chunks.push(new.unwrap_or(chunk.committed));
                if chunk.dirty {
                    let (_, home) = self.home_range(c, chunk.current_home());
                    ranges.push((home.start, home.len()));
                }
            }
            let page_at = (1 - self.segments[s].meta_page as usize) * PAGE;
            self.segments[s].map.bytes_mut()[page_at..page_at + PAGE].copy_from_slice(&meta.encode());
            ranges.push((page_at, PAGE));
            if let Err(cause) = self.sync.sync_ranges(&mut self.segments[s].map, &ranges) {
                self.poisoned = true;
                return Err(StoreError::Sync { path: self.path.clone(), op: "sync of a segment", cause });
            }
        }
        let slot = 1 - self.committed_slot;
        if let Err(cause) = write_header_slot(&mut self.head, self.sync.as_mut(), slot, &page) {
            self.poisoned = true;
            return Err(StoreError::Sync { path: self.path.clone(), op: "sync of the header", cause });
        }
        for s in 0..self.segments.len() {
            let range = s * cps..((s + 1) * cps).min(self.chunks.len());
            if self.chunks[range].iter().any(|c| c.dirty) {
                self.segments[s].meta_page = 1 - self.segments[s].meta_page;
            }
        }
        for (chunk, entry) in self.chunks.iter_mut().zip(new_entries) {
            if let Some(entry) = entry {
                *chunk = Chunk { committed: entry, dirty: false };
            }
        }
        self.committed_slot = slot;
        self.committed = header;
        Ok(self.committed.version)
    }

    /// The entry each dirty chunk will have once committed.
    fn checksum_dirty_chunks(&self) -> Vec<Option<ChunkEntry>> {
        checksum_homes(&self.sb, &self.segments, &self.chunks, |c| c.dirty.then(|| c.current_home()))
    }

    /// Re-checks every committed chunk against its checksum (reads the whole table).
    pub fn verify(&self) -> Result<(), StoreError> {
        let committed = &self.chunks[..self.committed.rows.div_ceil(ROWS_PER_CHUNK as u64) as usize];
        let sums = checksum_homes(&self.sb, &self.segments, committed, |c| Some(c.committed.home));
        match sums.iter().zip(committed).position(|(sum, c)| sum.map(|e| e.checksum) != Some(c.committed.checksum)) {
            Some(chunk) => {
                Err(StoreError::ChunkChecksum { path: self.path.clone(), chunk, version: self.committed.version })
            }
            None => Ok(()),
        }
    }
}
