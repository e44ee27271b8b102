//! Reliable broadcast over PUB/SUB with snapshots: the zguide's Clone pattern on real sockets.
//!
//! A [`Publisher`] owns keyed state (a parameter set, a round's instruction, ...). Every `publish` replaces
//! one key's value, gets the next sequence number and goes out on a PUB socket to every subscriber at once
//! (libzmq shares one message among them). PUB drops what a slow subscriber cannot take (its high-water
//! mark), so a stalled subscriber costs the publisher a bounded queue, never unbounded memory.
//!
//! A [`Subscriber`] connects its SUB socket first, then asks the publisher's ROUTER socket for a snapshot:
//! the latest value of every key as of some sequence number S. It applies the snapshot and continues with
//! the SUB stream after S, so a late joiner needs no sleep to dodge the slow-joiner problem. Each message
//! goes through [`InOrder`]: duplicates are dropped, early arrivals wait, and a gap that outlives the gap
//! timeout (a message lost to the high-water mark or to a faulty network) is repaired over the ROUTER
//! socket: the publisher resends the missing updates from a bounded history, or, when they have left the
//! history, sends a fresh snapshot. Heartbeats on the PUB stream carry the latest sequence number, which
//! reveals a lost tail.
//!
//! Both sides are driven by their owner's loop (`service` / `recv`), single-threaded, so a snapshot is
//! always consistent with the sequence number it claims.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::Limits;
use crate::fault::{FaultPlan, FaultySocket};
use crate::message::{Header, Kind};
use crate::reliable::{InOrder, LinkStats};
use crate::transport::{self, Received, SocketConfig, TransportError};

/// The meta key naming which state entry a broadcast message replaces.
pub const KEY: &str = "key";
/// The meta key pairing snapshot replies with their request.
const REQUEST: &str = "request";
/// The meta key of a snapshot's last message: the sequence number it covers (`none`: nothing published).
const COVERS: &str = "covers";
/// The meta key of a repair request: the first sequence number the subscriber misses.
const FROM: &str = "from";
/// The meta key of a repair's last message: `full` (a snapshot) or `resend` (updates from the history).
const MODE: &str = "mode";

#[derive(Clone, Debug)]
pub struct BroadcastConfig {
    /// The publisher sends a heartbeat after this much quiet.
    pub heartbeat: Duration,
    /// How long a subscriber lets a gap stay open before it asks for a snapshot.
    pub gap_timeout: Duration,
    /// Early messages a subscriber holds while it waits for a missing one.
    pub window: usize,
    /// How long a subscriber waits for a snapshot before asking again.
    pub snapshot_timeout: Duration,
    /// Recent updates the publisher keeps for resending, at most this many...
    pub history_messages: usize,
    /// ...and at most this many payload bytes.
    pub history_bytes: usize,
    /// Send high-water mark of the repair (ROUTER) socket, in messages: one repair is sent whole or not at
    /// all, so this bounds how much repair traffic can queue for all requesters together.
    pub repair_hwm: i32,
    pub socket: SocketConfig,
    pub limits: Limits,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(100),
            gap_timeout: Duration::from_millis(200),
            window: 256,
            snapshot_timeout: Duration::from_secs(5),
            history_messages: 4096,
            history_bytes: 64 << 20,
            repair_hwm: 100_000,
            socket: SocketConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// Where a publisher can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The PUB socket.
    pub updates: String,
    /// The ROUTER socket answering snapshot requests.
    pub snapshots: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub published: u64,
    pub heartbeats: u64,
    pub snapshots_served: u64,
    /// Repairs answered from the history instead of a snapshot.
    pub resends_served: u64,
    /// Snapshot replies abandoned because the requester could not take them (it will ask again).
    pub snapshots_failed: u64,
    pub bad_requests: u64,
}

struct Entry {
    header: Header,
    payloads: Vec<Vec<u8>>,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.payloads.iter().map(Vec::len).sum()
    }
}

pub struct Publisher {
    updates: zmq::Socket,
    snapshots: zmq::Socket,
    faults: Option<FaultySocket>,
    node: u32,
    job: String,
    next_seq: u64,
    /// Every key's latest update; the history shares the same entries.
    state: BTreeMap<String, Arc<Entry>>,
    history: VecDeque<Arc<Entry>>,
    history_bytes: usize,
    last_sent: Instant,
    cfg: BroadcastConfig,
    stats: PublisherStats,
}

fn zmq_err(op: &'static str) -> impl FnOnce(zmq::Error) -> TransportError {
    move |cause| TransportError::Zmq { op, cause }
}

