//! The sparse table's on-disk format: pure encode / decode functions, no I/O (see docs/store-format.md).
//!
//! Like the dense format, every decoder takes untrusted bytes and returns a `FormatError` naming what is
//! wrong.

use super::super::format::{
    COUNTER_NAME, FormatError, MAX_COUNTERS, PAGE, check_seal, decode_counters, encode_counters, invalid, seal, u32_at,
    u64_at,
};

pub const TABLE_MAGIC: [u8; 8] = *b"SHOALSPT";
pub const TABLE_HEADER_MAGIC: [u8; 8] = *b"SHOALSPH";
pub const SEGMENT_MAGIC: [u8; 8] = *b"SHOALSEG";
pub const TABLE_FORMAT_VERSION: u32 = 1;
/// Rows per chunk: their ids fill exactly one page, so rebuilding the index at open reads one page per
/// chunk and never touches the rows themselves.
pub const ROWS_PER_CHUNK: usize = PAGE / 8;
/// Byte offset of the first segment (after the superblock and the two header slots).
pub const SEGMENTS_OFFSET: u64 = 3 * PAGE as u64;
/// Most chunks one segment's metadata page can describe.
pub const MAX_CHUNKS_PER_SEGMENT: usize = (PAGE - 8 - META_ENTRIES_AT) / META_ENTRY;
/// A segment is sized to about this many bytes (at least one chunk pair).
const SEGMENT_TARGET: u64 = 64 << 20;
/// Largest row accepted: value plus optimizer state, in floats.
pub const MAX_ROW_FLOATS: usize = 1 << 20;
pub const LABEL_LEN: usize = 24;
const META_ENTRIES_AT: usize = 32;
const META_ENTRY: usize = 16;

/// Page 0 of a table file: the row shape and the sizes derived from it. Written once at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSuperblock {
    /// Floats of a row's value (the embedding).
    pub dim: u32,
    /// Floats of a whole row record: the value, then the optimizer state.
    pub row_floats: u32,
    pub chunks_per_segment: u32,
    /// What the state floats hold (e.g. "adagrad"); empty when there is none.
    pub label: String,
}

impl TableSuperblock {
    /// The superblock of a table of `dim`-float rows with `state_floats` of optimizer state. Segments are
    /// sized to about 64 MiB unless `chunks_per_segment` says otherwise.
    pub fn new(
        dim: usize,
        state_floats: usize,
        label: &str,
        chunks_per_segment: Option<u32>,
    ) -> Result<Self, FormatError> {
        let row_floats = dim.checked_add(state_floats).filter(|&r| dim > 0 && r <= MAX_ROW_FLOATS);
        let Some(row_floats) = row_floats else {
            return Err(invalid(format!(
                "a row needs 1..={MAX_ROW_FLOATS} floats in all, got dim {dim} + state {state_floats}"
            )));
        };
        if label.len() > LABEL_LEN || label.contains('\0') {
            return Err(invalid(format!("label `{label}` must be at most {LABEL_LEN} bytes without NUL")));
        }
        let chunk = chunk_bytes(row_floats as u32);
        let cps = match chunks_per_segment {
            Some(n) if n == 0 || n as usize > MAX_CHUNKS_PER_SEGMENT => {
                return Err(invalid(format!("chunks per segment must be 1..={MAX_CHUNKS_PER_SEGMENT}, got {n}")));
            }
            Some(n) => n,
            None => (SEGMENT_TARGET / (2 * chunk)).clamp(1, MAX_CHUNKS_PER_SEGMENT as u64) as u32,
        };
        Ok(Self { dim: dim as u32, row_floats: row_floats as u32, chunks_per_segment: cps, label: label.into() })
    }

    /// Bytes of one chunk: a page of ids, then the rows, padded to a page.
    pub fn chunk_bytes(&self) -> u64 {
        chunk_bytes(self.row_floats)
    }

    /// Bytes of one segment: two metadata pages, then two homes per chunk.
    pub fn segment_bytes(&self) -> u64 {
        2 * PAGE as u64 + 2 * self.chunks_per_segment as u64 * self.chunk_bytes()
    }

    pub fn segment_offset(&self, segment: usize) -> u64 {
        SEGMENTS_OFFSET + segment as u64 * self.segment_bytes()
    }

