//! Messages over real ZeroMQ sockets: zero-copy sends and bounded receives.
//!
//! A message goes out as one multipart message: the header frame, then every payload frame, each payload
//! `Vec<u8>` handed to libzmq without a copy (`zmq::Message::from(Vec<u8>)`). Receiving enforces the
//! decoder's limits while frames arrive: once a message has too many frames or too many bytes, the rest
//! of it is drained and dropped, so a hostile peer cannot make a node buffer without bound, and the next
//! message is read normally. Every socket gets explicit high-water marks, linger and a maximum frame
//! size (libzmq drops a tcp peer that exceeds it).

use crate::codec::{DecodeError, Limits, decode};
use crate::message::Header;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{op}: {cause}")]
    Zmq { op: &'static str, cause: zmq::Error },
    #[error("dropped a bad message: {0}")]
    Decode(#[from] DecodeError),
    #[error("dropped a message from authenticated node {authenticated} claiming to be node {claimed}")]
    Impersonation { claimed: u32, authenticated: u32 },
}

fn zmq_err(op: &'static str) -> impl FnOnce(zmq::Error) -> TransportError {
    move |cause| TransportError::Zmq { op, cause }
}

/// Socket options shoal sets on every socket instead of relying on libzmq's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketConfig {
    /// Messages queued per peer before sends block (or drop, for PUB).
    pub send_hwm: i32,
    pub recv_hwm: i32,
    /// How long close waits for queued messages, in ms.
    pub linger_ms: i32,
    /// Largest single frame accepted from a tcp/ipc peer, in bytes (-1: no limit).
    pub max_frame_bytes: i64,
}

impl Default for SocketConfig {
    fn default() -> Self {
        Self {
            send_hwm: 1000,
            recv_hwm: 1000,
            linger_ms: 1000,
            max_frame_bytes: Limits::default().max_message_bytes as i64,
        }
    }
}

/// Creates a socket of `kind` with `config` applied; ROUTER sockets also get ROUTER_MANDATORY, so a
/// message to an unknown peer is an error instead of silently vanishing.
pub fn socket(ctx: &zmq::Context, kind: zmq::SocketType, config: &SocketConfig) -> Result<zmq::Socket, TransportError> {
    let s = ctx.socket(kind).map_err(zmq_err("create socket"))?;
    s.set_sndhwm(config.send_hwm).map_err(zmq_err("set SNDHWM"))?;
    s.set_rcvhwm(config.recv_hwm).map_err(zmq_err("set RCVHWM"))?;
    s.set_linger(config.linger_ms).map_err(zmq_err("set LINGER"))?;
    s.set_maxmsgsize(config.max_frame_bytes).map_err(zmq_err("set MAXMSGSIZE"))?;
    if kind == zmq::ROUTER {
        s.set_router_mandatory(true).map_err(zmq_err("set ROUTER_MANDATORY"))?;
    }
    Ok(s)
}

/// Sends `header` and `payloads` as one multipart message, preceded by `envelope` frames (a ROUTER's
/// peer identity). Payload buffers move into libzmq without being copied.
pub fn send(
    socket: &zmq::Socket,
    envelope: &[&[u8]],
    header: &Header,
    payloads: Vec<Vec<u8>>,
) -> Result<(), TransportError> {
    let head = crate::codec::encode_header(header);
    for frame in envelope {
        socket.send(*frame, zmq::SNDMORE).map_err(zmq_err("send envelope"))?;
    }
    let last = payloads.len();
    socket.send(head, if last == 0 { 0 } else { zmq::SNDMORE }).map_err(zmq_err("send header"))?;
    for (i, payload) in payloads.into_iter().enumerate() {
        let flags = if i + 1 == last { 0 } else { zmq::SNDMORE };
        socket.send(zmq::Message::from(payload), flags).map_err(zmq_err("send payload"))?;
    }
    Ok(())
}

/// A received, decoded message that owns its frames.
#[derive(Debug)]
pub struct Received {
    /// Envelope frames (a ROUTER socket's peer identity), empty for other socket types.
    pub envelope: Vec<Vec<u8>>,
    pub header: Header,
    pub payloads: Vec<zmq::Message>,
    /// The node id the connection authenticated as (CURVE links; see [`crate::security`]), `None` on
    /// unauthenticated links. When present it equals `header.sender`.
    pub authenticated: Option<u32>,
}

/// Receives one message. `envelope_frames` is how many leading identity frames to expect (1 on a
/// ROUTER, 0 otherwise). A message breaking `limits` is drained, dropped and reported as an error; the
/// socket stays usable.
pub fn recv(socket: &zmq::Socket, envelope_frames: usize, limits: &Limits) -> Result<Received, TransportError> {
    let mut envelope = Vec::with_capacity(envelope_frames);
    for _ in 0..envelope_frames {
        envelope.push(socket.recv_bytes(0).map_err(zmq_err("receive envelope"))?);
    }
    let mut frames: Vec<zmq::Message> = Vec::new();
    let mut bytes = 0usize;
    let mut violation = None;
    loop {
        let frame = socket.recv_msg(0).map_err(zmq_err("receive"))?;
        let more = frame.get_more();
        bytes = bytes.saturating_add(frame.len());
        if violation.is_none() {
            if frames.len() > limits.max_payload_frames {
                violation = Some(DecodeError::TooManyFrames { got: frames.len(), max: limits.max_payload_frames });
            } else if bytes > limits.max_message_bytes {
                violation = Some(DecodeError::TooLarge { got: bytes, max: limits.max_message_bytes });
            } else {
                frames.push(frame);
            }
            if violation.is_some() {
                frames = Vec::new(); // release what was buffered; drain the rest without keeping it
            }
        }
        if !more {
            break;
        }
    }
    if let Some(v) = violation {
        return Err(v.into());
    }
    let views: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let header = decode(&views, limits)?.header;
    let mut head = frames.remove(0);
    // On a CURVE link libzmq stamps every frame with the user id the ZAP handler gave the connection: the
    // node id its key belongs to. A header claiming another sender is dropped.
    let authenticated = head.gets("User-Id").and_then(|u| u.parse::<u32>().ok());
    if let Some(node) = authenticated
        && node != header.sender
    {
        return Err(TransportError::Impersonation { claimed: header.sender, authenticated: node });
    }
    Ok(Received { envelope, header, payloads: frames, authenticated })
}
