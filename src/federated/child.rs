//! A child node: joins the master, answers its instruction with a confirmation or a decline, then
//! trains the shared encoder plus its own head on its local samples each round it is picked for. Only
//! the encoder's parameters leave the child; the head stays.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_bus::Kind;
use shoal_engine::model::{HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, SplitMix, Targets};

use super::JobError;
use super::config::{HeadInit, TransportConfig};
use super::data::JobData;
use super::wire::{Link, meta, tensor};
use crate::data::Samples;

/// What a child holds and how it behaves.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    pub id: u32,
    pub holds: Holding,
    /// Sends Gaussian noise of this standard deviation instead of its update (an attacker).
    pub noise: Option<f32>,
    /// Waits this long before answering each round (a straggler, for tests).
    pub delay: Duration,
    /// Set by whoever runs the child to make it stop waiting (the embedded runner, once the master is
    /// gone).
    pub stop: Option<Arc<AtomicBool>>,
}

/// The data a child holds.
#[derive(Clone, Debug)]
pub enum Holding {
    /// MNIST training images, by index into the train split.
    Images { indices: Vec<usize> },
    /// Adult rows, by index into the train split.
    Tabular { indices: Vec<usize> },
}

impl Holding {
    /// The encoder type this data is for.
    pub fn kind(&self) -> &'static str {
        match self {
            Holding::Images { .. } => "image28x28",
            Holding::Tabular { .. } => "tabular-adult",
        }
    }

    /// The samples held, as indices into their dataset's train split.
    pub fn indices(&self) -> &[usize] {
        match self {
            Holding::Images { indices } | Holding::Tabular { indices } => indices,
        }
    }
}

/// What a child did, for the report and the tests.
#[derive(Clone, Debug, Default)]
pub struct ChildSummary {
    pub id: u32,
    pub confirmed: bool,
    pub rounds_trained: u64,
    pub outcome: String,
}

/// Longest a send may block (the peer's queue full, or no peer at all).
pub const SEND_TIMEOUT_MS: i32 = 5_000;

/// Longest a child waits for the master before it gives up.
pub const MASTER_SILENCE: Duration = Duration::from_secs(600);

/// A master that sends nothing (not even its heartbeat, every `wire::HEARTBEAT`) for this long is taken
/// for dead: the child says hello again every `MASTER_LIVENESS`, so a restarted master finds it.
pub const MASTER_LIVENESS: Duration = Duration::from_secs(5);