    /// Offset of `home` (0 or 1) of chunk `c_in_segment` from the start of its segment.
    pub fn home_offset(&self, c_in_segment: usize, home: u8) -> usize {
        2 * PAGE + (2 * c_in_segment + home as usize) * self.chunk_bytes() as usize
    }

    /// Segments needed to hold `rows` rows.
    pub fn segments_for(&self, rows: u64) -> usize {
        (rows.div_ceil(ROWS_PER_CHUNK as u64)).div_ceil(self.chunks_per_segment as u64) as usize
    }

    /// The file size holding `rows` rows.
    pub fn file_len_for(&self, rows: u64) -> u64 {
        SEGMENTS_OFFSET + self.segments_for(rows) as u64 * self.segment_bytes()
    }

    pub fn encode(&self) -> [u8; PAGE] {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&TABLE_MAGIC);
        p[8..12].copy_from_slice(&TABLE_FORMAT_VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
        p[16..20].copy_from_slice(&self.dim.to_le_bytes());
        p[20..24].copy_from_slice(&self.row_floats.to_le_bytes());
        p[24..28].copy_from_slice(&(ROWS_PER_CHUNK as u32).to_le_bytes());
        p[28..32].copy_from_slice(&self.chunks_per_segment.to_le_bytes());
        p[32..40].copy_from_slice(&self.chunk_bytes().to_le_bytes());
        p[40..48].copy_from_slice(&self.segment_bytes().to_le_bytes());
        p[48..48 + self.label.len()].copy_from_slice(self.label.as_bytes());
        seal(&mut p);
        p
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < 8 || b[0..8] != TABLE_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_seal(b, "superblock")?;
        let version = u32_at(b, 8);
        if version != TABLE_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let raw = &b[48..48 + LABEL_LEN];
        let len = raw.iter().position(|&c| c == 0).unwrap_or(LABEL_LEN);
        let label = std::str::from_utf8(&raw[..len]).map_err(|_| invalid("label is not UTF-8"))?.to_string();
        let dim = u32_at(b, 16);
        let row_floats = u32_at(b, 20);
        let cps = u32_at(b, 28);
        if dim == 0 || row_floats < dim || row_floats as usize > MAX_ROW_FLOATS {
            return Err(invalid(format!("row shape out of range (dim {dim}, row floats {row_floats})")));
        }
        if u32_at(b, 12) as usize != PAGE || u32_at(b, 24) as usize != ROWS_PER_CHUNK {
            return Err(invalid("unexpected page size or rows per chunk"));
        }
        if cps == 0 || cps as usize > MAX_CHUNKS_PER_SEGMENT {
            return Err(invalid(format!("{cps} chunks per segment is out of range")));
        }
        let sb = Self { dim, row_floats, chunks_per_segment: cps, label };
        if u64_at(b, 32) != sb.chunk_bytes() || u64_at(b, 40) != sb.segment_bytes() {
            return Err(invalid("chunk or segment size does not match the row shape"));
        }
        Ok(sb)
    }
}

fn chunk_bytes(row_floats: u32) -> u64 {
    let rows = ROWS_PER_CHUNK as u64 * row_floats as u64 * 4;
    PAGE as u64 + rows.div_ceil(PAGE as u64) * PAGE as u64
}

/// One of the table's two header slots: a committed version and its row count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableHeader {
    pub version: u64,
    pub rows: u64,
    pub counters: Vec<(String, u64)>,
}

impl TableHeader {
    pub fn encode(&self) -> Result<[u8; PAGE], FormatError> {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&TABLE_HEADER_MAGIC);
        p[8..16].copy_from_slice(&self.version.to_le_bytes());
        p[16..24].copy_from_slice(&self.rows.to_le_bytes());
        p[24..28].copy_from_slice(&(self.counters.len() as u32).to_le_bytes());
        encode_counters(&mut p, 40, &self.counters)?;
        seal(&mut p);
        Ok(p)
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < 8 || b[0..8] != TABLE_HEADER_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_seal(b, "header")?;
        let count = u32_at(b, 24) as usize;
        if count > MAX_COUNTERS {
            return Err(invalid("header fields out of range"));
        }
        Ok(Self { version: u64_at(b, 8), rows: u64_at(b, 16), counters: decode_counters(b, 40, count)? })
    }
}

