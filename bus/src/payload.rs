//! Building a payload frame and its checksum in one pass over memory.
//!
//! A frame's XXH3 covers every byte, so hashing a finished 16 MiB tensor reads back 16 MiB that left
//! the core's caches as they were written: a second pass over memory on a path that is already bound by
//! passes over memory (docs/benchmarks.md, "Bus"). [`PayloadBuilder`] writes the frame in 16 KiB pieces
//! and hashes each piece right after it is written, while it is still in the core's L1, so the checksum
//! adds no traffic to memory. [`describe`] stays for bytes that already exist; anything that produces a
//! payload (a copy of parameters, a computed delta, bytes built by a generator) goes through the builder.
//!
//! [`describe`]: crate::codec::describe

use crate::checksum::Xxh3Stream;
use crate::message::{Dtype, FrameDesc};

/// The piece the builder writes and then hashes: a third of a 48 KiB L1 data cache, leaving room for
/// the source a copy reads from.
pub const PIECE: usize = 16 << 10;

/// A payload frame under construction: its bytes and the running checksum of them.
pub struct PayloadBuilder {
    bytes: Vec<u8>,
    hash: Xxh3Stream,
}

impl PayloadBuilder {
    /// An empty frame with room for `bytes` bytes (the final size, when known, avoids regrowing).
    pub fn with_capacity(bytes: usize) -> Self {
        Self { bytes: Vec::with_capacity(bytes), hash: Xxh3Stream::new() }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends a copy of `src`, hashing each piece as it lands.
    pub fn extend_from_slice(&mut self, src: &[u8]) {
        for piece in src.chunks(PIECE) {
            let at = self.bytes.len();
            self.bytes.extend_from_slice(piece);
            self.hash.update(&self.bytes[at..]);
        }
    }

    /// Appends `n` bytes that `fill` writes, one piece at a time: `fill(offset, piece)` gets each piece
    /// (zeroed) and its offset among the `n` bytes, and the piece is hashed as soon as `fill` returns.
    pub fn extend_with(&mut self, n: usize, mut fill: impl FnMut(usize, &mut [u8])) {
        let mut done = 0;
        while done < n {
            let k = PIECE.min(n - done);
            let at = self.bytes.len();
            self.bytes.resize(at + k, 0);
            fill(done, &mut self.bytes[at..]);
            self.hash.update(&self.bytes[at..]);
            done += k;
        }
    }

    /// The finished frame and its descriptor for a header. Like [`describe`](crate::codec::describe),
    /// the shape is the caller's word; a receiver refuses a frame whose size does not match it.
    pub fn finish(self, dtype: Dtype, shape: &[u64]) -> (FrameDesc, Vec<u8>) {
        let desc = FrameDesc { dtype, shape: shape.to_vec(), checksum: self.hash.digest() };
        (desc, self.bytes)
    }
}
