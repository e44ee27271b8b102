//! shoal-bus: how shoal's nodes talk.
//!
//! # Why this crate exists
//!
//! A master, its workers and the parameter-server shards exchange instructions, confirmations and tensors.
//! Keeping every byte that crosses a process boundary in one crate means one place defines the wire format,
//! bounds every decoder, and carries the reliability logic (sequence numbers, snapshots for late joiners,
//! heartbeats), while the engine stays free of I/O. This crate knows nothing of the engine: tensors cross
//! it as raw little-endian frames described by the header.
//!
//! The modules, bottom up: the message model ([`message`]) and its bounded codec ([`codec`]), whose payload
//! checksums [`checksum`] computes, and [`payload`], which writes a payload and its checksum in one pass;
//! the ZeroMQ transport with zero-copy sends and bounded receives ([`transport`]), and the allocator
//! settings for its large messages ([`malloc`]); CURVE keys and the ZAP allowlist for tcp ([`security`]);
//! and the protocol machines, written without I/O so tests drive them on simulated time: handshake and
//! liveness ([`session`]), in-order exactly-once delivery ([`reliable`]),
//! retries with idempotency keys ([`request`]). [`broadcast`] puts the reliable machine on PUB/SUB with
//! snapshots and resends (the zguide's Clone pattern); [`fault`] injects loss, duplication and reordering
//! in front of any of them.

// `unsafe` is allowed only in `malloc` and `sockopt` (C calls); the checksum's SIMD is `shoal-checksum`'s.
#![deny(unsafe_code)]

pub mod broadcast;
pub mod checksum;
pub mod codec;
pub mod fault;
pub mod malloc;
pub mod message;
pub mod payload;
pub mod reliable;
pub mod request;
pub mod security;
pub mod session;
mod sockopt;
pub mod transport;

pub use codec::{
    DecodeError, Limits, Message, decode, decode_header_only, describe, describe_in_process, encode_header,
};
pub use message::{Dtype, FrameDesc, Header, Kind, PROTOCOL_VERSION, Role};
pub use payload::PayloadBuilder;