impl Publisher {
    /// Binds the PUB socket to `updates` and the snapshot ROUTER to `snapshots` (`tcp://127.0.0.1:*`
    /// style wildcards are fine: [`Publisher::endpoints`] says where they ended up).
    pub fn bind(
        ctx: &zmq::Context,
        node: u32,
        job: &str,
        updates: &str,
        snapshots: &str,
        cfg: BroadcastConfig,
    ) -> Result<Self, TransportError> {
        let pub_socket = transport::socket(ctx, zmq::PUB, &cfg.socket)?;
        pub_socket.bind(updates).map_err(zmq_err("bind the PUB socket"))?;
        let router = transport::socket(ctx, zmq::ROUTER, &SocketConfig { send_hwm: cfg.repair_hwm, ..cfg.socket })?;
        // A requester that vanished or is full must not stall the publisher: give up the reply instead.
        router.set_sndtimeo(0).map_err(zmq_err("set SNDTIMEO"))?;
        router.bind(snapshots).map_err(zmq_err("bind the snapshot socket"))?;
        Ok(Self {
            updates: pub_socket,
            snapshots: router,
            faults: None,
            node,
            job: job.to_string(),
            next_seq: 0,
            state: BTreeMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            last_sent: Instant::now(),
            cfg,
            stats: PublisherStats::default(),
        })
    }

    pub fn endpoints(&self) -> Result<Endpoints, TransportError> {
        let last = |s: &zmq::Socket| {
            s.get_last_endpoint()
                .map_err(zmq_err("get the bound endpoint"))
                .map(|e| e.unwrap_or_else(|raw| String::from_utf8_lossy(&raw).into_owned()))
        };
        Ok(Endpoints { updates: last(&self.updates)?, snapshots: last(&self.snapshots)? })
    }

    /// Routes every later update (not snapshots) through a faulty network, for tests.
    pub fn inject_faults(&mut self, plan: FaultPlan) {
        self.faults = Some(FaultySocket::new(plan));
    }

    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// The sequence number of the latest update, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// The current value of every key: (header, payloads).
    pub fn state(&self) -> impl Iterator<Item = (&str, &Header, &[Vec<u8>])> {
        self.state.iter().map(|(k, e)| (k.as_str(), &e.header, e.payloads.as_slice()))
    }

    /// Replaces `key`'s value with `header` + `payloads` and broadcasts it; returns its sequence number.
    /// The header's sender, job and seq are set here; its kind, meta and frame descriptors are the caller's.
    pub fn publish(
        &mut self,
        key: &str,
        mut header: Header,
        payloads: Vec<Vec<u8>>,
        now: Instant,
    ) -> Result<u64, TransportError> {
        let seq = self.next_seq;
        header.sender = self.node;
        header.job.clone_from(&self.job);
        header.seq = seq;
        header.meta.insert(KEY.into(), key.into());
        // State and history share one copy: the sent buffers move into libzmq without a copy.
        let entry = Arc::new(Entry { header: header.clone(), payloads: payloads.clone() });
        self.history_bytes += entry.bytes();
        self.history.push_back(Arc::clone(&entry));
        while self.history.len() > self.cfg.history_messages || self.history_bytes > self.cfg.history_bytes {
            let old = self.history.pop_front().expect("non-empty while over its bounds");
            self.history_bytes -= old.bytes();
        }
        self.state.insert(key.to_string(), entry);
        self.next_seq += 1;
        self.stats.published += 1;
        self.send_update(header, payloads, now)?;
        Ok(seq)
    }

    fn send_update(&mut self, header: Header, payloads: Vec<Vec<u8>>, now: Instant) -> Result<(), TransportError> {
        self.last_sent = now;
        match &mut self.faults {
            Some(f) => {
                f.send(now, &[], header, payloads);
                f.pump(&self.updates, now).map(drop)
            }
            None => transport::send(&self.updates, &[], &header, payloads),
        }
    }

    /// Does the publisher's periodic work: sends held-back faulty traffic that is due, a heartbeat after
    /// `heartbeat` of quiet, and answers snapshot requests arriving within `wait`.
    pub fn service(&mut self, wait: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            if let Some(f) = &mut self.faults {
                f.pump(&self.updates, now)?;
            }
            if now >= self.last_sent + self.cfg.heartbeat {
                let latest = self.last_seq().unwrap_or(0);
                let mut beat = Header::new(Kind::Heartbeat, self.node, self.job.clone(), latest);
                if self.last_seq().is_none() {
                    beat.meta.insert(COVERS.into(), "none".into());
                }
                // Heartbeats skip the faulty network: they only carry the latest sequence number.
                transport::send(&self.updates, &[], &beat, Vec::new())?;
                self.last_sent = now;
                self.stats.heartbeats += 1;
            }
            let mut until = deadline.min(self.last_sent + self.cfg.heartbeat);
            if let Some(due) = self.faults.as_ref().and_then(FaultySocket::next_due) {
                until = until.min(due);
            }
            let ms = until.saturating_duration_since(Instant::now()).as_millis() as i64;
            if self.snapshots.poll(zmq::POLLIN, ms).map_err(zmq_err("poll"))? > 0 {
                self.answer_snapshot_request()?;
            }
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    }

