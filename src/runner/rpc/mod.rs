//! JSON-RPC step (bitcoind `backupwallet` and friends).
//!
//! One request over one plain-HTTP connection: bitcoind's RPC server has no
//! TLS, keeps no useful session state, and a backup job makes one call.
//! Errors name the category and what to do in one line, and never carry the
//! password or the cookie value (they exist only in the request header).

mod http;

use std::time::Duration;

use hyper::StatusCode;
use serde_json::Value;

use crate::contract::RpcCall;
use crate::contract::rpc::RpcUrl;
use crate::contract::secret::SecretString;

pub use crate::contract::rpc::DEFAULT_TIMEOUT;

/// The largest response body accepted. `backupwallet` answers `null`; even
/// big answers (`listtransactions`) stay far below this, so a bigger body
/// means the URL points at something else.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// How much of a non-JSON-RPC body an error shows.
const SNIPPET_CHARS: usize = 160;

// JSON-RPC and bitcoind error codes (bitcoind src/rpc/protocol.h).
const METHOD_NOT_FOUND: i64 = -32601;
const WALLET_ERROR: i64 = -4;
const WALLET_NOT_FOUND: i64 = -18;
const WALLET_NOT_SPECIFIED: i64 = -19;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The contract's check refuses such a URL before anything runs;
    /// this is the runner's own guard.
    #[error("invalid RPC URL: {0}")]
    InvalidUrl(String),

    #[error("invalid RPC timeout: {0}")]
    InvalidTimeout(String),

    #[error(
        "cannot read the RPC cookie file {path}: {error}; check that bitcoind is running and \
         that its data folder is mounted into the container"
    )]
    CookieUnreadable { path: String, error: String },

    #[error(
        "the RPC cookie file {path} is not one `__cookie__:<hex>` line; point `cookie_file` at \
         bitcoind's .cookie"
    )]
    CookieInvalid { path: String },

    #[error(
        "connection to the RPC server at {addr} failed: {reason}; check that bitcoind is running \
         and the URL's host and port (rpcbind, rpcport)"
    )]
    ConnectionFailed { addr: String, reason: String },

    #[error(
        "RPC call `{method}` to {addr} timed out after {}; the server is unreachable or busy \
         (raise the step's `timeout` for a large wallet)",
        span(*.after)
    )]
    TimedOut {
        method: String,
        addr: String,
        after: Duration,
    },

    #[error("RPC authentication failed at {addr} (HTTP {status}): {}", auth_hint(*.status))]
    AuthFailed { addr: String, status: u16 },

    #[error(
        "RPC method `{method}` not found (code -32601): check the method name, and that \
         bitcoind's wallet is enabled for wallet methods"
    )]
    MethodNotFound { method: String },

    #[error("{} (code {code}): {message}; {}", wallet_problem(.wallet.as_deref()), wallet_hint(.wallet.as_deref()))]
    WalletNotFound {
        wallet: Option<String>,
        code: i64,
        message: String,
    },

    #[error(
        "backupwallet{} failed (code -4): {message}; check that the destination folder exists \
         on bitcoind's side and that bitcoind can write there",
        .destination.as_deref().map(|d| format!(" to `{d}`")).unwrap_or_default()
    )]
    BackupFailed {
        destination: Option<String>,
        message: String,
    },

    #[error("RPC method `{method}` failed{}: {message}", code_text(*.code))]
    Rpc {
        method: String,
        /// `None` when the server's error object had no numeric code.
        code: Option<i64>,
        message: String,
    },

    #[error(
        "RPC server at {addr} answered HTTP {status} without a JSON-RPC body{}; check that the \
         URL points at bitcoind's RPC port",
        shown_body(.body)
    )]
    Http {
        addr: String,
        status: u16,
        body: String,
    },

    #[error(
        "RPC server at {addr} sent an invalid response: {reason}; check that the URL points at \
         bitcoind's RPC port"
    )]
    InvalidResponse { addr: String, reason: String },

    #[error(
        "RPC response from {addr} is larger than {} MiB, refused; check that the URL points at \
         bitcoind's RPC port",
        MAX_RESPONSE_BYTES / (1024 * 1024)
    )]
    ResponseTooLarge { addr: String },

    #[error(
        "RPC request to {addr} failed: {reason}; check the server's log (bitcoind's debug.log)"
    )]
    Transport { addr: String, reason: String },
}

fn code_text(code: Option<i64>) -> String {
    code.map(|c| format!(" (code {c})")).unwrap_or_default()
}

