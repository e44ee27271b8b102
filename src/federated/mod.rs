//! Job 1: federated shared-encoder generation (patent US20210209417A1).
//!
//! # How the job runs
//!
//! The master broadcasts an instruction naming the encoder's type, architecture and training settings.
//! Each child picks, from what it holds, the samples of that type and answers with a confirmation (its
//! sample count) or a decline (why). The master sends the initial parameters only to confirmed children
//! (a fraction C of them each round, as in FedAvg); each trains the encoder plus a head of its own for
//! E local epochs and returns the encoder alone. The master merges the returned encoders with the
//! configured rule (any built-in, or a plugin) into the next shared encoder, commits it to its parameter
//! store with the round number, and goes on. A master restarted after a crash resumes from the last
//! committed round.
//!
//! The roles only speak in messages over ZeroMQ (`wire.rs`): the same code runs embedded (every role a
//! thread of one process, over inproc) and as separate processes over ipc or tcp.
//!
//! - [`config`]: the job file, checked field by field;
//! - [`partition`]: how the training set is split over children (IID, label shards, Dirichlet);
//! - [`master`] and [`child`]: the two roles;
//! - [`local`]: the embedded run (master + children as threads);
//! - [`report`]: per-round statistics, JSON/CSV, and the plot;
//! - [`settings`]: what a run computes depends on, recorded so a resumed run is the same run.

pub mod child;
pub mod config;
pub mod data;
pub mod local;
pub mod master;
pub mod partition;
pub mod report;
pub mod security;
pub mod settings;
pub mod wire;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("{op}: {cause}")]
    Zmq { op: &'static str, cause: zmq::Error },
    #[error(transparent)]
    Transport(#[from] shoal_bus::transport::TransportError),
    #[error(transparent)]
    Engine(#[from] shoal_engine::EngineError),
    #[error(transparent)]
    Store(#[from] shoal_engine::store::StoreError),
    #[error(transparent)]
    Rule(#[from] shoal_plugins::registry::BuildError),
    #[error("aggregation failed: {0}")]
    Aggregate(#[from] shoal_engine::rules::RuleError),
    #[error("{stage}: {got} children, the quorum (training.min_children) is {need}")]
    Quorum { stage: &'static str, got: usize, need: usize },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    #[error(transparent)]
    Export(#[from] crate::exchange::ExchangeError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Security(#[from] shoal_bus::security::SecurityError),
    #[error("child {id} failed: {detail}")]
    Child { id: u32, detail: String },
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
}

pub use config::JobConfig;
pub use local::run_local;
pub use report::{JobReport, RoundStats};
