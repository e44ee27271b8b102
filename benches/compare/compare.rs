//! The shoal side of `benches/compare/`: measures one workload and prints one JSON line.
//!
//! Run through `benches/compare/run.sh`, which measures the peers (numpy, OpenBLAS, PyTorch) in the same run
//! and prints the ratios. Usage: `compare wsum|sgemm|mlp|store [--threads T] [...]`; every figure is the best
//! of several timed repetitions after a warm-up. `store` measures its own peer (a plain write + fsync).

use std::time::Instant;

use rayon::prelude::*;
use shoal_engine::AlignedVec;
use shoal_engine::gemm::{MatRef, gemm};
use shoal_engine::kernels::{self, Activation};
use shoal_engine::model::{HeadKind, Network, NetworkSpec, Optimizer, OptimizerKind, SplitMix, Targets};

mod bus;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a whole number")))
        .unwrap_or(default)
}

/// Best time of `reps` runs of `f`, after one warm-up run.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// out = Σ wᵢ xᵢ over N x P, against a read-only pass over the same bytes with the same threads.
fn wsum(n: usize, p: usize, reps: usize) -> String {
    let mut rng = SplitMix::new(1);
    let inputs: Vec<AlignedVec> = (0..n)
        .map(|_| {
            let mut v = AlignedVec::zeros(p);
            v.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().enumerate().for_each(|(i, x)| *x = (i % 97) as f32));
            v
        })
        .collect();
    let weights: Vec<f32> = (0..n).map(|_| rng.uniform(0.0, 1.0)).collect();
    let views: Vec<&[f32]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut out = AlignedVec::zeros(p);
    let bytes = (n * p * 4) as f64;
    let t = best_of(reps, || kernels::weighted_sum(&views, &weights, &mut out));
    // The probe (STREAM-like read): each input read once, front to back, split into long runs over the
    // same rayon pool; no writes.
    const RUN: usize = 1 << 18;
    let mut sink = 0.0f32;
    let probe = best_of(reps, || {
        for v in &views {
            sink += v.par_chunks(RUN).map(kernels::sum).sum::<f32>();
        }
    });
    std::hint::black_box(sink);
    format!(r#"{{"wsum_gbps": {:.2}, "probe_gbps": {:.2}}}"#, bytes / t / 1e9, bytes / probe / 1e9)
}

fn sgemm(n: usize, reps: usize) -> String {
    let mut rng = SplitMix::new(2);
    let a: Vec<f32> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut c = vec![0.0; n * n];
    let t = best_of(reps, || gemm(1.0, MatRef::new(&a, n, n), MatRef::new(&b, n, n), 0.0, &mut c));
    format!(r#"{{"gflops": {:.1}}}"#, 2.0 * (n * n * n) as f64 / t / 1e9)
}

/// One training step of 784-256-128-10 (ReLU, softmax cross-entropy, plain SGD) on a batch.
fn mlp(batch: usize, steps: usize, reps: usize) -> String {
    let net = Network::new(NetworkSpec {
        encoder: vec![784, 256, 128],
        activation: Activation::Relu,
        head: HeadKind::Softmax,
        outputs: 10,
    })
    .expect("valid network");
    let mut params = net.init_params(3);
    let mut grads = vec![0.0; params.len()];
    let mut opt = Optimizer::new(OptimizerKind::Sgd { lr: 0.01 }, params.len());
    let mut ws = net.workspace(batch);
    let mut rng = SplitMix::new(4);
    let x: Vec<f32> = (0..batch * 784).map(|_| rng.next_f32()).collect();
    let y: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
    let t = best_of(reps, || {
        for _ in 0..steps {
            net.train_step(&mut params, &mut opt, &x, Targets::Classes(&y), &mut ws, &mut grads).unwrap();
        }
    });
    format!(r#"{{"samples_per_sec": {:.0}}}"#, (batch * steps) as f64 / t)
}

/// Open time of a large store, and commit of dirty data against a plain write + fsync of the same bytes.
fn store(dir: &std::path::Path, open_gib: usize, commit_gib: usize) -> String {
    use shoal_engine::model::ParamLayout;
    use shoal_engine::store::Store;
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("bench directory");
    let make = |name: &str, gib: usize| {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let mut layout = ParamLayout::new();
        layout.push("params", &[gib << 28]).expect("layout");
        drop(Store::create(&path, &layout, &vec![0.0; gib << 28]).expect("create store"));
        path
    };
    let open_path = make("open.shoal", open_gib);
    let open = best_of(5, || drop(Store::open(&open_path).expect("open")));
    std::fs::remove_file(&open_path).ok();

    let commit_path = make("commit.shoal", commit_gib);
    let mut s = Store::open(&commit_path).expect("open");
    let mut commit = f64::INFINITY;
    for rep in 0..3 {
        // Dirty every page of the working copy, then time the commit alone.
        s.params_mut().expect("writable").iter_mut().step_by(1024).for_each(|x| *x += rep as f32 + 1.0);
        let t = Instant::now();
        s.commit(&[("rep", rep)]).expect("commit");
        commit = commit.min(t.elapsed().as_secs_f64());
    }
    drop(s);
    std::fs::remove_file(&commit_path).ok();

    let plain_path = dir.join("plain.bin");
    let buf = vec![1u8; commit_gib << 30];
    // The peer at its best: overwrite an already allocated file sequentially, then fdatasync (no block
    // allocation or metadata journaling in the timed part, as for the store's preallocated copies).
    let mut f = std::fs::File::create(&plain_path).expect("plain file");
    f.write_all(&buf).expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    let plain = best_of(2, || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&plain_path).expect("plain file");
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
    });
    std::fs::remove_file(&plain_path).ok();
    let gb = (commit_gib << 30) as f64 / 1e9;
    format!(
        r#"{{"open_ms": {:.3}, "open_gib": {open_gib}, "commit_gbps": {:.2}, "plain_write_gbps": {:.2}}}"#,
        open * 1e3,
        gb / commit,
        gb / plain
    )
}

