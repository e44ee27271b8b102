//! The settings a run's result depends on, recorded next to its store so that a resumed run is the same
//! run.
//!
//! A master restarted on the same output folder resumes from the last committed round. If the job file
//! changed in between, or a newer shoal resolved a default differently (`head_init`'s changed once),
//! the resumed rounds would silently follow other rules than the first ones. So when a run
//! starts, the master writes `run-settings.txt` with every setting that decides what the run computes,
//! resolved with its defaults. When it resumes, it compares them and refuses a difference, naming each
//! changed setting. The number of rounds, the deadlines, the transport and the evaluation may change
//! between the two: they decide how long and how the run goes, not what its rounds compute.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::JobConfig;

/// The file, in the run's output folder.
pub const FILE: &str = "run-settings.txt";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(
        "the run in {dir} started with other settings: {changes}; resume with the job file it started with, \
         or start a new run elsewhere with --output DIR"
    )]
    Changed { dir: PathBuf, changes: String },
}

/// `key = value` for every setting the run's result depends on, defaults resolved.
pub fn of(cfg: &JobConfig) -> Vec<(&'static str, String)> {
    let e = &cfg.encoder;
    let t = &cfg.training;
    let c = &cfg.children;
    // The options as the rule gets them (text), in key order. A job file's options were checked on load.
    let given = cfg.rule_options().unwrap_or_default();
    let mut keys: Vec<&str> = given.keys().collect();
    keys.sort_unstable();
    let options =
        keys.iter().map(|k| format!("{k} = {}", given.get(k).unwrap_or_default())).collect::<Vec<_>>().join(", ");
    vec![
        ("seed", cfg.seed.to_string()),
        ("encoder.type", e.kind.clone()),
        ("encoder.hidden", format!("{:?}", e.hidden)),
        ("encoder.activation", e.activation.clone()),
        ("encoder.share_head", e.share_head.to_string()),
        ("encoder.head_init", e.head_init.name().to_string()),
        ("training.local_epochs", t.local_epochs.to_string()),
        ("training.batch", t.batch.to_string()),
        ("training.lr", t.lr.to_string()),
        ("training.fraction", t.fraction.to_string()),
        ("training.head_warmup", t.head_warmup.to_string()),
        ("rule.name", cfg.rule.name.clone()),
        ("rule.options", format!("{{{options}}}")),
        ("children.count", c.count.to_string()),
        ("children.partition", c.partition.clone()),
        ("children.shards_per_child", c.shards_per_child.to_string()),
        ("children.alpha", c.alpha.to_string()),
        ("children.tabular", c.tabular.to_string()),
        ("attack.fraction", cfg.attack.fraction.to_string()),
        ("attack.sigma", cfg.attack.sigma.to_string()),
    ]
}

fn render(settings: &[(&'static str, String)]) -> String {
    let mut s = String::from(
        "# What this run computes depends on these settings (defaults resolved). A resumed run must have the\n\
         # same; rounds, deadlines, transport and evaluation may change.\n",
    );
    for (k, v) in settings {
        let _ = writeln!(s, "{k} = {v}");
    }
    s
}

/// Records `cfg`'s settings in `dir` for a run that starts there.
pub fn record(dir: &Path, cfg: &JobConfig) -> Result<(), SettingsError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let io = |cause| SettingsError::Io { path: path.clone(), cause };
    std::fs::write(&tmp, render(&of(cfg))).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// For a run that resumes in `dir`: refuses settings that differ from those it started with. A run that
/// started before shoal recorded them has no file; it gets one now.
pub fn check(dir: &Path, cfg: &JobConfig) -> Result<(), SettingsError> {
    let path = dir.join(FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => return record(dir, cfg),
        Err(cause) => return Err(SettingsError::Io { path, cause }),
    };
    let recorded: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(" = "))
        .collect();
    let mut changes = Vec::new();
    for (key, now) in of(cfg) {
        match recorded.iter().find(|(k, _)| *k == key) {
            Some((_, then)) if *then == now => {}
            Some((_, then)) => changes.push(format!("{key} was {then}, is {now}")),
            None => changes.push(format!("{key} is {now}, not recorded when the run started")),
        }
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(SettingsError::Changed { dir: dir.to_path_buf(), changes: changes.join("; ") })
    }
}
