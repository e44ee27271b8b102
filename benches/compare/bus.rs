//! The bus benchmarks of `compare`: tensor push between processes over tcp, inproc against memcpy, a
//! broadcast to many subscribers against one push per subscriber, the payload checksum against the crate
//! it replaces, and what a checksummed payload costs to produce. Every figure is a ratio within one run.

use std::time::Instant;

use shoal_bus::transport::{self, SocketConfig};
use shoal_bus::{Dtype, Header, Kind, Limits, PayloadBuilder, describe, describe_in_process};

/// What a `push` pass sends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PushMode {
    /// Plain zero-copy libzmq messages: the peer.
    Raw,
    /// Shoal's framing: a header, and a payload built with [`PayloadBuilder`] and verified on receipt.
    Shoal,
    /// Shoal's framing with the payload checksums off at both ends (a diagnostic: what the framing
    /// costs apart from the checksums; no tcp link of shoal's runs this way).
    Unchecked,
}

impl PushMode {
    pub fn flag(self) -> Option<&'static str> {
        match self {
            PushMode::Raw => None,
            PushMode::Shoal => Some("--shoal"),
            PushMode::Unchecked => Some("--unchecked"),
        }
    }
}

/// Child side of `push`: connects and sends `count` messages of `size` bytes in `mode`.
pub fn push_send(endpoint: &str, size: usize, count: usize, mode: PushMode) -> String {
    let ctx = zmq::Context::new();
    let cfg = SocketConfig { send_hwm: 64, ..SocketConfig::default() };
    let push = transport::socket(&ctx, zmq::PUSH, &cfg).expect("socket");
    push.connect(endpoint).expect("connect");
    for i in 0..count {
        // A fresh buffer per message, as a worker's update would be (every mode pays the same allocation).
        // Shoal's producer writes through the payload builder, which hashes each piece as it lands.
        let mut h = Header::new(Kind::Update, 1, "bench", i as u64);
        match mode {
            PushMode::Raw => push.send(zmq::Message::from(vec![i as u8; size]), 0).expect("send"),
            PushMode::Shoal => {
                let mut builder = PayloadBuilder::with_capacity(size);
                builder.extend_with(size, |_, piece| piece.fill(i as u8));
                let (desc, payload) = builder.finish(Dtype::U8, &[size as u64]);
                h.frames = vec![desc];
                transport::send(&push, &[], &h, vec![payload]).expect("send");
            }
            PushMode::Unchecked => {
                h.frames = vec![describe_in_process(Dtype::U8, &[size as u64])];
                transport::send(&push, &[], &h, vec![vec![i as u8; size]]).expect("send");
            }
        }
    }
    String::from("{}")
}

