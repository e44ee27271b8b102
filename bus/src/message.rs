//! What a message is: a MessagePack header with named fields, then raw little-endian payload frames.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version every header carries. Peers with a different major version are refused; a
/// higher minor version only adds optional header fields, which older peers ignore.
pub const PROTOCOL_VERSION: (u16, u16) = (0, 2);

/// A node's role in a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Master,
    Server,
    Worker,
}

/// Every kind of message on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// First message on every link: who is speaking and in which protocol version.
    Hello,
    /// The answer to a Hello that was accepted.
    Welcome,
    /// Liveness on the control channel.
    Heartbeat,
    /// Master → children: train an encoder of a given type (shared-encoder job).
    Instruction,
    /// Child → master: it holds samples of that type (with its sample count).
    Confirm,
    /// Child → master: it will not take part (with the reason).
    Decline,
    /// Master → confirmed children, or server → worker: a full parameter set.
    Params,
    /// Child → master, or worker → server: updated parameters, a delta or a gradient.
    Update,
    /// A subscriber that saw a gap or joined late asks for the current state.
    SnapshotRequest,
    /// The answer: the state as of a sequence number.
    Snapshot,
    /// A request was refused or failed (with the reason).
    Error,
    /// Master → children: the job is over (with its outcome); the child stops.
    Done,
}

/// Element type of a payload frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F32,
    U32,
    U64,
    U8,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::U32 => 4,
            Dtype::U64 => 8,
            Dtype::U8 => 1,
        }
    }
}

/// How to read one payload frame: its element type, shape, and the XXH3-64 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameDesc {
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    pub checksum: u64,
}

/// The header frame. Field names are the wire names (MessagePack maps), so fields can be added later
/// without breaking older peers; `#[serde(default)]` fields may be absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// (major, minor) protocol version of the sender.
    pub proto: (u16, u16),
    pub kind: Kind,
    /// The sending node's id (bound to its authenticated key on tcp).
    pub sender: u32,
    /// The job this message belongs to.
    pub job: String,
    #[serde(default)]
    pub round: u64,
    #[serde(default)]
    pub step: u64,
    /// Per-sender sequence number: gaps and duplicates are detected with it; (sender, seq) is the
    /// idempotency key of a request.
    pub seq: u64,
    /// One descriptor per payload frame, in order.
    #[serde(default)]
    pub frames: Vec<FrameDesc>,
    /// Kind-specific fields (encoder type, sample count, decline reason, ...), as text.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl Header {
    /// A header of `kind` from `sender` in this build's protocol version.
    pub fn new(kind: Kind, sender: u32, job: impl Into<String>, seq: u64) -> Self {
        Self {
            proto: PROTOCOL_VERSION,
            kind,
            sender,
            job: job.into(),
            round: 0,
            step: 0,
            seq,
            frames: Vec::new(),
            meta: BTreeMap::new(),
        }
    }
}
