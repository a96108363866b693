//! The one etcd client: connection settings, reads, watches, and errors
//! that name what went wrong (unreachable, no leader, TLS, authentication,
//! timeout) with the member(s) concerned, so an operator knows which knob
//! to turn.
//!
//! `unitgen` reads render-time values and checks that secret keys exist
//! (without reading their values); `unitgen-runner` reads secrets. Neither
//! ever formats a value read here into a message.
//!
//! # Several members
//!
//! etcd-client's own multi-endpoint client balances each request over a
//! tower power-of-two-choices balancer of lazy connections. A connection
//! that failed to connect reports itself *ready* (it holds the error for
//! the next call), so a dead member keeps receiving its share of requests,
//! which fail at once; a hung member (SIGSTOP, a frozen VM) accepts TCP
//! and answers nothing, so its share waits for the timeout; nothing ever
//! retries on another member. With one member of three down, most commands
//! failed.
//!
//! So this module keeps one client per member and sends each request
//! itself: first to the member that answered last, then, when that member
//! fails (refused, broken connection, "no leader"), at once to the next
//! one; and when it merely has not answered within a fifth of the timeout,
//! the next member is asked *as well* and the first answer wins (a hedged
//! request: a hung member costs a fraction of the timeout, not all of it,
//! and no request waits longer than the timeout in total). While the
//! members that do answer say there is no leader (an election after the
//! leader died takes one or two election timeouts), the request is tried
//! again with backoff until the timeout.
//!
//! Every request carries etcd's require-leader flag: a member that has lost
//! the leader (cut off from the majority, or the last one standing) answers
//! "no leader" at once instead of serving its frozen store, and ends a
//! watch it serves rather than keeping it open with no events ever coming.
//! Reads are linearizable (the default): the member confirms with the
//! leader that its data is current, so even a member that has not yet
//! noticed it was cut off cannot hand out a stale value; it just does not
//! answer, and the request moves on.
//!
//! The runner's etcd locks (`lock::EtcdLock`) are built on these requests:
//! see `etcd/lock.rs` for why they do not use etcd's blocking Lock call.

mod lock;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions, WatchFilterType,
    WatchOptions,
};
use tokio::time::Instant;

use crate::contract::secret::SecretString;
pub use lock::{EtcdLock, LeaseLost, LockError};

/// How long a connection attempt or a request may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight at once when fetching many keys.
const CONCURRENCY: usize = 64;

/// A member that has not answered within this share of the timeout gets
/// company: the next member is asked too.
const HEDGE_SHARE: u32 = 5;
const HEDGE_MIN: Duration = Duration::from_millis(50);
const HEDGE_MAX: Duration = Duration::from_secs(1);

/// Backoff between rounds while the members that answer have no leader.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// HTTP/2 keep-alive pings on a connection with a request or watch open:
/// how a watch on a member that hangs (and keeps its TCP connection) finds
/// out. etcd answers pings more frequent than its
/// `--grpc-keepalive-min-time` (5s by default) with GOAWAY, so not less.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Who connects: `unitgen`, configured by its flags, their
/// `UNITGEN_ETCD_*` variables and the spec's `etcd:`; or `unitgen-runner`,
/// configured by the flags its unit carries, which `unitgen render` wrote
/// from the spec's `etcd.runner`. An error's advice names the settings of
/// the one that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Caller {
    #[default]
    Generator,
    Runner,
}

/// What an error tells the caller to check, in the caller's own terms.
/// The one place that knows which flag, variable or spec key sets what.
struct Advice {
    /// After "etcd at X is unreachable (why); ".
    unreachable: &'static str,
    /// After "TLS handshake failed (why); ".
    tls: &'static str,
    /// After "authentication failed (why); ".
    bad_credentials: &'static str,
    /// etcd wants a user and none was given.
    needs_auth: &'static str,
    /// After "did not answer within T; ".
    timeout: &'static str,
    /// No endpoint at all.
    no_endpoints: &'static str,
    /// A user without a password: "set ...".
    password: &'static str,
    /// A password without a user: "set ...".
    user: &'static str,
    /// Only one of the client certificate and key.
    cert_and_key: &'static str,
}

