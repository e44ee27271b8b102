//! Arbitrary bytes into the bus decoders: as a header frame alone, and split into length-prefixed
//! frames for the full message decoder (frame counts, shapes, checksums). Neither may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_bus::{Limits, decode, decode_header_only};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_payload_frames: 16, ..Limits::default() };
    let _ = decode_header_only(data, &limits);
    let mut frames = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 && frames.len() < 20 {
        let n = (u16::from_le_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        frames.push(&rest[2..2 + n]);
        rest = &rest[2 + n..];
    }
    let _ = decode(&frames, &limits);
});
