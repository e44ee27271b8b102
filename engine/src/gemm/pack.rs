//! Packing: copying a block of A or B into the contiguous, zero-padded layout the microkernel streams.
//!
//! A block (mc x kc) becomes ⌈mc/MR⌉ slivers; sliver s stores, for each k step p, the MR values
//! `alpha · A[s·MR + i, p]` (i < MR) contiguously. B (kc x nc) becomes ⌈nc/NR⌉ slivers; sliver s stores, for
//! each p, the NR values `B[p, s·NR + j]`. Rows / columns past the matrix edge are zero, so edge tiles
//! need no special case inside the kernel.
//!
//! Packing is ~10% of a GEMM of the sizes a training step uses (m ≈ 256), so it is written for speed too:
//! each source line (a row, or a column of a transposed operand) is sliced once to exactly `kc` floats, so
//! the inner loops carry no bounds checks, and the source is always walked along its unit stride.

use super::MatRef;

/// Largest MR of any microkernel.
const MAX_MR: usize = 16;

/// Packs `alpha · A[i0..i0+mc, p0..p0+kc]` into `out` (⌈mc/mr⌉ · mr · kc floats).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_a(a: &MatRef, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, alpha: f32, out: &mut [f32]) {
    debug_assert!(mr <= MAX_MR);
    let slivers = mc.div_ceil(mr);
    for (s, dst) in out[..slivers * mr * kc].chunks_exact_mut(mr * kc).enumerate() {
        let rows = mr.min(mc - s * mr);
        let r0 = i0 + s * mr;
        if a.cs == 1 {
            // Row-major A: each of the sliver's rows is a contiguous run of kc floats.
            let src: [&[f32]; MAX_MR] =
                std::array::from_fn(|i| if i < rows { &a.data[(r0 + i) * a.rs + p0..][..kc] } else { &[][..] });
            for (p, col) in dst.chunks_exact_mut(mr).enumerate() {
                for (i, d) in col[..rows].iter_mut().enumerate() {
                    *d = src[i][p];
                }
                col[rows..].fill(0.0);
            }
        } else {
            // Column-major access (A given transposed): each k step is a contiguous run of `rows` floats.
            for (p, col) in dst.chunks_exact_mut(mr).enumerate() {
                let start = (p0 + p) * a.cs + r0 * a.rs;
                if a.rs == 1 {
                    col[..rows].copy_from_slice(&a.data[start..start + rows]);
                } else {
                    for (i, d) in col[..rows].iter_mut().enumerate() {
                        *d = a.data[start + i * a.rs];
                    }
                }
                col[rows..].fill(0.0);
            }
        }
        if alpha != 1.0 {
            crate::kernels::scale(alpha, dst);
        }
    }
}

/// Packs `B[p0..p0+kc, j0..j0+nc]` into `out` (⌈nc/nr⌉ · nr · kc floats).
pub(crate) fn pack_b(b: &MatRef, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, out: &mut [f32]) {
    let slivers = nc.div_ceil(nr);
    for (s, dst) in out[..slivers * nr * kc].chunks_exact_mut(nr * kc).enumerate() {
        let cols = nr.min(nc - s * nr);
        let c0 = j0 + s * nr;
        if b.cs == 1 {
            for (p, row) in dst.chunks_exact_mut(nr).enumerate() {
                let start = (p0 + p) * b.rs + c0;
                row[..cols].copy_from_slice(&b.data[start..start + cols]);
                row[cols..].fill(0.0);
            }
        } else if b.rs == 1 {
            // B given transposed: each column is a contiguous run of kc floats.
            for j in 0..cols {
                let src = &b.data[(c0 + j) * b.cs + p0..][..kc];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * nr + j] = v;
                }
            }
            if cols < nr {
                for row in dst.chunks_exact_mut(nr) {
                    row[cols..].fill(0.0);
                }
            }
        } else {
            for (p, row) in dst.chunks_exact_mut(nr).enumerate() {
                for (j, d) in row[..cols].iter_mut().enumerate() {
                    *d = b.data[(p0 + p) * b.rs + (c0 + j) * b.cs];
                }
                row[cols..].fill(0.0);
            }
        }
    }
}
