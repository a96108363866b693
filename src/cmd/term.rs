//! What `unitgen` prints besides its results, and how: the level of each
//! line on stderr (`-q`, `-v`), colour on a terminal (`--color`,
//! `NO_COLOR`), and a closed standard output.
//!
//! Levels: an error always prints (`report.rs`), so does a warning; an
//! informational line (validate's `ok`, `removed PATH`, watch's notes)
//! unless `-q`; a debugging line (the etcd endpoints contacted, the keys
//! read, timings, the files written) only with `-v`. Every such line goes
//! through [`info`], [`debug`] or [`warn`], so the flags mean the same in
//! every command.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::error::Error;

/// How much goes to stderr besides errors and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// `-q`: errors and warnings only.
    Quiet = 0,
    /// The default: also what a command did (`ok`, `removed PATH`).
    Normal = 1,
    /// `-v`: also what helps debugging.
    Verbose = 2,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Normal as u8);
static COLOR: AtomicBool = AtomicBool::new(false);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn level() -> Level {
    match LEVEL.load(Ordering::Relaxed) {
        0 => Level::Quiet,
        1 => Level::Normal,
        _ => Level::Verbose,
    }
}

fn line(text: &str) {
    let _ = writeln!(
        std::io::stderr().lock(),
        "{}",
        crate::diag::escape_controls(text)
    );
}

/// What a command did, for a person (`-q` drops it).
pub fn info(message: impl Display) {
    if level() >= Level::Normal {
        line(&message.to_string());
    }
}

/// What helps find out why (`-v` adds it). Never a secret's value: callers
/// pass keys, endpoints, paths and timings only.
pub fn debug(message: impl Display) {
    if level() >= Level::Verbose {
        line(&message.to_string());
    }
}

/// How long since `start`, for `-v` lines: `850ms`, `2.31s`.
pub fn elapsed(start: std::time::Instant) -> String {
    let d = start.elapsed();
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Something that is not an error but needs attention: always printed.
pub fn warn(message: impl Display) {
    line(&format!("warning: {message}"));
}

/// Colour on or off for this run: `always` and `never` as said; `auto`
/// when standard output is a terminal, `NO_COLOR` is unset or empty
/// (no-color.org) and `TERM` is not `dumb`.
pub fn set_color(choice: clap::ColorChoice) {
    let on = match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => auto_color(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
            std::io::stdout().is_terminal(),
        ),
    };
    COLOR.store(on, Ordering::Relaxed);
}

fn auto_color(
    no_color: Option<&std::ffi::OsStr>,
    term: Option<&std::ffi::OsStr>,
    tty: bool,
) -> bool {
    tty && no_color.is_none_or(|v| v.is_empty()) && term.is_none_or(|t| t != "dumb")
}

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";

/// A unified diff, coloured as `git diff` does when colour is on: file
/// headers bold, hunk headers cyan, removed lines red, added lines green.
pub fn diff(text: &str) -> std::borrow::Cow<'_, str> {
    if !COLOR.load(Ordering::Relaxed) {
        return text.into();
    }
    color_diff(text).into()
}

fn color_diff(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let style = if body.starts_with("--- ") || body.starts_with("+++ ") {
            Some(BOLD)
        } else if body.starts_with("@@") {
            Some(CYAN)
        } else if body.starts_with('-') {
            Some(RED)
        } else if body.starts_with('+') {
            Some(GREEN)
        } else {
            None
        };
        match style {
            Some(s) => {
                out.push_str(s);
                out.push_str(body);
                out.push_str(RESET);
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The error for a failed write to standard output. A closed pipe
/// (`unitgen render --stdout | head -1`) is not a failure to report: the
/// reader has all it wanted, and [`closed_pipe_exit`] ends the process
/// as a Unix tool would.
pub fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Error::ClosedPipe
    } else {
        Error::io("stdout")(e)
    }
}

/// Ends the process as SIGPIPE ends `cat` or `grep`: quietly, with the
/// status a shell shows as 141. Rust ignores SIGPIPE (so that writes
/// return EPIPE instead of killing the process mid-work); by the time a
/// command gets here it has finished or abandoned its work, so the
/// default action is restored and the signal raised. Should it be blocked,
/// the process exits with 141 instead.
pub fn closed_pipe_exit() -> i32 {
    // SAFETY: resetting a signal's disposition and raising it on this
    // thread touch no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    128 + libc::SIGPIPE
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_follows_no_color_the_terminal_and_term() {
        assert!(auto_color(None, Some(OsStr::new("xterm")), true));
        assert!(auto_color(Some(OsStr::new("")), None, true));
        assert!(!auto_color(Some(OsStr::new("1")), None, true));
        assert!(!auto_color(None, None, false));
        assert!(!auto_color(None, Some(OsStr::new("dumb")), true));
    }

    #[test]
    fn diffs_are_coloured_line_by_line() {
        let diff = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n same\n";
        assert_eq!(
            color_diff(diff),
            "\x1b[1m--- a/x\x1b[0m\n\x1b[1m+++ b/x\x1b[0m\n\x1b[36m@@ -1 +1 @@\x1b[0m\n\
             \x1b[31m-old\x1b[0m\n\x1b[32m+new\x1b[0m\n same\n"
        );
    }

    #[test]
    fn a_closed_pipe_is_its_own_error() {
        let e = stdout_error(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(matches!(e, Error::ClosedPipe));
        let e = stdout_error(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(matches!(e, Error::Io { .. }));
    }
}