impl Caller {
    fn advice(self) -> &'static Advice {
        match self {
            Caller::Generator => &Advice {
                unreachable: "check that etcd runs there, or set the endpoints (--etcd-endpoints, \
                              UNITGEN_ETCD_ENDPOINTS)",
                tls: "check the CA (--etcd-ca-file) and the client certificate and key",
                bad_credentials: "check the user and the password (UNITGEN_ETCD_PASSWORD or \
                                  --etcd-password-file)",
                needs_auth: "etcd requires authentication: set --etcd-user (UNITGEN_ETCD_USER) \
                             and a password",
                timeout: "check that etcd is healthy, or raise --etcd-timeout",
                no_endpoints: "set `etcd.endpoints` in the spec, --etcd-endpoints, or \
                               UNITGEN_ETCD_ENDPOINTS",
                password: "UNITGEN_ETCD_PASSWORD or --etcd-password-file",
                user: "--etcd-user or UNITGEN_ETCD_USER",
                cert_and_key: "--etcd-cert-file and --etcd-key-file",
            },
            Caller::Runner => &Advice {
                unreachable: "check that etcd runs there and that the job's container can reach \
                              it; the unit's --etcd-endpoint comes from the spec's \
                              `etcd.runner.endpoints`: correct it there and render the units \
                              again",
                tls: "check the CA (--etcd-ca-file, from the spec's `etcd.runner.tls.ca_file`) \
                      and the client certificate and key (`etcd.runner.tls`)",
                bad_credentials: "check the user (--etcd-user, from the spec's \
                                  `etcd.runner.username`) and the password \
                                  (--etcd-password-file, from `etcd.runner.password_file`, or \
                                  UNITGEN_ETCD_PASSWORD)",
                needs_auth: "etcd requires authentication: set `etcd.runner.username` and \
                             `etcd.runner.password_file` in the spec (the unit's --etcd-user \
                             and --etcd-password-file) and render the units again",
                timeout: "check that etcd is healthy (the runner waits --etcd-timeout, 10s by \
                          default)",
                no_endpoints: "set `etcd.runner.endpoints` in the spec, which renders the \
                               unit's --etcd-endpoint",
                password: "--etcd-password-file (the spec's `etcd.runner.password_file`) or \
                           UNITGEN_ETCD_PASSWORD",
                user: "--etcd-user (the spec's `etcd.runner.username`)",
                cert_and_key: "--etcd-cert-file and --etcd-key-file (the spec's \
                               `etcd.runner.tls.cert_file` and `key_file`)",
            },
        }
    }
}

/// Everything needed to reach etcd.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Whose settings these are (for the advice in errors).
    pub caller: Caller,
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
/// With several endpoints, `endpoints` lists them all and `detail` says
/// how each member failed (`tried every member: URL: why; ...`).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd settings: {0}")]
    Config(String),
    #[error("etcd at {endpoints} is unreachable ({detail}); {hint}")]
    Unreachable {
        endpoints: String,
        detail: String,
        hint: &'static str,
    },
    /// Members answer, but none has a leader: fewer than a majority of the
    /// cluster is up and connected, so etcd can serve nothing.
    #[error(
        "etcd at {endpoints} has no leader, so no quorum of its members is up and connected ({detail}); start the members that are down, or reconnect them to the others"
    )]
    NoQuorum { endpoints: String, detail: String },
    #[error("etcd at {endpoints}: TLS handshake failed ({detail}); {hint}")]
    Tls {
        endpoints: String,
        detail: String,
        hint: &'static str,
    },
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
    #[error("etcd at {endpoints} did not answer within {}; {hint}", span(.timeout))]
    Timeout {
        endpoints: String,
        timeout: Duration,
        hint: &'static str,
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

/// A timeout as users write one: `5s`, `600ms`, `1.5s`.
fn span(d: &Duration) -> String {
    format!("{d:?}")
}

impl EtcdError {
    /// Whether etcd could not serve at all just now (down, hung, no
    /// leader, busy), as opposed to refusing this request (credentials,
    /// permissions, settings, a missing key). A long-running command (a
    /// watch started at boot, before etcd) waits and retries on these.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable { .. }
                | EtcdError::NoQuorum { .. }
                | EtcdError::Timeout { .. }
                | EtcdError::Other { .. }
        )
    }
}

/// What a key lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Value(String),
    /// The key exists; its value was deliberately not read (a secret).
    Exists,
    Missing,
}

/// What a lookup (or a watch) needs to know about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// The value, to write it into a unit.
    Value,
    /// Only that the key exists: a secret, read by the runner at run time.
    /// Watched for deletion only, so its value never reaches unitgen.
    Exists,
}

/// A key to watch, and what the watcher needs to learn of it.
///
/// A bare key (`&str`, `String`) is watched for every event, as before;
/// `(key, Need::Exists)` is watched for deletions only: etcd filters the
/// put events out on its side (`NOPUT`), because a put event carries the
/// new value, and a secret's value must never cross the wire to unitgen.
pub trait WatchKey {
    fn watch_key(&self) -> (&str, Need);
}

