//! The payload checksum's 512-bit path against the `xxhash-rust` crate (the oracle), on every length
//! class XXH3 distinguishes, block and stripe boundaries, and misaligned starts.

mod common;

use proptest::prelude::*;
use shoal_bus::checksum::{xxh3, xxh3_reference};

fn bytes(n: usize, seed: u64) -> Vec<u8> {
    common::xorshift_bytes(seed, n)
}

#[test]
fn every_length_up_to_three_and_a_half_blocks_matches_the_reference() {
    let data = bytes(3 * 1024 + 600, 7);
    for len in 0..=data.len() {
        assert_eq!(xxh3(&data[..len]), xxh3_reference(&data[..len]), "length {len}");
    }
}

#[test]
fn block_and_stripe_boundaries_match_the_reference() {
    let data = bytes(64 * 1024 + 130, 11);
    for blocks in [1usize, 2, 7, 16, 63, 64] {
        for delta in [-65isize, -64, -63, -2, -1, 0, 1, 2, 63, 64, 65] {
            let len = ((blocks * 1024) as isize + delta) as usize;
            assert_eq!(xxh3(&data[..len]), xxh3_reference(&data[..len]), "length {len}");
        }
    }
}

#[test]
fn a_one_mebibyte_tensor_matches_and_one_flipped_bit_changes_it() {
    let mut data = bytes(1 << 20, 3);
    let sum = xxh3(&data);
    assert_eq!(sum, xxh3_reference(&data));
    data[(1 << 19) + 5] ^= 0x10;
    assert_ne!(xxh3(&data), sum);
    assert_eq!(xxh3(&data), xxh3_reference(&data));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn misaligned_slices_of_any_length_match_the_reference(seed in any::<u64>(), offset in 0usize..64, len in 0usize..20_000) {
        let data = bytes(offset + len, seed);
        let slice = &data[offset..];
        prop_assert_eq!(xxh3(slice), xxh3_reference(slice));
    }
}
