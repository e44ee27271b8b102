//! The embedded run: the master and every child as threads of this process, over inproc ZeroMQ
//! sockets (real sockets, the same code as a multi-process run).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shoal_engine::model::SplitMix;

use super::child::{ChildSpec, ChildSummary, Holding, run_child};
use super::config::JobConfig;
use super::data::JobData;
use super::master::{MasterEvent, run_master};
use super::partition::{Partition, partition};
use super::{JobError, JobReport};

/// The children the config describes: ids 1..=count hold image shards, the next `tabular` ids hold
/// Adult rows (an IID split of its train split); a fraction `attack.fraction` of the children that hold
/// the job's type (drawn from the seed) are attackers.
pub fn child_specs(cfg: &JobConfig, data: &JobData) -> Vec<ChildSpec> {
    let how = match cfg.children.partition.as_str() {
        "shards" => Partition::Shards { per_child: cfg.children.shards_per_child },
        "dirichlet" => Partition::Dirichlet { alpha: cfg.children.alpha },
        _ => Partition::Iid,
    };
    let images = partition(&data.mnist.train.labels, cfg.children.count, &how, cfg.seed);
    // Adult rows go to the tabular children IID (the non-IID options describe image shards).
    let rows = match cfg.children.tabular {
        0 => Vec::new(),
        n => partition(&data.adult.train.labels, n, &Partition::Iid, cfg.seed ^ 0x7ab1e),
    };
    let holdings = images
        .into_iter()
        .map(|indices| Holding::Images { indices })
        .chain(rows.into_iter().map(|indices| Holding::Tabular { indices }));
    let mut specs: Vec<ChildSpec> = holdings
        .enumerate()
        .map(|(k, holds)| ChildSpec { id: k as u32 + 1, holds, noise: None, delay: Duration::ZERO, stop: None })
        .collect();
    // Attackers are drawn from the children that hold the job's type.
    let mut ids: Vec<u32> = specs.iter().filter(|s| s.holds.kind() == cfg.encoder.kind).map(|s| s.id).collect();
    let attackers = (cfg.attack.fraction * ids.len() as f64).round() as usize;
    let mut rng = SplitMix::new(cfg.seed ^ 0xa77a_c4e5);
    rng.shuffle(&mut ids);
    for id in &ids[..attackers] {
        specs[*id as usize - 1].noise = Some(cfg.attack.sigma);
    }
    specs
}

/// Runs the job embedded: `specs` as child threads, the master on this thread.
pub fn run_local_with(
    cfg: &JobConfig,
    data: Arc<JobData>,
    specs: Vec<ChildSpec>,
    events: &mut dyn FnMut(MasterEvent),
) -> Result<(JobReport, Vec<ChildSummary>), JobError> {
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Children may connect before the master binds: libzmq 4.3 holds an inproc connect until the bind
    // (and tcp/ipc peers reconnect), so no start-up ordering or sleep is needed.
    let handles: Vec<_> = specs
        .into_iter()
        .map(|mut spec| {
            spec.stop = Some(Arc::clone(&stop));
            let (ctx, data, transport, job) = (ctx.clone(), Arc::clone(&data), cfg.transport.clone(), cfg.job.clone());
            let id = spec.id;
            std::thread::Builder::new()
                .name(format!("child-{id}"))
                .spawn(move || run_child(&ctx, &transport, &job, spec, data))
                .map_err(|cause| JobError::Io { path: format!("thread of child {id}").into(), cause })
        })
        .collect::<Result<_, _>>()?;
    let result = run_master(&ctx, cfg, &data, events);
    stop.store(true, Ordering::Relaxed);
    let mut summaries = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => summaries.push(s),
            Ok(Err(e)) => {
                if result.is_ok() {
                    return Err(JobError::Child { id: 0, detail: e.to_string() });
                }
            }
            Err(_) => return Err(JobError::Child { id: 0, detail: "a child thread panicked".into() }),
        }
    }
    Ok((result?, summaries))
}

/// Runs the job the config describes, embedded.
pub fn run_local(
    cfg: &JobConfig,
    data: Arc<JobData>,
    events: &mut dyn FnMut(MasterEvent),
) -> Result<JobReport, JobError> {
    let specs = child_specs(cfg, &data);
    Ok(run_local_with(cfg, data, specs, events)?.0)
}
