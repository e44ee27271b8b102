//! Job 1, federated shared-encoder generation, run embedded over real inproc ZeroMQ sockets on real
//! MNIST: declines, quorum, stragglers, a plugin rule, resuming from the store, bad configurations.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use shoal::data::DataDir;
use shoal::data::fetch::fetch_all;
use shoal::federated::child::ChildSpec;
use shoal::federated::data::JobData;
use shoal::federated::local::{child_specs, run_local_with};
use shoal::federated::master::MasterEvent;
use shoal::federated::{JobConfig, JobError};
use shoal_engine::store::Store;

fn mnist() -> Arc<JobData> {
    static DATA: OnceLock<Arc<JobData>> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = DataDir(
            std::env::var_os("SHOAL_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")),
        );
        if !JobData::is_fetched(&dir) {
            fetch_all(&dir, &mut |l| eprintln!("{l}")).unwrap_or_else(|e| panic!("fetching the datasets: {e}"));
        }
        Arc::new(JobData::load(&dir).unwrap())
    })
    .clone()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("federated-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A small, fast job: 8 image children (IID) and one tabular child, 2 rounds of 1 local epoch.
fn config(name: &str, extra: &str) -> JobConfig {
    let text = format!(
        r#"
job = "{name}"
output = "{out}"
[encoder]
type = "image28x28"
hidden = [64]
[training]
rounds = 2
local_epochs = 1
batch = 50
lr = 0.1
fraction = 0.5
min_children = 2
[children]
count = 8
tabular = 1
[deadlines]
join_ms = 5000
confirm_ms = 5000
round_ms = 30000
[transport]
endpoint = "inproc://{name}"
{extra}
"#,
        out = scratch(name).display()
    );
    JobConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn quiet(_: MasterEvent) {}

#[test]
fn the_job_trains_takes_declines_and_writes_its_outputs() {
    let cfg = config("basic", "");
    let data = mnist();
    let specs = child_specs(&cfg, &data);
    let (report, children) = run_local_with(&cfg, data, specs, &mut quiet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.confirmed, 8);
    assert_eq!(report.declined.len(), 1);
    assert_eq!(report.declined[0].0, 9);
    assert!(report.declined[0].1.contains("no data of type image28x28"), "{:?}", report.declined);
    assert_eq!(report.rounds.len(), 2);
    for r in &report.rounds {
        assert_eq!((r.picked, r.updates), (4, 4), "C = 0.5 of 8");
        assert!(r.dropped.is_empty() && r.rejected.is_empty());
        assert!(r.bytes_sent > 0 && r.bytes_received > 0);
    }
    let acc = report.final_accuracy().unwrap();
    assert!(acc > 0.85, "two rounds should already give a useful encoder: {acc}");
    for name in ["encoder.shoal", "encoder.safetensors", "report.json", "rounds.csv", "accuracy.svg"] {
        assert!(cfg.output_dir().join(name).exists(), "{name} missing");
    }
    let json = std::fs::read_to_string(cfg.output_dir().join("report.json")).unwrap();
    assert!(json.contains("\"final_accuracy\": 0.") && json.contains("tabular-adult"), "{json}");
    // Every child heard the job end; the tabular child never trained.
    assert_eq!(children.len(), 9);
    assert!(children.iter().all(|c| c.outcome.contains("finished after 2 rounds")), "{children:?}");
    assert!(children.iter().find(|c| c.id == 9).is_some_and(|c| !c.confirmed && c.rounds_trained == 0));
    let store = Store::open(&cfg.output_dir().join("encoder.shoal")).unwrap();
    assert_eq!(store.counter("round"), Some(2));
}

#[test]
fn too_few_children_stop_the_job_with_a_clear_error() {
    let mut cfg = config("quorum", "");
    cfg.training.min_children = 3;
    cfg.deadlines.join_ms = 1000;
    let data = mnist();
    // Only two of the eight image children (and the tabular one) show up.
    let specs: Vec<ChildSpec> = child_specs(&cfg, &data).into_iter().filter(|s| s.id <= 2 || s.id == 9).collect();
    let err = run_local_with(&cfg, data, specs, &mut quiet).unwrap_err();
    assert!(matches!(err, JobError::Quorum { stage: "confirmation", got: 2, need: 3 }), "{err}");
    assert!(err.to_string().contains("training.min_children"), "{err}");
}

#[test]
fn a_straggler_is_cut_off_at_the_deadline_and_the_round_goes_on() {
    let mut cfg = config("straggler", "");
    cfg.training.fraction = 1.0;
    cfg.training.rounds = 1;
    cfg.deadlines.round_ms = 2500;
    let data = mnist();
    let mut specs = child_specs(&cfg, &data);
    specs[2].delay = Duration::from_secs(6);
    let mut logs = Vec::new();
    let (report, _) = run_local_with(&cfg, data, specs, &mut |e| {
        if let MasterEvent::Log(l) = e {
            logs.push(l)
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let r = &report.rounds[0];
    assert_eq!((r.picked, r.updates), (8, 7));
    assert_eq!(r.dropped, vec![(3, "missed the round deadline".to_string())]);
    assert!(!r.used.contains(&3));
}

#[test]
fn a_plugin_rule_is_loaded_from_its_path() {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--quiet", "-p", "shoal-rule-geomedian"]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success());
    let lib = profile_dir.join("libshoal_rule_geomedian.so");
    let cfg = config("plugin", &format!("[rule]\nname = \"{}\"\noptions = {{ iters = 50 }}\n", lib.display()));
    let data = mnist();
    let specs = child_specs(&cfg, &data);
    let (report, _) = run_local_with(&cfg, data, specs, &mut quiet).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.rule.ends_with("libshoal_rule_geomedian.so"));
    assert!(report.final_accuracy().unwrap() > 0.8);
    // A plugin option it does not take is refused when the job file is read.
    let bad = format!(
        "job = \"x\"\n[encoder]\ntype = \"image28x28\"\nhidden = [8]\n[rule]\nname = \"{}\"\noptions = {{ iterz = 5 }}\n",
        lib.display()
    );
    let err = JobConfig::parse(&bad).unwrap_err().to_string();
    assert!(err.starts_with("rule:") && err.contains("unknown option `iterz`"), "{err}");
}

#[test]
fn a_restarted_master_resumes_and_ends_where_an_uninterrupted_run_does() {
    let data = mnist();
    let whole = config("resume-whole", "");
    let mut whole3 = whole.clone();
    whole3.training.rounds = 3;
    run_local_with(&whole3, data.clone(), child_specs(&whole3, &data), &mut quiet).unwrap();

    // The same job stopped after round 2, then started again for 3 rounds.
    let mut parts = config("resume-parts", "");
    parts.seed = whole.seed;
    run_local_with(&parts, data.clone(), child_specs(&parts, &data), &mut quiet).unwrap();
    parts.training.rounds = 3;
    let mut resumed = None;
    let (report, _) = run_local_with(&parts, data.clone(), child_specs(&parts, &data), &mut |e| {
        if let MasterEvent::Resumed { round } = e {
            resumed = Some(round)
        }
    })
    .unwrap();
    assert_eq!(resumed, Some(2));
    assert_eq!(report.rounds.len(), 1);
    let a = Store::open(&whole3.output_dir().join("encoder.shoal")).unwrap();
    let b = Store::open(&parts.output_dir().join("encoder.shoal")).unwrap();
    assert_eq!(a.counter("round"), Some(3));
    assert_eq!(b.counter("round"), Some(3));
    let differ = a.params().iter().zip(b.params()).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differ, 0, "the resumed encoder differs from the uninterrupted one in {differ} values");
}

/// A resumed run must be the same run: settings that change what its rounds compute are refused, each
/// named, and the store is left as it was; more rounds are fine; a run from before shoal recorded its
/// settings gets them recorded when it resumes.
#[test]
fn a_resume_with_changed_settings_is_refused_naming_each() {
    use shoal::federated::config::HeadInit;
    use shoal::federated::settings::FILE;
    let data = mnist();
    let mut cfg = config("resume-changed", "");
    run_local_with(&cfg, data.clone(), child_specs(&cfg, &data), &mut quiet).unwrap();
    let dir = cfg.output_dir();
    let recorded = std::fs::read_to_string(dir.join(FILE)).unwrap();
    assert!(
        recorded.contains("training.lr = 0.1\n") && recorded.contains("encoder.head_init = common\n"),
        "{recorded}"
    );

    let mut changed = cfg.clone();
    changed.training.lr = 0.05;
    changed.encoder.head_init = HeadInit::Child;
    let err = run_local_with(&changed, data.clone(), child_specs(&changed, &data), &mut quiet).unwrap_err().to_string();
    assert!(err.contains("training.lr was 0.1, is 0.05"), "{err}");
    assert!(err.contains("encoder.head_init was common, is child") && err.contains("--output"), "{err}");
    assert_eq!(Store::open(&dir.join("encoder.shoal")).unwrap().counter("round"), Some(2));

    cfg.training.rounds = 3;
    run_local_with(&cfg, data.clone(), child_specs(&cfg, &data), &mut quiet).unwrap();
    assert_eq!(Store::open(&dir.join("encoder.shoal")).unwrap().counter("round"), Some(3));

    std::fs::remove_file(dir.join(FILE)).unwrap();
    cfg.training.rounds = 4;
    run_local_with(&cfg, data.clone(), child_specs(&cfg, &data), &mut quiet).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join(FILE)).unwrap(), recorded);
}

#[test]
fn a_tabular_adult_encoder_is_generated_the_same_way() {
    let mut cfg = config("adult", "[eval]\nprobe_epochs = 2\n");
    cfg.encoder.kind = "tabular-adult".into();
    cfg.encoder.hidden = vec![32];
    cfg.children.count = 2;
    cfg.children.tabular = 6;
    cfg.training.rounds = 3;
    cfg.training.batch = 32;
    cfg.training.fraction = 1.0;
    let data = mnist();
    let specs = child_specs(&cfg, &data);
    let (report, children) = run_local_with(&cfg, data, specs, &mut quiet).unwrap_or_else(|e| panic!("{e}"));
    // The image children decline, the tabular ones confirm and train.
    assert_eq!(report.confirmed, 6);
    let mut declined: Vec<u32> = report.declined.iter().map(|d| d.0).collect();
    declined.sort_unstable();
    assert_eq!(declined, vec![1, 2]);
    assert!(report.declined.iter().all(|d| d.1.contains("no data of type tabular-adult")), "{:?}", report.declined);
    assert!(children.iter().filter(|c| c.id > 2).all(|c| c.rounds_trained == 3), "{children:?}");
    // Predicting "at most 50K" for everyone scores 76%; a useful encoder does clearly better.
    let acc = report.final_accuracy().unwrap();
    assert!(acc > 0.82, "tabular encoder + probe head: {acc}");
}

#[test]
fn with_share_head_the_head_is_merged_and_stored_too() {
    let mut cfg = config("shared-head", "");
    cfg.encoder.share_head = true;
    cfg.training.head_warmup = 0;
    let data = mnist();
    let specs = child_specs(&cfg, &data);
    let (report, _) = run_local_with(&cfg, data, specs, &mut quiet).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.rounds.len(), 2);
    let acc = report.final_accuracy().unwrap();
    assert!(acc > 0.85, "{acc}");
    let store = Store::open(&cfg.output_dir().join("encoder.shoal")).unwrap();
    let names: Vec<&str> = store.tensors().iter().map(|t| t.name.as_str()).collect();
    assert!(names.contains(&"encoder.0.weight") && names.contains(&"head.weight"), "{names:?}");
}

