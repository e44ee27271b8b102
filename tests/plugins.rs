//! Rule plugins: the example plugins built as cdylibs and loaded for real, the conformance suite run on
//! them and on every built-in rule, and every kind of misbehaviour turned into a clear error while the
//! host keeps running.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use shoal_engine::rules::{Rule, RuleError, TrimmedMean, Update};
use shoal_plugins::conformance::{self, Expectations};
use shoal_plugins::{Options, PluginError, PluginLibrary, build_rule};

/// Builds the example plugin crates once (a no-op when `cargo test --workspace` already did) with the
/// profile of this test binary, and returns the library path of `krate`.
fn plugin(krate: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "--quiet"]);
        for k in ["geomedian", "trimmed-mean", "misbehave", "bad-abi"] {
            cmd.args(["-p", &format!("shoal-rule-{k}")]);
        }
        if profile_dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the example plugins failed");
        profile_dir
    });
    dir.join(format!("libshoal_rule_{}.so", krate.replace('-', "_")))
}

fn load(krate: &str) -> Arc<PluginLibrary> {
    PluginLibrary::load(&plugin(krate)).unwrap_or_else(|e| panic!("{e}"))
}

fn opts(pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::default();
    pairs.iter().for_each(|(k, v)| o.insert(k, v));
    o
}

fn sample(n: usize, len: usize) -> Vec<Vec<f32>> {
    (0..n).map(|i| (0..len).map(|j| ((i * 31 + j * 7) % 19) as f32 - 9.0).collect()).collect()
}

fn updates(xs: &[Vec<f32>]) -> Vec<Update<'_>> {
    xs.iter().enumerate().map(|(i, x)| Update { sender: 100 + i as u32, weight: 1.0 + i as f32, values: x }).collect()
}

