//! One JSON-RPC request over one plain-HTTP/1.1 connection: resolve (with
//! getaddrinfo, so Docker's `--link` names in /etc/hosts work), connect,
//! send, and read the whole body up to a limit.

use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::{MAX_RESPONSE_BYTES, RpcError, flat_all};
use crate::contract::RpcCall;
use crate::contract::rpc::RpcUrl;
use crate::contract::secret::SecretString;
use crate::diag::chain;

/// Aborts the connection task when the call ends or times out.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolve, connect, send, and read the whole body (up to the limit).
pub(super) async fn exchange(
    target: &RpcUrl,
    call: &RpcCall,
    auth: Option<&SecretString>,
) -> Result<(StatusCode, Bytes), RpcError> {
    let addr = target.addr();
    let connection_failed = |reason: String| RpcError::ConnectionFailed {
        addr: addr.clone(),
        reason: flat_all(&reason),
    };
    let transport = |e: hyper::Error| RpcError::Transport {
        addr: addr.clone(),
        reason: flat_all(&chain(&e)),
    };

    // getaddrinfo, so /etc/hosts entries (Docker's --link) resolve.
    let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| connection_failed(format!("cannot resolve `{}`: {e}", target.host)))?
        .collect();
    let mut last_error = None;
    let mut stream = None;
    for a in &addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let stream = match (stream, last_error) {
        (Some(s), _) => s,
        (None, Some(e)) => return Err(connection_failed(e.to_string())),
        (None, None) => {
            return Err(connection_failed(format!(
                "`{}` resolved to no address",
                target.host
            )));
        }
    };
    let _ = stream.set_nodelay(true);

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(transport)?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));

    let body = serde_json::json!({
        "jsonrpc": "1.0",
        "id": "unitgen",
        "method": call.method,
        "params": call.params,
    });
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.path_for(call.wallet.as_deref()))
        .header(header::HOST, addr.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| RpcError::InvalidUrl(flat_all(&e.to_string())))?;
    if let Some(auth) = auth {
        let encoded = base64::engine::general_purpose::STANDARD.encode(auth.expose());
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
            .expect("base64 is a valid header value");
        value.set_sensitive(true);
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }

    let response = sender.send_request(request).await.map_err(|e| {
        if e.is_parse() {
            RpcError::InvalidResponse {
                addr: addr.clone(),
                reason: format!("not HTTP ({})", flat_all(&chain(&e))),
            }
        } else {
            transport(e)
        }
    })?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                RpcError::ResponseTooLarge { addr: addr.clone() }
            } else {
                RpcError::Transport {
                    addr: addr.clone(),
                    reason: flat_all(&chain(e.as_ref())),
                }
            }
        })?
        .to_bytes();
    Ok((status, body))
}
