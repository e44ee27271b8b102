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

/// Packs `alpha · A[i0..i0+mc, p0..p0+kc]` into `out` (⌈mc/MR⌉ · MR · kc floats). MR is a constant so
/// every per-step copy is a fixed-size move the compiler inlines (a runtime length made each one a libc
/// memcpy call: ~6% of a training step).
pub(crate) fn pack_a<const MR: usize>(
    a: &MatRef,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    alpha: f32,
    out: &mut [f32],
) {
    let mr = MR;
    let slivers = mc.div_ceil(mr);
    for (s, dst) in out[..slivers * mr * kc].chunks_exact_mut(mr * kc).enumerate() {
        let rows = mr.min(mc - s * mr);
        let r0 = i0 + s * mr;
        if a.cs == 1 {
            // Row-major A: each of the sliver's rows is a contiguous run of kc floats.
            let src: [&[f32]; MR] =
                std::array::from_fn(|i| if i < rows { &a.data[(r0 + i) * a.rs + p0..][..kc] } else { &[][..] });
            if rows == MR {
                for (p, col) in dst.chunks_exact_mut(MR).enumerate() {
                    let col: &mut [f32; MR] = col.try_into().unwrap();
                    for i in 0..MR {
                        col[i] = src[i][p];
                    }
                }
            } else {
                for (p, col) in dst.chunks_exact_mut(MR).enumerate() {
                    for (i, d) in col.iter_mut().enumerate() {
                        *d = if i < rows { src[i][p] } else { 0.0 };
                    }
                }
            }
        } else {
            // Column-major access (A given transposed): each k step is a contiguous run of `rows` floats.
            for (p, col) in dst.chunks_exact_mut(MR).enumerate() {
                let start = (p0 + p) * a.cs + r0 * a.rs;
                if a.rs == 1 && rows == MR {
                    let src: &[f32; MR] = a.data[start..start + MR].try_into().unwrap();
                    col.copy_from_slice(src);
                } else {
                    for (i, d) in col.iter_mut().enumerate() {
                        *d = if i < rows { a.data[start + i * a.rs] } else { 0.0 };
                    }
                }
            }
        }
        if alpha != 1.0 {
            crate::kernels::scale(alpha, dst);
        }
    }
}

/// Packs `B[p0..p0+kc, j0..j0+nc]` into `out` (⌈nc/NR⌉ · NR · kc floats).
pub(crate) fn pack_b<const NR: usize>(b: &MatRef, p0: usize, kc: usize, j0: usize, nc: usize, out: &mut [f32]) {
    let nr = NR;
    let slivers = nc.div_ceil(nr);
    for (s, dst) in out[..slivers * nr * kc].chunks_exact_mut(nr * kc).enumerate() {
        let cols = nr.min(nc - s * nr);
        let c0 = j0 + s * nr;
        if b.cs == 1 && cols == NR {
            for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                let start = (p0 + p) * b.rs + c0;
                let src: &[f32; NR] = b.data[start..start + NR].try_into().unwrap();
                row.copy_from_slice(src);
            }
        } else if b.cs == 1 {
            for (p, row) in dst.chunks_exact_mut(NR).enumerate() {
                let start = (p0 + p) * b.rs + c0;
                for (j, d) in row.iter_mut().enumerate() {
                    *d = if j < cols { b.data[start + j] } else { 0.0 };
                }
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
