//! A network = an MLP encoder (the part federated jobs share) + one task head, over one parameter buffer.

use super::dense::Dense;
use super::head::{Head, HeadKind, Targets};
use super::init::{SplitMix, init_dense};
use super::layout::ParamLayout;
use super::optimizer::Optimizer;
use crate::EngineError;
use crate::aligned::AlignedVec;
use crate::kernels::activation::Activation;

/// Shape of a network: encoder widths (input first), hidden activation, head.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    /// `[input, hidden1, hidden2, ...]`: the encoder maps `input` to the last width. `[input]` alone is a
    /// network without hidden layers: the head on the input (a linear model).
    pub encoder: Vec<usize>,
    pub activation: Activation,
    pub head: HeadKind,
    pub outputs: usize,
}

#[derive(Clone, Debug)]
pub struct Network {
    pub spec: NetworkSpec,
    pub layout: ParamLayout,
    /// Encoder layers, named `encoder.{i}.weight` / `encoder.{i}.bias`.
    pub encoder: Vec<Dense>,
    /// The head, named `head.weight` / `head.bias`.
    pub head: Head,
}

/// Per-layer activations and gradients for one batch size, allocated once and reused every step.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    batch: usize,
    /// One entry per encoder layer plus one for the head.
    layers: Vec<LayerBuffers>,
    /// Per-thread workspaces and gradient buffers of the sharded training step.
    shards: Vec<Shard>,
}

#[derive(Clone, Debug, Default)]
struct Shard {
    ws: Workspace,
    grads: AlignedVec,
    loss: f32,
}

/// Fewest rows a batch shard gets: below this a shard's work no longer pays for the fork-join.
pub const MIN_SHARD_ROWS: usize = 32;

#[derive(Clone, Debug, Default)]
struct LayerBuffers {
    z: AlignedVec,
    a: AlignedVec,
    da: AlignedVec,
    dz: AlignedVec,
}

impl Workspace {
    pub fn batch(&self) -> usize {
        self.batch
    }
}

fn check_grads(params: &[f32], grads: &[f32]) -> Result<(), EngineError> {
    if grads.len() == params.len() {
        Ok(())
    } else {
        Err(EngineError::Shape { what: "gradient buffer", expected: params.len(), got: grads.len() })
    }
}

impl Network {
    pub fn new(spec: NetworkSpec) -> Result<Self, EngineError> {
        if spec.encoder.is_empty() {
            return Err(EngineError::InvalidModel("the encoder needs an input width".into()));
        }
        if spec.outputs == 0 {
            return Err(EngineError::InvalidModel("the head needs at least one output".into()));
        }
        let mut layout = ParamLayout::new();
        let encoder = spec
            .encoder
            .windows(2)
            .enumerate()
            .map(|(i, w)| Dense::new(&mut layout, &format!("encoder.{i}"), w[0], w[1], spec.activation))
            .collect::<Result<Vec<_>, _>>()?;
        let head = Head::new(&mut layout, "head", spec.head, *spec.encoder.last().unwrap(), spec.outputs)?;
        Ok(Self { spec, layout, encoder, head })
    }

    pub fn input_dim(&self) -> usize {
        self.spec.encoder[0]
    }

    /// A freshly initialised parameter buffer.
    pub fn init_params(&self, seed: u64) -> AlignedVec {
        let mut params = AlignedVec::zeros(self.layout.total_len());
        let mut rng = SplitMix::new(seed);
        for layer in self.encoder.iter().chain(std::iter::once(&self.head.dense)) {
            init_dense(layer, &self.layout, &mut params, &mut rng);
        }
        params
    }

    /// A workspace for batches of up to `batch` rows.
    pub fn workspace(&self, batch: usize) -> Workspace {
        let mut ws = Workspace::default();
        self.fit_workspace(&mut ws, batch);
        ws
    }

    fn fit_workspace(&self, ws: &mut Workspace, batch: usize) {
        let widths: Vec<usize> = self.encoder.iter().map(|l| l.out_dim).chain([self.head.outputs()]).collect();
        ws.layers.resize_with(widths.len(), LayerBuffers::default);
        for (buf, w) in ws.layers.iter_mut().zip(widths) {
            for v in [&mut buf.z, &mut buf.a, &mut buf.da, &mut buf.dz] {
                v.resize(batch * w);
            }
        }
        ws.batch = batch;
    }