    fn answer_snapshot_request(&mut self) -> Result<(), TransportError> {
        let req = match transport::recv(&self.snapshots, 1, &self.cfg.limits) {
            Ok(r) if r.header.kind == Kind::SnapshotRequest => r,
            Ok(_) | Err(TransportError::Decode(_) | TransportError::Impersonation { .. }) => {
                self.stats.bad_requests += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let request = req.header.meta.get(REQUEST).cloned().unwrap_or_default();
        let from = req.header.meta.get(FROM).and_then(|f| f.parse::<u64>().ok());
        let oldest = self.history.front().map_or(self.next_seq, |e| e.header.seq);
        // Resend from the history when it still holds everything from `from` on; else a full snapshot.
        let (mode, entries): (&str, Vec<&Arc<Entry>>) = match from {
            Some(f) if f >= oldest => ("resend", self.history.iter().filter(|e| e.header.seq >= f).collect()),
            _ => ("full", self.state.values().collect()),
        };
        let envelope: Vec<&[u8]> = req.envelope.iter().map(Vec::as_slice).collect();
        let mut sent = true;
        for entry in &entries {
            let mut h = entry.header.clone();
            h.meta.insert(REQUEST.into(), request.clone());
            if transport::send(&self.snapshots, &envelope, &h, entry.payloads.clone()).is_err() {
                sent = false;
                break;
            }
        }
        if sent {
            let mut last = Header::new(Kind::Snapshot, self.node, self.job.clone(), self.last_seq().unwrap_or(0));
            last.meta.insert(REQUEST.into(), request);
            last.meta.insert(MODE.into(), mode.into());
            last.meta.insert(COVERS.into(), self.last_seq().map_or("none".into(), |s| s.to_string()));
            last.meta.insert("entries".into(), entries.len().to_string());
            sent = transport::send(&self.snapshots, &envelope, &last, Vec::new()).is_ok();
        }
        match (sent, mode) {
            (true, "resend") => self.stats.resends_served += 1,
            (true, _) => self.stats.snapshots_served += 1,
            (false, _) => self.stats.snapshots_failed += 1,
        }
        Ok(())
    }
}

/// What a subscriber's `recv` hands the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The next update in sequence order; the state already holds it.
    Update { key: String, seq: u64 },
    /// The state was replaced by a snapshot covering every update up to `covers` (`None`: the publisher
    /// had published nothing). Updates up to `covers` that were not delivered will not be.
    Resynced { covers: Option<u64>, keys: usize },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    pub link: LinkStats,
    pub snapshots_applied: u64,
    /// Gaps repaired by updates resent from the publisher's history.
    pub resends_applied: u64,
    pub snapshot_timeouts: u64,
    /// Messages dropped by the decoder (bad input), counted, never delivered.
    pub bad_messages: u64,
}

pub struct Subscriber {
    updates: zmq::Socket,
    snapshots: zmq::Socket,
    node: u32,
    job: String,
    order: InOrder<Received>,
    state: BTreeMap<String, Received>,
    request_id: u64,
    /// A full snapshot was applied: later repairs can ask for just the missing updates.
    synced: bool,
    pending_resync: Option<Delivery>,
    cfg: BroadcastConfig,
    stats: SubscriberStats,
}

impl Subscriber {
    /// Connects to a publisher and subscribes to everything; the first `recv` fetches the snapshot.
    pub fn connect(
        ctx: &zmq::Context,
        node: u32,
        job: &str,
        endpoints: &Endpoints,
        cfg: BroadcastConfig,
    ) -> Result<Self, TransportError> {
        let sub = transport::socket(ctx, zmq::SUB, &cfg.socket)?;
        sub.set_subscribe(b"").map_err(zmq_err("subscribe"))?;
        sub.connect(&endpoints.updates).map_err(zmq_err("connect the SUB socket"))?;
        let dealer = transport::socket(ctx, zmq::DEALER, &cfg.socket)?;
        dealer.set_sndtimeo(1000).map_err(zmq_err("set SNDTIMEO"))?;
        dealer.connect(&endpoints.snapshots).map_err(zmq_err("connect the snapshot socket"))?;
        let mut order = InOrder::new(0, cfg.window, cfg.gap_timeout);
        // A joiner starts from a snapshot, whatever it may already have missed.
        order.request_snapshot();
        Ok(Self {
            updates: sub,
            snapshots: dealer,
            node,
            job: job.to_string(),
            order,
            state: BTreeMap::new(),
            request_id: 0,
            synced: false,
            pending_resync: None,
            cfg,
            stats: SubscriberStats::default(),
        })
    }

