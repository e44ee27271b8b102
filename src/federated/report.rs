//! The job's record: per-round statistics, written as JSON and CSV, and an SVG plot of accuracy and
//! training loss per round (plain SVG: no fonts or system libraries needed to write it).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::JobError;
use super::config::JobConfig;

#[derive(Clone, Debug, Default)]
pub struct RoundStats {
    /// 1-based: the number of rounds merged into the encoder after this one.
    pub round: u64,
    pub picked: usize,
    pub updates: usize,
    /// Children whose updates the rule used, and those it rejected (with why).
    pub used: Vec<u32>,
    pub rejected: Vec<(u32, String)>,
    /// Picked children without a usable update (late, unreachable), with why.
    pub dropped: Vec<(u32, String)>,
    /// Test accuracy of the shared encoder with the master's probe head, when evaluated.
    pub accuracy: Option<f64>,
    /// Sample-weighted mean of the children's training loss.
    pub train_loss: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub seconds: f64,
    /// The slowest picked child's local training time.
    pub compute_seconds: f64,
    pub aggregate_seconds: f64,
    pub eval_seconds: f64,
}

impl RoundStats {
    /// Everything but the children's local compute and the evaluation: messaging, waiting, merging.
    pub fn overhead_seconds(&self) -> f64 {
        (self.seconds - self.compute_seconds - self.eval_seconds).max(0.0)
    }
}

#[derive(Clone, Debug, Default)]
pub struct JobReport {
    pub job: String,
    pub rule: String,
    pub start_round: u64,
    pub rounds: Vec<RoundStats>,
    pub confirmed: usize,
    pub declined: Vec<(u32, String)>,
    pub bad_messages: u64,
    pub seconds: f64,
    pub outputs: Vec<PathBuf>,
    /// Test accuracy of the final encoder with a fresh probe head fitted to it alone
    /// (`eval.final_probe_epochs` epochs on the validation split), or `None` when that is off.
    pub fitted_accuracy: Option<f64>,
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn pairs_json(v: &[(u32, String)]) -> String {
    let items: Vec<String> = v.iter().map(|(id, why)| format!("[{id}, {}]", json_str(why))).collect();
    format!("[{}]", items.join(", "))
}

fn opt(v: Option<f64>) -> String {
    v.map_or("null".into(), |x| format!("{x:.6}"))
}

impl JobReport {
    pub fn new(cfg: &JobConfig, start_round: u64) -> Self {
        Self { job: cfg.job.clone(), rule: cfg.rule.name.clone(), start_round, ..Self::default() }
    }

    /// The last evaluated accuracy.
    pub fn final_accuracy(&self) -> Option<f64> {
        self.rounds.iter().rev().find_map(|r| r.accuracy)
    }

    /// The first round after which accuracy reached `target`.
    pub fn rounds_to(&self, target: f64) -> Option<u64> {
        self.rounds.iter().find(|r| r.accuracy.is_some_and(|a| a >= target)).map(|r| r.round)
    }

    pub fn to_json(&self) -> String {
        let rounds: Vec<String> = self
            .rounds
            .iter()
            .map(|r| {
                format!(
                    "    {{\"round\": {}, \"picked\": {}, \"updates\": {}, \"used\": {:?}, \"rejected\": {}, \"dropped\": {}, \"accuracy\": {}, \"train_loss\": {:.6}, \"bytes_sent\": {}, \"bytes_received\": {}, \"seconds\": {:.4}, \"compute_seconds\": {:.4}, \"aggregate_seconds\": {:.4}, \"eval_seconds\": {:.4}}}",
                    r.round, r.picked, r.updates, r.used, pairs_json(&r.rejected), pairs_json(&r.dropped), opt(r.accuracy),
                    r.train_loss, r.bytes_sent, r.bytes_received, r.seconds, r.compute_seconds, r.aggregate_seconds, r.eval_seconds
                )
            })
            .collect();
        format!(
            "{{\n  \"job\": {},\n  \"rule\": {},\n  \"start_round\": {},\n  \"confirmed\": {},\n  \"declined\": {},\n  \"bad_messages\": {},\n  \"seconds\": {:.3},\n  \"final_accuracy\": {},\n  \"fitted_accuracy\": {},\n  \"rounds\": [\n{}\n  ]\n}}\n",
            json_str(&self.job),
            json_str(&self.rule),
            self.start_round,
            self.confirmed,
            pairs_json(&self.declined),
            self.bad_messages,
            self.seconds,
            opt(self.final_accuracy()),
            opt(self.fitted_accuracy),
            rounds.join(",\n")
        )
    }

