//! The one etcd client: connection settings, reads, and errors that name
//! what went wrong (unreachable, TLS, authentication, timeout) with the
//! endpoint, so an operator knows which knob to turn.
//!
//! `unitgen` reads render-time values and checks that secret keys exist
//! (without reading their values); `unitgen-runner` reads secrets. Neither
//! ever formats a value read here into a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};

use crate::contract::secret::SecretString;

/// How long a connection attempt or a request may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight at once when fetching many keys.
const CONCURRENCY: usize = 64;

/// Everything needed to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub timeout: Option<Duration>,
}

impl Settings {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    fn endpoints_text(&self) -> String {
        self.endpoints.join(",")
    }
}

/// The etcd password: `UNITGEN_ETCD_PASSWORD`, else the first line of
/// `file`. Never a flag (it would show in `ps`) or a spec value.
pub fn password(file: Option<&Path>) -> Result<Option<SecretString>, EtcdError> {
    if let Ok(p) = std::env::var("UNITGEN_ETCD_PASSWORD")
        && !p.is_empty()
    {
        return Ok(Some(SecretString::new(p)));
    }
    let Some(path) = file else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        EtcdError::Config(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Some(SecretString::new(text.trim_end_matches(['\n', '\r']))))
}

/// Why etcd could not answer. Each names the endpoint(s) and what to check.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd settings: {0}")]
    Config(String),
    #[error(
        "etcd at {endpoints} is unreachable ({detail}); check that etcd runs there, or set the endpoints (--etcd-endpoints, UNITGEN_ETCD_ENDPOINTS)"
    )]
    Unreachable { endpoints: String, detail: String },
    #[error(
        "etcd at {endpoints}: TLS handshake failed ({detail}); check the CA (--etcd-ca-file) and the client certificate and key"
    )]
    Tls { endpoints: String, detail: String },
    #[error("etcd at {endpoints}: authentication failed{who} ({detail}); {hint}")]
    Auth {
        endpoints: String,
        who: String,
        detail: String,
        hint: &'static str,
    },
    #[error(
        "etcd at {endpoints}: permission denied reading `{key}`; grant the user read access to it"
    )]
    PermissionDenied { endpoints: String, key: String },
    #[error(
        "etcd at {endpoints} did not answer within {timeout:?}; check that etcd is healthy, or raise --etcd-timeout"
    )]
    Timeout {
        endpoints: String,
        timeout: Duration,
    },
    #[error("etcd at {endpoints}: {detail}")]
    Other { endpoints: String, detail: String },
    #[error("etcd key `{key}` does not exist; store it with `etcdctl put {key} VALUE`")]
    Missing { key: String },
    #[error("etcd key `{key}` does not hold UTF-8 text")]
    NotUtf8 { key: String },
    #[error("etcd key `{key}` was compacted away at revision {revision}")]
    Compacted { key: String, revision: i64 },
}

/// What a key lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Value(String),
    /// The key exists; its value was deliberately not read (a secret).
    Exists,
    Missing,
}

/// What a lookup needs to know about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The value, to write it into a unit.
    Value,
    /// Only that the key exists: a secret, read by the runner at run time.
    Exists,
}

/// A connected client. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    client: Client,
    endpoints: String,
    user: Option<String>,
    timeout: Duration,
}

