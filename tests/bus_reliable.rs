//! Exactly-once, in-order delivery under drop / duplicate / delay / reorder, on simulated time.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use shoal_bus::fault::FaultyNetwork;
use shoal_bus::reliable::{Action, InOrder};

#[derive(Clone, Debug)]
enum Packet {
    Data { seq: u64, value: u64 },
    Heartbeat { latest: u64 },
}

/// Runs a publisher of `n` values through a faulty network to one subscriber that recovers by
/// snapshots; returns the subscriber's final state and the simulated time it took.
fn run(n: u64, seed: u64, drop: f64, dup: f64, delay_ms: u64, window: usize) -> (Vec<u64>, Vec<u64>, Duration, u64) {
    let t0 = Instant::now();
    let mut net = FaultyNetwork::new(seed, drop, dup, Duration::from_millis(delay_ms));
    let published: Vec<u64> = (0..n).map(|i| i.wrapping_mul(2_654_435_761) % 1000).collect();
    let mut rx = InOrder::new(0, window, Duration::from_millis(20));
    let mut state: Vec<u64> = Vec::new(); // the application's state: every value applied in order
    let mut now = t0;
    let mut sent = 0u64;
    let mut next_heartbeat = t0;
    let deadline = t0 + Duration::from_secs(600);
    while state.len() < published.len() {
        assert!(now < deadline, "no convergence (seed {seed})");
        // The publisher sends one message per millisecond, then heartbeats every 5 ms.
        if sent < n {
            net.send(now, Packet::Data { seq: sent, value: published[sent as usize] });
            sent += 1;
        }
        if n > 0 && now >= next_heartbeat {
            net.send(now, Packet::Heartbeat { latest: sent - 1 });
            next_heartbeat = now + Duration::from_millis(5);
        }
        while let Some(p) = net.poll_recv(now) {
            match p {
                Packet::Data { seq, value } => rx.handle(seq, value, now),
                Packet::Heartbeat { latest } => rx.handle_heartbeat(latest, now),
            }
        }
        while let Some((seq, value)) = rx.poll_deliver() {
            assert_eq!(seq as usize, state.len(), "delivered out of order or twice");
            state.push(value);
        }
        if let Some(Action::RequestSnapshot { .. }) = rx.handle_timeout(now) {
            // The snapshot service (ROUTER/DEALER, reliable) answers with the state as of the
            // publisher's latest sequence number.
            let covers = sent - 1;
            state = published[..=covers as usize].to_vec();
            rx.apply_snapshot(covers);
            while let Some((seq, value)) = rx.poll_deliver() {
                assert_eq!(seq as usize, state.len(), "delivered out of order or twice after a snapshot");
                state.push(value);
            }
        }
        // The machine and the application agree on where the stream stands, at every step.
        assert_eq!(
            rx.next_expected(),
            state.len() as u64,
            "receiver position diverged from the applied state (seed {seed})"
        );
        now += Duration::from_millis(1);
    }
    let snapshots = rx.stats().snapshots_requested;
    (state, published, now - t0, snapshots)
}

proptest! {
    #[test]
    fn every_value_is_applied_once_in_order(
        n in 0u64..300,
        seed in any::<u64>(),
        drop in 0.0f64..0.5,
        dup in 0.0f64..0.5,
        delay_ms in 0u64..30,
        window in 1usize..64,
    ) {
        let (state, published, _, _) = run(n, seed, drop, dup, delay_ms, window);
        prop_assert_eq!(state, published);
    }
}

#[test]
fn a_clean_network_needs_no_snapshot_and_a_lossy_one_recovers() {
    let (state, published, _, snaps) = run(500, 1, 0.0, 0.0, 0, 8);
    assert_eq!((state == published, snaps), (true, 0));
    let (state, published, took, snaps) = run(500, 2, 0.3, 0.2, 25, 8);
    assert!(state == published && snaps > 0, "snapshots {snaps}");
    assert!(took < Duration::from_secs(5), "recovery took {took:?} of simulated time");
}

#[test]
fn duplicates_and_stale_messages_are_counted_not_delivered() {
    let t = Instant::now();
    let mut rx = InOrder::new(0, 4, Duration::from_millis(10));
    for seq in [0, 0, 2, 2, 1, 1, 0] {
        rx.handle(seq, seq * 10, t);
    }
    let got: Vec<_> = std::iter::from_fn(|| rx.poll_deliver()).collect();
    assert_eq!(got, vec![(0, 0), (1, 10), (2, 20)]);
    assert_eq!((rx.stats().delivered, rx.stats().duplicates), (3, 4));
    // Heartbeat reveals a lost tail; the timeout then asks for a snapshot once.
    rx.handle_heartbeat(9, t);
    assert_eq!(rx.handle_timeout(t), None);
    assert_eq!(rx.poll_timeout(), Some(t + Duration::from_millis(10)));
    assert_eq!(
        rx.handle_timeout(t + Duration::from_millis(10)),
        Some(Action::RequestSnapshot { delivered_up_to: Some(2) })
    );
    assert_eq!(rx.handle_timeout(t + Duration::from_millis(50)), None, "one request outstanding at a time");
    rx.apply_snapshot(9);
    assert_eq!(rx.next_expected(), 10);
}
