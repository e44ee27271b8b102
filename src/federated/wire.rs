//! The federated job's messages on top of the bus: one function per message the protocol sends, and
//! one that waits for the next message until a deadline. Tensors travel as raw little-endian f32
//! payload frames described (and checksummed) in the header.

use std::time::{Duration, Instant};

use shoal_bus::transport::{Received, TransportError, recv, send};
use shoal_bus::{Dtype, Header, Kind, Limits, PayloadBuilder};

/// How often the master tells its children it is alive while it waits.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node's socket with its sequence counter and byte accounting.
pub struct Link {
    pub socket: zmq::Socket,
    pub me: u32,
    pub job: String,
    seq: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    limits: Limits,
    /// Identity frames before each message: 1 on the master's ROUTER, 0 on a child's DEALER.
    envelope_frames: usize,
    /// While waiting, a heartbeat goes to each of these peers (ROUTER identities) every `beat_every`.
    beat_to: Vec<Vec<u8>>,
    beat_every: Duration,
    last_beat: Instant,
}

impl Link {
    pub fn new(socket: zmq::Socket, me: u32, job: &str, envelope_frames: usize) -> Self {
        Self {
            socket,
            me,
            job: job.to_string(),
            seq: 0,
            bytes_sent: 0,
            bytes_received: 0,
            limits: Limits::default(),
            envelope_frames,
            beat_to: Vec::new(),
            beat_every: HEARTBEAT,
            last_beat: Instant::now(),
        }
    }

    /// The peers that get a heartbeat whenever this node has waited `HEARTBEAT` (the master's members: a
    /// child that hears nothing for `child::MASTER_LIVENESS` takes the master for dead and says hello
    /// again, which is how children rejoin a restarted master).
    pub fn heartbeat_to(&mut self, peers: impl IntoIterator<Item = Vec<u8>>) {
        self.beat_to = peers.into_iter().collect();
    }

    fn beat_if_due(&mut self) {
        if self.beat_to.is_empty() || self.last_beat.elapsed() < self.beat_every {
            return;
        }
        self.last_beat = Instant::now();
        for i in 0..self.beat_to.len() {
            let h = self.header(Kind::Heartbeat, 0);
            // A peer that went away is the round's business (its update will be missing), not the beat's.
            let _ = send(&self.socket, &[&self.beat_to[i]], &h, Vec::new());
        }
    }

    /// A header of `kind` from this node with the next sequence number.
    pub fn header(&mut self, kind: Kind, round: u64) -> Header {
        self.seq += 1;
        let mut h = Header::new(kind, self.me, self.job.clone(), self.seq);
        h.round = round;
        h
    }

    /// Sends `header` (to the peer with identity `to`, on a ROUTER) with f32 tensors as payload frames.
    pub fn send(&mut self, to: Option<&[u8]>, mut header: Header, tensors: &[&[f32]]) -> Result<(), TransportError> {
        // Each tensor is copied into its frame and hashed in the same pass (the builder hashes every piece
        // while it is still in cache).
        let (frames, payloads): (Vec<_>, Vec<_>) = tensors
            .iter()
            .map(|t| {
                let mut frame = PayloadBuilder::with_capacity(std::mem::size_of_val(*t));
                frame.extend_from_slice(bytemuck::cast_slice(t));
                frame.finish(Dtype::F32, &[t.len() as u64])
            })
            .unzip();
        header.frames = frames;
        self.bytes_sent += payloads.iter().map(|p| p.len() as u64).sum::<u64>();
        let envelope: Vec<&[u8]> = to.into_iter().collect();
        send(&self.socket, &envelope, &header, payloads)
    }

    /// The next message, or `None` once `deadline` passes. A message that fails to decode is dropped
    /// and reported through `on_bad`; waiting goes on.
    pub fn recv_until(
        &mut self,
        deadline: Instant,
        on_bad: &mut dyn FnMut(TransportError),
    ) -> Result<Option<Received>, TransportError> {
        loop {
            self.beat_if_due();
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut wait = (deadline - now).min(Duration::from_secs(3600));
            if !self.beat_to.is_empty() {
                wait = wait.min((self.last_beat + self.beat_every).saturating_duration_since(now));
            }
            let wait = wait.as_millis().max(1) as i64;
            let ready =
                self.socket.poll(zmq::POLLIN, wait).map_err(|cause| TransportError::Zmq { op: "poll", cause })?;
            if ready == 0 {
                continue;
            }
            match recv(&self.socket, self.envelope_frames, &self.limits) {
                Ok(m) => {
                    self.bytes_received += m.payloads.iter().map(|p| p.len() as u64).sum::<u64>();
                    return Ok(Some(m));
                }
                Err(e @ (TransportError::Decode(_) | TransportError::Impersonation { .. })) => on_bad(e),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The f32 tensor in payload frame `i` (its shape and checksum were checked on receipt).
pub fn tensor(m: &Received, i: usize) -> Option<Vec<f32>> {
    let frame = m.payloads.get(i)?;
    (m.header.frames.get(i)?.dtype == Dtype::F32)
        .then(|| frame.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
}

/// A `meta` field parsed as `T`.
pub fn meta<T: std::str::FromStr>(h: &Header, key: &str) -> Option<T> {
    h.meta.get(key)?.parse().ok()
}