fn auth_hint(status: u16) -> &'static str {
    if status == 403 {
        "the server refused this client; check its rpcallowip, and the RPC user and password"
    } else {
        "check the RPC user and password (or the cookie file)"
    }
}

fn wallet_problem(wallet: Option<&str>) -> String {
    match wallet {
        Some(w) => format!("wallet `{w}` not found or not loaded"),
        None => "no wallet selected".to_owned(),
    }
}

fn wallet_hint(wallet: Option<&str>) -> &'static str {
    match wallet {
        Some(_) => "check the step's `wallet`, and that bitcoind loads it (-wallet= or loadwallet)",
        None => "set the step's `wallet` to the wallet to use",
    }
}

fn shown_body(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" (`{body}`)")
    }
}

/// A duration as the `timeout` key would spell it.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{}ms", d.as_millis())
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}min", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// Server text made fit for one log line, cut at `max_chars`.
fn flat(text: &str, max_chars: usize) -> String {
    crate::diag::flat(text, max_chars)
}

/// Flattened, but never cut: server messages are short and all of it matters.
fn flat_all(text: &str) -> String {
    flat(text, usize::MAX)
}

/// Calls `call.method` with `call.params` at `call.url` (plus
/// `/wallet/<name>` when `call.wallet` is set).
///
/// Auth: `call.cookie_file` set -> read it (`__cookie__:<hex>`, one line)
/// and use it as basic auth; else `call.user` + `password` -> basic auth;
/// else no auth. The timeout from `call.timeout` (a systemd time span,
/// default 60s, `infinity` for none) covers name resolution, connect,
/// request and response.
pub async fn call(call: &RpcCall, password: Option<&SecretString>) -> Result<Value, RpcError> {
    let target = RpcUrl::parse(&call.url).map_err(|e| RpcError::InvalidUrl(e.0))?;
    let timeout = call.time_limit().map_err(RpcError::InvalidTimeout)?;
    let auth = match (&call.cookie_file, &call.user, password) {
        (Some(path), _, _) => Some(read_cookie(path)?),
        (None, Some(user), Some(password)) => {
            Some(SecretString::new(format!("{user}:{}", password.expose())))
        }
        _ => None,
    };
    let exchange = http::exchange(&target, call, auth.as_ref());
    let (status, body) = match timeout {
        Some(after) => {
            tokio::time::timeout(after, exchange)
                .await
                .map_err(|_| RpcError::TimedOut {
                    method: call.method.clone(),
                    addr: target.addr(),
                    after,
                })??
        }
        None => exchange.await?,
    };
    interpret(call, &target, status, &body)
}

/// bitcoind's `.cookie`: `__cookie__:<hex>`, one line, rewritten each
/// time bitcoind starts, so it is read on every call.
fn read_cookie(path: &str) -> Result<SecretString, RpcError> {
    let text = std::fs::read_to_string(path).map_err(|e| RpcError::CookieUnreadable {
        path: flat(path, 300),
        error: flat_all(&e.to_string()),
    })?;
    let line = text.trim_end_matches(['\n', '\r']);
    let valid = line
        .split_once(':')
        .is_some_and(|(user, pass)| !user.is_empty() && !pass.is_empty())
        && !line.chars().any(|c| c.is_control());
    if !valid {
        return Err(RpcError::CookieInvalid {
            path: flat(path, 300),
        });
    }
    Ok(SecretString::new(line))
}

/// Maps the HTTP status and body to the result. The body is read whatever
/// the status: JSON-RPC 1.0 servers (bitcoind) send errors with HTTP 500 or
/// 404 and a JSON body, JSON-RPC 2.0 servers with HTTP 200.
fn interpret(
    call: &RpcCall,
    target: &RpcUrl,
    status: StatusCode,
    body: &[u8],
) -> Result<Value, RpcError> {
    // bitcoind answers 401 with an empty body; 403 for rpcallowip.
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(RpcError::AuthFailed {
            addr: target.addr(),
            status: status.as_u16(),
        });
    }
    let parsed = serde_json::from_slice::<Value>(body);
    let object = match parsed {
        Ok(Value::Object(object)) => object,
        other => {
            let text = flat(&String::from_utf8_lossy(body), SNIPPET_CHARS);
            if !status.is_success() {
                return Err(RpcError::Http {
                    addr: target.addr(),
                    status: status.as_u16(),
                    body: text,
                });
            }
            let reason = match other {
                Err(e) => format!("not JSON ({e}), starting `{text}`"),
                Ok(_) => format!("not a JSON-RPC object: `{text}`"),
            };
            return Err(RpcError::InvalidResponse {
                addr: target.addr(),
                reason,
            });
        }
    };
    match object.get("error") {
        None | Some(Value::Null) => {}
        Some(error) => return Err(rpc_error(call, error)),
    }
    if !status.is_success() {
        return Err(RpcError::Http {
            addr: target.addr(),
            status: status.as_u16(),
            body: flat(&String::from_utf8_lossy(body), SNIPPET_CHARS),
        });
    }
    match object.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(RpcError::InvalidResponse {
            addr: target.addr(),
            reason: "a JSON object with neither `result` nor `error`".into(),
        }),
    }
}