/// Tensor push between two processes over tcp loopback: shoal framing (header + checksummed payload,
/// built with [`PayloadBuilder`], decoded and verified on receipt) against raw zero-copy libzmq PUSH/PULL
/// of the same sizes, with shoal's framing minus the checksums as a third, diagnostic mode. Each of `reps`
/// rounds runs the three modes one after another, in an order that rotates from round to round, so that a
/// disturbance of the machine falls on all of them; the figures are each mode's median, and the median
/// of the ratios to the raw pass of the same round.
pub fn push(size: usize, count: usize, reps: usize) -> String {
    let modes = [PushMode::Raw, PushMode::Shoal, PushMode::Unchecked];
    let mut runs: [Vec<f64>; 3] = Default::default();
    for rep in 0..reps.max(1) {
        // The order rotates from one round to the next, so that no mode always runs first (the first
        // pass after another mode's sender exits measured differently).
        let mut round = [0.0; 3];
        for j in 0..modes.len() {
            let k = (rep + j) % modes.len();
            round[k] = push_once(size, count, modes[k]);
        }
        for (k, g) in round.into_iter().enumerate() {
            runs[k].push(g);
        }
    }
    // Each pass against the raw pass of its own round: a slow drift of the machine cancels out.
    let pairs = |k: usize| -> Vec<f64> { runs[0].iter().zip(&runs[k]).map(|(r, s)| s / r).collect() };
    let (mut shoal_pairs, mut unchecked_pairs) = (pairs(1), pairs(2));
    let list = |v: &[f64]| v.iter().map(|g| format!("{g:.2}")).collect::<Vec<_>>().join(", ");
    let lists = [list(&runs[0]), list(&runs[1]), list(&runs[2]), list(&shoal_pairs), list(&unchecked_pairs)];
    let [raw_med, shoal_med, unchecked_med] = runs.map(|mut v| median(&mut v));
    let (pair_med, unchecked_pair_med) = (median(&mut shoal_pairs), median(&mut unchecked_pairs));
    format!(
        r#"{{"size": {size}, "raw_gbps": {raw_med:.2}, "shoal_gbps": {shoal_med:.2}, "unchecked_gbps": {unchecked_med:.2}, "ratio_of_medians": {:.3}, "median_pair_ratio": {pair_med:.3}, "unchecked_median_pair_ratio": {unchecked_pair_med:.3}, "raw_runs": [{}], "shoal_runs": [{}], "unchecked_runs": [{}], "pair_ratios": [{}], "unchecked_pair_ratios": [{}]}}"#,
        shoal_med / raw_med,
        lists[0],
        lists[1],
        lists[2],
        lists[3],
        lists[4]
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// One pass of [`push`]: a sender process, `count` messages, GB/s from the first arrival to the last.
fn push_once(size: usize, count: usize, mode: PushMode) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let ctx = zmq::Context::new();
    let cfg = SocketConfig { recv_hwm: 64, ..SocketConfig::default() };
    let pull = transport::socket(&ctx, zmq::PULL, &cfg).expect("socket");
    pull.set_rcvtimeo(20_000).expect("timeout");
    pull.bind("tcp://127.0.0.1:*").expect("bind");
    let endpoint = pull.get_last_endpoint().expect("endpoint").expect("utf-8");
    let mut child = std::process::Command::new(&exe)
        .args(["push-send", "--endpoint", &endpoint, "--size", &size.to_string(), "--count", &count.to_string()])
        .args(mode.flag())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn sender");
    let mut start = None;
    let limits = if mode == PushMode::Unchecked { Limits::in_process() } else { Limits::default() };
    for _ in 0..count {
        if mode == PushMode::Raw {
            let m = pull.recv_msg(0).expect("recv");
            std::hint::black_box(m.len());
        } else {
            let r = transport::recv(&pull, 0, &limits).expect("recv");
            std::hint::black_box(r.payloads.len());
        }
        start.get_or_insert_with(Instant::now);
    }
    let secs = start.expect("received").elapsed().as_secs_f64();
    child.wait().expect("sender");
    ((count - 1) * size) as f64 / secs / 1e9
}

fn tensor_header(seq: u64, payload: &[u8]) -> Header {
    let mut h = Header::new(Kind::Params, 0, "bench", seq);
    h.frames = vec![describe(Dtype::U8, &[payload.len() as u64], payload)];
    h
}

/// inproc push with shoal framing against a memcpy of the same bytes into a fresh buffer, which is what a
/// copying transport would cost. Both allocate a fresh buffer per message. The inproc figure is shoal's
/// inproc mode (no payload checksums, [`Limits::in_process`]); the checksummed one is what tcp framing
/// would cost on the same path.
pub fn inproc(size: usize, count: usize) -> String {
    let copy_gbps = memcpy_gbps(size, count);
    let checked = inproc_gbps(size, count, true);
    let unchecked = inproc_gbps(size, count, false);
    format!(
        r#"{{"size": {size}, "memcpy_gbps": {copy_gbps:.2}, "inproc_gbps": {unchecked:.2}, "ratio": {:.2}, "inproc_checksummed_gbps": {checked:.2}, "checksummed_ratio": {:.2}}}"#,
        unchecked / copy_gbps,
        checked / copy_gbps
    )
}

/// `count` messages of `size` bytes over inproc, with checksums (as on tcp) or without (the inproc mode).
fn inproc_gbps(size: usize, count: usize, checksums: bool) -> f64 {
    let ctx = zmq::Context::new();
    let cfg = SocketConfig { send_hwm: 64, recv_hwm: 64, ..SocketConfig::default() };
    let pull = transport::socket(&ctx, zmq::PULL, &cfg).expect("socket");
    pull.bind("inproc://bench-inproc").expect("bind");
    let sender = {
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let push = transport::socket(&ctx, zmq::PUSH, &cfg).expect("socket");
            push.connect("inproc://bench-inproc").expect("connect");
            for i in 0..count {
                let payload = vec![i as u8; size];
                let mut h = Header::new(Kind::Params, 0, "bench", i as u64);
                h.frames = vec![if checksums {
                    describe(Dtype::U8, &[size as u64], &payload)
                } else {
                    describe_in_process(Dtype::U8, &[size as u64])
                }];
                transport::send(&push, &[], &h, vec![payload]).expect("send");
            }
        })
    };
    let limits = if checksums { Limits::default() } else { Limits::in_process() };
    let start = Instant::now();
    for _ in 0..count {
        let r = transport::recv(&pull, 0, &limits).expect("recv");
        std::hint::black_box(r.payloads[0][size / 2]);
    }
    let secs = start.elapsed().as_secs_f64();
    sender.join().expect("sender");
    (count * size) as f64 / secs / 1e9
}

