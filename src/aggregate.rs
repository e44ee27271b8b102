//! `shoal aggregate`: run any aggregation rule (built in, or a plugin) on `.npy` update files, so the
//! rules are usable from any ecosystem. Server optimizers carry their state between invocations in a
//! `--state` folder.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use shoal_engine::rules::{ServerOpt, StreamingKind, StreamingMean, Update};
use shoal_plugins::registry::{BuildError, is_plugin_path};
use shoal_plugins::{Options, build_rule};

use crate::exchange::{ExchangeError, npy_header, parse_npy};

#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error(transparent)]
    File(#[from] ExchangeError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("{0}")]
    Rule(#[from] shoal_engine::rules::RuleError),
    #[error("{path}: {detail}")]
    Input { path: PathBuf, detail: String },
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {op}: {cause}")]
    Io { path: PathBuf, op: &'static str, cause: std::io::Error },
}

/// What to aggregate, as the command line gives it.
pub struct AggregateJob<'a> {
    pub rule: &'a str,
    pub options: Options,
    pub inputs: &'a [PathBuf],
    pub weights: Option<&'a [f32]>,
    pub norm_bound: Option<f32>,
    pub state: Option<&'a Path>,
    pub out: &'a Path,
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> AggregateError + 'a {
    move |cause| AggregateError::Io { path: path.to_path_buf(), op, cause }
}

/// Options from `KEY=VALUE` strings (`--opt`).
pub fn options_from_pairs(pairs: &[String]) -> Result<Options, AggregateError> {
    let mut options = Options::default();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| AggregateError::Usage(format!("--opt `{pair}` is not KEY=VALUE")))?;
        options.insert(k.trim(), v.trim());
    }
    Ok(options)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AggregateError> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, path).map_err(io(path, "rename into place"))
}

fn npy_bytes(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let mut bytes = npy_header(shape);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    bytes
}

/// Runs the job and returns the report to print.
/// Reads one float32 .npy update; every input must have the first one's shape.
fn read_input(path: &Path, shape: &mut Option<Vec<usize>>) -> Result<Vec<f32>, AggregateError> {
    let bytes = std::fs::read(path).map_err(io(path, "read"))?;
    let (s, values) = parse_npy(&bytes, path)?;
    match shape {
        None => *shape = Some(s),
        Some(first) if *first != s => {
            return Err(AggregateError::Input {
                path: path.to_path_buf(),
                detail: format!("shape {s:?} differs from the first input's {first:?}"),
            });
        }
        Some(_) => {}
    }
    Ok(values)
}

