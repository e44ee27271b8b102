//! Reliable broadcast (the Clone pattern) on real sockets: late joiners catch up bit-identical over inproc,
//! ipc and tcp; injected drops, duplicates and reordering still deliver every update exactly once or
//! inside a snapshot; a stalled subscriber costs the publisher bounded memory and re-syncs.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_bus::broadcast::{BroadcastConfig, Delivery, Endpoints, Publisher, Subscriber};
use shoal_bus::fault::FaultPlan;
use shoal_bus::transport::SocketConfig;
use shoal_bus::{Dtype, Header, Kind, describe};

/// key -> (seq, payload frames): what both sides must agree on, bit for bit.
type State = BTreeMap<String, (u64, Vec<Vec<u8>>)>;

fn ipc(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    format!("ipc://{}/{name}-{}.sock", dir.display(), std::process::id())
}

/// Deterministic payload for update `i` of `len` bytes.
fn payload(i: u64, len: usize) -> Vec<u8> {
    common::xorshift_bytes(i, len)
}

fn params_header(p: &[u8]) -> Header {
    let mut h = Header::new(Kind::Params, 0, "", 0);
    h.frames = vec![describe(Dtype::U8, &[p.len() as u64], p)];
    h
}

/// What the publisher thread reports when it has published everything.
struct Published {
    last_seq: u64,
    state: State,
    max_rss_growth: u64,
}

/// Publishes `count` updates over `keys` keys (`size(i)` bytes each), servicing snapshot requests in
/// between; signals `halfway` after half, reports on `done`, and keeps serving until `stop`.
#[allow(clippy::too_many_arguments)]
fn spawn_publisher(
    ctx: &zmq::Context,
    urls: (String, String),
    cfg: BroadcastConfig,
    faults: Option<FaultPlan>,
    count: u64,
    keys: u64,
    size: fn(u64) -> usize,
    pace: Duration,
) -> (Endpoints, mpsc::Receiver<()>, mpsc::Receiver<Published>, Arc<AtomicBool>, JoinHandle<()>) {
    let ctx = ctx.clone();
    let (ep_tx, ep_rx) = mpsc::channel();
    let (half_tx, half_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let mut p = Publisher::bind(&ctx, 0, "bcast", &urls.0, &urls.1, cfg).unwrap();
        if let Some(plan) = faults {
            p.inject_faults(plan);
        }
        ep_tx.send(p.endpoints().unwrap()).unwrap();
        let rss0 = rss_bytes();
        let mut max_rss = rss0;
        for i in 0..count {
            let data = payload(i, size(i));
            p.publish(&format!("k{}", i % keys), params_header(&data), vec![data], Instant::now()).unwrap();
            p.service(pace).unwrap();
            max_rss = max_rss.max(rss_bytes());
            if i + 1 == count / 2 {
                let _ = half_tx.send(());
            }
        }
        let state = p.state().map(|(k, h, f)| (k.to_string(), (h.seq, f.to_vec()))).collect();
        let _ = done_tx.send(Published { last_seq: p.last_seq().unwrap(), state, max_rss_growth: max_rss - rss0 });
        while !stop2.load(Ordering::Relaxed) {
            p.service(Duration::from_millis(20)).unwrap();
        }
    });
    let eps = ep_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    (eps, half_rx, done_rx, stop, handle)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Checks that deliveries are exactly-once and in order: each update is the successor of what came
/// before, or a snapshot jumps ahead; never backwards, never twice.
#[derive(Default)]
struct OnceInOrder {
    covered: Option<u64>,
    updates: u64,
    resyncs: u64,
    /// What the first snapshot (the join) covered.
    joined_at: Option<Option<u64>>,
}

impl OnceInOrder {
    fn see(&mut self, d: &Delivery) {
        match *d {
            Delivery::Update { seq, .. } => {
                assert_eq!(Some(seq), self.covered.map_or(Some(0), |c| Some(c + 1)), "update out of order or twice");
                self.covered = Some(seq);
                self.updates += 1;
            }
            Delivery::Resynced { covers, .. } => {
                assert!(covers >= self.covered, "a snapshot went backwards: {covers:?} < {:?}", self.covered);
                self.covered = covers;
                self.resyncs += 1;
                self.joined_at.get_or_insert(covers);
            }
        }
    }
}

/// Receives until the subscriber has everything up to the publisher's last update.
fn catch_up(sub: &mut Subscriber, check: &mut OnceInOrder, last: u64, limit: Duration) {
    let start = Instant::now();
    while check.covered != Some(last) {
        assert!(
            start.elapsed() < limit,
            "no catch-up in {limit:?}: at {:?} of {last}, {:?}",
            check.covered,
            sub.stats()
        );
        if let Some(d) = sub.recv(Duration::from_millis(50)).unwrap() {
            check.see(&d);
        }
    }
}

fn state_of(sub: &Subscriber) -> State {
    sub.state()
        .iter()
        .map(|(k, m)| (k.clone(), (m.header.seq, m.payloads.iter().map(|f| f.to_vec()).collect())))
        .collect()
}

fn small(i: u64) -> usize {
    (i as usize * 37) % 2048
}

