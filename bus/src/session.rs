//! One link's handshake and liveness, as a state machine with no I/O.
//!
//! The first message on every link must be a `hello` (or, for the side that sent one, a `welcome`) in a
//! compatible protocol version; anything else is refused with a clear error and the link is not used.
//! After that, any message from the peer proves it alive; when this side has sent nothing for one
//! heartbeat interval, it owes the peer a `heartbeat`. A peer silent for `liveness` intervals is declared
//! dead, so a dead or hung peer is reported within `liveness · interval` of its last message (plus the
//! caller's polling granularity). Driven like [`crate::reliable::InOrder`]: `handle`, `poll_transmit`,
//! `poll_timeout`, `handle_timeout(now)`.

use std::time::{Duration, Instant};

use crate::message::{Header, Kind, PROTOCOL_VERSION};

/// Who the peer said it is in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: u32,
    pub proto: (u16, u16),
    pub role: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the first message from node {sender} was `{kind:?}`, not a hello: link refused")]
    NoHello { sender: u32, kind: Kind },
    #[error("node {sender} speaks protocol {theirs:?}, this node {ours:?}: link refused")]
    Incompatible { sender: u32, theirs: (u16, u16), ours: (u16, u16) },
    #[error("node {sender}'s hello names no role")]
    NoRole { sender: u32 },
    #[error("node {sender} is not the node this link was established with ({expected})")]
    WrongSender { sender: u32, expected: u32 },
    #[error("the link is dead: nothing heard for {silent:?}")]
    Dead { silent: Duration },
}

/// What a handled message meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Established(Peer),
    /// A heartbeat: nothing for the application.
    Alive,
    /// An application message on an established link.
    Message,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Established(Peer),
    Dead,
}

#[derive(Debug)]
pub struct Session {
    state: State,
    interval: Duration,
    liveness: u32,
    last_heard: Instant,
    last_sent: Instant,
    me: u32,
    seq: u64,
}

impl Session {
    /// A link from node `me`, heartbeating every `interval`, declaring the peer dead after `liveness`
    /// silent intervals. The clock starts at `now`.
    pub fn new(me: u32, interval: Duration, liveness: u32, now: Instant) -> Self {
        Self { state: State::AwaitingHello, interval, liveness, last_heard: now, last_sent: now, me, seq: 0 }
    }

    pub fn peer(&self) -> Option<&Peer> {
        match &self.state {
            State::Established(p) => Some(p),
            _ => None,
        }
    }

    /// How long silence may last before the peer is declared dead.
    pub fn dead_after(&self) -> Duration {
        self.interval * self.liveness
    }

    /// A message arrived from the peer.
    pub fn handle(&mut self, header: &Header, now: Instant) -> Result<Event, SessionError> {
        match &self.state {
            State::Dead => Err(SessionError::Dead { silent: now.saturating_duration_since(self.last_heard) }),
            State::AwaitingHello => {
                if !matches!(header.kind, Kind::Hello | Kind::Welcome) {
                    return Err(SessionError::NoHello { sender: header.sender, kind: header.kind });
                }
                if header.proto.0 != PROTOCOL_VERSION.0 {
                    return Err(SessionError::Incompatible {
                        sender: header.sender,
                        theirs: header.proto,
                        ours: PROTOCOL_VERSION,
                    });
                }
                let role = header.meta.get("role").cloned().ok_or(SessionError::NoRole { sender: header.sender })?;
                let peer = Peer { node: header.sender, proto: header.proto, role };
                self.last_heard = now;
                self.state = State::Established(peer.clone());
                Ok(Event::Established(peer))
            }
            State::Established(peer) => {
                if header.sender != peer.node {
                    return Err(SessionError::WrongSender { sender: header.sender, expected: peer.node });
                }
                self.last_heard = now;
                Ok(if header.kind == Kind::Heartbeat { Event::Alive } else { Event::Message })
            }
        }
    }

    /// This side sent something to the peer (which also serves as a heartbeat).
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// A heartbeat to send now, if this side has been quiet for an interval on an established link.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Header> {
        if !matches!(self.state, State::Established(_)) || now < self.last_sent + self.interval {
            return None;
        }
        self.last_sent = now;
        self.seq += 1;
        Some(Header::new(Kind::Heartbeat, self.me, "", self.seq))
    }

    /// When `handle_timeout` or `poll_transmit` next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Dead => None,
            State::AwaitingHello => Some(self.last_heard + self.dead_after()),
            State::Established(_) => Some((self.last_sent + self.interval).min(self.last_heard + self.dead_after())),
        }
    }

    /// Time passed: a peer silent for `liveness` intervals (or that never said hello) is dead.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<SessionError> {
        if self.state != State::Dead && now >= self.last_heard + self.dead_after() {
            self.state = State::Dead;
            return Some(SessionError::Dead { silent: now - self.last_heard });
        }
        None
    }
}
