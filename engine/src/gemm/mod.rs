//! f32 GEMM: `C = alpha · A · B + beta · C` for row-major C and strided views of A and B.
//!
//! Backprop needs three forms (A·B forward, Aᵀ·B for weight gradients, A·Bᵀ for input gradients); all are
//! one routine here, because a transpose is only a swap of strides in a [`MatRef`] and the packers read
//! along whichever stride is unit. The structure is BLIS's: pack a KC-deep slab of B once, let each rayon
//! thread pack its own MC-row block of A, and sweep a register-blocked MR x NR microkernel over the tiles
//! (`crate::simd::microkernel`). Threads own disjoint row blocks of C (`par_chunks_mut`), so the driver is
//! safe code. Packing buffers are per-thread and reused: after the first call, no GEMM allocates.

pub mod blocking;
mod pack;

use std::cell::Cell;

use rayon::prelude::*;

use crate::Isa;
use crate::aligned::AlignedVec;
use crate::simd::microkernel::Microkernel;
use blocking::{Blocking, PARALLEL_MIN_FLOPS, SLABS_PER_PANEL};
use pack::{pack_a, pack_b};

/// A read-only strided matrix view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix.
    ///
    /// # Panics
    /// If `data` is shorter than `rows · cols`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "MatRef: {} floats cannot hold a {rows}x{cols} matrix", data.len());
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// (row stride, column stride).
    pub fn strides(&self) -> (usize, usize) {
        (self.rs, self.cs)
    }

    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    #[inline]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// `C = alpha · A · B + beta · C` with the active instruction set ([`Isa::active`]).
/// C is row-major `A.rows() x B.cols()`. With `beta == 0`, C's prior contents are never read (NaN in C
/// does not leak into the result).
pub fn gemm(alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    gemm_with(Isa::active(), alpha, a, b, beta, c)
}

/// [`gemm`] on a chosen code path. An ISA the CPU lacks falls back to the scalar path.
///
/// # Panics
/// If `A.cols() != B.rows()` or `c.len() != A.rows() · B.cols()`.
pub fn gemm_with(isa: Isa, alpha: f32, a: MatRef, b: MatRef, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: A is {m}x{k} but B has {} rows", b.rows);
    assert_eq!(c.len(), m * n, "gemm: C must hold {m}x{n} floats");
    if m == 0 || n == 0 {
        return;
    }
    if beta != 0.0 && beta != 1.0 {
        crate::kernels::scale(beta, c);
    }
    if k == 0 || alpha == 0.0 {
        if beta == 0.0 {
            c.fill(0.0);
        }
        return;
    }
    match Microkernel::for_isa(isa) {
        Some(kernel) => blocked(kernel, alpha, &a, &b, beta == 0.0, c),
        None => scalar(alpha, &a, &b, beta == 0.0, c),
    }
}

/// The plain loop nest: the scalar path (and the path on CPUs without a microkernel).
fn scalar(alpha: f32, a: &MatRef, b: &MatRef, overwrite: bool, c: &mut [f32]) {
    let (k, n) = (a.cols, b.cols);
    for (i, crow) in c.chunks_exact_mut(n).enumerate() {
        if overwrite {
            crow.fill(0.0);
        }
        for p in 0..k {
            let av = alpha * a.at(i, p);
            for (j, cv) in crow.iter_mut().enumerate() {
                *cv = av.mul_add(b.at(p, j), *cv);
            }
        }
    }
}

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
    static PACK_A: Cell<AlignedVec> = Cell::new(AlignedVec::default());
    static PACK_B: Cell<AlignedVec> = Cell::new(AlignedVec::default());
}

/// Takes a thread's packing buffer (leaving an empty one: a GEMM nested on the same thread by rayon's
/// work stealing then simply allocates its own instead of aliasing this one).
fn take(key: &'static std::thread::LocalKey<Cell<AlignedVec>>) -> AlignedVec {
    key.with(Cell::take)
}

fn give_back(key: &'static std::thread::LocalKey<Cell<AlignedVec>>, buf: AlignedVec) {
    key.with(|c| c.set(buf));
}

/// Start rows of the row blocks C is split into: at most MC rows each, multiples of MR (except the last
/// block's end), and a count that is a multiple of `threads` so every thread gets the same share.
fn row_blocks(m: usize, bl: &Blocking, threads: usize, starts: &mut Vec<usize>) {
    starts.clear();
    let parts = if threads <= 1 { m.div_ceil(bl.mc) } else { m.div_ceil(bl.mc).div_ceil(threads) * threads };
    let slivers = m.div_ceil(bl.mr);
    // Distribute whole MR slivers as evenly as possible over `parts` blocks.
    for t in 0..parts.min(slivers) {
        starts.push((t * slivers / parts.min(slivers)) * bl.mr);
    }
}