impl Etcd {
    /// Connects (and authenticates, when a user is set). Requests are sent
    /// lazily, so an unreachable endpoint shows up on the first request.
    pub async fn connect(settings: &Settings) -> Result<Etcd, EtcdError> {
        if settings.endpoints.is_empty() {
            return Err(EtcdError::Config(
                "no endpoints; set `etcd.endpoints` in the spec, --etcd-endpoints, or UNITGEN_ETCD_ENDPOINTS".into(),
            ));
        }
        let timeout = settings.timeout();
        let mut options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        let tls = settings.ca_file.is_some() || settings.cert_file.is_some();
        if tls {
            if let Some(e) = settings.endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(EtcdError::Config(format!(
                    "TLS files are set, but endpoint `{e}` is http://; use https://"
                )));
            }
            options = options.with_tls(tls_options(settings)?);
        }
        match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => {
                options = options.with_user(user.clone(), password.expose().to_owned())
            }
            (Some(user), None) => {
                return Err(EtcdError::Config(format!(
                    "user `{user}` has no password; set UNITGEN_ETCD_PASSWORD or --etcd-password-file"
                )));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Config(
                    "a password is set but no user; set --etcd-user or UNITGEN_ETCD_USER".into(),
                ));
            }
            (None, None) => {}
        }
        let endpoints = settings.endpoints_text();
        let user = settings.user.clone();
        let client = with_timeout(timeout, &endpoints, async {
            Client::connect(&settings.endpoints, Some(options))
                .await
                .map_err(|e| classify(e, &endpoints, user.as_deref(), None, timeout))
        })
        .await?;
        Ok(Etcd {
            client,
            endpoints,
            user,
            timeout,
        })
    }

    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn classify(&self, e: etcd_client::Error, key: &str) -> EtcdError {
        classify(
            e,
            &self.endpoints,
            self.user.as_deref(),
            Some(key),
            self.timeout,
        )
    }

    /// Looks up one key: its value, or (for `Need::Exists`) only whether
    /// it exists; then the value never leaves the server. Also returns the
    /// store revision the answer reflects.
    pub async fn lookup(&self, key: &str, need: Need) -> Result<(Lookup, i64), EtcdError> {
        let mut kv = self.client.kv_client();
        let options = match need {
            Need::Value => GetOptions::new(),
            Need::Exists => GetOptions::new().with_count_only(),
        };
        let response = with_timeout(self.timeout, &self.endpoints, async {
            kv.get(key, Some(options))
                .await
                .map_err(|e| self.classify(e, key))
        })
        .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let lookup = match need {
            Need::Exists if response.count() > 0 => Lookup::Exists,
            Need::Exists => Lookup::Missing,
            Need::Value => match response.kvs().first() {
                Some(kv) => Lookup::Value(
                    std::str::from_utf8(kv.value())
                        .map_err(|_| EtcdError::NotUtf8 { key: key.into() })?
                        .to_owned(),
                ),
                None => Lookup::Missing,
            },
        };
        Ok((lookup, revision))
    }

    /// Looks up many keys concurrently. Returns the lookups and the lowest
    /// revision any answer reflects (a watch starting right after it misses
    /// no change).
    pub async fn fetch(
        &self,
        needs: &BTreeMap<String, Need>,
    ) -> Result<(BTreeMap<String, Lookup>, i64), EtcdError> {
        let mut found = BTreeMap::new();
        let mut revision = i64::MAX;
        let mut pending = needs.iter();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.len() < CONCURRENCY {
                let Some((key, need)) = pending.next() else {
                    break;
                };
                let (this, key, need) = (self.clone(), key.clone(), *need);
                tasks.spawn(async move {
                    let result = this.lookup(&key, need).await;
                    (key, result)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let (key, result) = done.expect("an etcd lookup task never panics");
            let (lookup, rev) = result?;
            revision = revision.min(rev);
            found.insert(key, lookup);
        }
        Ok((found, if revision == i64::MAX { 0 } else { revision }))
    }

    /// One watch stream with one watch per key, from `start_revision`.
    /// Errors are classified like every other request (auth, TLS, ...).
    pub async fn watch(
        &self,
        keys: &[&str],
        start_revision: i64,
    ) -> Result<etcd_client::WatchStream, EtcdError> {
        let Some((first, rest)) = keys.split_first() else {
            return Err(EtcdError::Config("nothing to watch".into()));
        };
        let options = || etcd_client::WatchOptions::new().with_start_revision(start_revision);
        let mut client = self.client.clone();
        with_timeout(self.timeout, &self.endpoints, async {
            let mut stream = client
                .watch(*first, Some(options()))
                .await
                .map_err(|e| self.classify(e, first))?;
            for key in rest {
                stream
                    .watch(*key, Some(options()))
                    .await
                    .map_err(|e| self.classify(e, key))?;
            }
            Ok(stream)
        })
        .await
    }

    /// A secret, for the runner. Missing is an error naming the key.
    pub async fn secret(&self, key: &str) -> Result<SecretString, EtcdError> {
        match self.lookup(key, Need::Value).await?.0 {
            Lookup::Value(v) => Ok(SecretString::new(v)),
            Lookup::Missing | Lookup::Exists => Err(EtcdError::Missing { key: key.into() }),
        }
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    endpoints: &str,
    fut: impl std::future::Future<Output = Result<T, EtcdError>>,
) -> Result<T, EtcdError> {
    // The client's own timeouts cover connecting and each request; this
    // covers a server that accepts and then never answers a handshake.
    match tokio::time::timeout(timeout + Duration::from_millis(500), fut).await {
        Ok(result) => result,
        Err(_) => Err(EtcdError::Timeout {
            endpoints: endpoints.into(),
            timeout,
        }),
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|e| EtcdError::Config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn tls_options(settings: &Settings) -> Result<TlsOptions, EtcdError> {
    let mut tls = TlsOptions::new();
    if let Some(ca) = &settings.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read_file("CA file", ca)?));
    }
    match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read_file("client certificate", cert)?,
                read_file("client key", key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(EtcdError::Config(
                "a client certificate needs both --etcd-cert-file and --etcd-key-file".into(),
            ));
        }
    }
    Ok(tls)
}

