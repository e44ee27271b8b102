//! shoal: distributed training for CPU clusters.
//!
//! # Why this crate exists
//!
//! This is the package users run: the `shoal` binary with its roles and jobs, the configuration, and the
//! data loaders. It wires the other crates together and owns nothing they own: kernels and layers are in
//! `shoal-engine`, messages and transport in `shoal-bus`, the rule plugin ABI in `shoal-plugins`. Keeping
//! the edges here (files, processes, the command line) is what lets those crates stay pure and testable.
//!
//! Errors are typed per module (`thiserror`); the binary reports them in one line with context (`anyhow`).

pub mod aggregate;
pub mod data;
pub mod demo;
pub mod exchange;
pub mod federated;
pub mod info;
pub mod inspect;
