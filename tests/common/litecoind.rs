//! Starts a real litecoind for the tests; stopped on drop.
//!
//! Litecoin Core 0.21 is a Bitcoin Core fork with the same RPC server, so it
//! stands in for bitcoind. Each node runs in regtest on a random loopback
//! port with its own temp data folder. A missing binary or a node that does
//! not start is a panic: these tests fail, they never skip.
//!
//! The harness talks to the node through its own tiny HTTP client, not the
//! code under test, so setup cannot hide a bug in the runner.

use super::free_port;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub const BINARY: &str = "/usr/lib/litecoin/litecoind";
pub const USER: &str = "u";
pub const PASSWORD: &str = "p";

const START_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// `-rpcuser=u -rpcpassword=p`.
    Password,
    /// No rpcuser/rpcpassword: the node writes `regtest/.cookie`.
    Cookie,
}

pub struct Litecoind {
    child: Child,
    port: u16,
    auth: Auth,
    // Dropped after the process is killed (Drop::drop runs first).
    datadir: tempfile::TempDir,
}

/// An error the node answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcFailure {
    pub http_status: u16,
    pub code: Option<i64>,
    pub message: String,
}

impl Litecoind {
    /// A node with `-rpcuser=u -rpcpassword=p` ([`USER`], [`PASSWORD`]).
    pub fn start() -> Litecoind {
        Self::start_with(Auth::Password)
    }

    /// A node without rpcuser/rpcpassword, so it authenticates with the
    /// cookie file at [`Litecoind::cookie_path`].
    pub fn start_with_cookie() -> Litecoind {
        Self::start_with(Auth::Cookie)
    }

