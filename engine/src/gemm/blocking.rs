//! GEMM block sizes, all in one place.
//!
//! BLIS loop order: NC columns of B are packed per KC-deep slab; each thread packs an MC-row block of A and
//! sweeps NR-wide B slivers (kept in L1 while MR-row A slivers stream past) over MR-row tiles.
//!
//! Sizes for the machine this was tuned on (48 KiB L1d, 2 MiB L2 per core):
//! - KC·NR·4 bytes of a B sliver must sit in L1 next to the streaming A sliver: 256·32·4 = 32 KiB.
//! - MC·KC·4 bytes of the packed A block live in L2: 384·256·4 = 384 KiB. Every A block re-reads the
//!   whole B panel, so a larger MC means less B traffic; 384 beat 192 and 288 on 2-thread 1024² and the
//!   training step (swept 192..480).
//! - The AVX-512 tile is 12 x 32 (24 accumulators): swept against 6x64, 8x48, 10..14x32 on the training
//!   step's shapes and on 1024², 12x32 was fastest on all of them (14x32, which fills 28 of 32 registers,
//!   was ~8% slower).
//! - B is packed SLABS_PER_PANEL slabs at a time (one parallel pass, then one compute pass per panel):
//!   at most 4·256·1024·4 = 4 MiB, in L2/L3; for the training step's shapes that is the whole B.
//!   NC = 1024 measured at or above 2048 and clearly above 512.

/// Tile and cache-block sizes for one microkernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Rows of a microkernel tile.
    pub mr: usize,
    /// Columns of a microkernel tile.
    pub nr: usize,
    /// Depth of a packed slab.
    pub kc: usize,
    /// Rows of A packed per block (a multiple of `mr`).
    pub mc: usize,
    /// Columns of B packed per panel (a multiple of `nr`).
    pub nc: usize,
}

pub const AVX512: Blocking = Blocking { mr: 12, nr: 32, kc: 256, mc: 12 * 32, nc: 1024 };
pub const AVX2: Blocking = Blocking { mr: 6, nr: 16, kc: 256, mc: 6 * 48, nc: 1024 };

/// KC-deep slabs of B packed together per panel.
pub const SLABS_PER_PANEL: usize = 4;

/// Below this many multiply-adds (m·n·k) a GEMM runs on the calling thread only. A rayon fork-join costs
/// 15-75 µs on the machines this was tuned on (more when the workers have gone to sleep), so a GEMM must
/// take well over 100 µs on one core before splitting it pays.
pub const PARALLEL_MIN_FLOPS: usize = 1 << 24;
