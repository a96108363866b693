//! `unitgen-runner`: runs one job's steps inside its container.
//!
//! The unit is the only thing fleet ships, so the runner takes its whole
//! job from its command line (one JSON object per `--step`, see
//! [`crate::job`]); secrets are read from etcd at run time and live only in
//! [`crate::secret::SecretString`]s.

pub mod ebs;
pub mod log;
pub mod retention;
pub mod rpc;

/// Entry point of the `unitgen-runner` binary; returns the exit status.
pub fn main() -> i32 {
    todo!("runner entry point")
}