/// The robust rules on N updates of P floats (f Byzantine): milliseconds per aggregation, best of
/// `reps`. With `plugin`, also the trimmed-mean plugin against the built-in, alternated so both see the
/// same machine state.
fn rules(n: usize, p: usize, f: usize, reps: usize, plugin: Option<&str>) -> String {
    use shoal_engine::rules::{Bulyan, Krum, Median, Rule, TrimmedMean, Update};
    let data: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            let mut v = vec![0.0f32; p];
            v.par_chunks_mut(1 << 14).enumerate().for_each(|(c, chunk)| {
                let mut rng = SplitMix::new((i as u64) << 32 | c as u64);
                chunk.iter_mut().for_each(|x| *x = rng.uniform(-1.0, 1.0));
            });
            v
        })
        .collect();
    let updates: Vec<Update> =
        data.iter().enumerate().map(|(i, v)| Update { sender: i as u32, weight: 1.0, values: v }).collect();
    let mut out = vec![0.0f32; p];
    let mut time = |rule: &mut dyn Rule| {
        best_of(reps, || {
            rule.aggregate(&updates, None, &mut out).expect("aggregate");
        }) * 1e3
    };
    let median = time(&mut Median);
    let trimmed = time(&mut TrimmedMean::new(0.1).expect("beta"));
    let krum = time(&mut Krum::new(f, 1).expect("krum"));
    let multi = time(&mut Krum::new(f, n - f).expect("multi-krum"));
    let bulyan_f = n.saturating_sub(3) / 4;
    let bulyan = time(&mut Bulyan::new(bulyan_f));
    let mut plugin_line = String::new();
    if let Some(path) = plugin {
        let lib = shoal_plugins::PluginLibrary::load(std::path::Path::new(path)).expect("load the plugin");
        let mut options = shoal_plugins::Options::default();
        options.insert("beta", "0.1");
        let mut from_plugin = lib.create(&options).expect("create");
        // A plugin is untrusted, so the host validates its inputs in a pass of its own before the call;
        // the built-in takes the norms in its sorting pass. The ABI's cost is the plugin against the
        // built-in doing the same work: validate, then combine.
        struct ValidateThenCombine(TrimmedMean);
        impl Rule for ValidateThenCombine {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn check(&self, n: usize) -> Result<(), shoal_engine::rules::RuleError> {
                self.0.check(n)
            }
            fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), shoal_engine::rules::RuleError> {
                self.0.combine(valid, out)
            }
        }
        let mut builtin = ValidateThenCombine(TrimmedMean::new(0.1).expect("beta"));
        let (mut a, mut b) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..reps.max(3) {
            a = a.min(time(&mut builtin));
            b = b.min(time(&mut from_plugin));
        }
        plugin_line = format!(r#", "trimmed_builtin_ms": {a:.3}, "trimmed_plugin_ms": {b:.3}"#);
    }
    format!(
        r#"{{"n": {n}, "p": {p}, "f": {f}, "median_ms": {median:.3}, "trimmed_ms": {trimmed:.3}, "krum_ms": {krum:.3}, "multi_krum_ms": {multi:.3}, "bulyan_f": {bulyan_f}, "bulyan_ms": {bulyan:.3}{plugin_line}}}"#
    )
}

