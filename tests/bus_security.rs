//! CURVE on real tcp sockets (127.0.0.1): allowlisted nodes get through, bound to their node id; unknown
//! keys, plain-tcp peers and impersonators deliver nothing. Key files round-trip and bad ones are refused.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_bus::security::{Allowlist, Keypair, SecurityError, ZapHandler};
use shoal_bus::transport::{self, SocketConfig, TransportError};
use shoal_bus::{Header, Kind, Limits};

const MASTER: u32 = 0;

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sec-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A CURVE server ROUTER on an ephemeral tcp port of 127.0.0.1 allowing `allowed`.
struct Server {
    _zap: ZapHandler,
    socket: zmq::Socket,
    endpoint: String,
    key: Keypair,
}

fn server(ctx: &zmq::Context, allowed: &[&Keypair]) -> Server {
    let key = Keypair::generate(MASTER).unwrap();
    let mut list = Allowlist::new();
    for k in allowed {
        list.allow(k.node, &k.public).unwrap();
    }
    let zap = ZapHandler::start(ctx, list).unwrap();
    let mut socket = transport::socket(ctx, zmq::ROUTER, &SocketConfig::default()).unwrap();
    key.serve_on(&mut socket).unwrap();
    socket.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = socket.get_last_endpoint().unwrap().unwrap();
    Server { _zap: zap, socket, endpoint, key }
}

fn dealer(ctx: &zmq::Context, server: &Server, key: Option<&Keypair>) -> zmq::Socket {
    let s = transport::socket(ctx, zmq::DEALER, &SocketConfig::default()).unwrap();
    s.set_sndtimeo(200).unwrap();
    if let Some(k) = key {
        k.connect_with(&s, &server.key.public).unwrap();
    }
    s.connect(&server.endpoint).unwrap();
    s
}

/// Sends `n` messages claiming `sender` (send errors ignored: a refused link may not accept them).
fn send_some(s: &zmq::Socket, sender: u32, n: u64) {
    for seq in 0..n {
        let _ = transport::send(s, &[], &Header::new(Kind::Heartbeat, sender, "sec", seq), vec![]);
    }
}

/// Everything the server receives within `window`: (authenticated id, header sender), and the errors.
fn drain(server: &Server, window: Duration) -> (Vec<(Option<u32>, u32)>, Vec<TransportError>) {
    let (mut got, mut errors) = (Vec::new(), Vec::new());
    let end = Instant::now() + window;
    while Instant::now() < end {
        if server.socket.poll(zmq::POLLIN, 50).unwrap() == 0 {
            continue;
        }
        match transport::recv(&server.socket, 1, &Limits::default()) {
            Ok(r) => got.push((r.authenticated, r.header.sender)),
            Err(e) => errors.push(e),
        }
    }
    (got, errors)
}

#[test]
fn allowlisted_node_is_delivered_and_bound_to_its_id() {
    let ctx = zmq::Context::new();
    let worker = Keypair::generate(3).unwrap();
    let srv = server(&ctx, &[&worker]);
    let d = dealer(&ctx, &srv, Some(&worker));
    send_some(&d, 3, 5);
    let (got, errors) = drain(&srv, Duration::from_millis(1500));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(got, vec![(Some(3), 3); 5]);
    assert_eq!(srv._zap.stats().accepted, 1);
}

#[test]
fn unknown_key_plain_peer_and_wrong_server_key_deliver_nothing() {
    let ctx = zmq::Context::new();
    let known = Keypair::generate(3).unwrap();
    let srv = server(&ctx, &[&known]);
    let stranger = Keypair::generate(9).unwrap();
    let unknown = dealer(&ctx, &srv, Some(&stranger));
    let plain = dealer(&ctx, &srv, None);
    // A known client that was given the wrong server key: the handshake fails on its side.
    let misdirected = transport::socket(&ctx, zmq::DEALER, &SocketConfig::default()).unwrap();
    misdirected.set_sndtimeo(200).unwrap();
    known.connect_with(&misdirected, &stranger.public).unwrap();
    misdirected.connect(&srv.endpoint).unwrap();
    for s in [&unknown, &plain, &misdirected] {
        send_some(s, 3, 5);
    }
    let (got, errors) = drain(&srv, Duration::from_millis(2000));
    assert!(got.is_empty() && errors.is_empty(), "delivered {got:?}, errors {errors:?}");
    assert!(srv._zap.stats().rejected >= 1, "the stranger's key reached the ZAP handler and was refused");
    assert_eq!(srv._zap.stats().accepted, 0);
}

#[test]
fn a_node_claiming_another_id_is_dropped() {
    let ctx = zmq::Context::new();
    let worker = Keypair::generate(3).unwrap();
    let srv = server(&ctx, &[&worker]);
    let d = dealer(&ctx, &srv, Some(&worker));
    send_some(&d, 5, 3);
    send_some(&d, 3, 1);
    let (got, errors) = drain(&srv, Duration::from_millis(1500));
    assert_eq!(got, vec![(Some(3), 3)]);
    assert_eq!(errors.len(), 3);
    assert!(errors.iter().all(|e| matches!(e, TransportError::Impersonation { claimed: 5, authenticated: 3 })));
}

#[test]
fn key_files_round_trip_and_bad_ones_are_refused() {
    let dir = tmp_dir("files");
    let pairs: Vec<Keypair> = (0..3).map(|n| Keypair::generate(n).unwrap()).collect();
    for p in &pairs {
        p.write(&dir).unwrap();
    }
    for p in &pairs {
        assert_eq!(&Keypair::load(&dir, p.node).unwrap(), p);
    }
    let list = Allowlist::load_dir(&dir).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list.public_of(2), Some(pairs[2].public.clone()));
    // Never overwrites a secret key.
    assert!(matches!(pairs[0].write(&dir), Err(SecurityError::Io { .. })));

    use std::os::unix::fs::PermissionsExt;
    let secret = Keypair::secret_path(&dir, 1);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Keypair::load(&dir, 1).unwrap_err();
    assert!(matches!(e, SecurityError::OpenSecret { mode: 0o644, .. }), "{e}");
    assert!(e.to_string().contains("node-1.key"), "{e}");

    std::fs::write(Keypair::public_path(&dir, 2), "shoal-curve-public v1\nnode 2\npublic tooshort\n").unwrap();
    let e = Allowlist::load_dir(&dir).unwrap_err();
    assert!(e.to_string().contains("node-2.pub") && e.to_string().contains("Z85"), "{e}");

    let empty = tmp_dir("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert!(matches!(Allowlist::load_dir(&empty), Err(SecurityError::EmptyAllowlist { .. })));
}
