//! One HTTP/1.1 POST over a fresh connection (TLS for `https://`), for the
//! webhook and the healthchecks pings. Messages name only the URL's origin:
//! the path of a webhook (Slack) or a ping URL (a check's UUID) is often
//! its secret.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::net::Conn;
use crate::contract::notify::HttpUrl;
use crate::diag::{chain, flat};

/// How long one attempt may take, connecting included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts for a failure that may pass (no connection, a 5xx, a 429), as
/// healthchecks.io advises `curl --retry`; delays of 1 s, then 2 s.
const ATTEMPTS: u32 = 3;
/// How much of a refusing server's answer a message shows.
const SNIPPET_CHARS: usize = 200;

/// Aborts the connection task when the request ends or times out.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a POST failed; never holds the URL's path.
struct Failed {
    message: String,
    /// Whether another attempt may succeed.
    transient: bool,
}

/// POSTs `body` to `url` with `target` as the request path (the URL's own,
/// or a healthchecks suffix), retrying transient failures.
pub async fn post(
    url: &HttpUrl,
    target: &str,
    content_type: &'static str,
    body: Vec<u8>,
) -> Result<(), String> {
    let mut attempt = 1;
    loop {
        let result = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            once(url, target, content_type, body.clone()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Failed {
                message: format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()),
                transient: true,
            })
        });
        match result {
            Ok(()) => return Ok(()),
            Err(f) if f.transient && attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(f) => {
                return Err(format!(
                    "{}: {} (attempt {attempt} of {ATTEMPTS})",
                    url.origin(),
                    f.message
                ));
            }
        }
    }
}

async fn once(
    url: &HttpUrl,
    target: &str,
    content_type: &'static str,
    body: Vec<u8>,
) -> Result<(), Failed> {
    let transient = |message: String| Failed {
        message,
        transient: true,
    };
    let tcp = Conn::connect(&url.host, url.port)
        .await
        .map_err(transient)?;
    let conn = if url.tls {
        Conn::tls(tcp, &url.host).await.map_err(|message| Failed {
            message,
            transient: false,
        })?
    } else {
        Conn::Plain(tcp)
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| transient(chain(&e)))?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let request = Request::builder()
        .method(Method::POST)
        .uri(target)
        .header(header::HOST, url.addr())
        .header(header::CONTENT_TYPE, HeaderValue::from_static(content_type))
        .header(
            header::USER_AGENT,
            concat!("unitgen-runner/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failed {
            // The target came from a checked URL; this is a bug, and the
            // path is not shown.
            message: format!("cannot build the request: {}", flat(&e.to_string(), 100)),
            transient: false,
        })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| transient(chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = Limited::new(response.into_body(), 16 * 1024)
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    // A server may echo the path back ("no route for /hooks/T0/secret"):
    // it is cut out of the message.
    let path = target.split('?').next().unwrap_or(target);
    let text = if path.len() > 1 {
        text.replace(path, "/…")
    } else {
        text
    };
    Err(Failed {
        message: format!("HTTP {status}: {}", flat(text.trim(), SNIPPET_CHARS)),
        transient: status.is_server_error() || status.as_u16() == 429,
    })
}
