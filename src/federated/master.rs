//! The master: gathers children, sends the shared-encoder instruction, and runs the rounds: parameters
//! to a sample of the confirmed children, their updates back before the deadline, the rule's merge into
//! the shared encoder, a commit to the parameter store, an evaluation. After the last round it tells the
//! children the job is done and writes the encoder and the report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use shoal_bus::Kind;
use shoal_engine::model::{HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, ParamLayout, SplitMix, Targets};
use shoal_engine::rules::Update;
use shoal_engine::store::Store;

use super::JobError;
use super::config::JobConfig;
use super::data::JobData;
use super::report::{JobReport, RoundStats};
use super::wire::{Link, meta, tensor};
use crate::data::Samples;

/// What the master tells whoever runs it, as it happens.
pub enum MasterEvent<'a> {
    Resumed {
        round: u64,
    },
    Joined {
        children: usize,
        expected: usize,
    },
    Confirmed {
        confirmed: usize,
        declined: &'a [(u32, String)],
    },
    Round(&'a RoundStats),
    /// After the last round: the final encoder's test accuracy with a probe head fitted to it alone.
    Fitted {
        accuracy: f64,
        epochs: usize,
    },
    Log(String),
}

/// The network the job trains: the shared encoder (from `input` features) plus a softmax head over
/// `classes`.
pub fn network(cfg: &JobConfig, input: usize, classes: usize) -> Result<Network, JobError> {
    let mut encoder = vec![input];
    encoder.extend(&cfg.encoder.hidden);
    Ok(Network::new(NetworkSpec { encoder, activation: cfg.activation(), head: HeadKind::Softmax, outputs: classes })?)
}

/// What the master merges and keeps: the encoder alone, or (with `share_head`) the whole network; and
/// its length in floats. Either way it is a prefix of the network's parameter buffer.
pub fn shared_layout(net: &Network, share_head: bool) -> Result<(ParamLayout, usize), JobError> {
    if share_head { Ok((net.layout.clone(), net.layout.total_len())) } else { encoder_layout(net) }
}

/// The layout of the encoder alone (the `encoder.*` slots, at the offsets they have in the network).
pub fn encoder_layout(net: &Network) -> Result<(ParamLayout, usize), JobError> {
    let mut layout = ParamLayout::new();
    for slot in net.layout.with_prefix("encoder.") {
        layout.push(slot.name.clone(), &slot.shape)?;
    }
    // The encoder's slots come first in the network, so they sit at the same offsets in both layouts.
    let head = net.layout.find("head.weight")?.offset;
    if layout.total_len() > head {
        return Err(JobError::Protocol(format!(
            "encoder layout is {} floats, the network's encoder {head}",
            layout.total_len()
        )));
    }
    let len = layout.total_len();
    Ok((layout, len))
}

/// The master's own head on the shared encoder, fitted on the validation split each evaluation (the
/// encoder frozen), then scored on the test split: how good the shared representation is.
///
/// The encoder does not change while the head trains, so each evaluation runs the validation and test
/// sets through it once, and the head trains on those features alone. That gives the same updates as
/// training the whole network with the encoder's gradient zeroed (as earlier builds did), without
/// computing that gradient or running the encoder again every epoch.
struct Probe {
    /// The job's network: runs the encoder it is given.
    net: Network,
    /// The head alone, over the encoder's output.
    head_net: Network,
    head: Vec<f32>,
    opt: Optimizer,
    rng: SplitMix,
}

/// The encoder's output for every row of `split` (row after row) and the rows' labels.
fn features(net: &Network, params: &[f32], split: &dyn Samples) -> Result<(Vec<f32>, Vec<u32>), JobError> {
    let mut ws = net.workspace(1000);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let (mut feats, mut labels) = (Vec::new(), Vec::with_capacity(split.len()));
    let indices: Vec<usize> = (0..split.len()).collect();
    for chunk in indices.chunks(1000) {
        split.fill_batch(chunk, &mut x, &mut y);
        feats.extend_from_slice(net.encode(params, &x, &mut ws)?);
        labels.extend_from_slice(&y);
    }
    Ok((feats, labels))
}

