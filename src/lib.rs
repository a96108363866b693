//! unitgen: a YAML spec of backup jobs becomes fleet/systemd `.service` +
//! `.timer` pairs, each running `unitgen-runner` with the job's steps.
//!
//! - [`generate`]: spec -> unit files (read, decode, validate, render, write).
//! - [`contract`]: what the generator writes and the runner reads: each
//!   step's fields and rules, judged by the same code on both sides.
//! - [`runner`]: `unitgen-runner`, which performs the steps.
//! - [`cmd`]: the `unitgen` command line (the edge: flags, I/O, exit codes).
//! - [`deploy`]: `plan` and `apply`: the rendered units onto fleet or a host.
//! - [`etcd`]: the one etcd client, for values, watches and secrets.
//! - [`schedule`]: systemd calendar expressions and cron conversion.
//! - [`diag`] and [`error`]: problems, messages and exit codes.
//!
//! See ARCHITECTURE.md for where each kind of rule lives.

pub mod cmd;
pub mod contract;
pub mod deploy;
pub mod diag;
pub mod error;
pub mod etcd;
pub mod generate;
pub mod runner;
pub mod schedule;