impl WatchKey for &str {
    fn watch_key(&self) -> (&str, Need) {
        (self, Need::Value)
    }
}

impl WatchKey for String {
    fn watch_key(&self) -> (&str, Need) {
        (self, Need::Value)
    }
}

impl WatchKey for (&str, Need) {
    fn watch_key(&self) -> (&str, Need) {
        (self.0, self.1)
    }
}

impl WatchKey for (String, Need) {
    fn watch_key(&self) -> (&str, Need) {
        (&self.0, self.1)
    }
}

/// One etcd member, and its client once first used.
struct Member {
    endpoint: String,
    /// Connected (and authenticated) on first use, inside a request's
    /// time budget: with a user set, connecting asks the member for a
    /// token, which a dead or hung member cannot give.
    client: tokio::sync::OnceCell<Client>,
}

struct Shared {
    members: Vec<Member>,
    options: ConnectOptions,
    /// The member that answered last: every request starts there.
    preferred: AtomicUsize,
    endpoints: String,
    user: Option<String>,
    timeout: Duration,
    caller: Caller,
}

/// A client for every configured member. Cheap to clone; clones share the
/// connections and which member answers.
#[derive(Clone)]
pub struct Etcd {
    shared: Arc<Shared>,
}

/// How one member failed one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// Could not connect, or the connection broke.
    Unreachable(String),
    Tls(String),
    /// No answer in time.
    Timeout,
    /// Up, but without a leader (require-leader).
    NoLeader(String),
    /// Up, but could not serve just now (the leader changed, too many
    /// requests...): worth another try.
    Busy(String),
}

impl Fault {
    /// Another round may succeed: the member runs, an election may end.
    fn retryable(&self) -> bool {
        matches!(self, Fault::NoLeader(_) | Fault::Busy(_))
    }

    fn describe(&self, timeout: Duration) -> String {
        match self {
            Fault::Unreachable(why) => format!("unreachable ({why})"),
            Fault::Tls(why) => format!("TLS handshake failed ({why})"),
            Fault::Timeout => format!("did not answer within {timeout:?}"),
            Fault::NoLeader(_) => "no leader".into(),
            Fault::Busy(why) => why.clone(),
        }
    }
}

/// How a request failed on one member.
enum Failure {
    /// That member failed; another may answer.
    Member(Fault),
    /// Any member would answer the same (credentials, permissions, the
    /// request itself): no point asking another.
    Final(EtcdError),
}

