//! shoal-checksum: XXH3-64 (seed 0), the checksum of every payload frame on the wire and of every
//! page and committed copy in the parameter store.
//!
//! # Why this crate exists
//!
//! Both the bus and the store hash large buffers that have usually just left the caches: a frame that
//! libzmq's I/O thread wrote on the other core, a gigabyte of parameters being committed. The
//! `xxhash-rust` crate's loop keeps too few loads in flight for that: on 1 MiB just evicted it hashes
//! 11-20 GB/s where a bare read pass manages 30. Its vector width is also fixed at compile time, so the
//! x86-64-v3 build would run 256-bit code on an AVX-512 machine. This crate runs XXH3's long-input path
//! (more than 240 bytes) on 512-bit registers when the CPU has AVX-512F, chosen at run time; it holds
//! the 16 stripe keys in registers and prefetches 8 KiB ahead (swept over 1, 2, 4, 8, 16 and 32 KiB,
//! docs/benchmarks.md). Within a block it sums the data words unswapped and swaps the sum once, one
//! shuffle per block instead of one per stripe. Evicted data hashes at the speed of a read pass (about
//! 30 GB/s here), cached data at about 60 GB/s. The same loop also runs streamed ([`Xxh3Stream`]), so
//! a producer can hash each piece of a buffer while it is still in cache.
//!
//! Inputs of 240 bytes or less (XXH3's other code paths, with no bulk work) and CPUs without AVX-512F
//! use the crate, which is also the oracle this loop is tested against, bit for bit
//! (`tests/bus_checksum.rs`). The engine and the bus both depend on this crate and on nothing of each
//! other. All its `unsafe` is the intrinsics of the 512-bit loop.

use xxhash_rust::xxh3::xxh3_64;

/// XXH3-64 (seed 0) of `bytes`: the checksum of a payload frame, a store page or a committed copy.
pub fn xxh3(bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() > MID_SIZE_MAX && avx512::available() {
        // SAFETY: the CPU supports AVX-512F (checked just above) and the input is longer than 240 bytes,
        // which is all `long` requires.
        return unsafe { avx512::long(bytes) };
    }
    xxh3_64(bytes)
}

/// The `xxhash-rust` crate's XXH3-64 whatever the length and CPU: the reference [`xxh3`] is tested
/// against.
pub fn xxh3_reference(bytes: &[u8]) -> u64 {
    xxh3_64(bytes)
}

/// Which code [`xxh3`] runs for long inputs on this CPU (for `shoal info`).
pub fn label() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        return "AVX-512F (chosen at run time)";
    }
    "xxhash-rust (compiled in)"
}

/// XXH3-64 (seed 0) of bytes that arrive in pieces: `update` with each piece in order, then `digest`
/// gives what [`xxh3`] gives for all of them at once. A producer that hashes each piece right after
/// writing it hashes bytes that are still in its cache, so the checksum costs no pass over memory.
///
/// With AVX-512F, whole 1 KiB blocks are hashed straight from the caller's pieces by the same loop as
/// [`xxh3`]; only the newest block, which may turn out to be the last, is held back in a buffer (XXH3
/// treats the last block differently). Without it the crate's streaming hasher does the work.
pub struct Xxh3Stream {
    state: Stream,
}

enum Stream {
    #[cfg(target_arch = "x86_64")]
    Avx512(Box<Blocks>),
    Crate(Box<xxhash_rust::xxh3::Xxh3>),
}

/// The 512-bit path's state between pieces.
#[cfg(target_arch = "x86_64")]
struct Blocks {
    acc: [u64; 8],
    /// Bytes seen so far.
    len: usize,
    /// The bytes after the last hashed block: at most one block, which is hashed once more bytes follow.
    pending: [u8; BLOCK],
    pending_len: usize,
    /// The last 64 bytes of the last hashed block: XXH3's final stripe is the input's last 64 bytes,
    /// which reach back into that block when fewer than 64 bytes follow it.
    behind: [u8; STRIPE],
}

impl Default for Xxh3Stream {
    fn default() -> Self {
        Self::new()
    }
}

