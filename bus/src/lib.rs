//! shoal-bus: how shoal's nodes talk.
//!
//! # Why this crate exists
//!
//! A master, its workers and the parameter-server shards exchange instructions, confirmations and tensors.
//! Keeping every byte that crosses a process boundary in one crate means one place defines the wire format,
//! bounds every decoder, and carries the reliability logic (sequence numbers, snapshots for late joiners,
//! heartbeats), while the engine stays free of I/O. This crate knows nothing of the engine.
//!
//! The ZeroMQ transport, the codec and the protocol state machines land with the bus issue; today the crate
//! holds the protocol version every link will check first.

/// The wire protocol version carried in every Hello; peers with a different major version are refused.
pub const PROTOCOL_VERSION: (u16, u16) = (0, 1);
