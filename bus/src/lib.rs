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
//! Today the crate holds the message model ([`message`]), the bounded codec ([`codec`]) and the ZeroMQ
//! transport with zero-copy sends and bounded receives ([`transport`]); the reliability state machines
//! (sequencing, snapshots, heartbeats) and CURVE security land next (see the bus issue).

pub mod codec;
pub mod fault;
pub mod message;
pub mod reliable;
pub mod security;
pub mod session;
mod sockopt;
pub mod transport;

pub use codec::{DecodeError, Limits, Message, decode, decode_header_only, describe, encode_header};
pub use message::{Dtype, FrameDesc, Header, Kind, PROTOCOL_VERSION, Role};
