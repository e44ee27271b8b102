//! Link handshake and liveness on simulated time, and a peer process killed with SIGKILL on real sockets.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shoal_bus::session::{Event, Session, SessionError};
use shoal_bus::transport::{self, SocketConfig};
use shoal_bus::{Header, Kind, Limits, PROTOCOL_VERSION};

const MS: Duration = Duration::from_millis(1);

fn hello(sender: u32, proto: (u16, u16), role: Option<&str>) -> Header {
    let mut h = Header::new(Kind::Hello, sender, "job", 0);
    h.proto = proto;
    if let Some(r) = role {
        h.meta.insert("role".into(), r.into());
    }
    h
}

#[test]
fn the_first_message_must_be_a_compatible_hello() {
    let t = Instant::now();
    let mut s = Session::new(1, 100 * MS, 3, t);
    let err = s.handle(&Header::new(Kind::Update, 9, "job", 0), t).unwrap_err();
    assert_eq!(err, SessionError::NoHello { sender: 9, kind: Kind::Update });
    assert!(err.to_string().contains("not a hello"), "{err}");
    let err = s.handle(&hello(9, (PROTOCOL_VERSION.0 + 1, 0), Some("worker")), t).unwrap_err();
    assert!(err.to_string().contains("link refused"), "{err}");
    assert_eq!(s.handle(&hello(9, PROTOCOL_VERSION, None), t), Err(SessionError::NoRole { sender: 9 }));
    let ev = s.handle(&hello(9, PROTOCOL_VERSION, Some("worker")), t).unwrap();
    assert!(matches!(ev, Event::Established(ref p) if p.node == 9 && p.role == "worker"));
    assert_eq!(s.handle(&Header::new(Kind::Update, 9, "job", 1), t), Ok(Event::Message));
    assert_eq!(s.handle(&Header::new(Kind::Heartbeat, 9, "", 2), t), Ok(Event::Alive));
    assert!(matches!(s.handle(&Header::new(Kind::Update, 8, "job", 1), t), Err(SessionError::WrongSender { .. })));
}

#[test]
fn a_silent_peer_is_declared_dead_exactly_at_the_bound() {
    let t = Instant::now();
    let mut s = Session::new(1, 100 * MS, 3, t);
    s.handle(&hello(2, PROTOCOL_VERSION, Some("server")), t).unwrap();
    assert_eq!(s.handle_timeout(t + 299 * MS), None);
    // Traffic pushes the deadline out.
    s.handle(&Header::new(Kind::Heartbeat, 2, "", 1), t + 250 * MS).unwrap();
    assert_eq!(s.handle_timeout(t + 549 * MS), None);
    assert_eq!(s.poll_timeout(), Some(t + 100 * MS), "the next heartbeat to send is due first");
    assert_eq!(s.handle_timeout(t + 550 * MS), Some(SessionError::Dead { silent: 300 * MS }));
    assert!(matches!(s.handle(&Header::new(Kind::Update, 2, "job", 3), t + 551 * MS), Err(SessionError::Dead { .. })));
    // A peer that never says hello is dead after the same bound.
    let mut quiet = Session::new(1, 100 * MS, 3, t);
    assert!(quiet.handle_timeout(t + 300 * MS).is_some());
}

#[test]
fn heartbeats_go_out_only_when_this_side_is_quiet() {
    let t = Instant::now();
    let mut s = Session::new(1, 100 * MS, 3, t);
    assert!(s.poll_transmit(t + 500 * MS).is_none(), "no heartbeats before the handshake");
    s.handle(&hello(2, PROTOCOL_VERSION, Some("server")), t).unwrap();
    assert!(s.poll_transmit(t + 99 * MS).is_none());
    let hb = s.poll_transmit(t + 100 * MS).unwrap();
    assert_eq!((hb.kind, hb.sender), (Kind::Heartbeat, 1));
    assert!(s.poll_transmit(t + 150 * MS).is_none());
    s.on_sent(t + 180 * MS); // an application message counts as a heartbeat
    assert!(s.poll_transmit(t + 279 * MS).is_none());
    assert!(s.poll_transmit(t + 280 * MS).is_some());
}

