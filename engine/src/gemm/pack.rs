//! Packing: copying a block of A or B into the contiguous, zero-padded layout the microkernel streams.
//!
//! A block (mc x kc) becomes ⌈mc/MR⌉ slivers; sliver s stores, for each k step p, the MR values
//! `alpha · A[s·MR + i, p]` (i < MR) contiguously. B (kc x nc) becomes ⌈nc/NR⌉ slivers; sliver s stores, for
//! each p, the NR values `B[p, s·NR + j]`. Rows / columns past the matrix edge are zero, so edge tiles
//! need no special case inside the kernel. Each packer walks the source along its unit stride, whichever
//! of the two strides that is, so transposed operands pack as fast as plain ones.

use super::MatRef;

/// Packs `alpha · A[i0..i0+mc, p0..p0+kc]` into `out` (⌈mc/mr⌉ · mr · kc floats).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_a(a: &MatRef, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, alpha: f32, out: &mut [f32]) {
    let slivers = mc.div_ceil(mr);
    debug_assert!(out.len() >= slivers * mr * kc);
    for s in 0..slivers {
        let dst = &mut out[s * mr * kc..(s + 1) * mr * kc];
        let rows = mr.min(mc - s * mr);
        if a.cs == 1 {
            // Row-major rows: read each row along k, scatter into the sliver's column.
            for i in 0..rows {
                let src = &a.data[(i0 + s * mr + i) * a.rs + p0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * mr + i] = alpha * v;
                }
            }
        } else {
            for p in 0..kc {
                let col = (p0 + p) * a.cs;
                for i in 0..rows {
                    dst[p * mr + i] = alpha * a.data[col + (i0 + s * mr + i) * a.rs];
                }
            }
        }
        if rows < mr {
            for p in 0..kc {
                dst[p * mr + rows..(p + 1) * mr].fill(0.0);
            }
        }
    }
}

/// Packs `B[p0..p0+kc, j0..j0+nc]` into `out` (⌈nc/nr⌉ · nr · kc floats).
pub(crate) fn pack_b(b: &MatRef, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, out: &mut [f32]) {
    let slivers = nc.div_ceil(nr);
    debug_assert!(out.len() >= slivers * nr * kc);
    for s in 0..slivers {
        let dst = &mut out[s * nr * kc..(s + 1) * nr * kc];
        let cols = nr.min(nc - s * nr);
        let c0 = j0 + s * nr;
        if b.cs == 1 {
            for p in 0..kc {
                let row = (p0 + p) * b.rs + c0;
                dst[p * nr..p * nr + cols].copy_from_slice(&b.data[row..row + cols]);
            }
        } else if b.rs == 1 {
            // Columns are contiguous (B given transposed): read along k.
            for j in 0..cols {
                let src = &b.data[(c0 + j) * b.cs + p0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * nr + j] = v;
                }
            }
        } else {
            for p in 0..kc {
                for j in 0..cols {
                    dst[p * nr + j] = b.data[(p0 + p) * b.rs + (c0 + j) * b.cs];
                }
            }
        }
        if cols < nr {
            for p in 0..kc {
                dst[p * nr + cols..(p + 1) * nr].fill(0.0);
            }
        }
    }
}
