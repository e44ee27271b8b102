//! Encoding and bounded decoding of messages.
//!
//! libzmq bounds single frames (ZMQ_MAXMSGSIZE), not messages: the decoder here bounds everything
//! else: frames per message, bytes per message, header size, MessagePack nesting depth, and every
//! declared shape against its frame's actual size and checksum. Bad input gives a `DecodeError`, never
//! a panic, and nothing is allocated beyond what the input's size justifies.

use serde::Deserialize;

use crate::checksum::xxh3;
use crate::message::{Dtype, FrameDesc, Header, PROTOCOL_VERSION};

/// What a decoder accepts. Defaults suit parameter traffic: one message up to 2 GiB in up to 1024
/// payload frames, a header up to 64 KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_payload_frames: usize,
    pub max_message_bytes: usize,
    pub max_header_bytes: usize,
    pub max_depth: usize,
    /// Check every payload's XXH3 against its header. Only [`Limits::in_process`] turns this off.
    pub verify_checksums: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_payload_frames: 1024,
            max_message_bytes: 2 << 30,
            max_header_bytes: 64 << 10,
            max_depth: 16,
            verify_checksums: true,
        }
    }
}

impl Limits {
    /// For inproc sockets only: the payload is the sender's own buffer handed over by pointer inside one
    /// address space, so there is no wire to corrupt it and no checksum to verify (senders use
    /// [`describe_in_process`]). Every other check still applies.
    pub fn in_process() -> Self {
        Self { verify_checksums: false, ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message (no header frame)")]
    Empty,
    #[error("{got} payload frames, at most {max} allowed")]
    TooManyFrames { got: usize, max: usize },
    #[error("message of {got} bytes, at most {max} allowed")]
    TooLarge { got: usize, max: usize },
    #[error("header of {got} bytes, at most {max} allowed")]
    HeaderTooLarge { got: usize, max: usize },
    #[error("malformed header: {0}")]
    Malformed(String),
    #[error("protocol version {theirs:?} is incompatible with this node's {ours:?}")]
    Incompatible { theirs: (u16, u16), ours: (u16, u16) },
    #[error("header describes {declared} payload frames, the message has {actual}")]
    FrameCount { declared: usize, actual: usize },
    #[error("payload frame {index}: shape {shape:?} of {dtype:?} needs {expected} bytes, the frame has {actual}")]
    Shape { index: usize, dtype: Dtype, shape: Vec<u64>, expected: u128, actual: usize },
    #[error("payload frame {index}: checksum mismatch")]
    Checksum { index: usize },
}

/// A decoded message: its header and its payload frames (borrowed from the input).
#[derive(Debug, PartialEq)]
pub struct Message<'a> {
    pub header: Header,
    pub payloads: Vec<&'a [u8]>,
}

/// Describes a payload frame for a header: its type, shape and checksum.
pub fn describe(dtype: Dtype, shape: &[u64], bytes: &[u8]) -> FrameDesc {
    FrameDesc { dtype, shape: shape.to_vec(), checksum: xxh3(bytes) }
}

/// Describes a payload frame that travels over an inproc socket only: no checksum (0), see
/// [`Limits::in_process`]. A receiver on any other transport verifies checksums and refuses it.
pub fn describe_in_process(dtype: Dtype, shape: &[u64]) -> FrameDesc {
    FrameDesc { dtype, shape: shape.to_vec(), checksum: 0 }
}

/// The header frame's bytes (MessagePack, named fields).
pub fn encode_header(header: &Header) -> Vec<u8> {
    rmp_serde::to_vec_named(header).expect("a Header always serializes")
}

/// Decodes and checks a message given as its frames (header first).
pub fn decode<'a>(frames: &[&'a [u8]], limits: &Limits) -> Result<Message<'a>, DecodeError> {
    let (head, payloads) = frames.split_first().ok_or(DecodeError::Empty)?;
    if payloads.len() > limits.max_payload_frames {
        return Err(DecodeError::TooManyFrames { got: payloads.len(), max: limits.max_payload_frames });
    }
    let total = frames.iter().map(|f| f.len()).fold(0usize, usize::saturating_add);
    if total > limits.max_message_bytes {
        return Err(DecodeError::TooLarge { got: total, max: limits.max_message_bytes });
    }
    let header = decode_header_only(head, limits)?;
    if header.frames.len() != payloads.len() {
        return Err(DecodeError::FrameCount { declared: header.frames.len(), actual: payloads.len() });
    }
    for (index, (desc, payload)) in header.frames.iter().zip(payloads).enumerate() {
        let expected = desc.shape.iter().try_fold(desc.dtype.size() as u128, |acc, &d| acc.checked_mul(d as u128));
        if expected != Some(payload.len() as u128) {
            return Err(DecodeError::Shape {
                index,
                dtype: desc.dtype,
                shape: desc.shape.clone(),
                expected: expected.unwrap_or(u128::MAX),
                actual: payload.len(),
            });
        }
        if limits.verify_checksums && xxh3(payload) != desc.checksum {
            return Err(DecodeError::Checksum { index });
        }
    }
    Ok(Message { header, payloads: payloads.to_vec() })
}

/// Decodes and checks a header frame alone (size, depth, protocol version), without payloads.
pub fn decode_header_only(bytes: &[u8], limits: &Limits) -> Result<Header, DecodeError> {
    if bytes.len() > limits.max_header_bytes {
        return Err(DecodeError::HeaderTooLarge { got: bytes.len(), max: limits.max_header_bytes });
    }
    let header = decode_header(bytes, limits.max_depth)?;
    if header.proto.0 != PROTOCOL_VERSION.0 {
        return Err(DecodeError::Incompatible { theirs: header.proto, ours: PROTOCOL_VERSION });
    }
    Ok(header)
}

/// Decodes a header frame alone, with a nesting-depth limit.
pub fn decode_header(bytes: &[u8], max_depth: usize) -> Result<Header, DecodeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(max_depth);
    Header::deserialize(&mut de).map_err(|e| DecodeError::Malformed(e.to_string()))
}