#[test]
fn a_crashed_peer_is_reported_within_the_stated_bound() {
    // Two sessions heartbeat each other every 50 ms; node 2 crashes at 1 s. Node 1, polling every
    // millisecond, must report it dead within liveness · interval of node 2's last message.
    let t0 = Instant::now();
    let (interval, liveness) = (50 * MS, 4);
    let mut a = Session::new(1, interval, liveness, t0);
    let mut b = Session::new(2, interval, liveness, t0);
    a.handle(&hello(2, PROTOCOL_VERSION, Some("worker")), t0).unwrap();
    b.handle(&hello(1, PROTOCOL_VERSION, Some("master")), t0).unwrap();
    let crash = t0 + Duration::from_secs(1);
    let mut last_from_b = t0;
    let mut now = t0;
    let reported = loop {
        now += MS;
        assert!(now < t0 + Duration::from_secs(3), "never reported");
        if now < crash
            && let Some(hb) = b.poll_transmit(now)
        {
            a.handle(&hb, now).unwrap();
            last_from_b = now;
        }
        if let Some(hb) = a.poll_transmit(now)
            && now < crash
        {
            b.handle(&hb, now).unwrap();
        }
        assert!(b.handle_timeout(now.min(crash)).is_none(), "a live peer was declared dead");
        if let Some(SessionError::Dead { .. }) = a.handle_timeout(now) {
            break now;
        }
    };
    assert_eq!(
        reported - last_from_b,
        interval * liveness,
        "reported {:?} after the last message",
        reported - last_from_b
    );
    assert!(reported - crash <= interval * liveness, "reported {:?} after the crash", reported - crash);
}

const PEER_ENV: &str = "SHOAL_BUS_SESSION_PEER";
const INTERVAL: Duration = Duration::from_millis(50);
const LIVENESS: u32 = 4;

/// The peer side of the kill test: says hello, then heartbeats through its session until it is killed.
#[test]
fn session_peer() {
    let Ok(endpoint) = std::env::var(PEER_ENV) else { return };
    let ctx = zmq::Context::new();
    let dealer = transport::socket(&ctx, zmq::DEALER, &SocketConfig::default()).unwrap();
    dealer.connect(&endpoint).unwrap();
    let mut session = Session::new(2, INTERVAL, LIVENESS, Instant::now());
    transport::send(&dealer, &[], &hello(2, PROTOCOL_VERSION, Some("worker")), vec![]).unwrap();
    session.handle(&hello(1, PROTOCOL_VERSION, Some("master")), Instant::now()).unwrap();
    loop {
        if let Some(hb) = session.poll_transmit(Instant::now()) {
            transport::send(&dealer, &[], &hb, vec![]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills and reaps the peer process whatever happens to the test.
struct Peer(std::process::Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_peer_killed_with_sigkill_is_reported_dead_within_the_bound_on_real_sockets() {
    let ctx = zmq::Context::new();
    let router = transport::socket(&ctx, zmq::ROUTER, &SocketConfig::default()).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let mut peer = Peer(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "session_peer", "--test-threads", "1"])
            .env(PEER_ENV, &endpoint)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut session = Session::new(1, INTERVAL, LIVENESS, Instant::now());
    let (mut heard, mut last_heard, mut killed) = (0, Instant::now(), false);
    let start = Instant::now();
    let reported = loop {
        assert!(start.elapsed() < Duration::from_secs(20), "never reported dead");
        if router.poll(zmq::POLLIN, 5).unwrap() > 0 {
            let m = transport::recv(&router, 1, &Limits::default()).unwrap();
            let event = session.handle(&m.header, Instant::now()).unwrap();
            last_heard = Instant::now();
            heard += 1;
            assert!(heard > 1 || matches!(event, Event::Established(_)));
        }
        if heard == 10 && !killed {
            peer.0.kill().unwrap(); // SIGKILL
            peer.0.wait().unwrap();
            killed = true;
        }
        if let Some(SessionError::Dead { .. }) = session.handle_timeout(Instant::now()) {
            break Instant::now();
        }
    };
    assert!(killed, "declared dead while it was heartbeating");
    let after = reported - last_heard;
    let bound = INTERVAL * LIVENESS;
    // Never early; late only by this loop's polling and the machine's scheduling.
    assert!(after >= bound && after < bound + Duration::from_millis(250), "reported {after:?} after the last message");
}
