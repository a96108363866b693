//! The runner's command line, which the generator writes into the unit and
//! `unitgen-runner` parses: the flag names (shared with the runner's clap
//! definitions in `runner/mod.rs`), how the runner reaches etcd, and the
//! order of the arguments.

use super::lock::JobLock;
use super::{RunnerStep, Violation};
use crate::diag::{KeyPath, shown};

// Flag names, without their leading `--`.
pub const JOB: &str = "job";
pub const STEP: &str = "step";
pub const DRY_RUN: &str = "dry-run";
pub const ETCD_ENDPOINT: &str = "etcd-endpoint";
pub const ETCD_CA_FILE: &str = "etcd-ca-file";
pub const ETCD_CERT_FILE: &str = "etcd-cert-file";
pub const ETCD_KEY_FILE: &str = "etcd-key-file";
pub const ETCD_USER: &str = "etcd-user";
pub const ETCD_PASSWORD_FILE: &str = "etcd-password-file";
pub const ETCD_TIMEOUT: &str = "etcd-timeout";
/// The job's lock as JSON ([`JobLock`]).
pub const LOCK: &str = "lock";
/// Where host locks live inside the container; the generator never writes
/// it (the default is the folder the unit mounts there), tests do.
pub const LOCK_DIR: &str = "lock-dir";

/// How the runner reaches etcd from inside its container (the spec's
/// `etcd.runner`, whose endpoints default to `etcd.endpoints`). Paths are
/// inside the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
}

impl RunnerEtcd {
    /// The rules, with fields named as in the spec's `etcd.runner`.
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        for (i, url) in self.endpoints.iter().enumerate() {
            if let Err(e) = super::url::check_http(url) {
                out.push(Violation::at_path(
                    KeyPath::root().key("endpoints").index(i),
                    e,
                ));
            }
        }
        let tls = KeyPath::root().key("tls");
        for (path, file) in [
            (tls.key("ca_file"), &self.ca_file),
            (tls.key("cert_file"), &self.cert_file),
            (tls.key("key_file"), &self.key_file),
            (KeyPath::root().key("password_file"), &self.password_file),
        ] {
            if let Some(f) = file
                && !f.starts_with('/')
            {
                out.push(Violation::at_path(
                    path,
                    format!(
                        "`{}` must be an absolute path inside the runner's container (mount it with `container.volumes`)",
                        shown(f)
                    ),
                ));
            }
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            out.push(Violation::at_path(
                tls,
                "a client certificate needs both `cert_file` and `key_file`",
            ));
        }
        out
    }

    /// `(flag, value)` pairs, endpoints first.
    pub fn args(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = self
            .endpoints
            .iter()
            .map(|e| (ETCD_ENDPOINT, e.clone()))
            .collect();
        let optional = [
            (ETCD_CA_FILE, &self.ca_file),
            (ETCD_CERT_FILE, &self.cert_file),
            (ETCD_KEY_FILE, &self.key_file),
            (ETCD_PASSWORD_FILE, &self.password_file),
            (ETCD_USER, &self.username),
        ];
        out.extend(
            optional
                .into_iter()
                .filter_map(|(flag, v)| v.clone().map(|v| (flag, v))),
        );
        out
    }
}

/// A whole job for the runner.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub job: String,
    /// Present when a step reads a secret, or the lock is in etcd.
    pub etcd: Option<RunnerEtcd>,
    /// Held around all steps.
    pub lock: Option<JobLock>,
    pub steps: Vec<RunnerStep>,
}

impl Invocation {
    /// Whether any step reads a secret from etcd.
    pub fn reads_etcd(steps: &[RunnerStep]) -> bool {
        steps.iter().any(|s| !s.secrets().is_empty())
    }

    /// The arguments after the runner's path, in groups that belong on one
    /// line when a unit spreads the command over several: the job, each
    /// etcd setting, the lock, then one step per group, so a review diff
    /// shows which step changed.
    pub fn arg_groups(&self) -> Vec<Vec<String>> {
        let flag = |f: &str| format!("--{f}");
        let mut groups = vec![vec![flag(JOB), self.job.clone()]];
        if let Some(etcd) = &self.etcd {
            for (f, v) in etcd.args() {
                groups.push(vec![flag(f), v]);
            }
        }
        if let Some(lock) = &self.lock {
            let json = serde_json::to_string(lock).expect("a lock serializes");
            groups.push(vec![flag(LOCK), json]);
        }
        for step in &self.steps {
            let json = serde_json::to_string(step).expect("runner steps serialize");
            groups.push(vec![flag(STEP), json]);
        }
        groups
    }
}
