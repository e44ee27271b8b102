//! The payload checksum's 512-bit path against the `xxhash-rust` crate (the oracle), on every length
//! class XXH3 distinguishes, block and stripe boundaries, and misaligned starts; and the streaming
//! hasher, fed in pieces of every size around a block, against the same oracle; and the payload
//! builder, whose frames must decode exactly as frames described after the fact.

mod common;

use proptest::prelude::*;
use shoal_bus::checksum::{Xxh3Stream, xxh3, xxh3_reference};
use shoal_bus::payload::PIECE;
use shoal_bus::{Dtype, Header, Kind, Limits, PayloadBuilder, decode, describe, encode_header};

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

/// The streaming hash of `data` fed in pieces of the sizes `pieces` gives, cycling through them, on both
/// paths (the run-time-chosen one and the portable one), which must agree.
fn streamed(data: &[u8], pieces: &[usize]) -> u64 {
    let (fast, portable) =
        (streamed_with(Xxh3Stream::new(), data, pieces), streamed_with(Xxh3Stream::portable(), data, pieces));
    assert_eq!(fast, portable, "the two paths disagree on {} bytes in pieces {pieces:?}", data.len());
    fast
}

/// `data` fed to `h` in pieces of the sizes `pieces` gives, cycling through them.
fn streamed_with(mut h: Xxh3Stream, data: &[u8], pieces: &[usize]) -> u64 {
    let mut at = 0;
    for &n in pieces.iter().cycle() {
        if at >= data.len() {
            break;
        }
        let end = (at + n).min(data.len());
        h.update(&data[at..end]);
        at = end;
    }
    h.digest()
}

#[test]
fn streaming_in_pieces_around_a_block_matches_the_reference_at_every_length() {
    let data = bytes(3 * 1024 + 600, 13);
    for len in (0..=data.len()).step_by(7).chain([240, 241, 1023, 1024, 1025, 2048, 2049]) {
        let expected = xxh3_reference(&data[..len]);
        for pieces in [&[1usize][..], &[63], &[64, 1], &[1000], &[1023], &[1024], &[1025], &[2048, 3], &[5000]] {
            assert_eq!(streamed(&data[..len], pieces), expected, "length {len}, pieces {pieces:?}");
        }
    }
}

#[test]
fn streaming_nothing_and_empty_pieces_match_the_reference() {
    let mut h = Xxh3Stream::new();
    assert_eq!(h.digest(), xxh3_reference(&[]));
    let data = bytes(5000, 17);
    h.update(&[]);
    h.update(&data[..2048]);
    h.update(&[]);
    h.update(&data[2048..]);
    h.update(&[]);
    assert_eq!(h.digest(), xxh3_reference(&data));
}

#[test]
fn a_generated_payload_sees_every_offset_once_and_matches_describe() {
    let n = 3 * PIECE + 77;
    let mut b = PayloadBuilder::with_capacity(n);
    let mut offsets = Vec::new();
    b.extend_with(n, |offset, piece| {
        offsets.push((offset, piece.len()));
        for (i, byte) in piece.iter_mut().enumerate() {
            *byte = ((offset + i) * 7) as u8;
        }
    });
    assert_eq!(offsets, vec![(0, PIECE), (PIECE, PIECE), (2 * PIECE, PIECE), (3 * PIECE, 77)]);
    let expected: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
    let (desc, bytes) = b.finish(Dtype::U8, &[n as u64]);
    assert_eq!(bytes, expected);
    assert_eq!(desc, describe(Dtype::U8, &[n as u64], &expected));
}

#[test]
fn a_built_frame_decodes_and_a_flipped_byte_is_refused() {
    let values: Vec<f32> = (0..100_000).map(|i| i as f32 * 0.5).collect();
    let mut b = PayloadBuilder::with_capacity(values.len() * 4);
    b.extend_from_slice(bytemuck::cast_slice(&values));
    let (desc, mut bytes) = b.finish(Dtype::F32, &[values.len() as u64]);
    let mut h = Header::new(Kind::Update, 3, "job", 1);
    h.frames = vec![desc];
    let head = encode_header(&h);
    let m = decode(&[&head, &bytes], &Limits::default()).expect("a built frame decodes");
    assert_eq!(m.payloads[0], bytemuck::cast_slice::<f32, u8>(&values));
    bytes[12_345] ^= 1;
    assert!(decode(&[&head, &bytes], &Limits::default()).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn misaligned_slices_of_any_length_match_the_reference(seed in any::<u64>(), offset in 0usize..64, len in 0usize..20_000) {
        let data = bytes(offset + len, seed);
        let slice = &data[offset..];
        prop_assert_eq!(xxh3(slice), xxh3_reference(slice));
    }

    #[test]
    fn streaming_in_random_pieces_matches_the_reference(
        seed in any::<u64>(),
        len in 0usize..40_000,
        pieces in proptest::collection::vec(0usize..3000, 1..8),
    ) {
        let data = bytes(len, seed);
        // Empty pieces are allowed; the 1 guarantees the cycle makes progress.
        let pieces: Vec<usize> = pieces.into_iter().chain([1]).collect();
        prop_assert_eq!(streamed(&data, &pieces), xxh3_reference(&data));
    }

    #[test]
    fn copies_and_generated_pieces_in_any_order_match_describe(
        seed in any::<u64>(),
        parts in proptest::collection::vec((any::<bool>(), 0usize..40_000), 0..6),
    ) {
        let mut b = PayloadBuilder::with_capacity(0);
        let mut expected = Vec::new();
        for (k, &(copy, len)) in parts.iter().enumerate() {
            let part = bytes(len, seed ^ k as u64);
            if copy {
                b.extend_from_slice(&part);
            } else {
                b.extend_with(len, |offset, piece| piece.copy_from_slice(&part[offset..offset + piece.len()]));
            }
            expected.extend_from_slice(&part);
            prop_assert_eq!(b.len(), expected.len());
        }
        let (desc, built) = b.finish(Dtype::U8, &[expected.len() as u64]);
        prop_assert_eq!(desc.checksum, xxh3_reference(&expected));
        prop_assert_eq!(built, expected);
    }
}
