//! The runner's log: one line per event on stderr, journald-friendly.
//!
//! Inside its container the runner's stderr reaches the journal through
//! `docker run`, which systemd started; systemd reads a `<N>` syslog
//! priority prefix at the start of each line (`SyslogLevelPrefix=`, on by
//! default), so errors show red in `journalctl` and `-p err` finds them.
//! The unit passes `JOURNAL_STREAM` into the container (`--env
//! JOURNAL_STREAM`); without it (a terminal) lines carry no prefix.
//!
//! Nothing here ever receives a secret: callers format only keys, ids and
//! error texts that were built without secret values.

use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

fn journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty()))
}

/// Formats one log line (without the trailing newline). Line breaks inside
/// `message` (an error text from a server) are flattened, so one event is
/// always one journal entry.
pub fn line(level: Level, journal: bool, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 4);
    if journal {
        out.push_str(&format!("<{}>", level as u8));
    } else if level == Level::Error {
        out.push_str("error: ");
    } else if level == Level::Warning {
        out.push_str("warning: ");
    }
    for c in message.chars() {
        match c {
            '\n' | '\r' => out.push_str(" | "),
            c if c.is_control() && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

pub fn log(level: Level, message: impl Display) {
    let text = line(level, journal(), &message.to_string());
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

pub fn info(message: impl Display) {
    log(Level::Info, message);
}

pub fn warn(message: impl Display) {
    log(Level::Warning, message);
}

pub fn error(message: impl Display) {
    log(Level::Error, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_one_line() {
        assert_eq!(line(Level::Error, true, "a\nb\r\nc"), "<3>a | b |  | c");
        assert_eq!(line(Level::Info, true, "ok"), "<6>ok");
        assert_eq!(line(Level::Error, false, "bad"), "error: bad");
        assert_eq!(line(Level::Info, false, "x\u{1b}[2J"), "x?[2J");
    }
}
