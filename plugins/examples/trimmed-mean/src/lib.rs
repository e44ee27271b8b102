//! shoal's built-in trimmed mean, built as a plugin: the same engine code behind the C ABI. The host's
//! tests require it to give bit-identical results to the built-in, and the compare script times both.
//!
//! Option: `beta` (the fraction cut at each end, 0.1).

use shoal_engine::rules::{Rule, TrimmedMean};
use shoal_rule_sdk::{Options, Outcome, RulePlugin, Update, export_rule};

pub struct TrimmedMeanPlugin {
    rule: TrimmedMean,
}

impl RulePlugin for TrimmedMeanPlugin {
    const NAME: &'static std::ffi::CStr = c"trimmed-mean";

    fn create(options: &Options) -> Result<Self, String> {
        if let Some(k) = options.keys().find(|&k| k != "beta") {
            return Err(format!("unknown option `{k}` (it takes: beta)"));
        }
        let rule = TrimmedMean::new(options.parse_or("beta", 0.1f32)?).map_err(|e| e.to_string())?;
        Ok(Self { rule })
    }

    fn check(&self, n: usize) -> Result<(), String> {
        self.rule.check(n).map_err(|e| e.to_string())
    }

    fn aggregate(&mut self, updates: &[Update], out: &mut [f32]) -> Result<Outcome, String> {
        // The host validated the inputs; go straight to the kernel, as the built-in does after
        // its own validation.
        let views: Vec<shoal_engine::rules::Update> = updates
            .iter()
            .map(|u| shoal_engine::rules::Update { sender: u.sender, weight: u.weight, values: u.values })
            .collect();
        self.rule.combine(&views, out).map_err(|e| e.to_string())?;
        Ok(Outcome::all())
    }
}

export_rule!(TrimmedMeanPlugin);