#[test]
fn late_joiners_catch_up_bit_identical_over_inproc_ipc_and_tcp() {
    let ctx = zmq::Context::new();
    for (updates, snapshots) in [
        ("inproc://bcast-u".to_string(), "inproc://bcast-s".to_string()),
        (ipc("bcast-u"), ipc("bcast-s")),
        ("tcp://127.0.0.1:*".to_string(), "tcp://127.0.0.1:*".to_string()),
    ] {
        let cfg = BroadcastConfig::default();
        let (eps, half, done, stop, handle) = spawn_publisher(
            &ctx,
            (updates.clone(), snapshots),
            cfg.clone(),
            None,
            2000,
            16,
            small,
            Duration::from_micros(200),
        );
        let mut early = Subscriber::connect(&ctx, 1, "bcast", &eps, cfg.clone()).unwrap();
        let mut early_check = OnceInOrder::default();
        // The early subscriber reads while the publisher runs; the late one joins halfway.
        while half.try_recv().is_err() {
            if let Some(d) = early.recv(Duration::from_millis(5)).unwrap() {
                early_check.see(&d);
            }
        }
        let mut late = Subscriber::connect(&ctx, 2, "bcast", &eps, cfg).unwrap();
        let published = done.recv_timeout(Duration::from_secs(60)).unwrap();
        let mut late_check = OnceInOrder::default();
        catch_up(&mut early, &mut early_check, published.last_seq, Duration::from_secs(20));
        catch_up(&mut late, &mut late_check, published.last_seq, Duration::from_secs(20));
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        assert_eq!(state_of(&early), published.state, "{updates}: early subscriber");
        assert_eq!(state_of(&late), published.state, "{updates}: late subscriber");
        assert!(late_check.resyncs >= 1 && late_check.updates < published.last_seq, "{updates}");
        assert!(early_check.updates > 0, "{updates}: the early subscriber saw the stream");
    }
}

#[test]
fn drops_duplicates_and_reordering_still_deliver_exactly_once() {
    let ctx = zmq::Context::new();
    let cfg = BroadcastConfig { gap_timeout: Duration::from_millis(50), ..Default::default() };
    let plan = FaultPlan { seed: 7, drop: 0.2, duplicate: 0.2, max_delay: Duration::from_millis(5) };
    let (eps, _half, done, stop, handle) = spawn_publisher(
        &ctx,
        ("tcp://127.0.0.1:*".into(), "tcp://127.0.0.1:*".into()),
        cfg.clone(),
        Some(plan),
        1500,
        8,
        small,
        Duration::from_micros(500),
    );
    let mut sub = Subscriber::connect(&ctx, 1, "bcast", &eps, cfg).unwrap();
    let mut check = OnceInOrder::default();
    let published = loop {
        if let Ok(p) = done.try_recv() {
            break p;
        }
        if let Some(d) = sub.recv(Duration::from_millis(5)).unwrap() {
            check.see(&d);
        }
    };
    catch_up(&mut sub, &mut check, published.last_seq, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(state_of(&sub), published.state);
    let stats = sub.stats();
    assert!(stats.link.duplicates > 0, "duplicates were injected: {stats:?}");
    assert!(stats.resends_applied > 0, "lost updates were resent: {stats:?}");
    // Only the join needs a snapshot: every later loss is within the history, so every update after the
    // join is delivered itself, exactly once.
    assert_eq!(check.resyncs, 1, "{stats:?}");
    let after_join = published.last_seq - check.joined_at.unwrap().map_or(0, |c| c + 1) + 1;
    assert_eq!(check.updates, after_join, "{stats:?}");
    assert!(check.updates > 500, "the join came early enough to see the faults: {stats:?}");
}

#[test]
fn a_stalled_subscriber_costs_bounded_memory_and_resyncs() {
    let ctx = zmq::Context::new();
    let socket = SocketConfig { send_hwm: 4, recv_hwm: 4, ..Default::default() };
    let cfg = BroadcastConfig { socket, ..Default::default() };
    const MIB: usize = 1 << 20;
    let (eps, _half, done, stop, handle) = spawn_publisher(
        &ctx,
        ("tcp://127.0.0.1:*".into(), "tcp://127.0.0.1:*".into()),
        cfg.clone(),
        None,
        1200,
        4,
        |_| MIB,
        Duration::ZERO,
    );
    let mut sub = Subscriber::connect(&ctx, 1, "bcast", &eps, cfg).unwrap();
    let mut check = OnceInOrder::default();
    // Join (fetch the first snapshot), read a little, then stall until 1.2 GB have been published.
    let start = Instant::now();
    while check.resyncs == 0 {
        assert!(start.elapsed() < Duration::from_secs(10));
        if let Some(d) = sub.recv(Duration::from_millis(20)).unwrap() {
            check.see(&d);
        }
    }
    let published = done.recv_timeout(Duration::from_secs(120)).unwrap();
    catch_up(&mut sub, &mut check, published.last_seq, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert_eq!(state_of(&sub), published.state);
    // 1200 MiB went out while nobody read; the queues hold at most a few high-water marks of it.
    let growth_mib = published.max_rss_growth / MIB as u64;
    eprintln!("stalled subscriber: the process grew by {growth_mib} MiB while 1200 MiB were published");
    assert!(growth_mib < 128, "the publisher's process grew by {growth_mib} MiB");
    assert!(check.resyncs >= 2, "the stalled subscriber re-synced: {:?}", sub.stats());
}