/// Runs one child until the master says the job is done (or goes silent for [`MASTER_SILENCE`]).
pub fn run_child(
    ctx: &zmq::Context,
    transport: &TransportConfig,
    job: &str,
    spec: ChildSpec,
    data: Arc<JobData>,
) -> Result<ChildSummary, JobError> {
    let socket = shoal_bus::transport::socket(ctx, zmq::DEALER, &Default::default())?;
    socket
        .set_identity(format!("child-{}", spec.id).as_bytes())
        .map_err(|cause| JobError::Zmq { op: "set identity", cause })?;
    // A send never blocks for long: with the master gone, a DEALER would otherwise wait forever.
    socket.set_sndtimeo(SEND_TIMEOUT_MS).map_err(|cause| JobError::Zmq { op: "set SNDTIMEO", cause })?;
    super::security::secure_child(transport, spec.id, &socket)?;
    socket.connect(&transport.endpoint).map_err(|cause| JobError::Zmq { op: "connect", cause })?;
    let mut link = Link::new(socket, spec.id, job, 0);
    let say_hello = |link: &mut Link| {
        let mut hello = link.header(Kind::Hello, 0);
        hello.meta.insert("role".into(), "worker".into());
        hello.meta.insert("holds".into(), spec.holds.kind().into());
        link.send(None, hello, &[])
    };
    say_hello(&mut link)?;
    let mut last_hello = Instant::now();

    let mut summary = ChildSummary { id: spec.id, ..Default::default() };
    let mut trainer: Option<Trainer> = None;
    let mut silent_since = Instant::now();
    loop {
        // Wait in short slices, so a stop request is seen promptly.
        let slice = Instant::now() + Duration::from_millis(200);
        let Some(msg) = link.recv_until(slice, &mut |_| {})? else {
            if spec.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                summary.outcome = "stopped".into();
                return Ok(summary);
            }
            if silent_since.elapsed() > MASTER_SILENCE {
                summary.outcome = "the master went silent".into();
                return Ok(summary);
            }
            if silent_since.elapsed() > MASTER_LIVENESS && last_hello.elapsed() > MASTER_LIVENESS {
                // The master died or restarted: greet whoever listens there now. A hello that finds no
                // master waits in the socket (or times out) and the next one tries again.
                let _ = say_hello(&mut link);
                last_hello = Instant::now();
            }
            continue;
        };
        silent_since = Instant::now();
        let h = &msg.header;
        match h.kind {
            Kind::Welcome => {}
            Kind::Instruction => {
                let wanted = h.meta.get("type").cloned().unwrap_or_default();
                let held = spec.holds.kind();
                let (input, classes) = {
                    let local = data.of_type(held);
                    (local.input, local.classes)
                };
                let asked = (meta::<usize>(h, "input"), meta::<usize>(h, "classes"));
                let decline = if wanted != held {
                    let n = spec.holds.indices().len();
                    Some(format!("no data of type {wanted} (holds {n} {held} samples)"))
                } else if asked != (Some(input), Some(classes)) {
                    Some(format!(
                        "incompatible {wanted} data: the instruction says {asked:?} inputs/classes, this child has \
                         {input} inputs and {classes} classes"
                    ))
                } else {
                    None
                };
                let reply = match decline {
                    Some(reason) => {
                        let mut reply = link.header(Kind::Decline, 0);
                        reply.meta.insert("reason".into(), reason);
                        reply
                    }
                    None => {
                        let indices = spec.holds.indices().to_vec();
                        let samples = indices.len();
                        trainer = Some(Trainer::from_instruction(h, indices, spec.id, held, input, classes)?);
                        summary.confirmed = true;
                        let mut reply = link.header(Kind::Confirm, 0);
                        reply.meta.insert("samples".into(), samples.to_string());
                        reply
                    }
                };
                link.send(None, reply, &[])?;
            }
            Kind::Params => {
                let round = h.round;
                let (Some(t), Some(encoder)) = (trainer.as_mut(), tensor(&msg, 0)) else { continue };
                std::thread::sleep(spec.delay);
                let started = Instant::now();
                let (mut out, loss) = t.train(data.of_type(t.kind).train, &encoder, round)?;
                if let Some(sigma) = spec.noise {
                    let mut rng = SplitMix::new(spec.id as u64 ^ round << 20);
                    for (o, e) in out.iter_mut().zip(&encoder) {
                        // Box-Muller noise around the received parameters: an update that carries nothing.
                        let u = 1.0 - rng.uniform(0.0, 1.0);
                        let v = rng.uniform(0.0, 1.0);
                        *o = e + sigma * (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos();
                    }
                }
                let mut update = link.header(Kind::Update, round);
                update.meta.insert("samples".into(), t.indices.len().to_string());
                update.meta.insert("loss".into(), format!("{loss}"));
                update.meta.insert("train_ms".into(), format!("{:.3}", started.elapsed().as_secs_f64() * 1e3));
                // A late update may find the master gone (the job ended without it): not an error.
                if link.send(None, update, &[&out]).is_ok() {
                    summary.rounds_trained += 1;
                }
            }
            Kind::Done => {
                summary.outcome = h.meta.get("outcome").cloned().unwrap_or_default();
                return Ok(summary);
            }
            _ => {}
        }
    }
}

/// A child's model: the shared encoder it receives each round plus its own head, and its samples.
struct Trainer {
    /// The encoder type (which of the child's datasets it trains on).
    kind: &'static str,
    net: Network,
    params: Vec<f32>,
    encoder_len: usize,
    /// What the master sends and takes back: the encoder, or encoder and head (`share_head`).
    shared_len: usize,
    indices: Vec<usize>,
    epochs: usize,
    batch: usize,
    lr: f32,
    rng: SplitMix,
    seed: u64,
    id: u32,
    head_warmup: usize,
    /// Every child starts each round's head from the same values (`head_init = "common"`).
    common_head: bool,
}