    pub fn to_csv(&self) -> String {
        let mut s = String::from(
            "round,picked,updates,dropped,rejected,accuracy,train_loss,bytes_sent,bytes_received,seconds,compute_seconds,aggregate_seconds,eval_seconds\n",
        );
        for r in &self.rounds {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{:.6},{},{},{:.4},{:.4},{:.4},{:.4}",
                r.round,
                r.picked,
                r.updates,
                r.dropped.len(),
                r.rejected.len(),
                r.accuracy.map_or(String::new(), |a| format!("{a:.6}")),
                r.train_loss,
                r.bytes_sent,
                r.bytes_received,
                r.seconds,
                r.compute_seconds,
                r.aggregate_seconds,
                r.eval_seconds
            );
        }
        s
    }

    /// Accuracy (left axis, %) and training loss (right axis) per round.
    pub fn to_svg(&self) -> String {
        let (w, h, m) = (720.0, 360.0, 56.0);
        let n = self.rounds.len().max(1) as f64;
        let first = self.rounds.first().map_or(1, |r| r.round) as f64;
        let x = |round: u64| m + (round as f64 - first) / (n - 1.0).max(1.0) * (w - 2.0 * m);
        let accs: Vec<(u64, f64)> = self.rounds.iter().filter_map(|r| r.accuracy.map(|a| (r.round, a))).collect();
        let lo = accs.iter().map(|a| a.1).fold(1.0, f64::min).clamp(0.0, 0.9);
        let y_acc = |a: f64| h - m - (a - lo) / (1.0 - lo).max(1e-9) * (h - 2.0 * m);
        let max_loss = self.rounds.iter().map(|r| r.train_loss).filter(|l| l.is_finite()).fold(1e-9, f64::max);
        let y_loss = |l: f64| h - m - (l / max_loss) * (h - 2.0 * m);
        let line =
            |pts: Vec<(f64, f64)>| pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect::<Vec<_>>().join(" ");
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n"
        );
        let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
        let _ = writeln!(
            s,
            "<text x=\"{m}\" y=\"20\" font-size=\"14\">{}: test accuracy (blue) and training loss (orange) per round, rule {}</text>",
            self.job, self.rule
        );
        let _ = writeln!(s, "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", h - m, w - m, h - m);
        let _ = writeln!(s, "<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>", h - m);
        for k in 0..=4 {
            let a = lo + (1.0 - lo) * k as f64 / 4.0;
            let _ = writeln!(s, "<text x=\"6\" y=\"{:.1}\">{:.1}%</text>", y_acc(a) + 4.0, a * 100.0);
            let l = max_loss * k as f64 / 4.0;
            let _ = writeln!(s, "<text x=\"{:.1}\" y=\"{:.1}\">{l:.3}</text>", w - m + 6.0, y_loss(l) + 4.0);
        }
        if let (Some(a), Some(b)) = (self.rounds.first(), self.rounds.last()) {
            let _ = writeln!(s, "<text x=\"{m}\" y=\"{}\">round {}</text>", h - m + 18.0, a.round);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">round {}</text>",
                w - m,
                h - m + 18.0,
                b.round
            );
        }
        let acc_pts = accs.iter().map(|&(r, a)| (x(r), y_acc(a))).collect();
        let loss_pts = self
            .rounds
            .iter()
            .filter(|r| r.train_loss.is_finite())
            .map(|r| (x(r.round), y_loss(r.train_loss)))
            .collect();
        let _ =
            writeln!(s, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>", line(acc_pts));
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\" points=\"{}\"/>",
            line(loss_pts)
        );
        s.push_str("</svg>\n");
        s
    }

    /// Writes report.json, rounds.csv and accuracy.svg into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, JobError> {
        let mut out = Vec::new();
        for (name, text) in
            [("report.json", self.to_json()), ("rounds.csv", self.to_csv()), ("accuracy.svg", self.to_svg())]
        {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|cause| JobError::Io { path: path.clone(), cause })?;
            out.push(path);
        }
        Ok(out)
    }
}
