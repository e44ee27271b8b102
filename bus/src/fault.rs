//! Fault injection: a seeded lossy network that drops, duplicates, delays and so reorders messages, on
//! simulated time ([`FaultyNetwork`]) or in front of a real ZeroMQ socket ([`FaultySocket`]).
//!
//! Every protocol built on the bus is tested through it: the reliability machines must deliver exactly
//! once, in order, whatever the seed. The same seed gives the same faults.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::message::Header;
use crate::transport::{self, TransportError};

/// What goes wrong, and how often.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message that is not lost arrives twice.
    pub duplicate: f64,
    /// Each copy is held back by a uniform random delay up to this, which reorders messages.
    pub max_delay: Duration,
}

/// A seeded, simulated lossy network for tests of protocols built on the bus: each message sent may be
/// dropped, duplicated and delayed by a random amount (so it may also arrive out of order).
#[derive(Debug)]
pub struct FaultyNetwork<T> {
    rng: u64,
    pub drop: f64,
    pub duplicate: f64,
    pub max_delay: Duration,
    in_flight: BTreeMap<(Instant, u64), T>,
    counter: u64,
}

impl<T: Clone> FaultyNetwork<T> {
    pub fn new(seed: u64, drop: f64, duplicate: f64, max_delay: Duration) -> Self {
        Self { rng: seed, drop, duplicate, max_delay, in_flight: BTreeMap::new(), counter: 0 }
    }

    pub fn with_plan(plan: FaultPlan) -> Self {
        Self::new(plan.seed, plan.drop, plan.duplicate, plan.max_delay)
    }

    fn uniform(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn send(&mut self, now: Instant, msg: T) {
        if self.uniform() < self.drop {
            return;
        }
        let copies = if self.uniform() < self.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.max_delay.mul_f64(self.uniform());
            self.counter += 1;
            self.in_flight.insert((now + delay, self.counter), msg.clone());
        }
    }

    /// The next message that has arrived by `now`, in arrival order.
    pub fn poll_recv(&mut self, now: Instant) -> Option<T> {
        let (&key, _) = self.in_flight.iter().next()?;
        if key.0 > now {
            return None;
        }
        self.in_flight.remove(&key)
    }

    /// When the next message arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.keys().next().map(|k| k.0)
    }
}

/// A real socket's sending side behind a [`FaultyNetwork`]: `send` schedules the message (or loses it),
/// `pump` hands libzmq what is due. Payloads are shared, so a duplicate costs no copy until it is sent.
pub struct FaultySocket {
    net: FaultyNetwork<Outgoing>,
}

#[derive(Clone)]
struct Outgoing {
    envelope: Vec<Vec<u8>>,
    header: Header,
    payloads: std::sync::Arc<Vec<Vec<u8>>>,
}

impl FaultySocket {
    pub fn new(plan: FaultPlan) -> Self {
        Self { net: FaultyNetwork::with_plan(plan) }
    }

    /// Queues one message as the faulty network decides (lost, once or twice, after a delay).
    pub fn send(&mut self, now: Instant, envelope: &[&[u8]], header: Header, payloads: Vec<Vec<u8>>) {
        let envelope = envelope.iter().map(|f| f.to_vec()).collect();
        self.net.send(now, Outgoing { envelope, header, payloads: std::sync::Arc::new(payloads) });
    }

    /// Sends every message due by `now` on `socket`, in arrival order; returns how many.
    pub fn pump(&mut self, socket: &zmq::Socket, now: Instant) -> Result<usize, TransportError> {
        let mut sent = 0;
        while let Some(m) = self.net.poll_recv(now) {
            let envelope: Vec<&[u8]> = m.envelope.iter().map(Vec::as_slice).collect();
            let payloads = std::sync::Arc::try_unwrap(m.payloads).unwrap_or_else(|shared| (*shared).clone());
            transport::send(socket, &envelope, &m.header, payloads)?;
            sent += 1;
        }
        Ok(sent)
    }

    /// When the next held-back message is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.net.next_arrival()
    }
}