/// `head_init = "common"` (the default): every child starts its private head from the same values. The
/// option reaches the children (the encoder differs from `child`'s), the run stays deterministic (two runs
/// agree bit for bit), the job still learns, and the stored encoder holds no head.
#[test]
fn with_a_common_head_init_the_children_start_alike_and_the_run_is_reproducible() {
    use shoal::federated::config::HeadInit;
    let data = mnist();
    assert_eq!(config("defaults", "").encoder.head_init, HeadInit::Common);
    assert_eq!(config("defaults", "").training.head_warmup, 0);
    let run = |name: &str, common: bool| {
        let mut cfg = config(name, "");
        cfg.seed = 17;
        if !common {
            cfg.encoder.head_init = HeadInit::Child;
        }
        let specs = child_specs(&cfg, &data);
        let (report, _) = run_local_with(&cfg, data.clone(), specs, &mut quiet).unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&cfg.output_dir().join("encoder.shoal")).unwrap();
        let names: Vec<String> = store.tensors().iter().map(|t| t.name.clone()).collect();
        assert!(names.iter().all(|n| n.starts_with("encoder.")), "a head left the children: {names:?}");
        let fitted = report.fitted_accuracy.expect("a head fitted to the final encoder");
        assert!(fitted > 0.85, "{fitted}");
        (store.params().to_vec(), report.final_accuracy().unwrap())
    };
    let (common, acc) = run("head-common-a", true);
    let (again, _) = run("head-common-b", true);
    let (own, _) = run("head-child", false);
    assert!(acc > 0.85, "{acc}");
    assert!(common.iter().zip(&again).all(|(a, b)| a.to_bits() == b.to_bits()), "two common-head runs differ");
    assert!(common.iter().zip(&own).any(|(a, b)| a != b), "head_init made no difference");
}

#[test]
fn an_unknown_head_init_is_refused_naming_the_field() {
    let bad = "job = \"x\"\n[encoder]\ntype = \"image28x28\"\nhidden = [8]\nhead_init = \"shared\"\n";
    let err = JobConfig::parse(bad).unwrap_err().to_string();
    assert!(err.contains("head_init") && err.contains("shared"), "{err}");
}
