//! A rule plugin that misbehaves on request (option `mode`), so the host's tests can check that every
//! kind of misbehaviour becomes a clear error and the host keeps running. With `mode=mean` it is a
//! plain mean.

use shoal_rule_sdk::{Options, Outcome, RulePlugin, Update, export_rule};

pub struct Misbehave {
    mode: String,
}

impl RulePlugin for Misbehave {
    const NAME: &'static std::ffi::CStr = c"misbehave";

    fn create(options: &Options) -> Result<Self, String> {
        let mode = options.get("mode").unwrap_or("mean").to_string();
        match mode.as_str() {
            "panic-create" => panic!("asked to panic in create"),
            "refuse" => Err("asked to refuse its options".into()),
            _ => Ok(Self { mode }),
        }
    }

    fn check(&self, n: usize) -> Result<(), String> {
        if self.mode == "need-five" && n < 5 {
            return Err(format!("needs at least 5 inputs, got {n}"));
        }
        Ok(())
    }

    fn aggregate(&mut self, updates: &[Update], out: &mut [f32]) -> Result<Outcome, String> {
        let n = updates.len() as f32;
        for (j, o) in out.iter_mut().enumerate() {
            *o = updates.iter().map(|u| u.values[j]).sum::<f32>() / n;
        }
        match self.mode.as_str() {
            "panic" => panic!("asked to panic in aggregate"),
            "nan" => {
                if let Some(o) = out.last_mut() {
                    *o = f32::NAN;
                }
                Ok(Outcome::all())
            }
            "short" => Ok(Outcome { written: Some(out.len().saturating_sub(1)), selected: None }),
            "bad-select" => Ok(Outcome::selected(vec![0, updates.len() + 5])),
            "error" => Err("asked to fail".into()),
            _ => Ok(Outcome::all()),
        }
    }
}

export_rule!(Misbehave);
