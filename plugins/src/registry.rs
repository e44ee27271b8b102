//! Rules by name: the one place that turns `krum` + `f=2`, or `./librule.so` + its options, into a
//! rule. The CLI, the jobs and the tests all build rules here, so a name means the same everywhere.

use std::path::Path;

use shoal_engine::rules::{
    Bulyan, Clip, FedAvg, Krum, Mean, Median, Rule, RuleError, ServerKind, ServerOpt, TrimmedMean,
};
use shoal_rule_sdk::Options;

use crate::load::{PluginError, PluginLibrary};

/// Every built-in rule name, with the options it takes.
pub const BUILTIN_RULES: &[(&str, &[&str])] = &[
    ("mean", &[]),
    ("fedavg", &[]),
    ("median", &[]),
    ("trimmed-mean", &["beta"]),
    ("krum", &["f"]),
    ("multi-krum", &["f", "m"]),
    ("bulyan", &["f"]),
    ("clip", &["tau", "inner"]),
    ("fedavgm", &["lr", "beta", "inner"]),
    ("fedadagrad", &["lr", "tau", "inner"]),
    ("fedadam", &["lr", "beta1", "beta2", "tau", "inner"]),
    ("fedyogi", &["lr", "beta1", "beta2", "tau", "inner"]),
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("rule `{rule}`: {detail}")]
    Option { rule: String, detail: String },
}

fn option_err(rule: &str, detail: impl Into<String>) -> BuildError {
    BuildError::Option { rule: rule.to_string(), detail: detail.into() }
}

/// Whether `spec` names a plugin file rather than a built-in rule.
pub fn is_plugin_path(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".so") || spec.ends_with(".dylib") || spec.ends_with(".dll")
}

