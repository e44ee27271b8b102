//! 64-byte aligned f32 buffers.
//!
//! Every parameter, gradient and packing buffer in the engine starts on a cache line: a 512-bit load that
//! straddles two lines costs about 20% on this class of CPU (measured while writing docs/simd.md), and an
//! aligned start makes the split point of every slice predictable. Alignment comes from the element type
//! (a 64-byte block of 16 floats), so no allocator call and no `unsafe` are needed.

use bytemuck::{Pod, Zeroable};

/// Floats per cache line: offsets inside parameter layouts are rounded up to this.
pub const LINE_FLOATS: usize = 16;

#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([f32; LINE_FLOATS]);

/// A growable, zero-initialised f32 buffer whose first element is 64-byte aligned.
#[derive(Clone, Default)]
pub struct AlignedVec {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedVec {
    /// A buffer of `len` zeros.
    pub fn zeros(len: usize) -> Self {
        Self { lines: vec![Line([0.0; LINE_FLOATS]); len.div_ceil(LINE_FLOATS)], len }
    }

    /// A buffer holding a copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        let mut v = Self::zeros(values.len());
        v.as_mut_slice().copy_from_slice(values);
        v
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Grows (zero-filling) or shrinks to `len`; keeps the allocation when shrinking so scratch buffers
    /// reach a steady state and stop allocating.
    pub fn resize(&mut self, len: usize) {
        let lines = len.div_ceil(LINE_FLOATS);
        if lines > self.lines.len() {
            self.lines.resize(lines, Line([0.0; LINE_FLOATS]));
        }
        if len < self.len {
            // Keep the invariant that floats past `len` in the last line are zero, so growing again is exact.
            let tail_start = len;
            let tail_end = self.len.min(lines * LINE_FLOATS);
            if tail_start < tail_end {
                bytemuck::cast_slice_mut::<Line, f32>(&mut self.lines)[tail_start..tail_end].fill(0.0);
            }
        } else if len > self.len {
            // Lines kept from an earlier, longer size may hold stale values.
            bytemuck::cast_slice_mut::<Line, f32>(&mut self.lines)[self.len..len].fill(0.0);
        }
        self.len = len;
    }

    pub fn as_slice(&self) -> &[f32] {
        &bytemuck::cast_slice::<Line, f32>(&self.lines)[..self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut bytemuck::cast_slice_mut::<Line, f32>(&mut self.lines)[..self.len]
    }
}

impl std::ops::Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.as_mut_slice()
    }
}

impl std::fmt::Debug for AlignedVec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice().iter()).finish()
    }
}

impl PartialEq for AlignedVec {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_cache_line() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let v = AlignedVec::zeros(len);
            assert_eq!(v.len(), len);
            if len > 0 {
                assert_eq!(v.as_ptr() as usize % 64, 0);
            }
        }
    }

    #[test]
    fn resize_zero_fills_and_forgets_old_values() {
        let mut v = AlignedVec::from_slice(&[1.0; 40]);
        v.resize(5);
        v.resize(40);
        assert_eq!(&v[..5], &[1.0; 5]);
        assert!(v[5..].iter().all(|&x| x == 0.0));
    }
}
