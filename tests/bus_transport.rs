//! The bus over real ZeroMQ sockets: inproc, ipc and tcp on 127.0.0.1, within and across processes.
//! Every receive has a timeout, so a broken test fails instead of hanging.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use shoal_bus::transport::{self, SocketConfig, TransportError};
use shoal_bus::{DecodeError, Dtype, Header, Kind, Limits, describe};

const TIMEOUT_MS: i32 = 5000;

fn update(seq: u64, payloads: &[Vec<u8>]) -> Header {
    let mut h = Header::new(Kind::Update, 3, "transport-test", seq);
    h.frames = payloads.iter().map(|p| describe(Dtype::U8, &[p.len() as u64], p)).collect();
    h
}

fn payloads(seed: u8) -> Vec<Vec<u8>> {
    [0usize, 4096, 1 << 20]
        .iter()
        .map(|&n| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect())
        .collect()
}

fn pair(ctx: &zmq::Context, endpoint: &str) -> (zmq::Socket, zmq::Socket, String) {
    let cfg = SocketConfig::default();
    let pull = transport::socket(ctx, zmq::PULL, &cfg).unwrap();
    pull.set_rcvtimeo(TIMEOUT_MS).unwrap();
    pull.bind(endpoint).unwrap();
    let bound = pull.get_last_endpoint().unwrap().unwrap();
    let push = transport::socket(ctx, zmq::PUSH, &cfg).unwrap();
    push.connect(&bound).unwrap();
    (push, pull, bound)
}

fn ipc_path(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    format!("ipc://{}/{name}-{}.sock", dir.display(), std::process::id())
}

#[test]
fn messages_arrive_bit_identical_over_inproc_ipc_and_tcp() {
    let ctx = zmq::Context::new();
    for endpoint in ["inproc://roundtrip".to_string(), ipc_path("roundtrip"), "tcp://127.0.0.1:*".to_string()] {
        let (push, pull, bound) = pair(&ctx, &endpoint);
        for seq in 0..3u64 {
            let p = payloads(seq as u8);
            transport::send(&push, &[], &update(seq, &p), p.clone()).unwrap();
            let r = transport::recv(&pull, 0, &Limits::default()).unwrap_or_else(|e| panic!("{bound}: {e}"));
            assert_eq!(r.header, update(seq, &p), "{bound}");
            let got: Vec<&[u8]> = r.payloads.iter().map(|m| &m[..]).collect();
            assert_eq!(got, p.iter().map(|v| v.as_slice()).collect::<Vec<_>>(), "{bound}");
        }
    }
}

#[test]
fn router_dealer_request_reply_with_identities() {
    let ctx = zmq::Context::new();
    let cfg = SocketConfig::default();
    let router = transport::socket(&ctx, zmq::ROUTER, &cfg).unwrap();
    router.set_rcvtimeo(TIMEOUT_MS).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let dealer = transport::socket(&ctx, zmq::DEALER, &cfg).unwrap();
    dealer.set_rcvtimeo(TIMEOUT_MS).unwrap();
    dealer.set_identity(b"worker-7").unwrap();
    dealer.connect(&endpoint).unwrap();
    transport::send(&dealer, &[], &Header::new(Kind::Hello, 7, "j", 1), vec![]).unwrap();
    let req = transport::recv(&router, 1, &Limits::default()).unwrap();
    assert_eq!((req.envelope[0].as_slice(), req.header.kind), (&b"worker-7"[..], Kind::Hello));
    transport::send(&router, &[&req.envelope[0]], &Header::new(Kind::Welcome, 0, "j", 1), vec![]).unwrap();
    assert_eq!(transport::recv(&dealer, 0, &Limits::default()).unwrap().header.kind, Kind::Welcome);
    // ROUTER_MANDATORY: a reply to an unknown peer is an error, not a silent drop.
    let err = transport::send(&router, &[b"nobody"], &Header::new(Kind::Welcome, 0, "j", 2), vec![]).unwrap_err();
    assert!(matches!(err, TransportError::Zmq { .. }), "{err}");
}

