//! The contract between `unitgen` (the generator) and `unitgen-runner`.
//!
//! The unit is the only thing fleet ships, so it carries the whole job: the
//! runner's command line (see [`invocation`]) holds one JSON object per
//! step ([`RunnerStep`]). Each step's fields and rules live here, in one
//! file per step, and both sides judge a step with the same
//! [`RunnerStep::check`]: the generator before it writes a unit (so render
//! refuses what the runner would refuse, at the spec's key), the runner
//! before it runs anything (exit 2).
//!
//! Values here are resolved, and secrets appear only as etcd keys. The
//! generator may not know every value (an etcd reference checked offline,
//! or while etcd is unreachable), so step types are generic over their text
//! ([`Text`]): the runner's `String`, or the generator's [`Maybe`]. A rule
//! on a value that is not known yet is skipped, never guessed.
//!
//! To add a step: a file here with its type, `check` and field names as
//! users write them; a variant in [`RunnerStep`]; the spec mirror in
//! `generate/spec.rs` and its resolution in `generate/validate/steps.rs`;
//! the runner's implementation in `runner/`.

pub mod aws;
pub mod copy;
pub mod ebs;
pub mod invocation;
pub mod lock;
pub mod notify;
pub mod retention;
pub mod rpc;
pub mod s3;
pub mod secret;
pub mod timespan;
pub mod url;

use serde::{Deserialize, Serialize};

use crate::diag::KeyPath;

pub use copy::CopyJob;
pub use ebs::SnapshotJob;
pub use rpc::RpcCall;
pub use s3::{LifecycleJob, SyncJob};

/// A rule a step breaks: the field (as users write it in the spec,
/// relative to the step) and why. Never holds a secret's value: steps hold
/// only the keys of their secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: KeyPath,
    pub message: String,
    /// Whether the problem is the key itself (a reserved name, a missing
    /// companion key) rather than its value: the generator points there.
    pub about_key: bool,
}

impl Violation {
    /// A problem with the value of `field`.
    pub fn at(field: &str, message: impl Into<String>) -> Self {
        Violation::at_path(KeyPath::root().key(field), message)
    }

    pub fn at_path(field: KeyPath, message: impl Into<String>) -> Self {
        Violation {
            field,
            message: message.into(),
            about_key: false,
        }
    }

    /// A problem with the key `field` itself.
    pub fn at_key(field: KeyPath, message: impl Into<String>) -> Self {
        Violation {
            about_key: true,
            ..Violation::at_path(field, message)
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_root() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

/// A step's text value: known (always, in the runner) or not known yet.
pub trait Text {
    fn known(&self) -> Option<&str>;
}

impl Text for String {
    fn known(&self) -> Option<&str> {
        Some(self)
    }
}

/// A value as the generator has it: known, or not known yet (an etcd
/// reference that was not read, or whose reading already failed and was
/// reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Maybe {
    Known(String),
    Unknown,
}

impl Text for Maybe {
    fn known(&self) -> Option<&str> {
        match self {
            Maybe::Known(s) => Some(s),
            Maybe::Unknown => None,
        }
    }
}

impl Maybe {
    pub fn into_known(self) -> Option<String> {
        match self {
            Maybe::Known(s) => Some(s),
            Maybe::Unknown => None,
        }
    }
}

/// One step of a job, as the runner receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "snake_case",
    deny_unknown_fields,
    bound(deserialize = "S: Deserialize<'de>")
)]
pub enum RunnerStep<S = String> {
    Rpc(RpcCall<S>),
    EbsSnapshot(SnapshotJob<S>),
    Copy(CopyJob<S>),
    S3Sync(SyncJob<S>),
    S3Lifecycle(LifecycleJob<S>),
}

/// A secret a step reads from etcd at run time: its key, and what it is
/// for (in messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKey {
    pub key: String,
    /// The step field the secret belongs to, as users write it.
    pub field: KeyPath,
}

impl<S: Text> RunnerStep<S> {
    /// The step's kind, as the spec spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            RunnerStep::Rpc(_) => "rpc",
            RunnerStep::EbsSnapshot(_) => "ebs_snapshot",
            RunnerStep::Copy(_) => "copy",
            RunnerStep::S3Sync(_) => "s3_sync",
            RunnerStep::S3Lifecycle(_) => "s3_lifecycle",
        }
    }

    /// Every rule the step breaks; empty when the runner can run it.
    pub fn check(&self) -> Vec<Violation> {
        match self {
            RunnerStep::Rpc(s) => s.check(),
            RunnerStep::EbsSnapshot(s) => s.check(),
            RunnerStep::Copy(s) => s.check(),
            RunnerStep::S3Sync(s) => s.check(),
            RunnerStep::S3Lifecycle(s) => s.check(),
        }
    }

    /// The etcd keys of the secrets the step reads at run time.
    pub fn secrets(&self) -> Vec<SecretKey> {
        match self {
            RunnerStep::Rpc(s) => s.secrets(),
            RunnerStep::EbsSnapshot(s) => s.secrets(),
            RunnerStep::Copy(_) => Vec::new(),
            RunnerStep::S3Sync(s) => s.secrets(),
            RunnerStep::S3Lifecycle(s) => s.secrets(),
        }
    }
}

impl RunnerStep<String> {
    /// A short name for logs: the kind and its subject.
    pub fn label(&self) -> String {
        match self {
            RunnerStep::Rpc(rpc) => format!("rpc {}", rpc.method),
            RunnerStep::EbsSnapshot(s) => format!("ebs_snapshot {}", s.volume_id),
            RunnerStep::Copy(s) => format!("copy {}", s.source),
            RunnerStep::S3Sync(s) => format!("s3_sync {}", s.url()),
            RunnerStep::S3Lifecycle(s) => format!("s3_lifecycle s3://{}", s.bucket),
        }
    }
}

impl RunnerStep<Maybe> {
    /// The step with every value known, ready for the unit; `None` if a
    /// value is not known.
    pub fn into_known(self) -> Option<RunnerStep> {
        match self {
            RunnerStep::Rpc(s) => s.into_known().map(RunnerStep::Rpc),
            RunnerStep::EbsSnapshot(s) => s.into_known().map(RunnerStep::EbsSnapshot),
            RunnerStep::Copy(s) => s.into_known().map(RunnerStep::Copy),
            RunnerStep::S3Sync(s) => s.into_known().map(RunnerStep::S3Sync),
            RunnerStep::S3Lifecycle(s) => s.into_known().map(RunnerStep::S3Lifecycle),
        }
    }
}
