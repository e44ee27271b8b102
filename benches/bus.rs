//! criterion benches for the bus codec: header encode + decode (target: < 2 µs per message).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use shoal_bus::{Dtype, Header, Kind, Limits, decode, decode_header_only, describe, encode_header};

fn codec(c: &mut Criterion) {
    let w: Vec<u8> = vec![0u8; 4 * 1024];
    let mut h = Header::new(Kind::Update, 7, "encoder-mnist", 41);
    h.round = 3;
    h.meta.insert("samples".into(), "600".into());
    h.frames = vec![describe(Dtype::F32, &[32, 32], &w)];
    let limits = Limits::default();
    c.bench_function("header_encode_decode", |b| {
        b.iter(|| {
            let bytes = encode_header(black_box(&h));
            decode_header_only(&bytes, &limits).unwrap()
        })
    });
    let head = encode_header(&h);
    c.bench_function("message_decode_4KiB_payload", |b| {
        b.iter(|| decode(black_box(&[head.as_slice(), w.as_slice()]), &limits).unwrap().payloads.len())
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);
