//! The store's on-disk format: pure encode / decode functions, no I/O (see docs/store-format.md).
//!
//! Every decoder takes untrusted bytes and returns a `FormatError` naming what is wrong; nothing here
//! panics on bad input or allocates more than the input's size justifies.

use shoal_checksum::xxh3;

pub const PAGE: usize = 4096;
pub const SUPERBLOCK_MAGIC: [u8; 8] = *b"SHOALSTR";
pub const HEADER_MAGIC: [u8; 8] = *b"SHOALHDR";
pub const FORMAT_VERSION: u32 = 1;
/// Byte offset of header slot `i` (0 or 1).
pub const fn slot_offset(i: usize) -> usize {
    PAGE * (1 + i)
}
pub const LAYOUT_OFFSET: usize = 3 * PAGE;
/// Counters a header carries (job round/step, reader offsets, ...).
pub const MAX_COUNTERS: usize = 64;
pub const COUNTER_NAME: usize = 24;
/// The checksum covers every byte of a page before its last eight.
const CHECKSUM_AT: usize = PAGE - 8;
/// Largest layout accepted (names and shapes of every tensor).
pub const MAX_LAYOUT_BYTES: usize = 64 << 20;
const MAX_DIMS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not a shoal store (bad magic)")]
    BadMagic,
    #[error("store format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("{what} checksum mismatch")]
    Checksum { what: &'static str },
    #[error("{0}")]
    Invalid(String),
}

pub(super) fn invalid(msg: impl Into<String>) -> FormatError {
    FormatError::Invalid(msg.into())
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub(super) fn seal(page: &mut [u8]) {
    let sum = xxh3(&page[..CHECKSUM_AT]);
    page[CHECKSUM_AT..PAGE].copy_from_slice(&sum.to_le_bytes());
}

pub(super) fn check_seal(page: &[u8], what: &'static str) -> Result<(), FormatError> {
    if page.len() < PAGE {
        return Err(invalid(format!("{what} is truncated")));
    }
    if xxh3(&page[..CHECKSUM_AT]) != u64_at(page, CHECKSUM_AT) {
        return Err(FormatError::Checksum { what });
    }
    Ok(())
}

/// Page 0: what the file is and where everything lives. Written once at creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub layout_len: u64,
    pub layout_checksum: u64,
    pub data_offset: u64,
    /// Bytes of parameters in one data copy.
    pub data_len: u64,
    /// Distance between the two data copies (data_len rounded up to a page).
    pub copy_stride: u64,
}

impl Superblock {
    pub fn for_layout(layout_bytes: &[u8], data_len: u64) -> Self {
        let data_offset = (LAYOUT_OFFSET + layout_bytes.len()).div_ceil(PAGE) * PAGE;
        Self {
            layout_len: layout_bytes.len() as u64,
            layout_checksum: xxh3(layout_bytes),
            data_offset: data_offset as u64,
            data_len,
            copy_stride: (data_len as usize).div_ceil(PAGE).max(1) as u64 * PAGE as u64,
        }
    }

    /// The file size this superblock describes.
    pub fn file_len(&self) -> u64 {
        self.data_offset + 2 * self.copy_stride
    }

    pub fn copy_offset(&self, copy: u32) -> u64 {
        self.data_offset + copy as u64 * self.copy_stride
    }

