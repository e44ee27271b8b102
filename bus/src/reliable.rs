//! Exactly-once, in-order delivery over lossy links, as a state machine with no I/O.
//!
//! PUB/SUB loses messages by design (slow joiners, high-water marks) and a faulty network may drop,
//! duplicate, delay or reorder them. A receiver keeps one [`InOrder`] per sender: messages carry the
//! sender's sequence number; the machine delivers each sequence number exactly once and in order, holds
//! early arrivals in a bounded window, and when a gap outlives its deadline it asks for a snapshot (the
//! zguide's Clone pattern): the state as of some sequence number, from which delivery resumes.
//!
//! Driven the way quinn drives its connections: `handle` a message, `poll_deliver` what is ready,
//! `poll_timeout` says when to call `handle_timeout(now)`, which may yield a snapshot request. Time is
//! an argument, so tests run on simulated clocks.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the owner of an [`InOrder`] should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ask the sender for its state as of its latest sequence number, then call
    /// [`InOrder::apply_snapshot`] with the sequence number the snapshot covers.
    RequestSnapshot { delivered_up_to: Option<u64> },
}

/// Counters for monitoring a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub delivered: u64,
    pub duplicates: u64,
    /// Early arrivals dropped because the window was full (recovered by the snapshot).
    pub overflowed: u64,
    pub snapshots_requested: u64,
}

/// In-order, exactly-once delivery of one sender's messages.
#[derive(Debug)]
pub struct InOrder<T> {
    next: u64,
    pending: BTreeMap<u64, T>,
    ready: std::collections::VecDeque<(u64, T)>,
    window: usize,
    gap_timeout: Duration,
    gap_since: Option<Instant>,
    awaiting_snapshot: bool,
    stats: LinkStats,
}

impl<T> InOrder<T> {
    /// Expects sequence number `first` next; holds at most `window` early messages; declares a gap lost
    /// after `gap_timeout`.
    pub fn new(first: u64, window: usize, gap_timeout: Duration) -> Self {
        Self {
            next: first,
            pending: BTreeMap::new(),
            ready: Default::default(),
            window,
            gap_timeout,
            gap_since: None,
            awaiting_snapshot: false,
            stats: LinkStats::default(),
        }
    }

    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The next sequence number this machine will deliver.
    pub fn next_expected(&self) -> u64 {
        self.next
    }

    /// A message arrived.
    pub fn handle(&mut self, seq: u64, msg: T, now: Instant) {
        if seq < self.next || self.pending.contains_key(&seq) {
            self.stats.duplicates += 1;
            return;
        }
        if seq == self.next {
            self.ready.push_back((seq, msg));
            self.next += 1;
            self.stats.delivered += 1;
            while let Some(m) = self.pending.remove(&self.next) {
                self.ready.push_back((self.next, m));
                self.next += 1;
                self.stats.delivered += 1;
            }
        } else if self.pending.len() < self.window {
            self.pending.insert(seq, msg);
        } else {
            self.stats.overflowed += 1;
        }
        self.gap_since = match (self.pending.is_empty(), self.gap_since) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => Some(now),
        };
    }

    /// A heartbeat said the sender's latest sequence number is `latest`: if that is ahead of what was
    /// delivered, a gap is open even with nothing buffered (the tail of a stream was lost), so the
    /// timeout will ask for a snapshot.
    pub fn handle_heartbeat(&mut self, latest: u64, now: Instant) {
        if latest >= self.next && self.gap_since.is_none() {
            self.gap_since = Some(now);
        }
    }

    /// The next message to hand to the application, in sequence order.
    pub fn poll_deliver(&mut self) -> Option<(u64, T)> {
        self.ready.pop_front()
    }

    /// When `handle_timeout` must next be called, if a gap is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.awaiting_snapshot { None } else { self.gap_since.map(|t| t + self.gap_timeout) }
    }

    /// Time passed: a gap older than the timeout is declared lost, and a snapshot is requested.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Action> {
        let deadline = self.poll_timeout()?;
        if now < deadline {
            return None;
        }
        self.request_snapshot()
    }

    /// Asks for a snapshot now (a late joiner, or an overflowing window) unless one is outstanding.
    pub fn request_snapshot(&mut self) -> Option<Action> {
        if self.awaiting_snapshot {
            return None;
        }
        self.awaiting_snapshot = true;
        self.stats.snapshots_requested += 1;
        Some(Action::RequestSnapshot { delivered_up_to: self.next.checked_sub(1) })
    }

    /// The sender had published nothing when it made the snapshot: nothing to skip, no gap to close.
    pub fn apply_empty_snapshot(&mut self) {
        self.awaiting_snapshot = false;
        self.gap_since = None;
    }

    /// The sender resent the messages it still had from the gap on (they went through `handle`): the
    /// request is answered; a gap that is still open is timed again from `now`.
    pub fn resend_done(&mut self, now: Instant) {
        self.awaiting_snapshot = false;
        self.gap_since = if self.pending.is_empty() { None } else { Some(now) };
    }

    /// The snapshot never came: ask again once the gap timeout has passed from `now`.
    pub fn snapshot_failed(&mut self, now: Instant) {
        self.awaiting_snapshot = false;
        self.gap_since = Some(now);
    }

    /// A snapshot covering every message up to `covers_up_to` was applied by the owner: resume after
    /// it, dropping what it made obsolete, and deliver whatever early arrivals now follow on.
    pub fn apply_snapshot(&mut self, covers_up_to: u64) {
        self.awaiting_snapshot = false;
        if covers_up_to >= self.next {
            self.next = covers_up_to + 1;
            self.pending = self.pending.split_off(&self.next);
        }
        while let Some(m) = self.pending.remove(&self.next) {
            self.ready.push_back((self.next, m));
            self.next += 1;
            self.stats.delivered += 1;
        }
        self.gap_since = None;
    }
}
