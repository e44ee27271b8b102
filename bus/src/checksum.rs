//! Payload checksums: XXH3-64 with seed 0, the hash the wire protocol names (a Python worker computes it
//! with the `xxhash` package).
//!
//! Every payload byte on a wire is hashed twice, once by the sender and once by the receiver. The
//! receiver hashes bytes that libzmq's I/O thread has just written, often on the other core, so its pass
//! waits on memory. The `xxhash-rust` crate's loop keeps too few loads in flight to hide that: on 1 MiB
//! just evicted from the caches it hashes 11-15 GB/s, where a bare read pass manages 30. Here the
//! long-input path (more than 240 bytes) runs a 512-bit loop when the CPU has AVX-512F, chosen at run time.
//! The loop holds the 16 stripe keys in registers and prefetches 8 KiB ahead of the stripe it hashes. It
//! reaches the read pass's speed on cold data (about 30 GB/s at 1 MiB and 28 GB/s at 16 MiB here) and
//! matches the crate on cached data. The prefetch distance was swept over 1, 2, 4 and 8 KiB, and each step
//! helped (docs/benchmarks.md). Inputs of 240 bytes or less (XXH3's other code paths, with no bulk work)
//! and CPUs without AVX-512F use the crate. The crate is also the oracle this loop is tested against
//! (`tests/bus_checksum.rs`).
//!
//! With `sockopt` and `malloc`, this module holds the bus crate's only `unsafe` code.

#![allow(unsafe_code)]

use xxhash_rust::xxh3::xxh3_64;

/// XXH3-64 (seed 0) of `bytes`, the checksum of a payload frame.
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

    /// XXH3-64's long-input path with seed 0.
    ///
    /// # Safety
    /// The CPU must support AVX-512F (`available`), and `input` must be longer than 240 bytes.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn long(input: &[u8]) -> u64 {
        let len = input.len();
        debug_assert!(len > MID_SIZE_MAX);
        let p = input.as_ptr();
        // SAFETY, for every `secret_at` below: AVX-512F is present (the caller's promise), and the offsets
        // are 8 n for n < 16 (at most 120), 128 and 121, each at most 192 - 64.
        let keys: [__m512i; STRIPES_PER_BLOCK] = std::array::from_fn(|n| unsafe { secret_at(8 * n) });
        let scramble_key = unsafe { secret_at(SECRET.len() - STRIPE) };
        let last_key = unsafe { secret_at(SECRET.len() - STRIPE - 7) };
        // SAFETY: `ACC_INIT` is 64 readable bytes; the load is unaligned.
        let mut acc = unsafe { _mm512_loadu_si512(ACC_INIT.as_ptr().cast()) };
        // Whole blocks, each followed by a scramble. As XXH3 specifies, the last block, even when it is
        // whole, is left to the tail: `(len - 1) / BLOCK`.
        let blocks = (len - 1) / BLOCK;
        for b in 0..blocks {
            let base = p.wrapping_add(b * BLOCK);
            for (n, key) in keys.iter().enumerate() {
                // A prefetch never faults, so its address may lie past the input (hence `wrapping_add`).
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(n * STRIPE + PREFETCH_AHEAD).cast());
                // SAFETY: block `b < blocks` ends at `(b + 1) * BLOCK <= blocks * BLOCK <= len - 1`, so
                // its stripe `n < 16` is 64 bytes inside `input`.
                acc = unsafe { stripe(acc, base.add(n * STRIPE), *key) };
            }
            acc = scramble(acc, scramble_key);
        }
        let tail = p.wrapping_add(blocks * BLOCK);
        let tail_stripes = (len - 1 - blocks * BLOCK) / STRIPE;
        for (n, key) in keys.iter().take(tail_stripes).enumerate() {
            // SAFETY: stripe `n < tail_stripes` ends at `blocks * BLOCK + (n + 1) * 64 <= len - 1`.
            acc = unsafe { stripe(acc, tail.add(n * STRIPE), *key) };
        }
        // SAFETY: `len > 240`, so the last 64 bytes `len - 64 .. len` are inside `input`.
        acc = unsafe { stripe(acc, p.add(len - STRIPE), last_key) };
        let mut lanes = [0u64; 8];
        // SAFETY: `lanes` is 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), acc) };
        merge(lanes, len)
    }
}