/// Where one chunk's committed rows are, and their checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Which of the chunk's two homes (0 or 1) holds it.
    pub home: u8,
    /// XXH3-64 of the whole home (`chunk_bytes`).
    pub checksum: u64,
}

/// A segment's metadata page, written (into the older of its two pages) by every commit that changed
/// one of the segment's chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    pub segment: u64,
    /// The commit that wrote this page.
    pub version: u64,
    pub chunks: Vec<ChunkEntry>,
}

impl SegmentMeta {
    pub fn encode(&self) -> [u8; PAGE] {
        assert!(self.chunks.len() <= MAX_CHUNKS_PER_SEGMENT, "segment metadata overflows its page");
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&SEGMENT_MAGIC);
        p[8..16].copy_from_slice(&self.segment.to_le_bytes());
        p[16..24].copy_from_slice(&self.version.to_le_bytes());
        p[24..28].copy_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (i, e) in self.chunks.iter().enumerate() {
            let at = META_ENTRIES_AT + i * META_ENTRY;
            p[at..at + 4].copy_from_slice(&(e.home as u32).to_le_bytes());
            p[at + 8..at + 16].copy_from_slice(&e.checksum.to_le_bytes());
        }
        seal(&mut p);
        p
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < 8 || b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_seal(b, "segment metadata")?;
        let count = u32_at(b, 24) as usize;
        if count > MAX_CHUNKS_PER_SEGMENT {
            return Err(invalid(format!("segment metadata lists {count} chunks")));
        }
        let chunks = (0..count)
            .map(|i| {
                let at = META_ENTRIES_AT + i * META_ENTRY;
                match u32_at(b, at) {
                    home @ (0 | 1) => Ok(ChunkEntry { home: home as u8, checksum: u64_at(b, at + 8) }),
                    other => Err(invalid(format!("chunk {i} names home {other}"))),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { segment: u64_at(b, 8), version: u64_at(b, 16), chunks })
    }
}

const _: () = assert!(COUNTER_NAME + 8 == 32 && 40 + MAX_COUNTERS * 32 <= PAGE - 8);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn superblock_round_trips_and_sizes_are_pages() {
        for (dim, state) in [(1, 0), (16, 16), (64, 128), (1000, 2000), (4096, 8192)] {
            let sb = TableSuperblock::new(dim, state, "adam", None).unwrap();
            assert_eq!(TableSuperblock::decode(&sb.encode()).unwrap(), sb);
            assert_eq!(sb.chunk_bytes() % PAGE as u64, 0);
            assert!(sb.chunk_bytes() >= (PAGE + ROWS_PER_CHUNK * (dim + state) * 4) as u64);
            assert!(sb.chunks_per_segment >= 1 && sb.chunks_per_segment as usize <= MAX_CHUNKS_PER_SEGMENT);
        }
        assert!(TableSuperblock::new(0, 4, "", None).is_err());
        assert!(TableSuperblock::new(4, MAX_ROW_FLOATS, "", None).is_err());
        assert!(TableSuperblock::new(4, 0, "", Some(0)).is_err());
        assert_eq!(TableSuperblock::new(4, 0, "", Some(3)).unwrap().chunks_per_segment, 3);
    }

    #[test]
    fn segment_meta_round_trips() {
        let m = SegmentMeta {
            segment: 3,
            version: 9,
            chunks: (0..MAX_CHUNKS_PER_SEGMENT)
                .map(|i| ChunkEntry { home: (i % 2) as u8, checksum: i as u64 * 7 })
                .collect(),
        };
        assert_eq!(SegmentMeta::decode(&m.encode()).unwrap(), m);
        let h = TableHeader { version: 4, rows: 1 << 40, counters: vec![("round".into(), 2)] };
        assert_eq!(TableHeader::decode(&h.encode().unwrap()).unwrap(), h);
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..PAGE + 8)) {
            let _ = TableSuperblock::decode(&bytes);
            let _ = TableHeader::decode(&bytes);
            let _ = SegmentMeta::decode(&bytes);
        }

        #[test]
        fn every_bit_flip_is_detected(bit in 0usize..(PAGE - 8) * 8) {
            let m = SegmentMeta { segment: 1, version: 2, chunks: vec![ChunkEntry { home: 1, checksum: 5 }; 10] };
            let mut p = m.encode();
            p[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(SegmentMeta::decode(&p).is_err());
        }
    }
}