impl Probe {
    fn new(net: Network, seed: u64) -> Result<Self, JobError> {
        let params = net.init_params(seed ^ 0x0b5e);
        let width = net.encoder.last().map_or(net.input_dim(), |l| l.out_dim);
        let head_net = Network::new(NetworkSpec {
            encoder: vec![width],
            activation: shoal_engine::kernels::Activation::Identity,
            head: HeadKind::Softmax,
            outputs: net.head.outputs(),
        })?;
        // The head starts from the values it has in the whole network's initialization.
        let mut head = vec![0.0; head_net.layout.total_len()];
        for name in ["head.weight", "head.bias"] {
            let from = net.layout.find(name)?.range();
            let to = head_net.layout.find(name)?.range();
            head[to].copy_from_slice(&params[from]);
        }
        let opt = Optimizer::new(OptimizerKind::Sgd { lr: 0.1 }, head.len());
        Ok(Self { net, head_net, head, opt, rng: SplitMix::new(seed ^ 0xe7a1) })
    }

    fn evaluate(
        &mut self,
        encoder: &[f32],
        val: &dyn Samples,
        test: &dyn Samples,
        epochs: usize,
    ) -> Result<f64, JobError> {
        let width = self.head_net.input_dim();
        let batch = 100;
        let mut ws = self.head_net.workspace(batch);
        let mut grads = vec![0.0; self.head.len()];
        let (mut x, mut y) = (Vec::with_capacity(batch * width), Vec::with_capacity(batch));
        if epochs > 0 {
            let (feats, labels) = features(&self.net, encoder, val)?;
            let mut order: Vec<usize> = (0..labels.len()).collect();
            for _ in 0..epochs {
                self.rng.shuffle(&mut order);
                for chunk in order.chunks(batch) {
                    x.clear();
                    y.clear();
                    for &r in chunk {
                        x.extend_from_slice(&feats[r * width..(r + 1) * width]);
                        y.push(labels[r]);
                    }
                    self.head_net.loss_and_grad(&self.head, &x, Targets::Classes(&y), &mut ws, &mut grads)?;
                    self.opt.step(&mut self.head, &grads);
                }
            }
        }
        let (feats, labels) = features(&self.net, encoder, test)?;
        let mut pred = Vec::new();
        let mut correct = 0usize;
        for (rows, truth) in feats.chunks(1000 * width).zip(labels.chunks(1000)) {
            self.head_net.predict_classes(&self.head, rows, &mut ws, &mut pred)?;
            correct += pred.iter().zip(truth).filter(|(p, l)| p == l).count();
        }
        Ok(correct as f64 / labels.len().max(1) as f64)
    }
}