impl Trainer {
    fn from_instruction(
        h: &shoal_bus::Header,
        indices: Vec<usize>,
        id: u32,
        kind: &'static str,
        input: usize,
        classes: usize,
    ) -> Result<Self, JobError> {
        let bad = |what: &str| JobError::Protocol(format!("instruction without a valid `{what}`"));
        let hidden: Vec<usize> = h
            .meta
            .get("hidden")
            .ok_or_else(|| bad("hidden"))?
            .split(',')
            .map(|w| w.trim().parse().map_err(|_| bad("hidden")))
            .collect::<Result<_, _>>()?;
        let activation = h.meta.get("activation").and_then(|a| a.parse().ok()).ok_or_else(|| bad("activation"))?;
        let mut encoder = vec![input];
        encoder.extend(hidden);
        let net = Network::new(NetworkSpec { encoder, activation, head: HeadKind::Softmax, outputs: classes })?;
        let seed: u64 = meta(h, "seed").ok_or_else(|| bad("seed"))?;
        // Each child's head starts from its own seed: heads are private and never averaged.
        let params = net.init_params(seed ^ (id as u64 + 1) << 32).to_vec();
        let encoder_len = super::master::encoder_layout(&net)?.1;
        let share_head = meta(h, "share_head").unwrap_or(false);
        let shared_len = super::master::shared_layout(&net, share_head)?.1;
        Ok(Self {
            kind,
            params,
            encoder_len,
            shared_len,
            indices,
            epochs: meta(h, "local_epochs").ok_or_else(|| bad("local_epochs"))?,
            batch: meta(h, "batch").ok_or_else(|| bad("batch"))?,
            lr: meta(h, "lr").ok_or_else(|| bad("lr"))?,
            rng: SplitMix::new(seed ^ id as u64),
            seed,
            id,
            head_warmup: meta(h, "head_warmup").unwrap_or(1),
            common_head: meta::<HeadInit>(h, "head_init").ok_or_else(|| bad("head_init"))? == HeadInit::Common,
            net,
        })
    }

    /// Trains encoder + head for the configured epochs from `shared` (the encoder, or encoder and head);
    /// returns the new shared part and the mean training loss.
    fn train(&mut self, data: &dyn Samples, shared: &[f32], round: u64) -> Result<(Vec<f32>, f32), JobError> {
        if shared.len() != self.shared_len {
            return Err(JobError::Protocol(format!(
                "received {} shared parameters, expected {}",
                shared.len(),
                self.shared_len
            )));
        }
        // A child keeps no state between rounds: its head and its shuffling start from (seed, child, round),
        // or its head from the job's seed alone (`head_init = "common"`, the same head for every child).
        // A restarted child, or a master that resumes a round, gets exactly the update a crash-free run
        // would have produced.
        let head_seed = if self.common_head { self.seed } else { self.seed ^ (self.id as u64 + 1) << 32 ^ round << 16 };
        self.params = self.net.init_params(head_seed).to_vec();
        self.rng = SplitMix::new(self.seed ^ self.id as u64 ^ round << 40);
        self.params[..self.shared_len].copy_from_slice(shared);
        let batch = if self.batch == 0 { self.indices.len() } else { self.batch }.max(1);
        let mut opt = Optimizer::new(OptimizerKind::Sgd { lr: self.lr }, self.params.len());
        let mut ws = self.net.workspace(batch);
        let mut grads = vec![0.0; self.params.len()];
        let (mut x, mut y) = (Vec::new(), Vec::new());
        let mut order = self.indices.clone();
        let (mut total, mut seen) = (0.0f64, 0usize);
        // The head (fresh, or the shared one) first learns the received encoder's features (encoder
        // frozen), so the joint epochs start from a head that matches it.
        for epoch in 0..self.head_warmup + self.epochs {
            let warmup = epoch < self.head_warmup;
            self.rng.shuffle(&mut order);
            for chunk in order.chunks(batch) {
                data.fill_batch(chunk, &mut x, &mut y);
                let loss = self.net.loss_and_grad(&self.params, &x, Targets::Classes(&y), &mut ws, &mut grads)?;
                if warmup {
                    grads[..self.encoder_len].fill(0.0);
                } else {
                    total += loss as f64 * chunk.len() as f64;
                    seen += chunk.len();
                }
                opt.step(&mut self.params, &grads);
            }
        }
        Ok((self.params[..self.shared_len].to_vec(), (total / seen.max(1) as f64) as f32))
    }
}