    fn check_input(&self, x: &[f32]) -> Result<usize, EngineError> {
        let d = self.input_dim();
        if !x.len().is_multiple_of(d) {
            return Err(EngineError::Shape { what: "input rows", expected: d, got: x.len() % d });
        }
        Ok(x.len() / d)
    }

    /// Runs the network on `x` (`rows x input`), returning the head's logits (`rows x outputs`).
    pub fn forward<'w>(&self, params: &[f32], x: &[f32], ws: &'w mut Workspace) -> Result<&'w [f32], EngineError> {
        self.forward_through(params, x, ws, self.encoder.len() + 1)
    }

    /// Runs only the encoder on `x` (`rows x input`), returning the last hidden layer's activations
    /// (`rows x width`): the representation a head on top of it sees. The encoder's slots come first in
    /// the layout, so `params` may be just them (a shared encoder without its head). A network without
    /// hidden layers has no encoder output and is refused.
    pub fn encode<'w>(&self, params: &[f32], x: &[f32], ws: &'w mut Workspace) -> Result<&'w [f32], EngineError> {
        let Some(last) = self.encoder.last() else {
            return Err(EngineError::InvalidModel("the network has no hidden layer to encode with".into()));
        };
        let end = self.layout.slot(last.bias).range().end;
        if params.len() < end {
            return Err(EngineError::Shape { what: "encoder parameters", expected: end, got: params.len() });
        }
        self.forward_through(params, x, ws, self.encoder.len())
    }

    /// Runs the first `count` layers (the encoder's, then the head) and returns the last one's activations.
    fn forward_through<'w>(
        &self,
        params: &[f32],
        x: &[f32],
        ws: &'w mut Workspace,
        count: usize,
    ) -> Result<&'w [f32], EngineError> {
        let rows = self.check_input(x)?;
        if ws.batch != rows {
            self.fit_workspace(ws, rows);
        }
        let layers = self.encoder.iter().chain([&self.head.dense]).take(count);
        for (i, layer) in layers.enumerate() {
            let (before, rest) = ws.layers.split_at_mut(i);
            let input: &[f32] = if i == 0 { x } else { &before[i - 1].a };
            let buf = &mut rest[0];
            layer.forward(&self.layout, params, input, &mut buf.z, &mut buf.a);
        }
        Ok(&ws.layers[count - 1].a)
    }

    /// Loss of the batch and its gradient w.r.t. every parameter, written (not added) into `grads`. The
    /// alignment padding between slots is never written (it stays zero in a buffer made with
    /// `AlignedVec::zeros` or `vec![0.0; n]`).
    ///
    /// With several rayon threads and at least `2 · MIN_SHARD_ROWS` rows, the batch is split into one
    /// shard per thread; each shard runs forward and backward on its own thread (its GEMMs confined to it)
    /// and the shard gradients are combined, weighted by rows, with the aggregation kernel. One fork-join
    /// per step instead of one per GEMM: on a two-core machine that is the difference between scaling and
    /// not. Results are bit-for-bit reproducible for a given thread count.
    pub fn loss_and_grad(
        &self,
        params: &[f32],
        x: &[f32],
        targets: Targets,
        ws: &mut Workspace,
        grads: &mut [f32],
    ) -> Result<f32, EngineError> {
        check_grads(params, grads)?;
        let rows = self.check_targets(x, targets)?;
        match self.shard_grads(params, x, rows, targets, ws)? {
            None => self.loss_and_grad_serial(params, x, targets, ws, grads),
            Some((loss, weights)) => {
                let views: Vec<&[f32]> = ws.shards.iter().map(|sh| sh.grads.as_slice()).collect();
                crate::kernels::weighted_sum(&views, &weights, grads);
                Ok(loss)
            }
        }
    }

    /// Checked before sharding, so the sharded path, which slices targets per shard, rejects exactly what
    /// the serial path rejects. Returns the batch's row count.
    fn check_targets(&self, x: &[f32], targets: Targets) -> Result<usize, EngineError> {
        let rows = self.check_input(x)?;
        let (what, expected, got) = match targets {
            Targets::Classes(c) => ("class targets", rows, c.len()),
            Targets::Values(v) => ("value targets", rows * self.head.outputs(), v.len()),
        };
        if expected != got {
            return Err(EngineError::Shape { what, expected, got });
        }
        Ok(rows)
    }

    /// The sharded half of [`Network::loss_and_grad`]: each shard's gradient into `ws.shards`, and the
    /// batch loss with the shards' weights (rows / batch rows). `None` when the batch is not sharded (one
    /// thread, or too few rows); `x` and targets must already be checked (`rows` is what
    /// [`Network::check_targets`] returned).
    fn shard_grads(
        &self,
        params: &[f32],
        x: &[f32],
        rows: usize,
        targets: Targets,
        ws: &mut Workspace,
    ) -> Result<Option<(f32, Vec<f32>)>, EngineError> {
        let shards = rayon::current_num_threads().min(rows / MIN_SHARD_ROWS);
        if shards <= 1 {
            return Ok(None);
        }
        use rayon::prelude::*;
        ws.shards.resize_with(shards, Shard::default);
        let (d, k) = (self.input_dim(), self.head.outputs());
        ws.shards.par_iter_mut().enumerate().try_for_each(|(s, shard)| {
            let (r0, r1) = (s * rows / shards, (s + 1) * rows / shards);
            let t = match targets {
                Targets::Classes(c) => Targets::Classes(&c[r0..r1]),
                Targets::Values(v) => Targets::Values(&v[r0 * k..r1 * k]),
            };
            shard.grads.resize(params.len());
            shard.loss = crate::gemm::serial(|| {
                self.loss_and_grad_serial(params, &x[r0 * d..r1 * d], t, &mut shard.ws, &mut shard.grads)
            })?;
            Ok::<(), EngineError>(())
        })?;
        let weights: Vec<f32> =
            (0..shards).map(|s| ((s + 1) * rows / shards - s * rows / shards) as f32 / rows as f32).collect();
        let loss = ws.shards.iter().zip(&weights).map(|(sh, w)| sh.loss * w).sum();
        Ok(Some((loss, weights)))
    }

    /// [`Network::loss_and_grad`] on the calling thread's share of the machine, without sharding.
    pub fn loss_and_grad_serial(
        &self,
        params: &[f32],
        x: &[f32],
        targets: Targets,
        ws: &mut Workspace,
        grads: &mut [f32],
    ) -> Result<f32, EngineError> {
        check_grads(params, grads)?;
        self.forward(params, x, ws)?;
        let top = ws.layers.last_mut().unwrap();
        let loss = self.head.loss(&top.a, targets, &mut top.da)?;
        // Every layer overwrites its own slots, so there is no zeroing pass over the whole buffer.
        let layers: Vec<&Dense> = self.encoder.iter().chain([&self.head.dense]).collect();
        for i in (0..layers.len()).rev() {
            let (before, rest) = ws.layers.split_at_mut(i);
            let buf = &mut rest[0];
            let (input, dx): (&[f32], Option<&mut [f32]>) = match before.last_mut() {
                Some(prev) => (&prev.a, Some(&mut prev.da)),
                None => (x, None),
            };
            layers[i].backward(&self.layout, params, input, &buf.z, &buf.a, &buf.da, &mut buf.dz, grads, dx);
        }
        Ok(loss)
    }

    /// One optimizer step on one batch; returns the batch loss before the step.
    pub fn train_step(
        &self,
        params: &mut [f32],
        optimizer: &mut Optimizer,
        x: &[f32],
        targets: Targets,
        ws: &mut Workspace,
        grads: &mut [f32],
    ) -> Result<f32, EngineError> {
        // Sharded, the shards' gradients are combined and applied in one pass (`step_weighted`).
        let rows = self.check_targets(x, targets)?;
        check_grads(params, grads)?;
        if let Some((loss, weights)) = self.shard_grads(params, x, rows, targets, ws)? {
            let views: Vec<&[f32]> = ws.shards.iter().map(|sh| sh.grads.as_slice()).collect();
            optimizer.step_weighted(params, grads, &views, &weights);
            return Ok(loss);
        }
        let loss = self.loss_and_grad_serial(params, x, targets, ws, grads)?;
        optimizer.step(params, grads);
        Ok(loss)
    }

    /// Arg-max class of every row (softmax heads), written into `out`.
    pub fn predict_classes(
        &self,
        params: &[f32],
        x: &[f32],
        ws: &mut Workspace,
        out: &mut Vec<u32>,
    ) -> Result<(), EngineError> {
        let k = self.head.outputs();
        let logits = self.forward(params, x, ws)?;
        out.clear();
        out.extend(logits.chunks_exact(k).map(|row| {
            row.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (c, &v)| if v > best.1 { (c, v) } else { best })
                .0 as u32
        }));
        Ok(())
    }
}