    pub fn stats(&self) -> SubscriberStats {
        SubscriberStats { link: self.order.stats(), ..self.stats }
    }

    /// The replicated state: every key's latest message.
    pub fn state(&self) -> &BTreeMap<String, Received> {
        &self.state
    }

    /// Waits up to `timeout` for the next delivery.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Delivery>, TransportError> {
        let deadline = Instant::now() + timeout;
        if self.request_id == 0 {
            self.resync(Instant::now())?;
        }
        loop {
            if let Some(d) = self.pending_resync.take() {
                return Ok(Some(d));
            }
            if let Some((seq, msg)) = self.order.poll_deliver() {
                let key = msg.header.meta.get(KEY).cloned().unwrap_or_default();
                self.state.insert(key.clone(), msg);
                return Ok(Some(Delivery::Update { key, seq }));
            }
            let now = Instant::now();
            if self.order.handle_timeout(now).is_some() {
                self.resync(now)?;
                continue;
            }
            if now >= deadline {
                return Ok(None);
            }
            let until = self.order.poll_timeout().map_or(deadline, |t| t.min(deadline));
            let ms = until.saturating_duration_since(now).as_millis().max(1) as i64;
            if self.updates.poll(zmq::POLLIN, ms).map_err(zmq_err("poll"))? == 0 {
                continue;
            }
            match transport::recv(&self.updates, 0, &self.cfg.limits) {
                Ok(m) if m.header.kind == Kind::Heartbeat => {
                    if !m.header.meta.contains_key(COVERS) {
                        self.order.handle_heartbeat(m.header.seq, Instant::now());
                    }
                }
                Ok(m) => self.order.handle(m.header.seq, m, Instant::now()),
                Err(TransportError::Decode(_) | TransportError::Impersonation { .. }) => self.stats.bad_messages += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Asks the publisher to repair a gap (or, before the first snapshot, for a snapshot) and applies the
    /// answer; on timeout the gap stays open and the next gap timeout asks again.
    fn resync(&mut self, now: Instant) -> Result<(), TransportError> {
        self.request_id += 1;
        let request = self.request_id.to_string();
        let mut req = Header::new(Kind::SnapshotRequest, self.node, self.job.clone(), self.request_id);
        req.meta.insert(REQUEST.into(), request.clone());
        if self.synced {
            req.meta.insert(FROM.into(), self.order.next_expected().to_string());
        }
        if transport::send(&self.snapshots, &[], &req, Vec::new()).is_err() {
            self.stats.snapshot_timeouts += 1;
            self.order.snapshot_failed(now);
            return Ok(());
        }
        let deadline = Instant::now() + self.cfg.snapshot_timeout;
        let mut entries = Vec::new();
        let (last, mode) = loop {
            let ms = deadline.saturating_duration_since(Instant::now()).as_millis() as i64;
            if ms == 0 || self.snapshots.poll(zmq::POLLIN, ms).map_err(zmq_err("poll"))? == 0 {
                self.stats.snapshot_timeouts += 1;
                self.order.snapshot_failed(Instant::now());
                return Ok(());
            }
            let m = match transport::recv(&self.snapshots, 0, &self.cfg.limits) {
                Ok(m) => m,
                Err(TransportError::Decode(_) | TransportError::Impersonation { .. }) => {
                    self.stats.bad_messages += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if m.header.meta.get(REQUEST) != Some(&request) {
                continue; // a reply to an earlier request that timed out
            }
            if m.header.kind != Kind::Snapshot {
                entries.push(m);
                continue;
            }
            let mode = m.header.meta.get(MODE).cloned().unwrap_or_default();
            break (m, mode);
        };
        let now = Instant::now();
        if mode == "resend" {
            for m in entries {
                self.order.handle(m.header.seq, m, now);
            }
            self.order.resend_done(now);
            self.stats.resends_applied += 1;
            return Ok(());
        }
        let covers = last.header.meta.get(COVERS).and_then(|c| c.parse::<u64>().ok());
        self.state = entries.into_iter().map(|m| (m.header.meta.get(KEY).cloned().unwrap_or_default(), m)).collect();
        match covers {
            Some(s) => self.order.apply_snapshot(s),
            None => self.order.apply_empty_snapshot(),
        }
        self.synced = true;
        self.stats.snapshots_applied += 1;
        self.pending_resync = Some(Delivery::Resynced { covers, keys: self.state.len() });
        Ok(())
    }
}