fn classify(
    e: etcd_client::Error,
    endpoints: &str,
    user: Option<&str>,
    key: Option<&str>,
    timeout: Duration,
) -> EtcdError {
    let endpoints = endpoints.to_owned();
    let detail = crate::diag::chain(&e);
    let lower = detail.to_lowercase();
    let tls_failure = ["certificate", "tls", "handshake", "unknownissuer", "ssl"]
        .iter()
        .any(|w| lower.contains(w));
    let who = user.map(|u| format!(" for user `{u}`")).unwrap_or_default();
    match &e {
        etcd_client::Error::GRpcStatus(status) => {
            use tonic::Code;
            let message = status.message().replace(['\n', '\r'], " ");
            match status.code() {
                Code::InvalidArgument if message.contains("authentication failed") => {
                    EtcdError::Auth {
                        endpoints,
                        who,
                        detail: message,
                        hint: "check the user and the password (UNITGEN_ETCD_PASSWORD or --etcd-password-file)",
                    }
                }
                Code::Unauthenticated | Code::InvalidArgument
                    if message.contains("user name is empty") || message.contains("token") =>
                {
                    EtcdError::Auth {
                        endpoints,
                        who,
                        detail: message,
                        hint: "etcd requires authentication: set --etcd-user (UNITGEN_ETCD_USER) and a password",
                    }
                }
                Code::PermissionDenied => EtcdError::PermissionDenied {
                    endpoints,
                    key: key.unwrap_or("?").into(),
                },
                Code::DeadlineExceeded => EtcdError::Timeout { endpoints, timeout },
                Code::Unavailable | Code::Unknown | Code::Cancelled if tls_failure => {
                    EtcdError::Tls { endpoints, detail }
                }
                Code::Cancelled if lower.contains("timeout") => {
                    EtcdError::Timeout { endpoints, timeout }
                }
                Code::Unavailable | Code::Unknown | Code::Cancelled => {
                    EtcdError::Unreachable { endpoints, detail }
                }
                _ => EtcdError::Other { endpoints, detail },
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) if tls_failure => {
            EtcdError::Tls { endpoints, detail }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            EtcdError::Unreachable { endpoints, detail }
        }
        etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
            EtcdError::Config(detail)
        }
        _ => EtcdError::Other { endpoints, detail },
    }
}
