//! Server optimizers (Reddi et al. 2021, "Adaptive Federated Optimization"): the updates are averaged
//! by an inner rule into a pseudo-gradient Δ, and the server steps with momentum or an adaptive rate
//! instead of adding Δ as it is. The state (m, v) lives across rounds.
//!
//! With Δ the inner rule's result, η the server learning rate and τ the adaptivity:
//!
//! | rule | state update | output (the step to add to the model) |
//! | --- | --- | --- |
//! | fedavgm | m = β·m + Δ | η·m |
//! | fedadagrad | v = v + Δ² | η·Δ / (√v + τ) |
//! | fedadam | m = β₁·m + (1−β₁)·Δ; v = β₂·v + (1−β₂)·Δ² | η·m / (√v + τ) |
//! | fedyogi | m as fedadam; v = v − (1−β₂)·Δ²·sign(v − Δ²) | η·m / (√v + τ) |
//!
//! m starts at 0 and v at τ², as in the paper (no bias correction). Fedadagrad uses no momentum.

use super::{Rule, RuleError, Update};

/// Which server optimizer, with its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServerKind {
    AvgM { beta: f32 },
    Adagrad,
    Adam { beta1: f32, beta2: f32 },
    Yogi { beta1: f32, beta2: f32 },
}

impl ServerKind {
    pub fn name(&self) -> &'static str {
        match self {
            ServerKind::AvgM { .. } => "fedavgm",
            ServerKind::Adagrad => "fedadagrad",
            ServerKind::Adam { .. } => "fedadam",
            ServerKind::Yogi { .. } => "fedyogi",
        }
    }

    /// The kind called `name` with the paper's usual hyperparameters (β = 0.9; β₁ = 0.9, β₂ = 0.99).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "fedavgm" => ServerKind::AvgM { beta: 0.9 },
            "fedadagrad" => ServerKind::Adagrad,
            "fedadam" => ServerKind::Adam { beta1: 0.9, beta2: 0.99 },
            "fedyogi" => ServerKind::Yogi { beta1: 0.9, beta2: 0.99 },
            _ => return None,
        })
    }
}

pub struct ServerOpt {
    pub kind: ServerKind,
    pub lr: f32,
    pub tau: f32,
    inner: Box<dyn Rule>,
    m: Vec<f32>,
    v: Vec<f32>,
    delta: Vec<f32>,
    rounds: u64,
}

impl ServerOpt {
    /// A server optimizer stepping on what `inner` (usually fedavg) makes of the updates.
    pub fn new(kind: ServerKind, lr: f32, tau: f32, inner: Box<dyn Rule>) -> Result<Self, RuleError> {
        let err = |detail: String| RuleError::Precondition { rule: kind.name(), detail };
        if !(lr.is_finite() && lr > 0.0) {
            return Err(err(format!("the server learning rate must be positive, got {lr}")));
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(err(format!("tau must be positive, got {tau}")));
        }
        let betas = match kind {
            ServerKind::AvgM { beta } => vec![beta],
            ServerKind::Adagrad => vec![],
            ServerKind::Adam { beta1, beta2 } | ServerKind::Yogi { beta1, beta2 } => vec![beta1, beta2],
        };
        if let Some(b) = betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
            return Err(err(format!("betas must be in [0, 1), got {b}")));
        }
        Ok(Self { kind, lr, tau, inner, m: Vec::new(), v: Vec::new(), delta: Vec::new(), rounds: 0 })
    }

    /// Rounds stepped so far (including those restored with [`ServerOpt::restore`]).
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The state to carry to the next round: `(name, values)` pairs, empty before the first round.
    pub fn state(&self) -> Vec<(&'static str, &[f32])> {
        let mut s = Vec::new();
        if !self.m.is_empty() {
            s.push(("m", &self.m[..]));
        }
        if !self.v.is_empty() {
            s.push(("v", &self.v[..]));
        }
        s
    }

    /// Restores state saved from [`ServerOpt::state`] after `rounds` rounds.
    pub fn restore(&mut self, rounds: u64, state: &[(&str, Vec<f32>)]) -> Result<(), RuleError> {
        for (name, values) in state {
            match *name {
                "m" if self.uses_m() => self.m = values.clone(),
                "v" if self.uses_v() => self.v = values.clone(),
                other => {
                    return Err(RuleError::Precondition {
                        rule: self.kind.name(),
                        detail: format!("state `{other}` does not belong to this optimizer"),
                    });
                }
            }
        }
        if self.uses_m() && self.uses_v() && self.m.len() != self.v.len() {
            return Err(RuleError::Precondition {
                rule: self.kind.name(),
                detail: format!("state lengths differ (m {}, v {})", self.m.len(), self.v.len()),
            });
        }
        self.rounds = rounds;
        Ok(())
    }

    fn uses_m(&self) -> bool {
        !matches!(self.kind, ServerKind::Adagrad)
    }

    fn uses_v(&self) -> bool {
        !matches!(self.kind, ServerKind::AvgM { .. })
    }

    fn state_len(&self) -> Option<usize> {
        [&self.m, &self.v].into_iter().find(|s| !s.is_empty()).map(Vec::len)
    }
}

