//! Request/reply with retries and idempotency keys: every request executed exactly once and every reply
//! delivered exactly once, through injected loss, duplication and reordering in both directions; on
//! simulated time (proptest over seeds and fault rates) and on real tcp sockets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use shoal_bus::fault::{FaultPlan, FaultyNetwork, FaultySocket};
use shoal_bus::request::{ReplyCache, Requester, Retry};
use shoal_bus::transport::{self, SocketConfig};
use shoal_bus::{Header, Kind, Limits};

const CLIENT: u32 = 7;

/// What the answering side did: executions per request, and the cache.
struct Server {
    executions: HashMap<u64, u32>,
    cache: ReplyCache<u64>,
}

impl Server {
    fn new() -> Self {
        Self { executions: HashMap::new(), cache: ReplyCache::default() }
    }

    /// The reply to request `seq` carrying `x`: executed once, answered from the cache after that.
    fn answer(&mut self, seq: u64, x: u64) -> u64 {
        if let Some(r) = self.cache.lookup(CLIENT, seq) {
            return *r;
        }
        *self.executions.entry(seq).or_default() += 1;
        let reply = x * 2 + 1;
        self.cache.remember(CLIENT, seq, reply);
        reply
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn exactly_once_on_simulated_time(
        seed in any::<u64>(),
        drop in 0.0f64..0.4,
        dup in 0.0f64..0.5,
        n in 1u64..80,
    ) {
        let t0 = Instant::now();
        let mut up = FaultyNetwork::<(u64, u64)>::new(seed, drop, dup, Duration::from_millis(8));
        let mut down = FaultyNetwork::<(u64, u64)>::new(seed ^ 0xabcd, drop, dup, Duration::from_millis(8));
        let mut req = Requester::new(Duration::from_millis(20), 60);
        let mut server = Server::new();
        let mut delivered = HashMap::new();
        let mut now = t0;
        for seq in 0..n {
            up.send(now, (seq, seq + 100));
            req.sent(seq, (seq, seq + 100), now);
        }
        while req.outstanding() > 0 {
            let next = [up.next_arrival(), down.next_arrival(), req.poll_timeout()].into_iter().flatten().min();
            now = next.expect("outstanding requests always have a deadline");
            while let Some((seq, x)) = up.poll_recv(now) {
                let r = server.answer(seq, x);
                down.send(now, (seq, r));
            }
            while let Some((seq, r)) = down.poll_recv(now) {
                if req.handle_reply(seq) {
                    prop_assert!(delivered.insert(seq, r).is_none());
                }
            }
            for retry in req.handle_timeout(now) {
                match retry {
                    Retry::Retransmit { request, .. } => up.send(now, request),
                    Retry::GaveUp { seq, attempts } => prop_assert!(false, "gave up on {seq} after {attempts}"),
                }
            }
        }
        prop_assert_eq!(delivered.len() as u64, n);
        for seq in 0..n {
            prop_assert_eq!(server.executions.get(&seq), Some(&1), "request {} executions", seq);
            prop_assert_eq!(delivered[&seq], (seq + 100) * 2 + 1);
        }
    }
}

#[test]
fn a_dead_peer_is_given_up_on_after_the_retry_budget() {
    let t0 = Instant::now();
    let mut req = Requester::new(Duration::from_millis(100), 3);
    req.sent(1, "ping", t0);
    let mut retransmits = 0;
    loop {
        let now = req.poll_timeout().unwrap();
        match req.handle_timeout(now).pop().unwrap() {
            Retry::Retransmit { .. } => retransmits += 1,
            Retry::GaveUp { seq, attempts } => {
                assert_eq!((seq, attempts), (1, 4));
                assert_eq!(now - t0, Duration::from_millis(400), "reported after (retries + 1) x timeout");
                break;
            }
        }
    }
    assert_eq!(retransmits, 3);
    assert!(!req.handle_reply(1), "a reply after giving up is not delivered");
}

#[test]
fn exactly_once_over_real_tcp_with_faults_both_ways() {
    let ctx = zmq::Context::new();
    let cfg = SocketConfig::default();
    let router = transport::socket(&ctx, zmq::ROUTER, &cfg).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.get_last_endpoint().unwrap().unwrap();
    let dealer = transport::socket(&ctx, zmq::DEALER, &cfg).unwrap();
    dealer.connect(&endpoint).unwrap();

    let plan = |seed| FaultPlan { seed, drop: 0.2, duplicate: 0.2, max_delay: Duration::from_millis(3) };
    let (mut client_net, mut server_net) = (FaultySocket::new(plan(1)), FaultySocket::new(plan(2)));
    let mut req = Requester::new(Duration::from_millis(30), 40);
    let mut server = Server::new();
    let mut delivered = HashMap::new();
    let total = 300u64;
    let mut next = 0u64;
    let request = |seq: u64| {
        let mut h = Header::new(Kind::Update, CLIENT, "req", seq);
        h.meta.insert("x".into(), (seq * 3).to_string());
        h
    };
    let start = Instant::now();
    while delivered.len() < total as usize {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stuck at {} of {total}: {:?}",
            delivered.len(),
            req.stats()
        );
        let now = Instant::now();
        // Up to 16 requests in flight.
        while next < total && req.outstanding() < 16 {
            client_net.send(now, &[], request(next), vec![]);
            req.sent(next, (), now);
            next += 1;
        }
        for retry in req.handle_timeout(now) {
            match retry {
                Retry::Retransmit { seq, .. } => client_net.send(now, &[], request(seq), vec![]),
                Retry::GaveUp { seq, .. } => panic!("gave up on {seq}"),
            }
        }
        client_net.pump(&dealer, now).unwrap();
        server_net.pump(&router, now).unwrap();
        let mut items = [router.as_poll_item(zmq::POLLIN), dealer.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, 2).unwrap();
        let (server_ready, client_ready) = (items[0].is_readable(), items[1].is_readable());
        if server_ready {
            let m = transport::recv(&router, 1, &Limits::default()).unwrap();
            let x: u64 = m.header.meta["x"].parse().unwrap();
            let r = server.answer(m.header.seq, x);
            let mut reply = Header::new(Kind::Confirm, 0, "req", m.header.seq);
            reply.meta.insert("r".into(), r.to_string());
            server_net.send(Instant::now(), &[&m.envelope[0]], reply, vec![]);
        }
        if client_ready {
            let m = transport::recv(&dealer, 0, &Limits::default()).unwrap();
            if req.handle_reply(m.header.seq) {
                let r: u64 = m.header.meta["r"].parse().unwrap();
                assert!(delivered.insert(m.header.seq, r).is_none());
            }
        }
    }
    for seq in 0..total {
        assert_eq!(server.executions.get(&seq), Some(&1), "request {seq}");
        assert_eq!(delivered[&seq], seq * 3 * 2 + 1);
    }
    let stats = req.stats();
    assert!(stats.retransmitted > 0 && server.cache.hits() > 0, "faults were exercised: {stats:?}");
    eprintln!("{stats:?}, {} answered from the cache", server.cache.hits());
}