    pub fn encode(&self) -> [u8; PAGE] {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        p[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        p[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
        p[16..24].copy_from_slice(&(LAYOUT_OFFSET as u64).to_le_bytes());
        p[24..32].copy_from_slice(&self.layout_len.to_le_bytes());
        p[32..40].copy_from_slice(&self.data_offset.to_le_bytes());
        p[40..48].copy_from_slice(&self.data_len.to_le_bytes());
        p[48..56].copy_from_slice(&self.copy_stride.to_le_bytes());
        p[56..64].copy_from_slice(&self.layout_checksum.to_le_bytes());
        seal(&mut p);
        p
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < 8 || b[0..8] != SUPERBLOCK_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_seal(b, "superblock")?;
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        if u32_at(b, 12) as usize != PAGE || u64_at(b, 16) as usize != LAYOUT_OFFSET {
            return Err(invalid("superblock has an unexpected page size or layout offset"));
        }
        let sb = Self {
            layout_len: u64_at(b, 24),
            data_offset: u64_at(b, 32),
            data_len: u64_at(b, 40),
            copy_stride: u64_at(b, 48),
            layout_checksum: u64_at(b, 56),
        };
        let layout_end = LAYOUT_OFFSET as u64 + sb.layout_len;
        let ok = sb.layout_len as usize <= MAX_LAYOUT_BYTES
            && sb.data_offset.is_multiple_of(PAGE as u64)
            && sb.data_offset >= layout_end
            && sb.copy_stride.is_multiple_of(PAGE as u64)
            && sb.copy_stride >= sb.data_len
            && sb.data_len.is_multiple_of(4)
            && sb.data_offset.checked_add(sb.copy_stride.saturating_mul(2)).is_some();
        if !ok {
            return Err(invalid("superblock sizes are inconsistent"));
        }
        Ok(sb)
    }
}

/// Writes `counters` at byte `at` of a header page: each a NUL-padded name and a u64.
pub(super) fn encode_counters(p: &mut [u8], at: usize, counters: &[(String, u64)]) -> Result<(), FormatError> {
    if counters.len() > MAX_COUNTERS {
        return Err(invalid(format!("at most {MAX_COUNTERS} counters, got {}", counters.len())));
    }
    for (i, (name, value)) in counters.iter().enumerate() {
        if name.is_empty() || name.len() > COUNTER_NAME || name.contains('\0') {
            return Err(invalid(format!("counter name `{name}` must be 1..={COUNTER_NAME} bytes without NUL")));
        }
        let at = at + i * (COUNTER_NAME + 8);
        p[at..at + name.len()].copy_from_slice(name.as_bytes());
        p[at + COUNTER_NAME..at + COUNTER_NAME + 8].copy_from_slice(&value.to_le_bytes());
    }
    Ok(())
}

/// Reads `count` (at most `MAX_COUNTERS`, checked by the caller) counters from byte `at` of a header page.
pub(super) fn decode_counters(b: &[u8], at: usize, count: usize) -> Result<Vec<(String, u64)>, FormatError> {
    (0..count)
        .map(|i| {
            let at = at + i * (COUNTER_NAME + 8);
            let raw = &b[at..at + COUNTER_NAME];
            let len = raw.iter().position(|&c| c == 0).unwrap_or(COUNTER_NAME);
            let name = std::str::from_utf8(&raw[..len]).map_err(|_| invalid("counter name is not UTF-8"))?;
            Ok((name.to_string(), u64_at(b, at + COUNTER_NAME)))
        })
        .collect()
}

/// One of the two header slots: a committed version and the data copy that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Monotonically increasing; 0 is the state written by `create`.
    pub version: u64,
    /// Which data copy (0 or 1) holds this version.
    pub copy: u32,
    /// XXH3-64 of the copy's `data_len` bytes.
    pub data_checksum: u64,
    pub counters: Vec<(String, u64)>,
}

impl Header {
    pub fn encode(&self) -> Result<[u8; PAGE], FormatError> {
        let mut p = [0u8; PAGE];
        p[0..8].copy_from_slice(&HEADER_MAGIC);
        p[8..16].copy_from_slice(&self.version.to_le_bytes());
        p[16..20].copy_from_slice(&self.copy.to_le_bytes());
        p[20..24].copy_from_slice(&(self.counters.len() as u32).to_le_bytes());
        p[24..32].copy_from_slice(&self.data_checksum.to_le_bytes());
        encode_counters(&mut p, 40, &self.counters)?;
        seal(&mut p);
        Ok(p)
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < 8 || b[0..8] != HEADER_MAGIC {
            return Err(FormatError::BadMagic);
        }
        check_seal(b, "header")?;
        let copy = u32_at(b, 16);
        let count = u32_at(b, 20) as usize;
        if copy > 1 || count > MAX_COUNTERS {
            return Err(invalid("header fields out of range"));
        }
        let counters = decode_counters(b, 40, count)?;
        Ok(Self { version: u64_at(b, 8), copy, data_checksum: u64_at(b, 24), counters })
    }
}

/// One named tensor of the data region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    /// Offset in floats from the start of a data copy.
    pub offset: usize,
    /// Floats (the product of `shape`).
    pub len: usize,
}

pub fn encode_layout(tensors: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(tensors.len() as u32).to_le_bytes());
    for t in tensors {
        out.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        out.extend_from_slice(t.name.as_bytes());
        out.push(t.shape.len() as u8);
        for &d in &t.shape {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&(t.offset as u64).to_le_bytes());
        out.extend_from_slice(&(t.len as u64).to_le_bytes());
    }
    out
}