/// The peer: the same bytes copied into a fresh buffer, from a fresh source, per message.
fn memcpy_gbps(size: usize, count: usize) -> f64 {
    let start = Instant::now();
    for i in 0..count {
        let src = vec![i as u8; size];
        let mut dst = Vec::<u8>::with_capacity(size);
        dst.extend_from_slice(&src);
        std::hint::black_box(dst[size / 2]);
    }
    (count * size) as f64 / start.elapsed().as_secs_f64() / 1e9
}

/// One parameter set of `size` bytes broadcast to `subs` subscribers (reliable broadcast: PUB/SUB with
/// the publisher's state copy, each subscriber verifying the checksum), against `subs` sequential
/// single pushes of the same message to one receiver, over inproc and over tcp 127.0.0.1. Subscribers are
/// threads of this process; best of `reps`.
pub fn broadcast(size: usize, subs: usize, reps: usize) -> String {
    use shoal_bus::broadcast::{BroadcastConfig, Delivery, Publisher, Subscriber};
    use std::sync::mpsc;
    use std::time::Duration;
    let mut parts = Vec::new();
    for (name, updates, snapshots) in [
        ("inproc", "inproc://bench-bcast-u", "inproc://bench-bcast-s"),
        ("tcp", "tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
    ] {
        let ctx = zmq::Context::new();
        if let Ok(n) = std::env::var("SHOAL_BENCH_IO_THREADS") {
            ctx.set_io_threads(n.parse().expect("a thread count")).expect("io threads");
        }
        let socket = SocketConfig { send_hwm: 4, recv_hwm: 4, ..SocketConfig::default() };
        let cfg = BroadcastConfig { socket, history_bytes: 2 * size, ..BroadcastConfig::default() };
        let mut publisher = Publisher::bind(&ctx, 0, "bench", updates, snapshots, cfg.clone()).expect("publisher");
        let eps = publisher.endpoints().expect("endpoints");
        let (tx, rx) = mpsc::channel::<(usize, Option<u64>, Instant)>();
        let threads: Vec<_> = (0..subs)
            .map(|id| {
                let (ctx, eps, cfg, tx) = (ctx.clone(), eps.clone(), cfg.clone(), tx.clone());
                std::thread::spawn(move || {
                    let mut sub = Subscriber::connect(&ctx, id as u32 + 1, "bench", &eps, cfg).expect("subscriber");
                    let mut got = 0;
                    while got < reps {
                        match sub.recv(Duration::from_millis(100)).expect("recv") {
                            Some(Delivery::Resynced { covers, .. }) => {
                                tx.send((id, covers, Instant::now())).expect("report");
                            }
                            Some(Delivery::Update { seq, .. }) => {
                                got += 1;
                                tx.send((id, Some(seq), Instant::now())).expect("report");
                            }
                            None => {}
                        }
                    }
                })
            })
            .collect();
        // Every subscriber joins (its first snapshot: nothing published yet) before the clock starts.
        let mut joined = 0;
        while joined < subs {
            publisher.service(Duration::from_millis(5)).expect("service");
            while rx.try_recv().is_ok() {
                joined += 1;
            }
        }
        let mut best_bcast = f64::INFINITY;
        for rep in 0..reps {
            let payload = vec![rep as u8; size];
            let header = tensor_header(0, &payload);
            let t0 = Instant::now();
            let seq = publisher.publish("params", header, vec![payload], t0).expect("publish");
            let mut done = 0;
            let mut last = t0;
            while done < subs {
                publisher.service(Duration::from_millis(1)).expect("service");
                while let Ok((_, s, at)) = rx.try_recv() {
                    assert_eq!(s, Some(seq), "a subscriber missed the update");
                    done += 1;
                    last = last.max(at);
                }
            }
            best_bcast = best_bcast.min((last - t0).as_secs_f64());
        }
        for t in threads {
            t.join().expect("subscriber");
        }

        // The peer: the same message pushed once per subscriber, one after another, to one receiver.
        let pull = transport::socket(&ctx, zmq::PULL, &socket).expect("socket");
        let bind = if name == "inproc" { "inproc://bench-bcast-push" } else { "tcp://127.0.0.1:*" };
        pull.bind(bind).expect("bind");
        let endpoint = pull.get_last_endpoint().expect("endpoint").expect("utf-8");
        let (batch_tx, batch_rx) = mpsc::channel::<Vec<Vec<u8>>>();
        let sender = {
            let ctx = ctx.clone();
            std::thread::spawn(move || {
                let push = transport::socket(&ctx, zmq::PUSH, &socket).expect("socket");
                push.connect(&endpoint).expect("connect");
                for batch in batch_rx {
                    for (i, p) in batch.into_iter().enumerate() {
                        transport::send(&push, &[], &tensor_header(i as u64, &p), vec![p]).expect("send");
                    }
                }
            })
        };
        let limits = Limits::default();
        let mut best_push = f64::INFINITY;
        for rep in 0..reps {
            let payloads: Vec<Vec<u8>> = (0..subs).map(|_| vec![rep as u8; size]).collect();
            let t0 = Instant::now();
            batch_tx.send(payloads).expect("sender");
            for _ in 0..subs {
                let r = transport::recv(&pull, 0, &limits).expect("recv");
                std::hint::black_box(r.payloads[0][size / 2]);
            }
            best_push = best_push.min(t0.elapsed().as_secs_f64());
        }
        drop(batch_tx);
        sender.join().expect("sender");
        parts.push(format!(
            r#""{name}": {{"broadcast_ms": {:.1}, "pushes_ms": {:.1}, "ratio": {:.2}}}"#,
            best_bcast * 1e3,
            best_push * 1e3,
            best_bcast / best_push
        ));
    }
    format!(r#"{{"size": {size}, "subs": {subs}, {}}}"#, parts.join(", "))
}

/// The payload checksum against the `xxhash-rust` crate it replaces for long inputs, on `size` bytes that
/// are cached (hashed again and again) and that were just evicted (a 64 MiB sweep between passes), plus a
/// bare read pass over the same evicted bytes: the floor for any checksum. GB/s, best of `reps`.
pub fn checksum(size: usize, reps: usize) -> String {
    use shoal_bus::checksum::{xxh3, xxh3_reference};
    let data: Vec<u8> = (0..size).map(|i| (i * 31 + i / 7) as u8).collect();
    let evict = vec![1u8; 64 << 20];
    let read_pass = |bytes: &[u8]| -> u64 {
        bytes.chunks_exact(8).fold(0u64, |s, c| s.wrapping_add(u64::from_le_bytes(c.try_into().unwrap())))
    };
    let rate = |f: &dyn Fn(&[u8]) -> u64, cold: bool| -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..reps {
            if cold {
                std::hint::black_box(evict.iter().step_by(64).map(|&b| b as u64).sum::<u64>());
            }
            let t = Instant::now();
            std::hint::black_box(f(std::hint::black_box(&data)));
            best = best.min(t.elapsed().as_secs_f64());
        }
        size as f64 / best / 1e9
    };
    let (ours_hot, crate_hot) = (rate(&xxh3, false), rate(&xxh3_reference, false));
    let (ours_cold, crate_cold, read_cold) = (rate(&xxh3, true), rate(&xxh3_reference, true), rate(&read_pass, true));
    format!(
        r#"{{"size": {size}, "shoal_hot_gbps": {ours_hot:.1}, "crate_hot_gbps": {crate_hot:.1}, "shoal_cold_gbps": {ours_cold:.1}, "crate_cold_gbps": {crate_cold:.1}, "read_cold_gbps": {read_cold:.1}}}"#
    )
}

/// The cost of producing a checksummed payload of `size` bytes, against producing the same bytes with no
/// checksum. Two producers: a generator (a fill, as `push` sends) and a copy of an existing tensor (as a
/// node sends its parameters). Each is measured three ways: unchecked, hashed after the fact
/// ([`describe`]), and hashed piece by piece as it is written ([`shoal_bus::PayloadBuilder`]). Every pass
/// allocates a fresh buffer, as a send does. GB/s of payload produced, median of `reps`.
pub fn payload(size: usize, reps: usize) -> String {
    let src: Vec<u8> = (0..size).map(|i| (i * 31 + i / 7) as u8).collect();
    let evict = vec![1u8; 64 << 20];
    let rate = |f: &dyn Fn(u8) -> (Vec<u8>, u64)| -> f64 {
        let mut times = Vec::with_capacity(reps);
        for rep in 0..reps {
            // The source, when there is one, comes from memory as a node's parameters would.
            std::hint::black_box(evict.iter().step_by(64).map(|&b| b as u64).sum::<u64>());
            let t = Instant::now();
            let out = std::hint::black_box(f(rep as u8));
            times.push(t.elapsed().as_secs_f64());
            drop(out);
        }
        size as f64 / median(&mut times) / 1e9
    };
    let fill_plain = rate(&|b| (vec![b; size], 0));
    let fill_after = rate(&|b| {
        let v = vec![b; size];
        let c = describe(Dtype::U8, &[size as u64], &v).checksum;
        (v, c)
    });
    let fill_built = rate(&|b| {
        let mut w = PayloadBuilder::with_capacity(size);
        w.extend_with(size, |_, piece| piece.fill(b));
        let (d, v) = w.finish(Dtype::U8, &[size as u64]);
        (v, d.checksum)
    });
    let copy_plain = rate(&|_| (src.to_vec(), 0));
    let copy_after = rate(&|_| {
        let v = src.to_vec();
        let c = describe(Dtype::U8, &[size as u64], &v).checksum;
        (v, c)
    });
    let copy_built = rate(&|_| {
        let mut w = PayloadBuilder::with_capacity(size);
        w.extend_from_slice(&src);
        let (d, v) = w.finish(Dtype::U8, &[size as u64]);
        (v, d.checksum)
    });
    format!(
        r#"{{"size": {size}, "fill_gbps": {{"unchecked": {fill_plain:.1}, "hashed_after": {fill_after:.1}, "builder": {fill_built:.1}}}, "copy_gbps": {{"unchecked": {copy_plain:.1}, "hashed_after": {copy_after:.1}, "builder": {copy_built:.1}}}}}"#
    )
}
