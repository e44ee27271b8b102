//! The bus codec: round trips of every message kind, and malformed input that must be refused without a
//! panic or an unbounded allocation.

use proptest::prelude::*;
use shoal_bus::{
    DecodeError, Dtype, Header, Kind, Limits, PROTOCOL_VERSION, decode, describe, describe_in_process, encode_header,
};

const KINDS: [Kind; 12] = [
    Kind::Hello,
    Kind::Welcome,
    Kind::Heartbeat,
    Kind::Instruction,
    Kind::Confirm,
    Kind::Decline,
    Kind::Params,
    Kind::Update,
    Kind::SnapshotRequest,
    Kind::Snapshot,
    Kind::Error,
    Kind::Done,
];
const DTYPES: [Dtype; 4] = [Dtype::F32, Dtype::U32, Dtype::U64, Dtype::U8];

fn message(header: &Header, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut frames = vec![encode_header(header)];
    frames.extend(payloads.iter().cloned());
    frames
}

fn refs(frames: &[Vec<u8>]) -> Vec<&[u8]> {
    frames.iter().map(|f| f.as_slice()).collect()
}

/// A valid two-frame Update message.
fn sample() -> (Header, Vec<Vec<u8>>) {
    let w: Vec<u8> = (0..24u32).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let ids: Vec<u8> = [3u64, 9].iter().flat_map(|i| i.to_le_bytes()).collect();
    let mut h = Header::new(Kind::Update, 7, "encoder-mnist", 41);
    h.round = 3;
    h.meta.insert("samples".into(), "600".into());
    h.frames = vec![describe(Dtype::F32, &[4, 6], &w), describe(Dtype::U64, &[2], &ids)];
    (h, vec![w, ids])
}

proptest! {
    #[test]
    fn every_message_round_trips(
        kind in 0usize..KINDS.len(),
        sender in any::<u32>(),
        job in "[a-z0-9-]{0,24}",
        round in any::<u64>(),
        step in any::<u64>(),
        seq in any::<u64>(),
        meta in prop::collection::btree_map("[a-z_]{1,12}", ".{0,20}", 0..4),
        frames in prop::collection::vec((0usize..4, prop::collection::vec(0u64..5, 0..3), any::<u8>()), 0..5),
    ) {
        let mut h = Header::new(KINDS[kind], sender, job, seq);
        h.round = round;
        h.step = step;
        h.meta = meta;
        let mut payloads = Vec::new();
        for (d, shape, fill) in frames {
            let dtype = DTYPES[d];
            let bytes = vec![fill; dtype.size() * shape.iter().product::<u64>() as usize];
            h.frames.push(describe(dtype, &shape, &bytes));
            payloads.push(bytes);
        }
        let frames = message(&h, &payloads);
        let m = decode(&refs(&frames), &Limits::default()).unwrap();
        prop_assert_eq!(&m.header, &h);
        prop_assert_eq!(m.payloads, payloads.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
    }

    #[test]
    fn random_header_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&[&bytes], &Limits::default());
    }

    #[test]
    fn mutated_headers_never_panic(at in any::<prop::sample::Index>(), value in any::<u8>()) {
        let (h, payloads) = sample();
        let mut frames = message(&h, &payloads);
        let i = at.index(frames[0].len());
        frames[0][i] = value;
        let _ = decode(&refs(&frames), &Limits::default());
    }
}

#[test]
fn every_truncated_header_is_refused() {
    let (h, payloads) = sample();
    let frames = message(&h, &payloads);
    for cut in 0..frames[0].len() {
        let mut f = refs(&frames);
        f[0] = &frames[0][..cut];
        assert!(matches!(decode(&f, &Limits::default()), Err(DecodeError::Malformed(_))), "prefix of {cut} bytes");
    }
}

#[test]
fn bounds_are_enforced_before_anything_is_trusted() {
    let (h, payloads) = sample();
    let frames = message(&h, &payloads);
    // 10^5 frames: refused by count, without looking at them.
    let many: Vec<&[u8]> = std::iter::once(frames[0].as_slice()).chain(std::iter::repeat_n(&[][..], 100_000)).collect();
    assert_eq!(decode(&many, &Limits::default()), Err(DecodeError::TooManyFrames { got: 100_000, max: 1024 }));
    // A message over the byte limit.
    let small = Limits { max_message_bytes: 100, ..Limits::default() };
    assert!(matches!(decode(&refs(&frames), &small), Err(DecodeError::TooLarge { .. })));
    // An oversized header.
    let tiny = Limits { max_header_bytes: 10, ..Limits::default() };
    assert!(matches!(decode(&refs(&frames), &tiny), Err(DecodeError::HeaderTooLarge { .. })));
    assert_eq!(decode(&[], &Limits::default()), Err(DecodeError::Empty));
}

