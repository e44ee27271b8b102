//! The geometric median (the point minimising the summed Euclidean distances to the updates, weighted)
//! by Weiszfeld's iterations, as a shoal rule plugin. It is the aggregation of RFA (Pillutla et al.
//! 2022): robust like the coordinate-wise median, but it treats an update as one vector.
//!
//! Options: `iters` (most iterations, 500), `tol` (stop when a step moves the estimate less than `tol`
//! times the mean distance to the updates, 1e-7). Both tests are scale-free, so scaling every update
//! scales the result.

use shoal_rule_sdk::{Options, Outcome, RulePlugin, Update, export_rule};

pub struct GeometricMedian {
    iters: usize,
    tol: f64,
    z: Vec<f64>,
    next: Vec<f64>,
}

impl RulePlugin for GeometricMedian {
    const NAME: &'static std::ffi::CStr = c"geometric-median";

    fn create(options: &Options) -> Result<Self, String> {
        if let Some(k) = options.keys().find(|k| !["iters", "tol"].contains(k)) {
            return Err(format!("unknown option `{k}` (it takes: iters, tol)"));
        }
        let iters = options.parse_or("iters", 500usize)?;
        let tol = options.parse_or("tol", 1e-7f64)?;
        if iters == 0 || !(tol > 0.0 && tol.is_finite()) {
            return Err(format!("iters must be at least 1 and tol positive (got {iters}, {tol})"));
        }
        Ok(Self { iters, tol, z: Vec::new(), next: Vec::new() })
    }

    fn aggregate(&mut self, updates: &[Update], out: &mut [f32]) -> Result<Outcome, String> {
        let p = out.len();
        let total: f64 = updates.iter().map(|u| u.weight as f64).sum();
        let weight = |u: &Update| if total > 0.0 { u.weight as f64 } else { 1.0 };
        // Start from the weighted mean.
        self.z.clear();
        self.z.resize(p, 0.0);
        let sum_w: f64 = updates.iter().map(weight).sum();
        for u in updates {
            let w = weight(u) / sum_w;
            self.z.iter_mut().zip(u.values).for_each(|(z, &x)| *z += w * x as f64);
        }
        let mut dist = vec![0.0f64; updates.len()];
        for _ in 0..self.iters {
            for (d, u) in dist.iter_mut().zip(updates) {
                *d = self.z.iter().zip(u.values).map(|(z, &x)| (x as f64 - z).powi(2)).sum::<f64>().sqrt();
            }
            let scale = dist.iter().sum::<f64>() / dist.len() as f64;
            if scale == 0.0 {
                break; // every update equals the estimate
            }
            // An update the estimate sits on would divide by zero: floor the distance (scale-free).
            let floor = scale * 1e-12;
            self.next.clear();
            self.next.resize(p, 0.0);
            let mut norm = 0.0;
            for (d, u) in dist.iter().zip(updates) {
                let b = weight(u) / d.max(floor);
                norm += b;
                self.next.iter_mut().zip(u.values).for_each(|(n, &x)| *n += b * x as f64);
            }
            let mut moved = 0.0;
            for (z, n) in self.z.iter_mut().zip(&self.next) {
                let v = n / norm;
                moved += (v - *z).powi(2);
                *z = v;
            }
            if moved.sqrt() <= self.tol * scale {
                break;
            }
        }
        out.iter_mut().zip(&self.z).for_each(|(o, &z)| *o = z as f32);
        Ok(Outcome::all())
    }
}

export_rule!(GeometricMedian);
