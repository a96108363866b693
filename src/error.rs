//! One error type for the library; `code()` maps it to the CLI's exit status.

use std::path::PathBuf;

pub use crate::diag::Problem;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec has problems; each is printed on its own line.
    #[error("{} problem(s) in the spec", .0.len())]
    Invalid(Vec<Problem>),
    #[error("cannot read the spec {}: {source}", path.display())]
    ReadSpec {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the values file {}: {message}", path.display())]
    ReadValues { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Rendering would write a file where something else stands.
    #[error("{}: {message}", path.display())]
    Output { path: PathBuf, message: String },
    /// `render --check` found differences (the diff is already printed).
    #[error("{0}")]
    Drift(String),
    /// A command-line value is unusable.
    #[error("{0}")]
    Usage(String),
    /// etcd could not answer (unreachable, TLS, auth, timeout).
    #[error("{0}")]
    Etcd(#[from] crate::etcd::EtcdError),
    /// `plan` or `apply` could not go on: one line per problem, then the
    /// output of the tool that failed (fleetctl, systemctl), indented.
    #[error("{}", lines.join("; "))]
    Deploy {
        lines: Vec<String>,
        detail: Vec<String>,
    },
    /// Standard output was closed by its reader (`| head`): not reported;
    /// the process ends as a SIGPIPE would end it (`cmd::term`).
    #[error("standard output was closed")]
    ClosedPipe,
    /// Already reported (on stdout or stderr); exit with this status.
    #[error("exit status {0}")]
    Silent(i32),
    /// A template failed: always a bug in unitgen, never the user's input.
    #[error(
        "internal error rendering {template}: {message}; this is a bug in unitgen, please report it"
    )]
    Template {
        template: &'static str,
        message: String,
    },
}

impl Error {
    /// Exit status: 1 for failures and drift, 2 for usage errors and invalid specs.
    pub fn code(&self) -> i32 {
        match self {
            Error::Silent(code) => *code,
            Error::Invalid(_) | Error::ReadSpec { .. } | Error::ReadValues { .. } => 2,
            Error::Etcd(crate::etcd::EtcdError::Config(_)) | Error::Usage(_) => 2,
            Error::Etcd(_) => 1,
            Error::Io { .. } | Error::Output { .. } | Error::Drift(_) | Error::Template { .. } => 1,
            Error::Deploy { .. } => 1,
            // What a shell shows for a process killed by SIGPIPE.
            Error::ClosedPipe => 141,
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