pub fn run(job: &AggregateJob) -> Result<String, AggregateError> {
    if job.inputs.is_empty() {
        return Err(AggregateError::Usage("give at least one .npy update file".into()));
    }
    if let Some(w) = job.weights
        && w.len() != job.inputs.len()
    {
        return Err(AggregateError::Usage(format!("{} weights for {} inputs", w.len(), job.inputs.len())));
    }
    let mut shape = None;
    let weight = |i: usize| job.weights.map_or(1.0, |w| w[i]);
    let mut rule = build_rule(job.rule, &job.options)?;
    let streaming = match job.rule {
        "mean" => Some(StreamingKind::Mean),
        "fedavg" => Some(StreamingKind::FedAvg),
        _ => None,
    };
    let server = shoal_engine::rules::ServerKind::by_name(job.rule).is_some();
    let mut restored = 0;
    let (out, report, secs) = if let Some(kind) = streaming {
        // Mean-type rules fold each file in as it is read: memory is one update, not all of them.
        let mut fold: Option<StreamingMean> = None;
        let mut secs = 0.0;
        for (i, path) in job.inputs.iter().enumerate() {
            let values = read_input(path, &mut shape)?;
            let started = Instant::now();
            let f = fold.get_or_insert_with(|| StreamingMean::new(kind, values.len(), job.norm_bound));
            f.add(Update { sender: i as u32, weight: weight(i), values: &values });
            secs += started.elapsed().as_secs_f64();
        }
        let fold = fold.expect("at least one input");
        let mut out = vec![0.0f32; fold.len()];
        let started = Instant::now();
        let report = fold.finish(&mut out)?;
        (out, report, secs + started.elapsed().as_secs_f64())
    } else {
        let data: Vec<Vec<f32>> =
            job.inputs.iter().map(|path| read_input(path, &mut shape)).collect::<Result<_, _>>()?;
        let len = data[0].len();
        let updates: Vec<Update> =
            data.iter().enumerate().map(|(i, v)| Update { sender: i as u32, weight: weight(i), values: v }).collect();
        if let (true, Some(dir)) = (server, job.state) {
            restored = load_state(rule.as_mut(), dir, len)?;
        }
        let mut out = vec![0.0f32; len];
        let started = Instant::now();
        let report = rule.aggregate(&updates, job.norm_bound, &mut out)?;
        (out, report, started.elapsed().as_secs_f64())
    };
    let shape = shape.expect("at least one input");
    let len = out.len();
    write_atomic(job.out, &npy_bytes(&shape, &out))?;

    let name = |i: u32| job.inputs[i as usize].display().to_string();
    let mut s = String::new();
    let kind = if is_plugin_path(job.rule) { format!("plugin {}", job.rule) } else { "built in".to_string() };
    let _ = writeln!(s, "rule       {} ({kind})", rule.name());
    let _ = writeln!(s, "inputs     {} of shape {shape:?} ({len} values each)", job.inputs.len());
    let _ = writeln!(
        s,
        "used       {}: {}",
        report.used.len(),
        report.used.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", ")
    );
    for (i, why) in &report.rejected {
        let _ = writeln!(s, "rejected   {}: {why}", name(*i));
    }
    if server {
        let _ = match job.state {
            Some(dir) => {
                save_state(rule.as_mut(), dir, restored + 1)?;
                writeln!(
                    s,
                    "state      round {} saved in {} (resumed from round {restored})",
                    restored + 1,
                    dir.display()
                )
            }
            None => writeln!(s, "state      not kept: without --state DIR every call starts from zero momentum"),
        };
    }
    let _ = writeln!(s, "output     {} ({:.3} ms)", job.out.display(), secs * 1e3);
    Ok(s)
}

fn server_opt(rule: &mut dyn shoal_engine::rules::Rule) -> Option<&mut ServerOpt> {
    // Only built-in server optimizers reach here (checked by name), so the downcast always succeeds.
    (rule as &mut dyn std::any::Any).downcast_mut::<ServerOpt>()
}

/// Restores a server optimizer's state from `dir` (if it has any); returns the rounds done so far.
fn load_state(rule: &mut dyn shoal_engine::rules::Rule, dir: &Path, len: usize) -> Result<u64, AggregateError> {
    let round_file = dir.join("round.txt");
    if !round_file.exists() {
        return Ok(0);
    }
    let text = std::fs::read_to_string(&round_file).map_err(io(&round_file, "read"))?;
    let bad = |detail: String| AggregateError::Input { path: round_file.clone(), detail };
    let rounds: u64 = text.trim().parse().map_err(|_| bad(format!("`{}` is not a round number", text.trim())))?;
    let mut state = Vec::new();
    for name in ["m", "v"] {
        let path = dir.join(format!("{name}.npy"));
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(io(&path, "read"))?;
            let (_, values) = parse_npy(&bytes, &path)?;
            if values.len() != len {
                return Err(AggregateError::Input {
                    path,
                    detail: format!("state has {} values, the updates {len}", values.len()),
                });
            }
            state.push((name, values));
        }
    }
    let opt = server_opt(rule).ok_or_else(|| bad("the rule keeps no state".into()))?;
    opt.restore(rounds, &state)?;
    Ok(rounds)
}

fn save_state(rule: &mut dyn shoal_engine::rules::Rule, dir: &Path, rounds: u64) -> Result<(), AggregateError> {
    std::fs::create_dir_all(dir).map_err(io(dir, "create the state folder"))?;
    let opt = server_opt(rule).expect("a server optimizer");
    for (name, values) in opt.state() {
        write_atomic(&dir.join(format!("{name}.npy")), &npy_bytes(&[values.len()], values))?;
    }
    // The round file goes last: a crash before it leaves the previous round's number with possibly
    // newer moments, never a round number without its state.
    write_atomic(&dir.join("round.txt"), format!("{rounds}\n").as_bytes())
}