    fn start_with(auth: Auth) -> Litecoind {
        assert!(
            Path::new(BINARY).exists(),
            "{BINARY} is missing: these tests need a real node (apt-get install litecoind); \
             they never pass without it"
        );
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(auth) {
                Ok(node) => return node,
                // Another process took the port between our probe and the
                // node's bind: try again on a fresh one.
                Err(Failure::PortClash(log)) => last_failure = log,
                Err(Failure::Fatal(message)) => panic!("{message}"),
            }
        }
        panic!(
            "litecoind could not bind an RPC port in {START_ATTEMPTS} attempts; last log:\n{last_failure}"
        )
    }

    fn try_start(auth: Auth) -> Result<Litecoind, Failure> {
        let datadir = tempfile::Builder::new()
            .prefix("unitgen-litecoind")
            .tempdir()
            .expect("temp data folder");
        let port = free_port();
        let stderr = File::create(datadir.path().join("stderr.txt")).expect("stderr file");
        let mut cmd = Command::new(BINARY);
        cmd.arg("-regtest")
            .arg(format!("-datadir={}", datadir.path().display()))
            .arg("-rpcbind=127.0.0.1")
            .arg("-rpcallowip=127.0.0.1")
            .arg(format!("-rpcport={port}"))
            .args([
                "-listen=0",
                "-server=1",
                "-printtoconsole=0",
                "-daemon=0",
                // No peers and no network probing: the node stays local.
                "-connect=0",
                "-dnsseed=0",
                "-discover=0",
                "-upnp=0",
                "-fallbackfee=0.0002",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if auth == Auth::Password {
            cmd.arg(format!("-rpcuser={USER}"))
                .arg(format!("-rpcpassword={PASSWORD}"));
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BINARY}: {e}"));
        let mut node = Litecoind {
            child,
            port,
            auth,
            datadir,
        };
        node.wait_ready()?;
        Ok(node)
    }

    /// Polls `getblockchaininfo` until the RPC server answers; -28 means the
    /// node is still warming up.
    fn wait_ready(&mut self) -> Result<(), Failure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        loop {
            if let Some(status) = self.child.try_wait().expect("poll litecoind") {
                let log = self.logs();
                // bitcoind's words when its RPC port is taken (httpserver.cpp).
                if log.contains("Unable to start HTTP server") {
                    return Err(Failure::PortClash(log));
                }
                return Err(Failure::Fatal(format!(
                    "litecoind exited with {status} before its RPC server answered:\n{log}"
                )));
            }
            // Before the node writes the cookie there is nothing to send.
            if self.auth == Auth::Password || self.cookie_path().exists() {
                match self.rpc("getblockchaininfo", serde_json::json!([])) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = format!("{e:?}"),
                }
            }
            if Instant::now() > deadline {
                return Err(Failure::Fatal(format!(
                    "litecoind's RPC server did not answer within {START_TIMEOUT:?} \
                     (last: {last}):\n{}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node's stderr and the tail of its debug.log, for failure messages.
    pub fn logs(&self) -> String {
        let stderr = std::fs::read_to_string(self.datadir().join("stderr.txt")).unwrap_or_default();
        let debug =
            std::fs::read_to_string(self.datadir().join("regtest/debug.log")).unwrap_or_default();
        let lines: Vec<&str> = debug.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- stderr ---\n{stderr}\n--- debug.log (tail) ---\n{tail}")
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    /// Where a node started without rpcuser/rpcpassword writes its cookie.
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir().join("regtest/.cookie")
    }

    /// A raw JSON-RPC call for test setup (node-level, no wallet).
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, RpcFailure> {
        self.rpc_at("/", method, params)
    }

    /// A raw JSON-RPC call on `/wallet/<name>`.
    pub fn wallet_rpc(
        &self,
        wallet: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, RpcFailure> {
        let encoded: String = wallet
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.rpc_at(&format!("/wallet/{encoded}"), method, params)
    }

    /// `createwallet NAME`; panics with the node's answer on failure.
    pub fn create_wallet(&self, name: &str) {
        if let Err(e) = self.rpc("createwallet", serde_json::json!([name])) {
            panic!("createwallet {name:?} failed: {e:?}\n{}", self.logs());
        }
    }

    fn credentials(&self) -> String {
        match self.auth {
            Auth::Password => format!("{USER}:{PASSWORD}"),
            Auth::Cookie => std::fs::read_to_string(self.cookie_path())
                .expect("read the node's cookie")
                .trim_end()
                .to_owned(),
        }
    }

    fn rpc_at(&self, path: &str, method: &str, params: Value) -> Result<Value, RpcFailure> {
        raw_rpc(
            &format!("127.0.0.1:{}", self.port),
            &self.credentials(),
            path,
            method,
            params,
        )
    }
}

/// One JSON-RPC 1.0 call over a plain HTTP/1.1 connection to `addr`
/// (`host:port`) with basic auth `user:password`: the tests' own client,
/// independent of the runner's.
pub fn raw_rpc(
    addr: &str,
    credentials: &str,
    path: &str,
    method: &str,
    params: Value,
) -> Result<Value, RpcFailure> {
    let failure = |message: String| RpcFailure {
        http_status: 0,
        code: None,
        message,
    };
    let body = serde_json::json!({
        "jsonrpc": "1.0", "id": "harness", "method": method, "params": params,
    })
    .to_string();
    let auth = base64::engine::general_purpose::STANDARD.encode(credentials);
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).map_err(|e| failure(format!("connect: {e}")))?;
    // Wallet creation takes a few seconds on a busy machine.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream
        .write_all(request.as_bytes())
        .map_err(|e| failure(format!("write: {e}")))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| failure(format!("read: {e}")))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| failure(format!("no HTTP response: {text:?}")))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| failure(format!("bad status line: {head:?}")))?;
    let json: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => {
            return Err(RpcFailure {
                http_status: status,
                code: None,
                message: body.to_owned(),
            });
        }
    };
    match &json["error"] {
        Value::Null => Ok(json["result"].clone()),
        error => Err(RpcFailure {
            http_status: status,
            code: error["code"].as_i64(),
            message: error["message"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}

impl Drop for Litecoind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Failure {
    PortClash(String),
    Fatal(String),
}
