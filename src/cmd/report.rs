//! How `unitgen` reports errors: one line per problem on stderr, in the
//! `file:line:col: path: message` form editors and CI logs link to.

use std::io::Write;

use crate::error::Error;

/// Above this many problems, a count follows them (they scroll away).
const SCREENFUL: usize = 20;

pub fn report(e: &Error) {
    let mut err = std::io::stderr().lock();
    match e {
        Error::Invalid(problems) => {
            for p in problems {
                let _ = writeln!(err, "error: {p}");
            }
            if problems.len() > SCREENFUL {
                let file = problems.first().map_or("the spec", |p| p.file.as_str());
                let _ = writeln!(
                    err,
                    "error: {} problems in {}",
                    problems.len(),
                    crate::diag::escape_controls(file)
                );
            }
        }
        Error::Deploy { lines, detail } => {
            for line in lines {
                let _ = writeln!(err, "error: {}", crate::diag::escape_controls(line));
            }
            for line in detail {
                let _ = writeln!(err, "  {}", crate::diag::escape_controls(line));
            }
        }
        other => {
            let _ = writeln!(
                err,
                "error: {}",
                crate::diag::escape_controls(&other.to_string())
            );
        }
    }
}

/// [`report`] for tools (`--format json`): one JSON object per problem and
/// line on stdout, in the form [`crate::diag::ProblemJson`] documents; an
/// error about no place in the spec is one object with `file: null`.
pub fn report_json(e: &Error) {
    fn line(out: &mut impl Write, p: &crate::diag::ProblemJson) {
        let _ = serde_json::to_writer(&mut *out, p);
        let _ = writeln!(out);
    }
    let mut out = std::io::stdout().lock();
    match e {
        Error::Invalid(problems) => problems.iter().for_each(|p| line(&mut out, &p.json())),
        Error::Silent(_) => {}
        other => {
            let message = other.to_string();
            line(
                &mut out,
                &crate::diag::ProblemJson {
                    file: None,
                    line: None,
                    column: None,
                    path: None,
                    kind: match other {
                        Error::Etcd(_) => Some(crate::diag::Kind::Etcd),
                        Error::Output { .. } => Some(crate::diag::Kind::Output),
                        _ => None,
                    },
                    message: &message,
                    hint: None,
                },
            )
        }
    }
    let _ = out.flush();
}

/// A note from a long-running command (`watch`), one line; informational
/// (`-q` drops it, see `term.rs`).
pub fn note(command: &str, message: impl std::fmt::Display) {
    crate::cmd::term::info(format_args!("unitgen {command}: {message}"));
}