#[test]
fn shapes_checksums_and_counts_must_match_the_frames() {
    let (h, payloads) = sample();
    // Wrong shape.
    let mut bad = h.clone();
    bad.frames[0].shape = vec![4, 7];
    let err = decode(&refs(&message(&bad, &payloads)), &Limits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Shape { index: 0, expected: 112, actual: 96, .. }), "{err}");
    // A shape whose byte count overflows.
    bad.frames[0].shape = vec![u64::MAX, u64::MAX, 4];
    assert!(matches!(decode(&refs(&message(&bad, &payloads)), &Limits::default()), Err(DecodeError::Shape { .. })));
    // A flipped payload bit.
    let mut flipped = payloads.clone();
    flipped[1][3] ^= 1;
    assert_eq!(decode(&refs(&message(&h, &flipped)), &Limits::default()), Err(DecodeError::Checksum { index: 1 }));
    // A missing frame.
    assert_eq!(
        decode(&refs(&message(&h, &payloads[..1])), &Limits::default()),
        Err(DecodeError::FrameCount { declared: 2, actual: 1 })
    );
}

#[test]
fn another_major_version_is_refused_and_a_newer_minor_is_accepted() {
    let (mut h, payloads) = sample();
    h.proto = (PROTOCOL_VERSION.0 + 1, 0);
    let err = decode(&refs(&message(&h, &payloads)), &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("incompatible"), "{err}");
    h.proto = (PROTOCOL_VERSION.0, PROTOCOL_VERSION.1 + 5);
    assert!(decode(&refs(&message(&h, &payloads)), &Limits::default()).is_ok());
}

#[test]
fn nesting_bombs_and_huge_declared_lengths_fail_fast() {
    // 60,000 nested one-element arrays (inside the header size limit): refused by the depth limit, not by
    // a stack overflow.
    let mut bomb = vec![0x91u8; 60_000];
    bomb.push(0xc0);
    let err = decode(&[&bomb], &Limits::default()).unwrap_err();
    assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
    // Deeper than the header size limit allows: refused before parsing.
    let mut deeper = vec![0x91u8; 100_000];
    deeper.push(0xc0);
    assert!(matches!(decode(&[&deeper], &Limits::default()), Err(DecodeError::HeaderTooLarge { .. })));
    // A map declaring 2^32-1 entries, and an array32 of 2^32-1 elements, in a 5-byte frame.
    for huge in [[0xdfu8, 0xff, 0xff, 0xff, 0xff], [0xdd, 0xff, 0xff, 0xff, 0xff]] {
        assert!(matches!(decode(&[&huge], &Limits::default()), Err(DecodeError::Malformed(_))));
    }
}

#[test]
fn unknown_fields_from_newer_peers_are_ignored() {
    // A newer peer may add header fields: decode a map with an extra key.
    #[derive(serde::Serialize)]
    struct Newer<'a> {
        proto: (u16, u16),
        kind: &'a str,
        sender: u32,
        job: &'a str,
        seq: u64,
        future_field: Vec<u32>,
    }
    let bytes = rmp_serde::to_vec_named(&Newer {
        proto: (0, 9),
        kind: "heartbeat",
        sender: 2,
        job: "j",
        seq: 1,
        future_field: vec![1, 2],
    })
    .unwrap();
    let m = decode(&[&bytes], &Limits::default()).unwrap();
    assert_eq!((m.header.kind, m.header.sender, m.header.round), (Kind::Heartbeat, 2, 0));
}

#[test]
fn in_process_frames_skip_checksums_only_where_asked() {
    let (mut h, payloads) = sample();
    h.frames = vec![describe_in_process(Dtype::F32, &[4, 6]), describe_in_process(Dtype::U64, &[2])];
    let frames = message(&h, &payloads);
    // An inproc receiver takes it; any other receiver verifies the checksum and refuses it.
    assert_eq!(decode(&refs(&frames), &Limits::in_process()).unwrap().header, h);
    assert_eq!(decode(&refs(&frames), &Limits::default()).unwrap_err(), DecodeError::Checksum { index: 0 });
    // The in-process mode still checks everything else.
    let mut short = frames.clone();
    short[2].pop();
    assert!(matches!(decode(&refs(&short), &Limits::in_process()), Err(DecodeError::Shape { index: 1, .. })));
}