/// Runs the master side of the job to the end.
pub fn run_master(
    ctx: &zmq::Context,
    cfg: &JobConfig,
    data: &JobData,
    events: &mut dyn FnMut(MasterEvent),
) -> Result<JobReport, JobError> {
    let job_started = Instant::now();
    let mut socket = shoal_bus::transport::socket(ctx, zmq::ROUTER, &Default::default())?;
    let _zap = super::security::secure_master(ctx, &cfg.transport, &mut socket)?;
    socket.set_sndtimeo(super::child::SEND_TIMEOUT_MS).map_err(|cause| JobError::Zmq { op: "set SNDTIMEO", cause })?;
    socket.bind(&cfg.transport.endpoint).map_err(|cause| JobError::Zmq { op: "bind", cause })?;
    let mut link = Link::new(socket, 0, &cfg.job, 1);

    let typed = data.of_type(&cfg.encoder.kind);
    let shape = (typed.input, typed.classes);
    let net = network(cfg, typed.input, typed.classes)?;
    let encoder_len = encoder_layout(&net)?.1;
    let (layout, shared_len) = shared_layout(&net, cfg.encoder.share_head)?;
    let out_dir = cfg.output_dir();
    std::fs::create_dir_all(&out_dir).map_err(|cause| JobError::Io { path: out_dir.clone(), cause })?;
    let store_path = out_dir.join("encoder.shoal");
    let (mut store, start_round) = if store_path.exists() {
        super::settings::check(&out_dir, cfg)?;
        let store = Store::open(&store_path)?;
        let round = store.counter("round").unwrap_or(0);
        (store, round)
    } else {
        // The settings first: a crash between the two leaves a record and no store, which starts afresh.
        super::settings::record(&out_dir, cfg)?;
        let init = net.init_params(cfg.seed);
        (Store::create(&store_path, &layout, &init[..shared_len])?, 0)
    };
    if start_round > 0 {
        events(MasterEvent::Resumed { round: start_round });
    }
    let mut params = store.params().to_vec();

    // Join: every child says hello.
    let expected = cfg.children.count + cfg.children.tabular;
    let mut members: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut bad = 0u64;
    let deadline = Instant::now() + Duration::from_millis(cfg.deadlines.join_ms);
    while members.len() < expected {
        let Some(m) = link.recv_until(deadline, &mut |_| bad += 1)? else { break };
        if m.header.kind == Kind::Hello {
            welcome(&mut link, &mut members, &m, cfg)?;
        }
    }
    events(MasterEvent::Joined { children: members.len(), expected });

    // Instruction, then confirmations until every member answered or the deadline passed.
    for identity in members.values() {
        let h = instruction(&mut link, cfg, shape);
        link.send(Some(identity), h, &[])?;
    }
    let mut confirmed: BTreeMap<u32, u64> = BTreeMap::new();
    let mut declined: Vec<(u32, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(cfg.deadlines.confirm_ms);
    while confirmed.len() + declined.len() < members.len() {
        let Some(m) = link.recv_until(deadline, &mut |_| bad += 1)? else { break };
        handle_membership(&mut link, &mut members, &mut confirmed, &mut declined, &m, cfg, shape)?;
    }
    events(MasterEvent::Confirmed { confirmed: confirmed.len(), declined: &declined });
    if confirmed.len() < cfg.training.min_children {
        finish(&mut link, &members, "stopped: not enough children confirmed");
        return Err(JobError::Quorum { stage: "confirmation", got: confirmed.len(), need: cfg.training.min_children });
    }

    let mut rule = shoal_plugins::build_rule(&cfg.rule.name, &cfg.rule_options()?)?;
    let mut probe = Probe::new(net, cfg.seed)?;
    // The round up to which the probe head has had its epochs (a resumed master starts a fresh probe).
    let mut probe_trained_to = start_round;
    let mut report = JobReport::new(cfg, start_round);
    let mut step = vec![0.0f32; shared_len];
    for round in start_round..cfg.training.rounds {
        let round_started = Instant::now();
        let (sent0, recv0) = (link.bytes_sent, link.bytes_received);
        let mut attempt = 0;
        let (picked, updates, dropped) = loop {
            let picked = pick(&confirmed, cfg, round, attempt);
            let mut dropped: Vec<(u32, String)> = Vec::new();
            for &id in &picked {
                let h = link.header(Kind::Params, round);
                if let Err(e) = link.send(Some(&members[&id]), h, &[&params]) {
                    dropped.push((id, format!("unreachable: {e}")));
                }
            }
            let mut updates: BTreeMap<u32, (u64, Vec<f32>, f32, f64)> = BTreeMap::new();
            let waiting = picked.len() - dropped.len();
            let deadline = Instant::now() + Duration::from_millis(cfg.deadlines.round_ms);
            while updates.len() < waiting {
                let Some(m) = link.recv_until(deadline, &mut |_| bad += 1)? else { break };
                let h = &m.header;
                match h.kind {
                    Kind::Update if h.round == round && picked.contains(&h.sender) => {
                        match tensor(&m, 0).filter(|t| t.len() == shared_len) {
                            Some(t) => {
                                let samples = meta(h, "samples").unwrap_or(1);
                                let loss = meta(h, "loss").unwrap_or(f32::NAN);
                                let train_ms = meta(h, "train_ms").unwrap_or(0.0);
                                updates.insert(h.sender, (samples, t, loss, train_ms));
                            }
                            None => dropped.push((h.sender, "update of the wrong size".into())),
                        }
                    }
                    Kind::Update => events(MasterEvent::Log(format!(
                        "round {round}: late update from child {} for round {} dropped",
                        h.sender, h.round
                    ))),
                    _ => handle_membership(&mut link, &mut members, &mut confirmed, &mut declined, &m, cfg, shape)?,
                }
            }
            for &id in &picked {
                if !updates.contains_key(&id) && !dropped.iter().any(|(d, _)| *d == id) {
                    dropped.push((id, "missed the round deadline".into()));
                }
            }
            if updates.len() >= cfg.training.min_children.min(confirmed.len()).max(1) {
                break (picked, updates, dropped);
            }
            attempt += 1;
            events(MasterEvent::Log(format!(
                "round {round}: only {} of {} updates arrived (quorum {}): attempt {attempt} of {}",
                updates.len(),
                picked.len(),
                cfg.training.min_children,
                cfg.deadlines.retries
            )));
            if attempt > cfg.deadlines.retries {
                finish(&mut link, &members, "stopped: a round lost its quorum");
                return Err(JobError::Quorum { stage: "round", got: updates.len(), need: cfg.training.min_children });
            }
        };
        // Merge: the rule aggregates the children's deltas; the step is added to the shared encoder.
        let agg_started = Instant::now();
        let deltas: Vec<(u32, f32, Vec<f32>)> = updates
            .iter()
            .map(|(&id, (samples, t, _, _))| (id, *samples as f32, t.iter().zip(&params).map(|(u, p)| u - p).collect()))
            .collect();
        let views: Vec<Update> =
            deltas.iter().map(|(id, w, d)| Update { sender: *id, weight: *w, values: d }).collect();
        let rule_report = rule.aggregate(&views, None, &mut step)?;
        params.iter_mut().zip(&step).for_each(|(p, s)| *p += s);
        store.params_mut()?.copy_from_slice(&params);
        store.commit(&[("round", round + 1)])?;
        let aggregate_secs = agg_started.elapsed().as_secs_f64();

        let last = round + 1 == cfg.training.rounds;
        let eval_started = Instant::now();
        let accuracy = if (round + 1) % cfg.eval.every == 0 || last {
            // The probe head trains `probe_epochs` per round, evaluated or not, so the figure does not
            // depend on how often it is taken.
            let epochs = cfg.eval.probe_epochs * (round + 1 - probe_trained_to) as usize;
            probe_trained_to = round + 1;
            Some(probe.evaluate(&params[..encoder_len], typed.val, typed.test, epochs)?)
        } else {
            None
        };
        let eval_secs = eval_started.elapsed().as_secs_f64();
        let compute_secs = updates.values().map(|u| u.3).fold(0.0, f64::max) / 1e3;
        let total = round_started.elapsed().as_secs_f64();
        let weight: f64 = updates.values().map(|u| u.0 as f64).sum();
        let stats = RoundStats {
            round: round + 1,
            picked: picked.len(),
            updates: updates.len(),
            used: rule_report.used.clone(),
            rejected: rule_report.rejected.clone(),
            dropped,
            accuracy,
            train_loss: updates.values().map(|u| u.2 as f64 * u.0 as f64).sum::<f64>() / weight.max(1.0),
            bytes_sent: link.bytes_sent - sent0,
            bytes_received: link.bytes_received - recv0,
            seconds: total,
            compute_seconds: compute_secs,
            aggregate_seconds: aggregate_secs,
            eval_seconds: eval_secs,
        };
        events(MasterEvent::Round(&stats));
        report.rounds.push(stats);
    }
    finish(&mut link, &members, &format!("finished after {} rounds", cfg.training.rounds));
    if cfg.eval.final_probe_epochs > 0 {
        // A head of its own for the final encoder, from the same initial values as the per-round probe.
        let mut fitted = Probe::new(probe.net.clone(), cfg.seed)?;
        let accuracy = fitted.evaluate(&params[..encoder_len], typed.val, typed.test, cfg.eval.final_probe_epochs)?;
        report.fitted_accuracy = Some(accuracy);
        events(MasterEvent::Fitted { accuracy, epochs: cfg.eval.final_probe_epochs });
    }
    report.confirmed = confirmed.len();
    report.declined = declined;
    report.bad_messages = bad;
    report.seconds = job_started.elapsed().as_secs_f64();
    report.outputs = write_outputs(&store, &out_dir, &report)?;
    Ok(report)
}

/// The training instruction; `shape` is the encoder's (input features, head classes).
fn instruction(link: &mut Link, cfg: &JobConfig, shape: (usize, usize)) -> shoal_bus::Header {
    let mut h = link.header(Kind::Instruction, 0);
    let hidden: Vec<String> = cfg.encoder.hidden.iter().map(|w| w.to_string()).collect();
    for (k, v) in [
        ("type", cfg.encoder.kind.clone()),
        ("hidden", hidden.join(",")),
        ("activation", cfg.encoder.activation.clone()),
        ("local_epochs", cfg.training.local_epochs.to_string()),
        ("batch", cfg.training.batch.to_string()),
        ("lr", cfg.training.lr.to_string()),
        ("head_warmup", cfg.training.head_warmup.to_string()),
        ("seed", cfg.seed.to_string()),
        ("rounds", cfg.training.rounds.to_string()),
        ("share_head", cfg.encoder.share_head.to_string()),
        ("head_init", cfg.encoder.head_init.name().to_string()),
        ("input", shape.0.to_string()),
        ("classes", shape.1.to_string()),
    ] {
        h.meta.insert(k.into(), v);
    }
    h
}

fn welcome(
    link: &mut Link,
    members: &mut BTreeMap<u32, Vec<u8>>,
    m: &shoal_bus::transport::Received,
    cfg: &JobConfig,
) -> Result<(), JobError> {
    let identity = m.envelope.first().cloned().unwrap_or_default();
    if m.header.job != cfg.job {
        let mut h = link.header(Kind::Error, 0);
        h.meta.insert("reason".into(), format!("this master runs job `{}`, not `{}`", cfg.job, m.header.job));
        link.send(Some(&identity), h, &[])?;
        return Ok(());
    }
    members.insert(m.header.sender, identity.clone());
    link.heartbeat_to(members.values().cloned());
    let h = link.header(Kind::Welcome, 0);
    link.send(Some(&identity), h, &[])?;
    Ok(())
}

/// Joins, confirmations and declines, whenever they arrive (a restarted child says hello again and is
/// instructed again).
fn handle_membership(
    link: &mut Link,
    members: &mut BTreeMap<u32, Vec<u8>>,
    confirmed: &mut BTreeMap<u32, u64>,
    declined: &mut Vec<(u32, String)>,
    m: &shoal_bus::transport::Received,
    cfg: &JobConfig,
    shape: (usize, usize),
) -> Result<(), JobError> {
    let h = &m.header;
    match h.kind {
        Kind::Hello => {
            confirmed.remove(&h.sender);
            welcome(link, members, m, cfg)?;
            if let Some(identity) = members.get(&h.sender).cloned() {
                let i = instruction(link, cfg, shape);
                link.send(Some(&identity), i, &[])?;
            }
        }
        Kind::Confirm if members.contains_key(&h.sender) => {
            confirmed.insert(h.sender, meta(h, "samples").unwrap_or(0));
        }
        Kind::Decline if members.contains_key(&h.sender) => {
            declined.push((h.sender, h.meta.get("reason").cloned().unwrap_or_default()));
        }
        _ => {}
    }
    Ok(())
}

/// The children that train in `round`: a fraction C of the confirmed ones (at least the quorum), drawn
/// from the job seed, the round and the attempt, so a resumed job draws the same.
fn pick(confirmed: &BTreeMap<u32, u64>, cfg: &JobConfig, round: u64, attempt: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = confirmed.keys().copied().collect();
    let want =
        ((cfg.training.fraction * ids.len() as f64).ceil() as usize).max(cfg.training.min_children).min(ids.len());
    let mut rng = SplitMix::new(cfg.seed ^ round.wrapping_mul(0x9e37_79b9) ^ (attempt as u64) << 48);
    rng.shuffle(&mut ids);
    ids.truncate(want);
    ids.sort_unstable();
    ids
}

fn finish(link: &mut Link, members: &BTreeMap<u32, Vec<u8>>, outcome: &str) {
    for identity in members.values() {
        let mut h = link.header(Kind::Done, 0);
        h.meta.insert("outcome".into(), outcome.into());
        let _ = link.send(Some(identity), h, &[]);
    }
}

fn write_outputs(store: &Store, dir: &std::path::Path, report: &JobReport) -> Result<Vec<PathBuf>, JobError> {
    let st = dir.join("encoder.safetensors");
    crate::exchange::export_safetensors(store, &st)?;
    let npy = dir.join("encoder-npy");
    crate::exchange::export_npy(store, &npy)?;
    let mut outputs = vec![dir.join("encoder.shoal"), st, npy];
    outputs.extend(report.write(dir)?);
    Ok(outputs)
}