/// Decodes and validates a layout against the data size (`floats` per copy).
pub fn decode_layout(b: &[u8], floats: usize) -> Result<Vec<Tensor>, FormatError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], FormatError> {
        let s = b.get(at..at + n).ok_or_else(|| invalid("layout is truncated"))?;
        at += n;
        Ok(s)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().unwrap()) as usize;
    // Each entry needs at least 2 + 1 + 16 bytes: bound the allocation by the input size.
    if count > b.len() / 19 {
        return Err(invalid("layout declares more tensors than it has bytes for"));
    }
    let mut tensors = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = u16::from_le_bytes(take(2)?.try_into().unwrap()) as usize;
        let name = std::str::from_utf8(take(name_len)?).map_err(|_| invalid("tensor name is not UTF-8"))?.to_string();
        let ndim = take(1)?[0] as usize;
        if ndim > MAX_DIMS {
            return Err(invalid(format!("tensor `{name}` has {ndim} dimensions")));
        }
        let shape: Vec<usize> = (0..ndim)
            .map(|_| Ok(u64::from_le_bytes(take(8)?.try_into().unwrap()) as usize))
            .collect::<Result<_, FormatError>>()?;
        let offset = u64::from_le_bytes(take(8)?.try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(take(8)?.try_into().unwrap()) as usize;
        let product = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if product != Some(len) || offset.checked_add(len).is_none_or(|end| end > floats) {
            return Err(invalid(format!("tensor `{name}` does not fit the data region")));
        }
        if tensors.iter().any(|t: &Tensor| t.name == name) {
            return Err(invalid(format!("tensor `{name}` appears twice")));
        }
        tensors.push(Tensor { name, shape, offset, len });
    }
    if at != b.len() {
        return Err(invalid("layout has trailing bytes"));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Untrusted bytes never panic a decoder (the store's stand-in for a fuzz target).
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2 * PAGE), floats in 0usize..1 << 20) {
            let _ = Superblock::decode(&bytes);
            let _ = Header::decode(&bytes);
            let _ = decode_layout(&bytes, floats);
        }

        /// Valid encodings with random bytes overwritten: decoding never panics, and a header or superblock
        /// with any byte changed before its checksum is rejected.
        #[test]
        fn mutated_pages_are_rejected(at in 0usize..PAGE - 8, value in any::<u8>(), count in 0usize..70) {
            let counters: Vec<(String, u64)> = (0..count.min(MAX_COUNTERS)).map(|i| (format!("c{i}"), i as u64)).collect();
            let mut page = Header { version: 3, copy: 1, data_checksum: 9, counters }.encode().unwrap();
            let before = page[at];
            page[at] = value;
            prop_assert_eq!(Header::decode(&page).is_ok(), value == before);
            let mut sb = Superblock::for_layout(b"layout", 4096).encode();
            let before = sb[at];
            sb[at] = value;
            prop_assert_eq!(Superblock::decode(&sb).is_ok(), value == before);
        }

        #[test]
        fn mutated_layouts_never_panic(at in any::<prop::sample::Index>(), value in any::<u8>()) {
            let t = vec![
                Tensor { name: "encoder.0.weight".into(), shape: vec![4, 8], offset: 0, len: 32 },
                Tensor { name: "b".into(), shape: vec![8], offset: 32, len: 8 },
            ];
            let mut bytes = encode_layout(&t);
            let i = at.index(bytes.len());
            bytes[i] = value;
            let _ = decode_layout(&bytes, 40);
        }
    }

    #[test]
    fn pages_round_trip_and_detect_any_bit_flip() {
        let sb = Superblock::for_layout(b"abc", 1000);
        let page = sb.encode();
        assert_eq!(Superblock::decode(&page).unwrap(), sb);
        let h = Header { version: 7, copy: 1, data_checksum: 42, counters: vec![("round".into(), 3)] };
        let hp = h.encode().unwrap();
        assert_eq!(Header::decode(&hp).unwrap(), h);
        for bit in (0..PAGE * 8).step_by(97) {
            let mut bad = hp;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&bad).is_err(), "flip of bit {bit} undetected");
        }
    }

    #[test]
    fn layout_round_trips_and_rejects_overflowing_tensors() {
        let t = vec![
            Tensor { name: "w".into(), shape: vec![2, 3], offset: 0, len: 6 },
            Tensor { name: "b".into(), shape: vec![3], offset: 16, len: 3 },
        ];
        let bytes = encode_layout(&t);
        assert_eq!(decode_layout(&bytes, 19).unwrap(), t);
        assert!(decode_layout(&bytes, 18).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_layout(&bytes[..cut], 19).is_err());
        }
    }
}
