//! A real SMTP server (PyPI `aiosmtpd`, run by `smtpd.py`) on a random
//! loopback port, stopped on drop; each accepted message as it arrived.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/smtpd.py");

/// One message the server accepted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// Headers and body as sent (after the server undid dot-stuffing).
    pub data: String,
    /// The AUTH login, when the client logged in.
    pub login: Option<String>,
}

impl Received {
    /// A header's value (the first with that name).
    pub fn header(&self, name: &str) -> Option<String> {
        let (headers, _) = self.data.split_once("\r\n\r\n")?;
        headers.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.to_owned())
        })
    }

    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Options {
    /// STARTTLS required, with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// TLS from the first byte (`smtps://`), with this certificate and key.
    pub smtps: Option<(PathBuf, PathBuf)>,
    /// AUTH required: user and password.
    pub auth: Option<(String, String)>,
    /// The address to listen on (default 127.0.0.1), e.g. the docker0
    /// address for containers on the default bridge.
    pub host: Option<String>,
}

pub struct Smtpd {
    pub port: u16,
    host: String,
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Smtpd {
    pub fn start() -> Smtpd {
        Smtpd::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Smtpd {
        // A port taken by someone else between the pick and the bind fails
        // the start: pick another (see `free_port`).
        for _ in 0..5 {
            if let Some(s) = Smtpd::try_start(&options) {
                return s;
            }
        }
        panic!("aiosmtpd did not start in 5 tries (pip install aiosmtpd)");
    }

    fn try_start(options: &Options) -> Option<Smtpd> {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let port = super::free_port();
        let host = options.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        let mut cmd = Command::new("python3");
        cmd.arg(SCRIPT).arg(&out).arg(&host).arg(port.to_string());
        if let Some((cert, key)) = &options.tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        if let Some((cert, key)) = &options.smtps {
            cmd.arg("--smtps").arg(cert).arg(key);
        }
        if let Some((user, password)) = &options.auth {
            cmd.args(["--auth", user, password]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run python3 (with PyPI aiosmtpd)");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(Smtpd {
            port,
            host,
            child,
            out,
            _dir: dir,
        })
    }

    pub fn url(&self) -> String {
        format!("smtp://{}:{}", self.host, self.port)
    }

    /// Every message accepted so far.
    pub fn received(&self) -> Vec<Received> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a smtpd.py line"))
            .collect()
    }

    /// Waits until `n` messages arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                started.elapsed() < timeout,
                "the SMTP server received {} of {n} messages within {timeout:?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