impl Etcd {
    /// Checks the settings and prepares a client per member. Nothing is
    /// sent yet: a member that is down shows up on the first request, which
    /// then goes to another member.
    pub async fn connect(settings: &Settings) -> Result<Etcd, EtcdError> {
        let advice = settings.caller.advice();
        if settings.endpoints.is_empty() {
            return Err(EtcdError::Config(format!(
                "no endpoints; {}",
                advice.no_endpoints
            )));
        }
        let timeout = settings.timeout();
        let mut options = ConnectOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout)
            .with_keep_alive(KEEP_ALIVE, timeout)
            // Pings only while a request or a watch is open: etcd counts
            // pings on an idle connection against the client.
            .with_keep_alive_while_idle(false)
            .with_require_leader(true);
        let tls = settings.ca_file.is_some() || settings.cert_file.is_some();
        if tls {
            if let Some(e) = settings.endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(EtcdError::Config(format!(
                    "TLS files are set, but endpoint `{e}` is http://; use https://"
                )));
            }
            options = options.with_tls(tls_options(settings, advice)?);
        }
        match (&settings.user, &settings.password) {
            (Some(user), Some(password)) => {
                options = options
                    .with_user(user.clone(), password.expose().to_owned())
                    // A watch outlives a token's TTL (5 minutes by default).
                    .with_auto_token_refresh(true)
            }
            (Some(user), None) => {
                return Err(EtcdError::Config(format!(
                    "user `{user}` has no password; set {}",
                    advice.password
                )));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Config(format!(
                    "a password is set but no user; set {}",
                    advice.user
                )));
            }
            (None, None) => {}
        }
        let members = settings
            .endpoints
            .iter()
            .map(|endpoint| Member {
                endpoint: endpoint.clone(),
                client: tokio::sync::OnceCell::new(),
            })
            .collect();
        Ok(Etcd {
            shared: Arc::new(Shared {
                members,
                options,
                preferred: AtomicUsize::new(0),
                endpoints: settings.endpoints_text(),
                user: settings.user.clone(),
                timeout,
                caller: settings.caller,
            }),
        })
    }

    /// Every configured endpoint, comma-separated (for messages).
    pub fn endpoints(&self) -> &str {
        &self.shared.endpoints
    }

    /// The endpoint of the member that answered last (where the next
    /// request goes first).
    pub fn current_endpoint(&self) -> &str {
        let s = &self.shared;
        &s.members[s.preferred.load(Ordering::Relaxed) % s.members.len()].endpoint
    }

    /// A raw client for one member that connects (and, with a user,
    /// authenticates), found as any request here is. It does not fail
    /// over: prefer the methods here for anything that must survive a
    /// member going down.
    pub async fn client(&self) -> Result<Client, EtcdError> {
        self.run(None, |client| async move { Ok(client) }).await
    }

    /// Looks up one key: its value, or (for `Need::Exists`) only whether
    /// it exists; then the value never leaves the server. Also returns the
    /// store revision the answer reflects.
    pub async fn lookup(&self, key: &str, need: Need) -> Result<(Lookup, i64), EtcdError> {
        let options = match need {
            Need::Value => GetOptions::new(),
            Need::Exists => GetOptions::new().with_count_only(),
        };
        let owned = key.to_owned();
        let response = self
            .run(Some(key), move |mut client| {
                let (key, options) = (owned.clone(), options.clone());
                async move { client.get(key, Some(options)).await }
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

    /// One watch stream with one watch per key, from `start_revision`, on
    /// one member (found as for any request). A key given with
    /// `Need::Exists` is watched for deletions only (see [`WatchKey`]).
    ///
    /// The member ends the stream with a "no leader" error when it loses
    /// its leader (require-leader), and HTTP/2 keep-alive ends it when the
    /// member hangs: the caller opens it again, and this picks a member
    /// that serves.
    pub async fn watch<K: WatchKey>(
        &self,
        keys: &[K],
        start_revision: i64,
    ) -> Result<etcd_client::WatchStream, EtcdError> {
        let watches: Vec<(String, WatchOptions)> = keys
            .iter()
            .map(|k| {
                let (key, need) = k.watch_key();
                let options = WatchOptions::new().with_start_revision(start_revision);
                let options = match need {
                    Need::Value => options,
                    Need::Exists => options.with_filters([WatchFilterType::NoPut]),
                };
                (key.to_owned(), options)
            })
            .collect();
        if watches.is_empty() {
            return Err(EtcdError::Config("nothing to watch".into()));
        }
        let first = watches[0].0.clone();
        self.run(Some(&first), move |mut client| {
            let watches = watches.clone();
            async move {
                let mut watches = watches.into_iter();
                let (key, options) = watches.next().expect("at least one key");
                let mut stream = client.watch(key, Some(options)).await?;
                for (key, options) in watches {
                    stream.watch(key, Some(options)).await?;
                }
                Ok(stream)
            }
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

    /// The client of member `i`, connected on first use.
    async fn member(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let s = &self.shared;
        let m = &s.members[i];
        m.client
            .get_or_try_init(|| Client::connect([m.endpoint.as_str()], Some(s.options.clone())))
            .await
            .cloned()
    }

    /// Sends one request (`op`, given a member's client) the way the module
    /// docs describe: from the member that answered last, on to the next
    /// when one fails or is slow, rounds again while there is no leader,
    /// all within one timeout. `key` names what a permission error is
    /// about.
    async fn run<T, F, Fut>(&self, key: Option<&str>, op: F) -> Result<T, EtcdError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let s = &self.shared;
        let n = s.members.len();
        let started = Instant::now();
        let deadline = started + s.timeout;
        let hedge = (s.timeout / HEDGE_SHARE).clamp(HEDGE_MIN, HEDGE_MAX);
        let op = Arc::new(op);
        // Members in the order to ask them: the last that answered first.
        let order = |first: usize| (0..n).map(move |k| (first + k) % n);
        let mut queue: VecDeque<usize> = order(s.preferred.load(Ordering::Relaxed) % n).collect();
        let mut faults: Vec<Option<Fault>> = vec![None; n];
        let mut asked = vec![false; n];
        let mut running = vec![false; n];
        let mut attempts = tokio::task::JoinSet::new();
        let mut next_start = started;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = RETRY_MIN;
        loop {
            let now = Instant::now();
            // Ask the next member: at once when nothing is in flight, or
            // alongside a member that is slow to answer.
            if let Some(&i) = queue.front()
                && (attempts.is_empty() || now >= next_start)
            {
                queue.pop_front();
                asked[i] = true;
                running[i] = true;
                let (this, op) = (self.clone(), op.clone());
                attempts.spawn(async move {
                    let result = match this.member(i).await {
                        Ok(client) => op(client).await,
                        Err(e) => Err(e),
                    };
                    (i, result)
                });
                next_start = now + hedge;
                continue;
            }
            if queue.is_empty() && retry_at.is_none() {
                if faults.iter().flatten().any(Fault::retryable) {
                    // A member runs but has no leader: an election may be
                    // under way. Ask again (a hung member stays asked).
                    retry_at = Some(now + backoff);
                    backoff = (backoff * 2).min(RETRY_MAX);
                } else if attempts.is_empty() {
                    return Err(self.failed(&faults, &asked));
                }
            }
            let wake = [
                (!queue.is_empty()).then_some(next_start),
                retry_at,
                Some(deadline),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("the deadline is always there");
            tokio::select! {
                Some(joined) = attempts.join_next(), if !attempts.is_empty() => {
                    let (i, result) = joined.expect("an etcd request task never panics");
                    running[i] = false;
                    match result.map_err(|e| self.classify(e, i, key)) {
                        Ok(value) => {
                            s.preferred.store(i, Ordering::Relaxed);
                            return Ok(value);
                        }
                        Err(Failure::Final(e)) => return Err(e),
                        Err(Failure::Member(fault)) => {
                            faults[i] = Some(fault);
                            next_start = Instant::now();
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // A member asked again keeps its earlier answer
                        // ("no leader"); one that never answered timed out.
                        for (i, running) in running.iter().enumerate() {
                            if *running {
                                faults[i].get_or_insert(Fault::Timeout);
                            }
                        }
                        return Err(self.failed(&faults, &asked));
                    }
                    if retry_at.is_some_and(|t| now >= t) {
                        retry_at = None;
                        let first = s.preferred.load(Ordering::Relaxed) % n;
                        queue = order(first).filter(|&i| !running[i]).collect();
                        next_start = now;
                    }
                }
            }
        }
    }

    /// Sorts a member's error into "try another member" or "that is the
    /// answer", keeping the classification of every error unitgen names.
    fn classify(&self, e: etcd_client::Error, i: usize, key: Option<&str>) -> Failure {
        let s = &self.shared;
        let endpoints = s.members[i].endpoint.clone();
        let why = reason(&e);
        let lower = format!("{e} {why}").to_lowercase();
        let tls_failure = ["certificate", "tls", "handshake", "unknownissuer", "ssl"]
            .iter()
            .any(|w| lower.contains(w));
        let who = s
            .user
            .as_deref()
            .map(|u| format!(" for user `{u}`"))
            .unwrap_or_default();
        let status = match &e {
            etcd_client::Error::GRpcStatus(status) => status,
            etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)
                if tls_failure =>
            {
                return Failure::Member(Fault::Tls(why));
            }
            etcd_client::Error::TransportError(_)
            | etcd_client::Error::IoError(_)
            | etcd_client::Error::WatchError(_) => {
                return Failure::Member(Fault::Unreachable(why));
            }
            etcd_client::Error::InvalidUri(_) | etcd_client::Error::InvalidArgs(_) => {
                return Failure::Final(EtcdError::Config(why));
            }
            _ => {
                return Failure::Final(EtcdError::Other {
                    endpoints,
                    detail: why,
                });
            }
        };
        use tonic::Code;
        let message = status.message().replace(['\n', '\r'], " ");
        match status.code() {
            Code::InvalidArgument if message.contains("authentication failed") => {
                Failure::Final(EtcdError::Auth {
                    endpoints,
                    who,
                    detail: message,
                    hint: s.caller.advice().bad_credentials,
                })
            }
            Code::Unauthenticated | Code::InvalidArgument
                if message.contains("user name is empty") || message.contains("token") =>
            {
                Failure::Final(EtcdError::Auth {
                    endpoints,
                    who,
                    detail: message,
                    hint: s.caller.advice().needs_auth,
                })
            }
            Code::PermissionDenied => Failure::Final(EtcdError::PermissionDenied {
                endpoints,
                key: key.unwrap_or("?").into(),
            }),
            Code::DeadlineExceeded => Failure::Member(Fault::Timeout),
            Code::Unavailable | Code::Unknown | Code::Cancelled if tls_failure => {
                Failure::Member(Fault::Tls(why))
            }
            Code::Cancelled if lower.contains("timeout") => Failure::Member(Fault::Timeout),
            Code::Unavailable if message.contains("no leader") => {
                Failure::Member(Fault::NoLeader(message))
            }
            // The member answered, but could not serve now: the leader
            // changed, a server-side timeout, too many requests.
            Code::Unavailable | Code::ResourceExhausted | Code::Aborted
                if message.starts_with("etcdserver:") =>
            {
                Failure::Member(Fault::Busy(message))
            }
            Code::Unavailable | Code::Unknown | Code::Cancelled => {
                Failure::Member(Fault::Unreachable(why))
            }
            _ => Failure::Final(EtcdError::Other {
                endpoints,
                detail: why,
            }),
        }
    }

    /// The one error for a request no member served: the cause that
    /// matters most, then each member tried and how it failed.
    fn failed(&self, faults: &[Option<Fault>], asked: &[bool]) -> EtcdError {
        let s = &self.shared;
        let tried: Vec<(&str, &Fault)> = s
            .members
            .iter()
            .zip(faults)
            .filter_map(|(m, f)| Some((m.endpoint.as_str(), f.as_ref()?)))
            .collect();
        let untried = asked.iter().filter(|a| !**a).count();
        failure_message(&s.endpoints, &tried, untried, s.timeout, s.caller)
    }
}

/// See [`Etcd::failed`]. One member: its own error, worded as always.
/// Several: the headline is "no leader" when any member runs without one
/// (a member that answers at all says the most), else the one thing every
/// member had in common (a timeout, TLS), else "unreachable".
fn failure_message(
    endpoints: &str,
    tried: &[(&str, &Fault)],
    untried: usize,
    timeout: Duration,
    caller: Caller,
) -> EtcdError {
    let endpoints = endpoints.to_owned();
    let advice = caller.advice();
    if let ([(_, fault)], 0) = (tried, untried) {
        return match fault {
            Fault::Unreachable(why) => EtcdError::Unreachable {
                endpoints,
                detail: why.clone(),
                hint: advice.unreachable,
            },
            Fault::Tls(why) => EtcdError::Tls {
                endpoints,
                detail: why.clone(),
                hint: advice.tls,
            },
            Fault::Timeout => EtcdError::Timeout {
                endpoints,
                timeout,
                hint: advice.timeout,
            },
            Fault::NoLeader(why) => EtcdError::NoQuorum {
                endpoints,
                detail: format!("the member answered `{why}`"),
            },
            Fault::Busy(why) => EtcdError::Other {
                endpoints,
                detail: why.clone(),
            },
        };
    }
    let each: Vec<String> = tried
        .iter()
        .map(|(e, f)| format!("{e}: {}", f.describe(timeout)))
        .collect();
    let mut detail = match untried {
        0 => format!("tried every member: {}", each.join("; ")),
        _ => format!(
            "tried {} of {} members in time: {}",
            tried.len(),
            tried.len() + untried,
            each.join("; ")
        ),
    };
    let all = |p: fn(&Fault) -> bool| tried.iter().all(|(_, f)| p(f));
    if tried.iter().any(|(_, f)| matches!(f, Fault::NoLeader(_))) {
        EtcdError::NoQuorum { endpoints, detail }
    } else if all(|f| *f == Fault::Timeout) {
        EtcdError::Timeout {
            endpoints,
            timeout,
            hint: advice.timeout,
        }
    } else if all(|f| matches!(f, Fault::Tls(_))) {
        EtcdError::Tls {
            endpoints,
            detail,
            hint: advice.tls,
        }
    } else if all(|f| matches!(f, Fault::Busy(_))) {
        detail.insert_str(0, "no member could serve the request; ");
        EtcdError::Other { endpoints, detail }
    } else {
        EtcdError::Unreachable {
            endpoints,
            detail,
            hint: advice.unreachable,
        }
    }
}

fn read_file(what: &str, path: &Path) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|e| EtcdError::Config(format!("cannot read the {what} {}: {e}", path.display())))
}

fn tls_options(settings: &Settings, advice: &Advice) -> Result<TlsOptions, EtcdError> {
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
            return Err(EtcdError::Config(format!(
                "a client certificate needs both {}",
                advice.cert_and_key
            )));
        }
    }
    Ok(tls)
}

/// What went wrong, in one line: tonic's message (or the error itself)
/// and the innermost cause; never tonic's or hyper's debug text (tonic's
/// `Display` of a status shows its source with `{:?}`). For every
/// etcd_client error shown to a user.
pub fn reason(e: &etcd_client::Error) -> String {
    use std::error::Error as _;
    match e {
        etcd_client::Error::GRpcStatus(s) => crate::diag::head_and_cause(s.message(), s.source()),
        etcd_client::Error::TransportError(t) => {
            crate::diag::head_and_cause(&t.to_string(), t.source())
        }
        other => crate::diag::head_and_cause(&other.to_string(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);
    const G: Caller = Caller::Generator;

    fn refused() -> Fault {
        Fault::Unreachable("tcp connect error: Connection refused (os error 111)".into())
    }

    fn no_leader() -> Fault {
        Fault::NoLeader("etcdserver: no leader".into())
    }

    #[test]
    fn one_member_keeps_its_own_wording() {
        let e = failure_message("http://a", &[("http://a", &refused())], 0, T, G);
        assert_eq!(
            e.to_string(),
            "etcd at http://a is unreachable (tcp connect error: Connection refused (os error 111)); \
             check that etcd runs there, or set the endpoints (--etcd-endpoints, UNITGEN_ETCD_ENDPOINTS)"
        );
        let e = failure_message("http://a", &[("http://a", &Fault::Timeout)], 0, T, G);
        assert_eq!(
            e.to_string(),
            "etcd at http://a did not answer within 1s; check that etcd is healthy, or raise --etcd-timeout"
        );
        let e = failure_message("http://a", &[("http://a", &no_leader())], 0, T, G);
        assert_eq!(
            e.to_string(),
            "etcd at http://a has no leader, so no quorum of its members is up and connected \
             (the member answered `etcdserver: no leader`); start the members that are down, \
             or reconnect them to the others"
        );
    }

    /// tonic's `Display` of a status shows its source with `{:?}`
    /// (`source: hyper::Error(Body, ...)`): what users see goes through
    /// `reason`, which never does.
    #[test]
    fn an_etcd_client_error_is_said_without_debug_text() {
        #[derive(Debug)]
        struct Hyperish;
        impl std::fmt::Display for Hyperish {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error reading a body from connection")
            }
        }
        impl std::error::Error for Hyperish {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*IO)
            }
        }
        static IO: std::sync::LazyLock<std::io::Error> = std::sync::LazyLock::new(|| {
            std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset by peer",
            )
        });
        let status = tonic::Status::from_error(Box::new(Hyperish));
        let e = etcd_client::Error::GRpcStatus(status);
        assert!(e.to_string().contains("Hyperish"), "tonic's own: {e}");
        assert_eq!(
            reason(&e),
            "error reading a body from connection: connection reset by peer"
        );
    }

    #[test]
    fn the_runner_is_told_its_own_flags_and_spec_keys() {
        let e = failure_message(
            "http://a",
            &[("http://a", &refused())],
            0,
            T,
            Caller::Runner,
        );
        assert_eq!(
            e.to_string(),
            "etcd at http://a is unreachable (tcp connect error: Connection refused (os error \
             111)); check that etcd runs there and that the job's container can reach it; the \
             unit's --etcd-endpoint comes from the spec's `etcd.runner.endpoints`: correct it \
             there and render the units again"
        );
        let a = Caller::Runner.advice();
        for text in [
            a.unreachable,
            a.tls,
            a.bad_credentials,
            a.needs_auth,
            a.timeout,
            a.no_endpoints,
            a.password,
            a.user,
            a.cert_and_key,
        ] {
            for generator_only in [
                "--etcd-endpoints",
                "UNITGEN_ETCD_ENDPOINTS",
                "UNITGEN_ETCD_USER",
                "`etcd.endpoints`",
                "`etcd.username`",
                "`etcd.tls",
            ] {
                assert!(!text.contains(generator_only), "{text}");
            }
        }
    }

    #[test]
    fn a_member_without_a_leader_makes_it_no_quorum_and_each_member_is_named() {
        let e = failure_message(
            "http://a,http://b,http://c",
            &[
                ("http://a", &no_leader()),
                ("http://b", &refused()),
                ("http://c", &Fault::Timeout),
            ],
            0,
            T,
            G,
        );
        assert!(matches!(e, EtcdError::NoQuorum { .. }));
        assert_eq!(
            e.to_string(),
            "etcd at http://a,http://b,http://c has no leader, so no quorum of its members is up \
             and connected (tried every member: http://a: no leader; http://b: unreachable (tcp \
             connect error: Connection refused (os error 111)); http://c: did not answer within \
             1s); start the members that are down, or reconnect them to the others"
        );
        assert!(e.is_unavailable());
    }

    #[test]
    fn several_members_are_unreachable_unless_they_share_a_cause() {
        let two = "http://a,http://b";
        let e = failure_message(
            two,
            &[("http://a", &refused()), ("http://b", &Fault::Timeout)],
            0,
            T,
            G,
        );
        assert!(matches!(e, EtcdError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(
            "(tried every member: http://a: unreachable (tcp connect error: Connection refused \
             (os error 111)); http://b: did not answer within 1s)"
        ));
        let e = failure_message(
            two,
            &[("http://a", &Fault::Timeout), ("http://b", &Fault::Timeout)],
            0,
            T,
            G,
        );
        assert_eq!(
            e.to_string(),
            "etcd at http://a,http://b did not answer within 1s; check that etcd is healthy, or raise --etcd-timeout"
        );
        let tls = Fault::Tls("invalid peer certificate: UnknownIssuer".into());
        let e = failure_message(two, &[("http://a", &tls), ("http://b", &tls)], 0, T, G);
        assert!(matches!(e, EtcdError::Tls { .. }), "{e}");
        let busy = Fault::Busy("etcdserver: leader changed".into());
        let e = failure_message(
            two,
            &[("http://a", &busy), ("http://b", &refused())],
            0,
            T,
            G,
        );
        assert!(matches!(e, EtcdError::Unreachable { .. }), "{e}");
        let e = failure_message(two, &[("http://a", &busy), ("http://b", &busy)], 0, T, G);
        assert!(
            e.to_string()
                .starts_with("etcd at http://a,http://b: no member could serve the request; "),
            "{e}"
        );
        // Out of time before the last member was asked: say so.
        let e = failure_message(
            "http://a,http://b,http://c",
            &[("http://a", &Fault::Timeout), ("http://b", &refused())],
            1,
            T,
            G,
        );
        assert!(
            e.to_string()
                .contains("(tried 2 of 3 members in time: http://a: "),
            "{e}"
        );
    }

    #[test]
    fn only_availability_errors_are_worth_waiting_for() {
        let unavailable = EtcdError::Unreachable {
            endpoints: "e".into(),
            detail: "d".into(),
            hint: "h",
        };
        assert!(unavailable.is_unavailable());
        assert!(!EtcdError::Missing { key: "/k".into() }.is_unavailable());
        assert!(
            !EtcdError::PermissionDenied {
                endpoints: "e".into(),
                key: "/k".into()
            }
            .is_unavailable()
        );
        assert!(
            !EtcdError::Tls {
                endpoints: "e".into(),
                detail: "d".into(),
                hint: "h",
            }
            .is_unavailable()
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Nothing listens on port 9 of loopback: refused at once.
    #[test]
    fn refused_members_fail_fast_and_are_all_named() {
        runtime().block_on(async {
            let etcd = Etcd::connect(&Settings {
                endpoints: vec!["http://127.0.0.1:9".into(), "http://127.0.0.2:9".into()],
                timeout: Some(Duration::from_secs(5)),
                ..Settings::default()
            })
            .await
            .unwrap();
            let started = std::time::Instant::now();
            let e = etcd.lookup("/k", Need::Value).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2), "{e}");
            let text = e.to_string();
            assert!(
                text.starts_with(
                    "etcd at http://127.0.0.1:9,http://127.0.0.2:9 is unreachable (tried every \
                     member: http://127.0.0.1:9: unreachable (tcp connect error"
                ),
                "{text}"
            );
            assert!(
                text.contains("; http://127.0.0.2:9: unreachable (tcp connect error"),
                "{text}"
            );
        });
    }

    /// A listener that accepts and never speaks: a hung member. The request
    /// moves on to the next member, and the whole request fits in one
    /// timeout even when every member hangs.
    #[test]
    fn hung_members_cost_at_most_one_timeout_in_all() {
        let hung: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let endpoints: Vec<String> = hung
            .iter()
            .map(|l| format!("http://{}", l.local_addr().unwrap()))
            .collect();
        runtime().block_on(async {
            let etcd = Etcd::connect(&Settings {
                endpoints: endpoints.clone(),
                timeout: Some(Duration::from_millis(600)),
                ..Settings::default()
            })
            .await
            .unwrap();
            let started = std::time::Instant::now();
            let e = etcd.lookup("/k", Need::Value).await.unwrap_err();
            let took = started.elapsed();
            assert!(
                took >= Duration::from_millis(600) && took < Duration::from_millis(1200),
                "{took:?}"
            );
            assert_eq!(
                e.to_string(),
                format!(
                    "etcd at {} did not answer within 600ms; check that etcd is healthy, or raise --etcd-timeout",
                    endpoints.join(",")
                )
            );
        });
        drop(hung);
    }
}