fn blocked(kernel: Microkernel, alpha: f32, a: &MatRef, b: &MatRef, first_overwrites: bool, c: &mut [f32]) {
    let bl = kernel.blocking;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let parallel = m * n * k >= PARALLEL_MIN_FLOPS && m > bl.mr && !SERIAL.with(Cell::get);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let mut starts = Vec::with_capacity(8);
    row_blocks(m, &bl, threads, &mut starts);
    let mut bpack = take(&PACK_B);
    for jc in (0..n).step_by(bl.nc) {
        let nc = bl.nc.min(n - jc);
        let ncp = nc.div_ceil(bl.nr) * bl.nr;
        for kp in (0..k).step_by(bl.kc * SLABS_PER_PANEL) {
            let kpn = (bl.kc * SLABS_PER_PANEL).min(k - kp);
            // Pack up to SLABS_PER_PANEL slabs at once (slab `s` starts at `s · KC · ncp`), so the compute
            // below needs one parallel section per panel, not one per slab: fork-join rounds cost more than
            // the packing they would overlap at the sizes training uses.
            bpack.resize(ncp * kpn);
            let pack_slab = |(slab, dst): (usize, &mut [f32])| {
                let pc = kp + slab * bl.kc;
                let kc = bl.kc.min(k - pc);
                match bl.nr {
                    32 => pack_b::<32>(b, pc, kc, jc, nc, dst),
                    16 => pack_b::<16>(b, pc, kc, jc, nc, dst),
                    nr => unreachable!("no packer for NR = {nr}"),
                }
            };
            if threads > 1 {
                bpack.par_chunks_mut(ncp * bl.kc).enumerate().for_each(pack_slab);
            } else {
                bpack.chunks_mut(ncp * bl.kc).enumerate().for_each(pack_slab);
            }
            let bpanel: &[f32] = &bpack;
            let job = |(i0, cblock): (usize, &mut [f32])| {
                let mc = cblock.len() / n;
                let mut apack = take(&PACK_A);
                for pc in (kp..kp + kpn).step_by(bl.kc) {
                    let kc = bl.kc.min(k - pc);
                    apack.resize(mc.div_ceil(bl.mr) * bl.mr * kc);
                    match bl.mr {
                        12 => pack_a::<12>(a, i0, mc, pc, kc, alpha, &mut apack),
                        6 => pack_a::<6>(a, i0, mc, pc, kc, alpha, &mut apack),
                        mr => unreachable!("no packer for MR = {mr}"),
                    }
                    let overwrite = first_overwrites && pc == 0;
                    macro_tile(&kernel, kc, &apack, &bpanel[(pc - kp) * ncp..], mc, nc, cblock, n, jc, overwrite);
                }
                give_back(&PACK_A, apack);
            };
            // Disjoint row blocks of C, one work item each.
            let mut blocks: Vec<(usize, &mut [f32])> = Vec::with_capacity(starts.len());
            let mut rest: &mut [f32] = &mut *c;
            for (t, &i0) in starts.iter().enumerate() {
                let end = starts.get(t + 1).copied().unwrap_or(m);
                let (block, tail) = std::mem::take(&mut rest).split_at_mut((end - i0) * n);
                blocks.push((i0, block));
                rest = tail;
            }
            if threads > 1 {
                blocks.into_par_iter().for_each(job);
            } else {
                blocks.into_iter().for_each(job);
            }
        }
    }
    give_back(&PACK_B, bpack);
}

/// Largest MR x NR tile of any microkernel (edge tiles are computed into a stack buffer this big).
const MAX_TILE: usize = 12 * 32;

/// All tiles of one packed A block against one packed B panel. `cblock` holds the block's rows of C.
#[allow(clippy::too_many_arguments)]
fn macro_tile(
    kernel: &Microkernel,
    kc: usize,
    apack: &[f32],
    bpack: &[f32],
    mc: usize,
    nc: usize,
    cblock: &mut [f32],
    ldc: usize,
    jc: usize,
    overwrite: bool,
) {
    let Blocking { mr, nr, .. } = kernel.blocking;
    debug_assert!(mr * nr <= MAX_TILE);
    // Edge tiles are computed here first; the kernel overwrites every element, so no re-zeroing per tile.
    let mut tile = [0.0f32; MAX_TILE];
    for jr in (0..nc).step_by(nr) {
        let bs = &bpack[(jr / nr) * nr * kc..][..nr * kc];
        let cols = nr.min(nc - jr);
        for ir in (0..mc).step_by(mr) {
            let asl = &apack[(ir / mr) * mr * kc..][..mr * kc];
            let rows = mr.min(mc - ir);
            let off = ir * ldc + jc + jr;
            if rows == mr && cols == nr {
                kernel.run(kc, asl, bs, &mut cblock[off..], ldc, overwrite);
            } else {
                kernel.run(kc, asl, bs, &mut tile, nr, true);
                for i in 0..rows {
                    let dst = &mut cblock[off + i * ldc..][..cols];
                    let src = &tile[i * nr..][..cols];
                    if overwrite {
                        dst.copy_from_slice(src);
                    } else {
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f` with every GEMM it makes confined to the calling thread: for callers that already split the
/// work across threads at a coarser grain (e.g. one batch shard per thread), where nested fork-joins
/// would only add synchronisation.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// C = A·B for row-major A (m x k) and B (k x n), overwriting C.
pub fn matmul(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm(1.0, MatRef::new(a, m, k), MatRef::new(b, k, n), 0.0, c);
}