/// Resident memory of this process (`VmRSS`, `RssAnon`) and the resident bytes of every mapping of
/// `path`, from /proc (Linux), in bytes.
fn memory(path: &std::path::Path) -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let name = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
    let mut file_rss = 0;
    let mut in_file = false;
    for line in smaps.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && f.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        {
            in_file = line.ends_with(&name);
        } else if in_file && line.starts_with("Rss:") {
            file_rss += line.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    (field("VmRSS:").unwrap_or(0) << 10, field("RssAnon:").unwrap_or(0) << 10, file_rss << 10)
}

/// A sparse table of `rows` random ids x (`dim` value + `dim` Adagrad state): inserts, lookups and
/// updates per second, each against an in-memory `HashMap` + `Vec` table doing the same work (the cost
/// of persistence), the commit after a random update pass, and the memory of the process holding it.
fn sparse(dir: &std::path::Path, rows: usize, dim: usize) -> String {
    use shoal_engine::store::{SparseTable, TableSpec};
    std::fs::create_dir_all(dir).expect("bench directory");
    let path = dir.join("sparse.shoal");
    let _ = std::fs::remove_file(&path);
    let mut rng = SplitMix::new(42);
    let ids: Vec<u64> = (0..rows).map(|_| rng.next_u64()).collect();
    let mut order: Vec<usize> = (0..rows).collect();
    rng.shuffle(&mut order);
    let updates = rows / 10;
    let (base_rss, _, _) = memory(&path);
    let row = 2 * dim;

    let mut table = SparseTable::create(&path, &TableSpec::new(dim).with_state(dim, "adagrad")).expect("create");
    let t = Instant::now();
    for &id in &ids {
        table.get_or_insert_with(id, |r| r[0] = id as f32).expect("insert");
    }
    let insert = t.elapsed().as_secs_f64();
    let t = Instant::now();
    table.commit(&[]).expect("commit");
    let first_commit = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut sum = 0.0f32;
    for &i in &order {
        sum += table.get(ids[i]).expect("present")[0];
    }
    let lookup = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for &i in &order[..updates] {
        let r = table.get_mut(ids[i]).expect("writable").expect("present");
        let (value, state) = r.split_at_mut(dim);
        for (v, s) in value.iter_mut().zip(state) {
            *s += 0.01;
            *v -= 0.1 * 0.1 / s.sqrt();
        }
    }
    let update = t.elapsed().as_secs_f64();
    let dirty = table.dirty_chunks();
    let t = Instant::now();
    table.commit(&[]).expect("commit");
    let commit = t.elapsed().as_secs_f64();
    let (rss, anon, file_rss) = memory(&path);
    let index_bytes = table.index_bytes();
    let logical = table.len() * (8 + 4 * row as u64);
    drop(table);
    let t = Instant::now();
    let reopened = SparseTable::open(&path).expect("open");
    let open = t.elapsed().as_secs_f64();
    drop(reopened);
    std::fs::remove_file(&path).ok();

    // The peer: the same table in process memory only (HashMap id -> row, rows in one Vec).
    let t = Instant::now();
    let mut map = std::collections::HashMap::with_capacity(0);
    let mut data: Vec<f32> = Vec::new();
    for &id in &ids {
        let at = *map.entry(id).or_insert_with(|| {
            data.extend(std::iter::repeat_n(0.0, row));
            data.len() / row - 1
        });
        data[at * row] = id as f32;
    }
    let mem_insert = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut mem_sum = 0.0f32;
    for &i in &order {
        mem_sum += data[map[&ids[i]] * row];
    }
    let mem_lookup = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for &i in &order[..updates] {
        let at = map[&ids[i]] * row;
        let (value, state) = data[at..at + row].split_at_mut(dim);
        for (v, s) in value.iter_mut().zip(state) {
            *s += 0.01;
            *v -= 0.1 * 0.1 / s.sqrt();
        }
    }
    let mem_update = t.elapsed().as_secs_f64();
    assert_eq!(sum.to_bits(), mem_sum.to_bits(), "both tables hold the same rows");
    let m = |secs: f64, n: usize| n as f64 / secs / 1e6;
    format!(
        concat!(
            r#"{{"rows": {}, "dim": {}, "insert_mops": {:.2}, "mem_insert_mops": {:.2}, "lookup_mops": {:.2}, "#,
            r#""mem_lookup_mops": {:.2}, "update_mops": {:.2}, "mem_update_mops": {:.2}, "first_commit_s": {:.3}, "#,
            r#""update_commit_s": {:.3}, "dirty_chunks": {}, "open_s": {:.3}, "rss_mb": {:.0}, "anon_mb": {:.0}, "#,
            r#""file_resident_mb": {:.0}, "index_mb": {:.0}, "logical_mb": {:.0}}}"#
        ),
        rows,
        dim,
        m(insert, rows),
        m(mem_insert, rows),
        m(lookup, rows),
        m(mem_lookup, rows),
        m(update, updates),
        m(mem_update, updates),
        first_commit,
        commit,
        dirty,
        open,
        rss.saturating_sub(base_rss) as f64 / 1e6,
        anon as f64 / 1e6,
        file_rss as f64 / 1e6,
        index_bytes as f64 / 1e6,
        logical as f64 / 1e6,
    )
}