#[test]
fn every_builtin_passes_the_conformance_suite() {
    let cases = 48;
    for (name, options, expect) in [
        ("mean", opts(&[]), Expectations::mean_like()),
        ("fedavg", opts(&[]), Expectations::mean_like()),
        ("median", opts(&[]), Expectations::robust(2, 5)),
        ("trimmed-mean", opts(&[("beta", "0.2")]), Expectations::robust(1, 5)),
        ("krum", opts(&[("f", "2")]), Expectations::robust(2, 7)),
        ("multi-krum", opts(&[("f", "1"), ("m", "3")]), Expectations::robust(1, 5)),
        ("bulyan", opts(&[("f", "1")]), Expectations::robust(1, 7)),
        ("clip", opts(&[("tau", "1e9"), ("inner", "median")]), Expectations::robust(1, 3)),
    ] {
        let mut make = || build_rule(name, &options).unwrap();
        conformance::check(&mut make, &expect, cases).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A server optimizer is none of these (it steps on the mean; its output is not an input average),
    // but it is still order-free.
    let only_order =
        Expectations { idempotent: false, bounded: false, scale_equivariant: false, ..Expectations::mean_like() };
    for name in ["fedavgm", "fedadagrad", "fedadam", "fedyogi"] {
        let mut make = || build_rule(name, &opts(&[])).unwrap();
        conformance::check(&mut make, &only_order, cases).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_conformance_suite_catches_a_broken_rule() {
    // A rule that ignores its last input is not order-free: the suite must say so.
    struct DropsLast;
    impl Rule for DropsLast {
        fn name(&self) -> &'static str {
            "drops-last"
        }
        fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
            let keep = &valid[..valid.len() - 1];
            for (j, o) in out.iter_mut().enumerate() {
                *o = keep.iter().map(|u| u.values[j]).sum::<f32>() / keep.len().max(1) as f32;
            }
            Ok(())
        }
    }
    let mut make = || Box::new(DropsLast) as Box<dyn Rule>;
    let err =
        conformance::check(&mut make, &Expectations { min_inputs: 3, ..Expectations::mean_like() }, 32).unwrap_err();
    assert!(err.contains("reordering"), "{err}");
}

#[test]
fn the_geometric_median_plugin_conforms_and_resists_an_outlier() {
    let lib = load("geomedian");
    assert_eq!(lib.name(), "geometric-median");
    let mut make = || Box::new(lib.create(&opts(&[])).unwrap()) as Box<dyn Rule>;
    let expect = Expectations { tolerance: 1e-4, ..Expectations::mean_like() };
    conformance::check(&mut make, &expect, 32).unwrap();
    // Four points at the corners of a square around 1.0 and one far away: the mean moves by 2e5,
    // the geometric median stays within the square.
    let mut xs: Vec<Vec<f32>> = [[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]].iter().map(|p| p.to_vec()).collect();
    xs.push(vec![1e6, 1e6]);
    let ups: Vec<Update> =
        xs.iter().enumerate().map(|(i, x)| Update { sender: i as u32, weight: 1.0, values: x }).collect();
    let mut rule = lib.create(&opts(&[])).unwrap();
    let mut out = vec![0.0; 2];
    rule.aggregate(&ups, None, &mut out).unwrap();
    assert!(out.iter().all(|&v| (0.0..=2.0).contains(&v)), "{out:?}");
    let e = lib.create(&opts(&[("iters", "zero")])).err().unwrap().to_string();
    assert!(e.contains("iters=zero") && e.contains("geometric-median"), "{e}");
}

#[test]
fn the_trimmed_mean_plugin_is_bit_identical_to_the_builtin() {
    let lib = load("trimmed-mean");
    for beta in ["0", "0.1", "0.3"] {
        let mut builtin = || Box::new(TrimmedMean::new(beta.parse().unwrap()).unwrap()) as Box<dyn Rule>;
        let mut plugin = || Box::new(lib.create(&opts(&[("beta", beta)])).unwrap()) as Box<dyn Rule>;
        conformance::check_identical(&mut builtin, &mut plugin, 1, 64).unwrap_or_else(|e| panic!("beta {beta}: {e}"));
    }
    let mut make = || Box::new(lib.create(&opts(&[("beta", "0.2")])).unwrap()) as Box<dyn Rule>;
    conformance::check(&mut make, &Expectations::robust(1, 5), 32).unwrap();
}

#[test]
fn misbehaving_plugins_give_clear_errors_and_the_host_keeps_running() {
    let lib = load("misbehave");
    let xs = sample(4, 33);
    let ups = updates(&xs);
    let mut out = vec![0.0; 33];
    for (mode, want) in [
        ("panic", "panicked: asked to panic in aggregate"),
        ("nan", "non-finite value (NaN) at index 32"),
        ("short", "returned 32 values, expected 33"),
        ("bad-select", "selected input 9, but only 4 were given"),
        ("error", "asked to fail"),
        ("need-five", "needs at least 5 inputs, got 4"),
    ] {
        let mut rule = lib.create(&opts(&[("mode", mode)])).unwrap();
        let err = rule.aggregate(&ups, None, &mut out).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RuleError::Plugin { .. }), "{mode}: {err:?}");
        assert!(text.contains("plugin rule `misbehave`") && text.contains(want), "{mode}: {text}");
        // The same instance still works for the next call (the panic did not poison anything).
        drop(rule);
    }
    for (mode, want) in [("panic-create", "panicked: asked to panic in create"), ("refuse", "asked to refuse")] {
        let err = lib.create(&opts(&[("mode", mode)])).err().unwrap();
        assert!(matches!(err, PluginError::Create { .. }) && err.to_string().contains(want), "{mode}: {err}");
    }
    // After all that, the host and the library are fine: a well-behaved instance gives the mean.
    let mut rule = lib.create(&opts(&[("mode", "mean")])).unwrap();
    let report = rule.aggregate(&ups, None, &mut out).unwrap();
    assert_eq!(report.used, vec![100, 101, 102, 103]);
    for (j, &o) in out.iter().enumerate() {
        assert_eq!(o, xs.iter().map(|x| x[j]).sum::<f32>() / 4.0);
    }
    // Inputs the host rejects never reach the plugin; the report names them.
    let mut bad = xs.clone();
    bad[2][5] = f32::INFINITY;
    let report = rule.aggregate(&updates(&bad), None, &mut out).unwrap();
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].0, 102);
}

#[test]
fn a_wrong_abi_version_or_a_foreign_library_is_refused() {
    let err = PluginLibrary::load(&plugin("bad-abi")).unwrap_err().to_string();
    assert!(
        err.contains("ABI version 999") && err.contains("speaks 1") && err.contains("libshoal_rule_bad_abi"),
        "{err}"
    );
    // A shared library that is not a plugin at all (the C library itself).
    let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libc");
    let err = PluginLibrary::load(std::path::Path::new(libc)).unwrap_err().to_string();
    assert!(err.contains("not a shoal rule plugin"), "{err}");
    let err = PluginLibrary::load(std::path::Path::new("/nonexistent/librule.so")).unwrap_err().to_string();
    assert!(err.contains("cannot load the library") && err.contains("/nonexistent/librule.so"), "{err}");
}

#[test]
fn a_plugin_rule_outlives_its_library_handle_and_runs_on_another_thread() {
    let rule = {
        let lib = load("geomedian");
        lib.create(&opts(&[])).unwrap()
    }; // the caller's Arc is gone; the rule keeps the library loaded
    let handle = std::thread::spawn(move || {
        let mut rule = rule;
        let xs = sample(5, 10);
        let mut out = vec![0.0; 10];
        rule.aggregate(&updates(&xs), None, &mut out).unwrap();
        out
    });
    assert!(handle.join().unwrap().iter().all(|v| v.is_finite()));
}