fn rpc_error(call: &RpcCall, error: &Value) -> RpcError {
    let code = error.get("code").and_then(Value::as_i64);
    let message = match error.get("message") {
        Some(Value::String(m)) => flat_all(m),
        Some(other) => flat(&other.to_string(), SNIPPET_CHARS),
        // Not an error object: show what came.
        None => flat(&error.to_string(), SNIPPET_CHARS),
    };
    match code {
        Some(METHOD_NOT_FOUND) => RpcError::MethodNotFound {
            method: call.method.clone(),
        },
        Some(code @ (WALLET_NOT_FOUND | WALLET_NOT_SPECIFIED)) => RpcError::WalletNotFound {
            wallet: call.wallet.as_deref().map(|w| flat(w, 200)),
            code,
            message,
        },
        Some(WALLET_ERROR) if call.method == "backupwallet" => RpcError::BackupFailed {
            destination: call
                .params
                .first()
                .and_then(Value::as_str)
                .map(|d| flat(d, 300)),
            message,
        },
        code => RpcError::Rpc {
            method: call.method.clone(),
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const PASSWORD: &str = "hunter2-very-secret";

    fn rpc(url: &str, method: &str) -> RpcCall {
        RpcCall {
            url: url.to_owned(),
            wallet: None,
            method: method.to_owned(),
            params: vec![],
            user: Some("u".into()),
            password_etcd: Some("/bitcoind/rpc/password".into()),
            cookie_file: None,
            timeout: Some("5s".into()),
        }
    }

    /// Reads one HTTP request (headers and a Content-Length body).
    async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if buf.len() >= end + 4 + length {
                    return String::from_utf8(buf).unwrap();
                }
            }
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "client closed before sending a whole request");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A one-shot HTTP server on loopback: answers the first request with
    /// `response` (raw bytes) and hands back the request it read.
    async fn serve(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let request = read_request(&mut socket).await;
            // The client may hang up early (an oversized body): ignore.
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
            request
        });
        (url, handle)
    }

    fn http(status: &str, content_type: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    async fn call_with_password(rpc: &RpcCall) -> Result<Value, RpcError> {
        call(rpc, Some(&SecretString::new(PASSWORD))).await
    }

    fn assert_clean(err: &RpcError) {
        let text = err.to_string();
        let debug = format!("{err:?}");
        assert!(
            !text.contains(PASSWORD) && !debug.contains(PASSWORD),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    }

    #[tokio::test]
    async fn sends_a_json_rpc_1_request_with_basic_auth_and_returns_the_result() {
        let (url, server) = serve(http(
            "200 OK",
            "application/json",
            r#"{"result":{"ok":true},"error":null,"id":"unitgen"}"#,
        ))
        .await;
        let mut call = rpc(&url, "backupwallet");
        call.wallet = Some("my wallet/ü".into());
        call.params = vec![Value::from("/backups/w.dat")];
        let result = call_with_password(&call).await.unwrap();
        assert_eq!(result, serde_json::json!({"ok": true}));

        let request = server.await.unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(
            lines.next().unwrap(),
            "POST /wallet/my%20wallet%2F%C3%BC HTTP/1.1"
        );
        let head = head.to_lowercase();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("u:{PASSWORD}"));
        assert!(head.contains(&format!("authorization: basic {}", basic.to_lowercase())));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("host: 127.0.0.1:"));
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"jsonrpc": "1.0", "id": "unitgen", "method": "backupwallet",
                "params": ["/backups/w.dat"]})
        );
    }

    #[tokio::test]
    async fn json_rpc_2_error_with_http_200_is_an_rpc_error() {
        let (url, _server) = serve(http(
            "200 OK",
            "application/json",
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"disk\nfull"},"id":"unitgen"}"#,
        ))
        .await;
        let err = call_with_password(&rpc(&url, "getinfo")).await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Rpc { code: Some(-32000), message, .. } if message == "disk full"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "RPC method `getinfo` failed (code -32000): disk full"
        );
        assert_clean(&err);
    }

    #[tokio::test]
    async fn json_rpc_1_errors_with_http_500_are_categorized() {
        let cases = [
            (-32601, "Method not found", "nosuch", None),
            (
                -18,
                "Requested wallet does not exist or is not loaded",
                "backupwallet",
                Some("hot"),
            ),
            (-19, "Wallet file not specified", "backupwallet", None),
            (
                -4,
                "Error: Wallet backup failed!",
                "backupwallet",
                Some("hot"),
            ),
            (-4, "Insufficient funds", "sendtoaddress", Some("hot")),
        ];
        for (code, message, method, wallet) in cases {
            let body = format!(
                r#"{{"result":null,"error":{{"code":{code},"message":"{message}"}},"id":"unitgen"}}"#
            );
            let (url, _server) =
                serve(http("500 Internal Server Error", "application/json", &body)).await;
            let mut call = rpc(&url, method);
            call.wallet = wallet.map(str::to_owned);
            call.params = vec![Value::from("/backups/w.dat")];
            let err = call_with_password(&call).await.unwrap_err();
            let text = err.to_string();
            match (code, method) {
                (-32601, _) => {
                    assert!(matches!(err, RpcError::MethodNotFound { .. }), "{err:?}");
                    assert!(text.contains("`nosuch` not found"), "{text}");
                }
                (-18, _) => {
                    assert!(matches!(err, RpcError::WalletNotFound { code: -18, .. }));
                    assert!(
                        text.starts_with("wallet `hot` not found or not loaded"),
                        "{text}"
                    );
                }
                (-19, _) => {
                    assert!(matches!(err, RpcError::WalletNotFound { wallet: None, .. }));
                    assert!(text.contains("set the step's `wallet`"), "{text}");
                }
                (-4, "backupwallet") => {
                    assert!(matches!(err, RpcError::BackupFailed { .. }), "{err:?}");
                    assert!(
                        text.starts_with(
                            "backupwallet to `/backups/w.dat` failed (code -4): Error: Wallet backup failed!;"
                        ),
                        "{text}"
                    );
                }
                _ => assert!(
                    matches!(err, RpcError::Rpc { code: Some(-4), .. }),
                    "{err:?}"
                ),
            }
            assert_clean(&err);
        }
    }

    #[tokio::test]
    async fn unauthorized_with_an_empty_body_is_an_auth_failure() {
        let (url, _server) = serve(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"jsonrpc\"\r\n\
              Content-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let err = call_with_password(&rpc(&url, "getblockchaininfo"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::AuthFailed { status: 401, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("check the RPC user and password"), "{text}");
        assert!(text.contains("HTTP 401"), "{text}");
        assert_clean(&err);
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_refused() {
        let (url, _server) = serve(http("200 OK", "text/html", "<html>\nhello</html>")).await;
        let err = call_with_password(&rpc(&url, "getblockchaininfo"))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::InvalidResponse { .. }), "{err:?}");
        assert!(err.to_string().contains("not JSON"), "{err}");
        assert!(err.to_string().contains("`<html> hello</html>`"), "{err}");
        assert_clean(&err);

        let (url, _server) = serve(http("502 Bad Gateway", "text/plain", "upstream down")).await;
        let err = call_with_password(&rpc(&url, "getblockchaininfo"))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Http { status: 502, .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("HTTP 502 without a JSON-RPC body (`upstream down`)")
        );

        let (url, _server) = serve(http("200 OK", "application/json", r#"{"id":1}"#)).await;
        let err = call_with_password(&rpc(&url, "x")).await.unwrap_err();
        assert!(matches!(err, RpcError::InvalidResponse { .. }), "{err:?}");

        let (url, _server) = serve(b"SSH-2.0-OpenSSH_9.2\r\n".to_vec()).await;
        let err = call_with_password(&rpc(&url, "x")).await.unwrap_err();
        assert!(matches!(err, RpcError::InvalidResponse { .. }), "{err:?}");
        assert_clean(&err);
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let size = MAX_RESPONSE_BYTES + 1024;
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        .into_bytes();
        response.extend(std::iter::repeat_n(b' ', size));
        let (url, _server) = serve(response).await;
        let err = call_with_password(&rpc(&url, "x")).await.unwrap_err();
        assert!(matches!(err, RpcError::ResponseTooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("larger than 16 MiB"), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let mut call = rpc(&url, "backupwallet");
        call.timeout = Some("300ms".into());
        let started = std::time::Instant::now();
        let err = call_with_password(&call).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(matches!(err, RpcError::TimedOut { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("RPC call `backupwallet` to 127.0.0.1:"),
            "{err}"
        );
        assert!(err.to_string().contains("timed out after 300ms"), "{err}");
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            read_request(&mut socket).await;
        });
        let err = call_with_password(&rpc(&url, "x")).await.unwrap_err();
        assert!(matches!(err, RpcError::Transport { .. }), "{err:?}");
        assert_clean(&err);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connection_failure_naming_host_and_port() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = call_with_password(&rpc(&format!("http://127.0.0.1:{port}/"), "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::ConnectionFailed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("at 127.0.0.1:{port} failed: ")),
            "{text}"
        );
        assert!(text.to_lowercase().contains("refused"), "{text}");

        // `.invalid` never resolves (RFC 6761); a slow resolver gets time.
        let mut call = rpc("http://no-such-host.invalid:8332/", "x");
        call.timeout = Some("30s".into());
        let err = call_with_password(&call).await.unwrap_err();
        assert!(matches!(err, RpcError::ConnectionFailed { .. }), "{err:?}");
        assert!(
            err.to_string().contains("no-such-host.invalid:8332"),
            "{err}"
        );
        assert!(err.to_string().contains("cannot resolve"), "{err}");
    }

    #[tokio::test]
    async fn the_cookie_file_is_sent_as_basic_auth() {
        let dir = tempfile::tempdir().unwrap();
        let cookie = dir.path().join(".cookie");
        std::fs::write(&cookie, "__cookie__:0123abcd").unwrap();
        let (url, server) = serve(http(
            "200 OK",
            "application/json",
            r#"{"result":null,"error":null,"id":"unitgen"}"#,
        ))
        .await;
        let mut call = rpc(&url, "x");
        call.user = None;
        call.cookie_file = Some(cookie.to_str().unwrap().into());
        assert_eq!(super::call(&call, None).await.unwrap(), Value::Null);
        let request = server.await.unwrap().to_lowercase();
        let basic = base64::engine::general_purpose::STANDARD.encode("__cookie__:0123abcd");
        assert!(request.contains(&format!("authorization: basic {}", basic.to_lowercase())));
    }

    #[tokio::test]
    async fn no_auth_without_credentials() {
        let (url, server) = serve(http(
            "200 OK",
            "application/json",
            r#"{"result":1,"error":null,"id":"unitgen"}"#,
        ))
        .await;
        let mut call = rpc(&url, "x");
        call.user = None;
        assert_eq!(super::call(&call, None).await.unwrap(), Value::from(1));
        let request = server.await.unwrap().to_lowercase();
        assert!(!request.contains("authorization:"), "{request}");
    }

    #[tokio::test]
    async fn cookie_problems_name_the_file_but_never_its_value() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing/.cookie");
        let mut call = rpc("http://127.0.0.1:1/", "x");
        call.cookie_file = Some(missing.to_str().unwrap().into());
        let err = super::call(&call, None).await.unwrap_err();
        assert!(matches!(err, RpcError::CookieUnreadable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(missing.to_str().unwrap()), "{text}");
        assert!(text.contains("No such file or directory"), "{text}");

        let bad = dir.path().join(".cookie");
        std::fs::write(&bad, "sekritcookievalue\nsecond line\n").unwrap();
        call.cookie_file = Some(bad.to_str().unwrap().into());
        let err = super::call(&call, None).await.unwrap_err();
        assert!(matches!(err, RpcError::CookieInvalid { .. }), "{err:?}");
        assert!(!err.to_string().contains("sekrit") && !format!("{err:?}").contains("sekrit"));
    }

    #[tokio::test]
    async fn https_and_bad_urls_are_refused_before_connecting() {
        let err = call_with_password(&rpc("https://bitcoind:8332/", "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::InvalidUrl(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("no TLS") && text.contains("stunnel"),
            "{text}"
        );

        let err = call_with_password(&rpc(&format!("http://u:{PASSWORD}@bitcoind:8332/"), "x"))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::InvalidUrl(_)), "{err:?}");
        assert_clean(&err);

        let mut call = rpc("http://bitcoind:8332/", "x");
        call.timeout = Some("soon".into());
        let err = call_with_password(&call).await.unwrap_err();
        assert!(matches!(err, RpcError::InvalidTimeout(_)), "{err:?}");
    }

    #[test]
    fn spans_and_flattening() {
        assert_eq!(span(Duration::from_secs(60)), "1min");
        assert_eq!(span(Duration::from_secs(90)), "90s");
        assert_eq!(span(Duration::from_secs(7200)), "2h");
        assert_eq!(span(Duration::from_millis(1500)), "1500ms");
        assert_eq!(flat("a\r\nb\tc\u{7}", 100), "a  b c?");
        assert_eq!(flat("abcdef", 3), "abc…");
    }
}