fn main() {
    // As `shoal` does at start: both sides of every bus comparison run with the same allocator settings.
    shoal_bus::malloc::tune_for_large_messages();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = arg(&args, "--threads", 0);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    let line = pool.install(|| match args.first().map(String::as_str) {
        Some("wsum") => wsum(arg(&args, "--n", 32), arg(&args, "--p", 1 << 24), arg(&args, "--reps", 5)),
        Some("sgemm") => sgemm(arg(&args, "--n", 1024), arg(&args, "--reps", 5)),
        Some("store") => store(
            std::path::Path::new(&args.iter().position(|a| a == "--dir").map_or("target/bench-store".to_string(), |i| args[i + 1].clone())),
            arg(&args, "--open-gib", 4),
            arg(&args, "--commit-gib", 1),
        ),
        Some("sparse") => sparse(
            std::path::Path::new(&args.iter().position(|a| a == "--dir").map_or("target/bench-store".to_string(), |i| args[i + 1].clone())),
            arg(&args, "--rows", 10_000_000),
            arg(&args, "--dim", 16),
        ),
        Some("rules") => rules(
            arg(&args, "--n", 32),
            arg(&args, "--p", 1 << 20),
            arg(&args, "--f", 8),
            arg(&args, "--reps", 5),
            args.iter().position(|a| a == "--plugin").map(|i| args[i + 1].as_str()),
        ),
        Some("checksum") => bus::checksum(arg(&args, "--size", 1 << 20), arg(&args, "--reps", 20)),
        Some("payload") => bus::payload(arg(&args, "--size", 16 << 20), arg(&args, "--reps", 21)),
        Some("push") => bus::push(arg(&args, "--size", 1 << 20), arg(&args, "--count", 2000), arg(&args, "--reps", 5)),
        Some("push-send") => bus::push_send(
            &args[args.iter().position(|a| a == "--endpoint").expect("--endpoint") + 1],
            arg(&args, "--size", 1 << 20),
            arg(&args, "--count", 2000),
            if args.iter().any(|a| a == "--shoal") {
                bus::PushMode::Shoal
            } else if args.iter().any(|a| a == "--unchecked") {
                bus::PushMode::Unchecked
            } else {
                bus::PushMode::Raw
            },
        ),
        Some("broadcast") => bus::broadcast(arg(&args, "--size", 64 << 20), arg(&args, "--subs", 8), arg(&args, "--reps", 3)),
        Some("inproc") => bus::inproc(arg(&args, "--size", 1 << 20), arg(&args, "--count", 2000)),
        Some("mlp") => mlp(arg(&args, "--batch", 256), arg(&args, "--steps", 50), arg(&args, "--reps", 5)),
        _ => {
            eprintln!("usage: compare wsum|sgemm|mlp|store|sparse|rules|checksum|payload|push|broadcast|inproc [--threads T] [--n N] [--p P] [--batch B] [--reps R] [--dir D] [--open-gib G] [--commit-gib G] [--rows R] [--dim D] [--f F] [--plugin LIB]");
            std::process::exit(2);
        }
    });
    println!("{line}");
}