#[test]
fn bad_messages_are_dropped_and_the_socket_keeps_working() {
    let ctx = zmq::Context::new();
    let (push, pull, _) = pair(&ctx, "inproc://bad");
    let limits = Limits { max_payload_frames: 8, ..Limits::default() };
    // Junk header bytes.
    push.send(&b"\xc1\xc1 not msgpack"[..], 0).unwrap();
    assert!(matches!(transport::recv(&pull, 0, &limits), Err(TransportError::Decode(DecodeError::Malformed(_)))));
    // 10^5 frames: refused while receiving; nothing kept.
    for i in 0..100_000 {
        push.send(&[1u8][..], if i + 1 < 100_000 { zmq::SNDMORE } else { 0 }).unwrap();
    }
    let err = transport::recv(&pull, 0, &limits).unwrap_err();
    assert!(matches!(err, TransportError::Decode(DecodeError::TooManyFrames { max: 8, .. })), "{err}");
    // A shape that lies about its frame.
    let p = vec![vec![0u8; 10]];
    let mut h = update(1, &p);
    h.frames[0].shape = vec![11];
    transport::send(&push, &[], &h, p).unwrap();
    assert!(matches!(transport::recv(&pull, 0, &limits), Err(TransportError::Decode(DecodeError::Shape { .. }))));
    // The next good message arrives normally.
    let p = payloads(9);
    transport::send(&push, &[], &update(2, &p), p).unwrap();
    assert_eq!(transport::recv(&pull, 0, &Limits::default()).unwrap().header.seq, 2);
}

#[test]
fn a_tcp_peer_sending_an_oversized_frame_is_cut_off() {
    let ctx = zmq::Context::new();
    let cfg = SocketConfig { max_frame_bytes: 1 << 16, ..SocketConfig::default() };
    let pull = transport::socket(&ctx, zmq::PULL, &cfg).unwrap();
    pull.set_rcvtimeo(1000).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    let rogue = ctx.socket(zmq::PUSH).unwrap();
    rogue.connect(&endpoint).unwrap();
    rogue.send(vec![0u8; 1 << 20], 0).unwrap();
    // libzmq disconnects the peer instead of delivering the frame.
    assert!(matches!(transport::recv(&pull, 0, &Limits::default()), Err(TransportError::Zmq { .. })));
    // A well-behaved peer still gets through.
    let good = transport::socket(&ctx, zmq::PUSH, &SocketConfig::default()).unwrap();
    good.connect(&endpoint).unwrap();
    let p = vec![vec![5u8; 1000]];
    transport::send(&good, &[], &update(1, &p), p).unwrap();
    pull.set_rcvtimeo(TIMEOUT_MS).unwrap();
    assert_eq!(transport::recv(&pull, 0, &Limits::default()).unwrap().header.seq, 1);
}

const CHILD_ENV: &str = "SHOAL_BUS_CHILD_ENDPOINT";

/// The child side of the cross-process test: connects, sends five messages, exits.
#[test]
fn transport_child() {
    let Ok(endpoint) = std::env::var(CHILD_ENV) else { return };
    let ctx = zmq::Context::new();
    let push = transport::socket(&ctx, zmq::PUSH, &SocketConfig::default()).unwrap();
    push.connect(&endpoint).unwrap();
    for seq in 0..5u64 {
        let p = payloads(seq as u8);
        transport::send(&push, &[], &update(seq, &p), p).unwrap();
    }
}

#[test]
fn messages_cross_process_boundaries_over_ipc_and_tcp() {
    let ctx = zmq::Context::new();
    for endpoint in [ipc_path("xproc"), "tcp://127.0.0.1:*".to_string()] {
        let pull = transport::socket(&ctx, zmq::PULL, &SocketConfig::default()).unwrap();
        pull.set_rcvtimeo(TIMEOUT_MS).unwrap();
        pull.bind(&endpoint).unwrap();
        let bound = pull.get_last_endpoint().unwrap().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "transport_child", "--test-threads", "1"])
            .env(CHILD_ENV, &bound)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        for seq in 0..5u64 {
            let r = transport::recv(&pull, 0, &Limits::default()).unwrap_or_else(|e| panic!("{bound}: {e}"));
            let p = payloads(seq as u8);
            assert_eq!(r.header, update(seq, &p));
            assert!(r.payloads.iter().zip(&p).all(|(a, b)| &a[..] == b.as_slice()));
        }
        assert!(child.wait().unwrap().success());
    }
}

/// The allocator settings apply on glibc (the machines shoal targets), and are reported.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_allocator_settings_take_on_glibc() {
    if shoal_bus::malloc::left_to_the_operator() {
        assert!(!shoal_bus::malloc::tune_for_large_messages(), "an operator's setting was overridden");
        return;
    }
    assert!(shoal_bus::malloc::tune_for_large_messages());
    assert!(shoal_bus::malloc::tuned());
}
