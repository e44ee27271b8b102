//! The embedded run: the master and every child as threads of this process, over inproc ZeroMQ
//! sockets (real sockets, the same code as a multi-process run).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shoal_engine::model::SplitMix;

use super::child::{ChildSpec, ChildSummary, Holding, run_child};
use super::config::JobConfig;
use super::master::{MasterEvent, run_master};
use super::partition::{Partition, partition};
use super::{JobError, JobReport};
use crate::data::mnist::Mnist;

/// Tabular children hold this many rows (they decline an image job before reading any).
const TABULAR_ROWS: usize = 48_842;

/// The children the config describes: ids 1..=count hold image shards, the next `tabular` ids hold
/// tabular rows; a fraction `attack.fraction` of the image children (drawn from the seed) are attackers.
pub fn child_specs(cfg: &JobConfig, data: &Mnist) -> Vec<ChildSpec> {
    let how = match cfg.children.partition.as_str() {
        "shards" => Partition::Shards { per_child: cfg.children.shards_per_child },
        "dirichlet" => Partition::Dirichlet { alpha: cfg.children.alpha },
        _ => Partition::Iid,
    };
    let parts = partition(&data.train.labels, cfg.children.count, &how, cfg.seed);
    let attackers = (cfg.attack.fraction * cfg.children.count as f64).round() as usize;
    let mut ids: Vec<u32> = (1..=cfg.children.count as u32).collect();
    let mut rng = SplitMix::new(cfg.seed ^ 0xa77a_c4e5);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i + 1));
    }
    let attacker_ids: Vec<u32> = ids[..attackers].to_vec();
    let mut specs: Vec<ChildSpec> = parts
        .into_iter()
        .enumerate()
        .map(|(k, indices)| {
            let id = k as u32 + 1;
            ChildSpec {
                id,
                holds: Holding::Images { indices },
                noise: attacker_ids.contains(&id).then_some(cfg.attack.sigma),
                delay: Duration::ZERO,
                stop: None,
            }
        })
        .collect();
    for t in 0..cfg.children.tabular {
        specs.push(ChildSpec {
            id: (cfg.children.count + t + 1) as u32,
            holds: Holding::Tabular { rows: TABULAR_ROWS },
            noise: None,
            delay: Duration::ZERO,
            stop: None,
        });
    }
    specs
}

/// Runs the job embedded: `specs` as child threads, the master on this thread.
pub fn run_local_with(
    cfg: &JobConfig,
    data: Arc<Mnist>,
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
    data: Arc<Mnist>,
    events: &mut dyn FnMut(MasterEvent),
) -> Result<JobReport, JobError> {
    let specs = child_specs(cfg, &data);
    Ok(run_local_with(cfg, data, specs, events)?.0)
}