impl Rule for ServerOpt {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn check(&self, n: usize) -> Result<(), RuleError> {
        self.inner.check(n)
    }

    fn check_len(&self, len: usize) -> Result<(), RuleError> {
        match self.state_len() {
            Some(have) if have != len => Err(RuleError::Precondition {
                rule: self.kind.name(),
                detail: format!("its state is for {have} parameters, the updates have {len}"),
            }),
            _ => Ok(()),
        }
    }

    fn combine(&mut self, valid: &[Update], out: &mut [f32]) -> Result<(), RuleError> {
        let p = out.len();
        self.delta.resize(p, 0.0);
        self.inner.combine(valid, &mut self.delta)?;
        let tau2 = self.tau * self.tau;
        if self.uses_m() && self.m.len() != p {
            self.m = vec![0.0; p];
        }
        if self.uses_v() && self.v.len() != p {
            self.v = vec![tau2; p];
        }
        let (lr, tau) = (self.lr, self.tau);
        let (m, v, delta) = (&mut self.m, &mut self.v, &self.delta);
        // Plain loops over equal-length slices: the compiler vectorizes them (no gathers, no branches
        // but the select of `signum`), and a server step is memory-bound either way.
        match self.kind {
            ServerKind::AvgM { beta } => {
                for ((o, m), &d) in out.iter_mut().zip(m.iter_mut()).zip(delta) {
                    *m = beta * *m + d;
                    *o = lr * *m;
                }
            }
            ServerKind::Adagrad => {
                for ((o, v), &d) in out.iter_mut().zip(v.iter_mut()).zip(delta) {
                    *v += d * d;
                    *o = lr * d / (v.sqrt() + tau);
                }
            }
            ServerKind::Adam { beta1, beta2 } => {
                for (((o, m), v), &d) in out.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(delta) {
                    *m = beta1 * *m + (1.0 - beta1) * d;
                    *v = beta2 * *v + (1.0 - beta2) * d * d;
                    *o = lr * *m / (v.sqrt() + tau);
                }
            }
            ServerKind::Yogi { beta1, beta2 } => {
                for (((o, m), v), &d) in out.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(delta) {
                    let d2 = d * d;
                    *m = beta1 * *m + (1.0 - beta1) * d;
                    *v -= (1.0 - beta2) * d2 * sign(*v - d2);
                    *o = lr * *m / (v.sqrt() + tau);
                }
            }
        }
        self.rounds += 1;
        Ok(())
    }

    fn selected(&self) -> Option<&[usize]> {
        self.inner.selected()
    }
}

/// sign(x) with sign(0) = 0, as Yogi defines it (`f32::signum` gives ±1 at ±0).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}