/// The rule `spec` names: a built-in (see [`BUILTIN_RULES`]) or the path of a plugin library, which
/// gets every option as it is.
pub fn build_rule(spec: &str, options: &Options) -> Result<Box<dyn Rule>, BuildError> {
    if is_plugin_path(spec) {
        let lib = PluginLibrary::load(Path::new(spec))?;
        return Ok(Box::new(lib.create(options)?));
    }
    let Some(&(name, takes)) = BUILTIN_RULES.iter().find(|(n, _)| *n == spec) else {
        let names: Vec<&str> = BUILTIN_RULES.iter().map(|(n, _)| *n).collect();
        return Err(option_err(
            spec,
            format!("no such rule; built in: {}; or give the path of a plugin library", names.join(", ")),
        ));
    };
    // Options for the inner rule (clip, server optimizers) are passed through as `inner.KEY`.
    if let Some(k) = options.keys().find(|k| !takes.contains(k) && !k.starts_with("inner.")) {
        let list = if takes.is_empty() { "none".to_string() } else { takes.join(", ") };
        return Err(option_err(name, format!("unknown option `{k}` (it takes: {list})")));
    }
    let num = |key: &str, default: Option<f32>| -> Result<f32, BuildError> {
        match (options.get(key), default) {
            (Some(v), _) => v.parse().map_err(|_| option_err(name, format!("{key}={v} is not a number"))),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(option_err(name, format!("needs option `{key}`"))),
        }
    };
    let count = |key: &str| -> Result<usize, BuildError> {
        let v = options.get(key).ok_or_else(|| option_err(name, format!("needs option `{key}`")))?;
        v.parse().map_err(|_| option_err(name, format!("{key}={v} is not a whole number")))
    };
    let inner = |default: &str| -> Result<Box<dyn Rule>, BuildError> {
        let mut inner_options = Options::default();
        for k in options.keys() {
            if let Some(stripped) = k.strip_prefix("inner.") {
                inner_options.insert(stripped, options.get(k).unwrap_or_default());
            }
        }
        build_rule(options.get("inner").unwrap_or(default), &inner_options)
    };
    let server = |kind: ServerKind, lr: f32| -> Result<Box<dyn Rule>, BuildError> {
        let kind = match kind {
            ServerKind::AvgM { beta } => ServerKind::AvgM { beta: num("beta", Some(beta))? },
            ServerKind::Adagrad => ServerKind::Adagrad,
            ServerKind::Adam { beta1, beta2 } => {
                ServerKind::Adam { beta1: num("beta1", Some(beta1))?, beta2: num("beta2", Some(beta2))? }
            }
            ServerKind::Yogi { beta1, beta2 } => {
                ServerKind::Yogi { beta1: num("beta1", Some(beta1))?, beta2: num("beta2", Some(beta2))? }
            }
        };
        Ok(Box::new(ServerOpt::new(kind, num("lr", Some(lr))?, num("tau", Some(1e-3))?, inner("fedavg")?)?))
    };
    Ok(match name {
        "mean" => Box::new(Mean),
        "fedavg" => Box::new(FedAvg),
        "median" => Box::new(Median),
        "trimmed-mean" => Box::new(TrimmedMean::new(num("beta", Some(0.1))?)?),
        "krum" => Box::new(Krum::new(count("f")?, 1)?),
        // m = n − f of each round unless a fixed m is given ("auto" says so explicitly).
        "multi-krum" => match options.get("m") {
            None | Some("auto") => Box::new(Krum::all_but_f(count("f")?)),
            Some(_) => Box::new(Krum::new(count("f")?, count("m")?)?),
        },
        "bulyan" => Box::new(Bulyan::new(count("f")?)),
        "clip" => Box::new(Clip::new(num("tau", None)?, inner("mean")?)?),
        // Server learning rates: 1.0 makes fedavgm a momentum-only FedAvg; the adaptive ones step by
        // about lr per coordinate, so they start small (Reddi et al. tune it per task).
        "fedavgm" => server(ServerKind::by_name(name).expect("known"), 1.0)?,
        other => server(ServerKind::by_name(other).expect("every listed rule is handled"), 0.01)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        let mut o = Options::default();
        pairs.iter().for_each(|(k, v)| o.insert(k, v));
        o
    }

    #[test]
    fn multi_krum_without_m_keeps_n_minus_f_and_a_bad_m_is_refused() {
        use shoal_engine::rules::Update;
        let xs: Vec<Vec<f32>> = (0..9).map(|i| vec![i as f32, 1.0]).collect();
        let ups: Vec<Update> =
            xs.iter().enumerate().map(|(i, x)| Update { sender: i as u32, weight: 1.0, values: x }).collect();
        for o in [opts(&[("f", "2")]), opts(&[("f", "2"), ("m", "auto")])] {
            let mut rule = build_rule("multi-krum", &o).unwrap();
            let mut out = vec![0.0; 2];
            let report = rule.aggregate(&ups, None, &mut out).unwrap();
            assert_eq!(report.used.len(), 7, "n - f of 9 updates with f = 2");
        }
        let err = build_rule("multi-krum", &opts(&[("f", "2"), ("m", "most")])).err().expect("refused").to_string();
        assert!(err.contains("m=most is not a whole number"), "{err}");
    }

    #[test]
    fn every_builtin_builds_and_reports_its_name() {
        for (name, _) in BUILTIN_RULES {
            let o = match *name {
                "krum" | "bulyan" => opts(&[("f", "1")]),
                "multi-krum" => opts(&[("f", "1"), ("m", "3")]),
                "clip" => opts(&[("tau", "2"), ("inner", "median")]),
                _ => Options::default(),
            };
            let rule = build_rule(name, &o).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(rule.name(), *name);
        }
    }

    #[test]
    fn bad_names_and_options_are_clear_errors() {
        let e = build_rule("meen", &Options::default()).err().unwrap().to_string();
        assert!(e.contains("no such rule") && e.contains("trimmed-mean"), "{e}");
        let e = build_rule("mean", &opts(&[("beta", "0.1")])).err().unwrap().to_string();
        assert!(e.contains("unknown option `beta`") && e.contains("none"), "{e}");
        let e = build_rule("krum", &Options::default()).err().unwrap().to_string();
        assert!(e.contains("needs option `f`"), "{e}");
        let e = build_rule("trimmed-mean", &opts(&[("beta", "0.7")])).err().unwrap().to_string();
        assert!(e.contains("beta must be in [0, 0.5)"), "{e}");
        let e = build_rule("clip", &opts(&[("tau", "x")])).err().unwrap().to_string();
        assert!(e.contains("tau=x is not a number"), "{e}");
        let e = build_rule("./nope/librule.so", &Options::default()).err().unwrap().to_string();
        assert!(e.contains("cannot load"), "{e}");
        let r = build_rule("clip", &opts(&[("tau", "1"), ("inner", "trimmed-mean"), ("inner.beta", "0.2")])).unwrap();
        assert_eq!(r.name(), "clip");
    }
}
