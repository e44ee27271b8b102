//! Request/reply that survives lost, duplicated and late messages: timeouts and retries on the
//! requesting side, idempotency keys on the answering side. Both are state machines with no I/O.
//!
//! A request is identified by its idempotency key (sender node, sequence number). The [`Requester`]
//! retransmits a request whose reply has not come within the timeout, up to a retry budget, and hands
//! each reply to the application once however many copies arrive. The answering side keeps a
//! [`ReplyCache`]: a request whose key it has already answered is not executed again; the cached reply is
//! sent instead. So a request is executed at most once and its reply delivered at most once, even though
//! the network may carry either any number of times.
//!
//! The cache is bounded: it must hold a key for as long as retries of that request may still arrive,
//! i.e. at least `requests in flight per sender × senders`. Evicting sooner turns a late retry into a
//! second execution; shoal's default keeps 65,536 replies.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What a timeout means for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retry<T> {
    /// Send this request again.
    Retransmit { seq: u64, request: T },
    /// The retry budget is spent: report the peer as unresponsive for this request.
    GaveUp { seq: u64, attempts: u32 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequesterStats {
    pub sent: u64,
    pub retransmitted: u64,
    pub replies: u64,
    /// Replies to requests already answered (or given up): dropped.
    pub duplicate_replies: u64,
    pub gave_up: u64,
}

#[derive(Debug)]
struct Pending<T> {
    request: T,
    deadline: Instant,
    attempts: u32,
}

/// The requesting side: which requests await replies, and when to retry them.
#[derive(Debug)]
pub struct Requester<T> {
    outstanding: BTreeMap<u64, Pending<T>>,
    timeout: Duration,
    retries: u32,
    stats: RequesterStats,
}

impl<T: Clone> Requester<T> {
    /// Retries a request `retries` times, `timeout` apart, before giving up.
    pub fn new(timeout: Duration, retries: u32) -> Self {
        Self { outstanding: BTreeMap::new(), timeout, retries, stats: RequesterStats::default() }
    }

    pub fn stats(&self) -> RequesterStats {
        self.stats
    }

    /// Requests awaiting a reply.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Registers request `seq` (sent by the caller now).
    pub fn sent(&mut self, seq: u64, request: T, now: Instant) {
        self.stats.sent += 1;
        self.outstanding.insert(seq, Pending { request, deadline: now + self.timeout, attempts: 1 });
    }

    /// A reply to `seq` arrived: `true` if it is the first (hand it to the application), `false` for a
    /// duplicate or a reply to a request that was given up.
    pub fn handle_reply(&mut self, seq: u64) -> bool {
        if self.outstanding.remove(&seq).is_some() {
            self.stats.replies += 1;
            true
        } else {
            self.stats.duplicate_replies += 1;
            false
        }
    }

    /// The earliest retry deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding.values().map(|p| p.deadline).min()
    }

    /// Every request whose deadline passed by `now`: retransmit it, or give up after the budget.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Retry<T>> {
        let due: Vec<u64> = self.outstanding.iter().filter(|(_, p)| p.deadline <= now).map(|(s, _)| *s).collect();
        let mut out = Vec::with_capacity(due.len());
        for seq in due {
            let p = self.outstanding.get_mut(&seq).expect("listed above");
            if p.attempts > self.retries {
                let attempts = p.attempts;
                self.outstanding.remove(&seq);
                self.stats.gave_up += 1;
                out.push(Retry::GaveUp { seq, attempts });
            } else {
                p.attempts += 1;
                p.deadline = now + self.timeout;
                self.stats.retransmitted += 1;
                out.push(Retry::Retransmit { seq, request: p.request.clone() });
            }
        }
        out
    }
}

/// The answering side's memory of replies, by idempotency key (sender, seq), oldest evicted first.
#[derive(Debug)]
pub struct ReplyCache<R> {
    replies: HashMap<(u32, u64), R>,
    order: VecDeque<(u32, u64)>,
    capacity: usize,
    hits: u64,
}

impl<R> ReplyCache<R> {
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(capacity: usize) -> Self {
        Self { replies: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1), hits: 0 }
    }

    /// The reply already given to (sender, seq), if any: send it again instead of executing.
    pub fn lookup(&mut self, sender: u32, seq: u64) -> Option<&R> {
        let hit = self.replies.get(&(sender, seq));
        if hit.is_some() {
            self.hits += 1;
        }
        hit
    }

    /// Remembers the reply to a request that was just executed.
    pub fn remember(&mut self, sender: u32, seq: u64, reply: R) {
        if self.replies.insert((sender, seq), reply).is_none() {
            self.order.push_back((sender, seq));
        }
        while self.order.len() > self.capacity {
            let old = self.order.pop_front().expect("non-empty while over capacity");
            self.replies.remove(&old);
        }
    }

    /// Requests answered from the cache (retries and duplicates).
    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }
}

impl<R> Default for ReplyCache<R> {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}