impl Xxh3Stream {
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            let blocks = Blocks { acc: ACC_INIT, len: 0, pending: [0; BLOCK], pending_len: 0, behind: [0; STRIPE] };
            return Self { state: Stream::Avx512(Box::new(blocks)) };
        }
        Self::portable()
    }

    /// The crate's streaming hasher whatever the CPU: the path CPUs without AVX-512F take, public so
    /// that tests can run both paths on one machine.
    pub fn portable() -> Self {
        Self { state: Stream::Crate(Box::default()) }
    }

    /// Adds the next piece of the input.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.state {
            #[cfg(target_arch = "x86_64")]
            Stream::Avx512(s) => s.update(bytes),
            Stream::Crate(h) => h.update(bytes),
        }
    }

    /// The XXH3-64 of every byte passed to `update`.
    pub fn digest(&self) -> u64 {
        match &self.state {
            #[cfg(target_arch = "x86_64")]
            Stream::Avx512(s) => s.digest(),
            Stream::Crate(h) => h.digest(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Blocks {
    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len();
        // Top up the held-back block; once it is full and more bytes follow, it is not the last: hash it.
        if self.pending_len > 0 || bytes.len() <= BLOCK {
            let take = (BLOCK - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            if bytes.is_empty() {
                return;
            }
            self.hash_blocks(None);
        }
        // Whole blocks straight from `bytes`, all but the newest, which is held back.
        let direct = (bytes.len() - 1) / BLOCK;
        if direct > 0 {
            self.hash_blocks(Some(&bytes[..direct * BLOCK]));
            bytes = &bytes[direct * BLOCK..];
        }
        self.pending[..bytes.len()].copy_from_slice(bytes);
        self.pending_len = bytes.len();
    }

    fn digest(&self) -> u64 {
        if self.len <= MID_SIZE_MAX {
            // Nothing was hashed yet: the whole input is the held-back block.
            return xxh3_64(&self.pending[..self.pending_len]);
        }
        let tail = &self.pending[..self.pending_len];
        // The input's last 64 bytes: the tail's end, preceded if need be by the end of the last hashed block.
        let mut last = [0u8; STRIPE];
        let from_behind = STRIPE.saturating_sub(tail.len());
        last[..from_behind].copy_from_slice(&self.behind[STRIPE - from_behind..]);
        last[from_behind..].copy_from_slice(&tail[tail.len() - (STRIPE - from_behind)..]);
        // SAFETY: a `Blocks` state exists only when the CPU has AVX-512F (`Xxh3Stream::new`).
        unsafe { avx512::finish(self.acc, tail, &last, self.len) }
    }

    /// Hashes the held-back block (`None`, which must be full) or the whole blocks of `direct`, and
    /// remembers the last 64 bytes hashed.
    fn hash_blocks(&mut self, direct: Option<&[u8]>) {
        let data = direct.unwrap_or(&self.pending[..]);
        debug_assert!(!data.is_empty() && data.len().is_multiple_of(BLOCK));
        // SAFETY: a `Blocks` state exists only when the CPU has AVX-512F (`Xxh3Stream::new`), and `data`
        // is `data.len() / BLOCK` whole blocks.
        unsafe { avx512::blocks(&mut self.acc, data.as_ptr(), data.len() / BLOCK) };
        let behind: [u8; STRIPE] = data[data.len() - STRIPE..].try_into().expect("a block holds a stripe");
        self.behind = behind;
        self.pending_len = 0;
    }
}

/// XXH3's inputs up to this length take its short and mid-size paths.
const MID_SIZE_MAX: usize = 240;

// XXH3's constants, from its specification.
const SECRET: [u8; 192] = xxhash_rust::const_xxh3::const_custom_default_secret(0);
const STRIPE: usize = 64;
/// Stripes per block: (secret length - stripe length) / 8.
const STRIPES_PER_BLOCK: usize = (SECRET.len() - STRIPE) / 8;
const BLOCK: usize = STRIPE * STRIPES_PER_BLOCK;
const PRIME32_1: u64 = 0x9E37_79B1;
const PRIME32_2: u64 = 0x85EB_CA77;
const PRIME32_3: u64 = 0xC2B2_AE3D;
const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME64_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME64_5: u64 = 0x27D4_EB2F_1656_67C5;
const ACC_INIT: [u64; 8] = [PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1];

fn secret_u64(offset: usize) -> u64 {
    u64::from_le_bytes(SECRET[offset..offset + 8].try_into().expect("8 bytes"))
}

/// The end of the long path: merge the eight accumulator lanes into one value and avalanche it.
fn merge(acc: [u64; 8], len: usize) -> u64 {
    let mut h = (len as u64).wrapping_mul(PRIME64_1);
    for (i, pair) in acc.chunks_exact(2).enumerate() {
        let at = 11 + 16 * i;
        let product = u128::from(pair[0] ^ secret_u64(at)) * u128::from(pair[1] ^ secret_u64(at + 8));
        h = h.wrapping_add(product as u64 ^ (product >> 64) as u64);
    }
    h ^= h >> 37;
    h = h.wrapping_mul(0x1656_6791_9E37_79F9);
    h ^ (h >> 32)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{ACC_INIT, BLOCK, MID_SIZE_MAX, PRIME32_1, SECRET, STRIPE, STRIPES_PER_BLOCK, merge};

    /// How far ahead of the stripe being hashed the loop prefetches (swept: 1, 2, 4, 8 KiB).
    const PREFETCH_AHEAD: usize = 8192;

    pub fn available() -> bool {
        is_x86_feature_detected!("avx512f")
    }

    /// One stripe: `acc[i ^ 1] += data[i]; acc[i] += lo32(data[i] ^ key[i]) * hi32(data[i] ^ key[i])`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and `data` must be readable for 64 bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn stripe(acc: __m512i, data: *const u8, key: __m512i) -> __m512i {
        // SAFETY: the caller guarantees 64 readable bytes at `data`; the load is unaligned.
        let d = unsafe { _mm512_loadu_si512(data.cast()) };
        let keyed = _mm512_xor_si512(d, key);
        let product = _mm512_mul_epu32(keyed, _mm512_srli_epi64::<32>(keyed));
        // Swapping the 64-bit lanes of each pair is the `i ^ 1`.
        let swapped = _mm512_shuffle_epi32::<0b01_00_11_10>(d);
        _mm512_add_epi64(acc, _mm512_add_epi64(product, swapped))
    }

    /// `acc = (acc ^ (acc >> 47) ^ key) * PRIME32_1`, lane-wise modulo 2^64.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn scramble(acc: __m512i, key: __m512i) -> __m512i {
        let x = _mm512_xor_si512(_mm512_xor_si512(acc, _mm512_srli_epi64::<47>(acc)), key);
        let prime = _mm512_set1_epi64(PRIME32_1 as i64);
        // A 64 x 32-bit product from two 32 x 32 ones: AVX-512F has no 64-bit multiply.
        let lo = _mm512_mul_epu32(x, prime);
        let hi = _mm512_mul_epu32(_mm512_srli_epi64::<32>(x), prime);
        _mm512_add_epi64(lo, _mm512_slli_epi64::<32>(hi))
    }

    /// The 64 bytes of the secret at `offset`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and `offset + 64 <= 192`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn secret_at(offset: usize) -> __m512i {
        debug_assert!(offset + STRIPE <= SECRET.len());
        // SAFETY: the caller keeps `offset + 64` within the 192-byte secret; the load is unaligned.
        unsafe { _mm512_loadu_si512(SECRET.as_ptr().add(offset).cast()) }
    }

    /// The stripe keys of a block, the scramble key and the last stripe's key, loaded once per call.
    struct Keys {
        stripes: [__m512i; STRIPES_PER_BLOCK],
        scramble: __m512i,
        last: __m512i,
    }

    impl Keys {
        #[target_feature(enable = "avx512f")]
        fn load() -> Self {
            // SAFETY, for every `secret_at`: AVX-512F is enabled for this function, and the offsets are
            // 8 n for n < 16 (at most 120), 128 and 121, each at most 192 - 64.
            Self {
                stripes: std::array::from_fn(|n| unsafe { secret_at(8 * n) }),
                scramble: unsafe { secret_at(SECRET.len() - STRIPE) },
                last: unsafe { secret_at(SECRET.len() - STRIPE - 7) },
            }
        }
    }

    /// Hashes `blocks` whole blocks starting at `data` into `acc`, each followed by a scramble.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and `data` must be readable for `blocks * 1024` bytes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn blocks(acc: &mut [u64; 8], data: *const u8, blocks: usize) {
        let keys = Keys::load();
        // SAFETY: `acc` is 64 readable bytes; the load is unaligned.
        let mut a = unsafe { _mm512_loadu_si512(acc.as_ptr().cast()) };
        for b in 0..blocks {
            let base = data.wrapping_add(b * BLOCK);
            // Within a block the stripes only add into `acc`, so the data words can be summed unswapped
            // and swapped once per block: one shuffle per block instead of one per stripe (the sum
            // modulo 2^64 is the same in any order).
            let mut products = _mm512_setzero_si512();
            let mut words = _mm512_setzero_si512();
            for (n, key) in keys.stripes.iter().enumerate() {
                // A prefetch never faults, so its address may lie past the input (hence `wrapping_add`).
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(n * STRIPE + PREFETCH_AHEAD).cast());
                // SAFETY: block `b < blocks` lies inside the caller's `blocks * 1024` readable bytes; the
                // load is unaligned.
                let d = unsafe { _mm512_loadu_si512(base.add(n * STRIPE).cast()) };
                let keyed = _mm512_xor_si512(d, *key);
                products = _mm512_add_epi64(products, _mm512_mul_epu32(keyed, _mm512_srli_epi64::<32>(keyed)));
                words = _mm512_add_epi64(words, d);
            }
            let swapped = _mm512_shuffle_epi32::<0b01_00_11_10>(words);
            a = scramble(_mm512_add_epi64(a, _mm512_add_epi64(products, swapped)), keys.scramble);
        }
        // SAFETY: `acc` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(acc.as_mut_ptr().cast(), a) };
    }

    /// The end of the long path: the stripes of the last, partial or whole, block (`tail`, 1 to 1024
    /// bytes), then the input's last 64 bytes (`last`) with their own key, then the merge.
    #[target_feature(enable = "avx512f")]
    pub fn finish(mut acc: [u64; 8], tail: &[u8], last: &[u8; STRIPE], len: usize) -> u64 {
        debug_assert!((1..=BLOCK).contains(&tail.len()));
        let keys = Keys::load();
        // SAFETY: `acc` is 64 readable bytes; the load is unaligned.
        let mut a = unsafe { _mm512_loadu_si512(acc.as_ptr().cast()) };
        let tail_stripes = (tail.len() - 1) / STRIPE;
        for (n, key) in keys.stripes.iter().take(tail_stripes).enumerate() {
            // SAFETY: stripe `n < tail_stripes` ends at `(n + 1) * 64 <= tail.len() - 1`.
            a = unsafe { stripe(a, tail.as_ptr().add(n * STRIPE), *key) };
        }
        // SAFETY: `last` is 64 readable bytes.
        a = unsafe { stripe(a, last.as_ptr(), keys.last) };
        // SAFETY: `acc` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(acc.as_mut_ptr().cast(), a) };
        merge(acc, len)
    }

    /// XXH3-64's long-input path with seed 0.
    ///
    /// # Safety
    /// The CPU must support AVX-512F (`available`), and `input` must be longer than 240 bytes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn long(input: &[u8]) -> u64 {
        let len = input.len();
        debug_assert!(len > MID_SIZE_MAX);
        let mut acc = ACC_INIT;
        // As XXH3 specifies, the last block, even when it is whole, is left to the tail: `(len - 1) / BLOCK`.
        let whole = (len - 1) / BLOCK;
        // SAFETY: AVX-512F is present (the caller's promise) and `whole * BLOCK <= len - 1` bytes are readable.
        unsafe { blocks(&mut acc, input.as_ptr(), whole) };
        let last: &[u8; STRIPE] = input[len - STRIPE..].try_into().expect("len > 240");
        finish(acc, &input[whole * BLOCK..], last, len)
    }
}
