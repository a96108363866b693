//! etcd locks, for the runner's `lock: { etcd: KEY }`.
//!
//! The protocol is etcd's own (its `concurrency.Mutex`, which both
//! `etcdctl lock` and etcd's Lock API run): each contender puts
//! `KEY/<its lease id in hex>`, attached to its lease; the contender whose
//! key has the lowest create revision holds the lock, and every other
//! waits for the deletion of the newest key older than its own. So a
//! runner excludes, and is excluded by, `etcdctl lock KEY` and users of the
//! Lock API, and a holder that dies releases the lock when its lease
//! expires.
//!
//! Why not call the Lock API itself: it is one request that blocks until
//! the lock is free, and requests here go through [`Etcd::run`], which asks
//! the next member when one is slow. A second Lock request for the same
//! lease shares the first one's key; when the first is cancelled (its
//! member hung), etcd deletes that key while the second believes it holds
//! the lock: two holders. Here every request is short and safe to send
//! twice (the put is conditional), and the only long wait is a watch,
//! which holds nothing.
//!
//! A lock is held only while its lease is alive. The keeper renews the
//! lease every third of its TTL and tracks how long etcd keeps it at
//! least: a renewal sent at `t` and answered with TTL `T` keeps the lease
//! alive until `t + T`, whatever happens after. If that time comes (less a
//! margin for stopping) without a newer answer, or etcd answers that the
//! lease is gone, the lock is lost, and [`EtcdLock::lost`] says so: the
//! holder must stop before anyone else can take the lock.

use std::fmt;
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{Etcd, EtcdError};

/// Pause before asking again when a keep-alive or a watch failed.
const RETRY: Duration = Duration::from_millis(200);

/// Why a held lock is no longer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseLost {
    /// etcd answered that the lease no longer exists (revoked, or expired).
    Gone { lease: i64 },
    /// No renewal was answered for as long as etcd keeps the lease: etcd
    /// may have let it expire and given the lock to another contender.
    Silent { lease: i64, for_: Duration },
    /// The keeper stopped (a bug): nothing renews the lease any more.
    Stopped { lease: i64 },
}

impl fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseLost::Gone { lease } => write!(
                f,
                "etcd says its lease {lease:x} no longer exists (revoked, or expired)"
            ),
            LeaseLost::Silent { lease, for_ } => write!(
                f,
                "etcd answered no keep-alive of its lease {lease:x} for {:.1}s, so the lease may \
                 have expired",
                for_.as_secs_f64()
            ),
            LeaseLost::Stopped { lease } => write!(
                f,
                "the keep-alive of its lease {lease:x} stopped; this is a bug in unitgen, please \
                 report it"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("the lock was lost while waiting for it: {0}")]
    Lost(LeaseLost),
}

/// A contender for an etcd lock: a lease that is kept alive from the
/// start (a wait may outlast its TTL), and, once [`EtcdLock::acquire`]
/// succeeds, the lock. Release it with [`EtcdLock::release`]; dropped
/// instead, it stops renewing, and etcd releases the lock within the TTL.
pub struct EtcdLock {
    etcd: Etcd,
    name: String,
    key: String,
    lease: i64,
    holder: String,
    lost: oneshot::Receiver<LeaseLost>,
    keeper: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Where one round of contention ended.
enum Contention {
    Held,
    Busy,
    /// Our key is gone: only the lease's end deletes it.
    KeyGone,
}

impl Etcd {
    /// A contender for lock `name`: a lease of `ttl` (whole seconds),
    /// kept alive until released. `holder` is stored in the contender's
    /// key, for others' messages only ("held by ..."); nothing trusts it.
    pub async fn lock_contender(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<EtcdLock, EtcdError> {
        let secs = ttl.as_secs().max(1) as i64;
        let sent = Instant::now();
        let grant = self
            .run(
                None,
                move |mut c| async move { c.lease_grant(secs, None).await },
            )
            .await?;
        if grant.ttl() <= 0 || !grant.error().is_empty() {
            return Err(EtcdError::Other {
                endpoints: self.endpoints().to_owned(),
                detail: format!("etcd granted no lease: {}", grant.error()),
            });
        }
        let lease = grant.id();
        let granted = Duration::from_secs(grant.ttl() as u64);
        let (tx, rx) = oneshot::channel();
        let keeper = tokio::spawn(keep_alive(self.clone(), lease, granted, sent + granted, tx));
        Ok(EtcdLock {
            etcd: self.clone(),
            name: name.to_owned(),
            key: format!("{name}/{lease:x}"),
            lease,
            holder: holder.to_owned(),
            lost: rx,
            keeper,
        })
    }
}

impl EtcdLock {
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// This contender's key, `NAME/LEASE`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Takes the lock, waiting at most `wait` (`None`: without limit)
    /// for the contenders ahead to let go. `Ok(false)`: still held by
    /// another after `wait` (this contender's key stays until release).
    pub async fn acquire(&mut self, wait: Option<Duration>) -> Result<bool, LockError> {
        let contention = contend(
            &self.etcd,
            &self.name,
            &self.key,
            self.lease,
            &self.holder,
            wait,
        );
        let outcome = tokio::select! {
            c = contention => c?,
            lost = &mut self.lost => {
                return Err(LockError::Lost(lost.unwrap_or(LeaseLost::Stopped { lease: self.lease })));
            }
        };
        match outcome {
            Contention::Held => Ok(true),
            Contention::Busy => Ok(false),
            Contention::KeyGone => Err(LockError::Lost(LeaseLost::Gone { lease: self.lease })),
        }
    }

    /// What the holder of the lock wrote about itself, if anyone holds it.
    pub async fn holder(&self) -> Result<Option<String>, EtcdError> {
        let prefix = format!("{}/", self.name);
        let first = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Create, SortOrder::Ascend)
            .with_limit(1);
        let p = prefix.clone();
        let resp = self
            .etcd
            .run(Some(&prefix), move |mut c| {
                let (p, first) = (p.clone(), first.clone());
                async move { c.get(p, Some(first)).await }
            })
            .await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    /// Resolves when the lease is lost; never while it is alive.
    pub async fn lost(&mut self) -> LeaseLost {
        match (&mut self.lost).await {
            Ok(lost) => lost,
            Err(_) => LeaseLost::Stopped { lease: self.lease },
        }
    }

    /// Lets go: stops renewing and revokes the lease, which deletes this
    /// contender's key (and so hands the lock to the next). If etcd cannot
    /// be reached, the lease expires within its TTL instead.
    pub async fn release(self) -> Result<(), EtcdError> {
        self.keeper.abort();
        let lease = self.lease;
        self.etcd
            .run(None, move |mut c| async move {
                match c.lease_revoke(lease).await {
                    Ok(_) => Ok(()),
                    // Already gone: released all the same.
                    Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("not found") => {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
    }
}

/// etcd's lock protocol, from putting this contender's key to holding
/// the lock (or giving up after `wait`).
async fn contend(
    etcd: &Etcd,
    name: &str,
    key: &str,
    lease: i64,
    holder: &str,
    wait: Option<Duration>,
) -> Result<Contention, EtcdError> {
    let deadline = wait.map(|w| Instant::now() + w);
    // Put the key unless it is there already (a request sent twice), and
    // learn its create revision either way.
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            holder,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = etcd
        .run(Some(key), move |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    let revision = if resp.succeeded() {
        resp.header().map_or(0, |h| h.revision())
    } else {
        let existing = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.create_revision()),
            _ => None,
        });
        match existing {
            Some(rev) => rev,
            None => return Ok(Contention::KeyGone),
        }
    };
    let prefix = format!("{name}/");
    loop {
        // The newest contender ahead of us, if any.
        let ahead = GetOptions::new()
            .with_prefix()
            .with_max_create_revision(revision - 1)
            .with_sort(SortTarget::Create, SortOrder::Descend)
            .with_limit(1);
        let p = prefix.clone();
        let resp = etcd
            .run(Some(&prefix), move |mut c| {
                let (p, ahead) = (p.clone(), ahead.clone());
                async move { c.get(p, Some(ahead)).await }
            })
            .await?;
        // (`max_create_revision` 0 would mean "no limit" to etcd, and
        // return our own key: never wait for oneself.)
        let Some(kv) = resp.kvs().first().filter(|kv| kv.key() != key.as_bytes()) else {
            break;
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Contention::Busy);
        }
        let Ok(other) = kv.key_str().map(str::to_owned) else {
            // Not a key this protocol writes (ours are UTF-8): wait for it
            // all the same, by polling.
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let seen = resp.header().map_or(0, |h| h.revision());
        let deleted = wait_deleted(etcd, other, seen + 1);
        match deadline {
            Some(d) => {
                if tokio::time::timeout_at(d, deleted).await.is_err() {
                    return Ok(Contention::Busy);
                }
            }
            None => deleted.await,
        }
    }
    // As etcd's own Mutex does: the key must still be there, or the lease
    // ended while we waited.
    let k = key.to_owned();
    let resp = etcd
        .run(Some(key), move |mut c| {
            let k = k.clone();
            async move { c.get(k, Some(GetOptions::new().with_count_only())).await }
        })
        .await?;
    Ok(if resp.count() > 0 {
        Contention::Held
    } else {
        Contention::KeyGone
    })
}

/// Returns once `key` is deleted at or after `from`, or when the watch
/// ends (a member went away, the revision was compacted): the caller then
/// looks at the contenders again.
async fn wait_deleted(etcd: &Etcd, key: String, from: i64) {
    let Ok(mut stream) = etcd.watch(&[key.as_str()], from).await else {
        tokio::time::sleep(RETRY).await;
        return;
    };
    loop {
        match stream.message().await {
            Ok(Some(r)) if r.canceled() => return,
            Ok(Some(r)) => {
                if r.events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return;
                }
            }
            Ok(None) | Err(_) => {
                tokio::time::sleep(RETRY).await;
                return;
            }
        }
    }
}

type KeepAlive = (LeaseKeeper, LeaseKeepAliveStream);

/// Renews `lease` every third of `ttl` until it is lost, then says how.
/// `alive_until` is how long etcd keeps the lease at least, as of now.
async fn keep_alive(
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    mut alive_until: Instant,
    lost: oneshot::Sender<LeaseLost>,
) {
    // The holder stops this long before etcd could let the lease expire:
    // stopping a step takes a moment.
    let margin = (ttl / 5).min(Duration::from_secs(1));
    let period = ttl / 3;
    let mut next = Instant::now() + period;
    let mut stream: Option<KeepAlive> = None;
    let mut answered = Instant::now();
    loop {
        let renew = async {
            tokio::time::sleep_until(next).await;
            let sent = Instant::now();
            let result = renew_once(&etcd, lease, ttl, period, &mut stream).await;
            (sent, result)
        };
        let outcome = tokio::select! {
            _ = tokio::time::sleep_until(alive_until - margin) => None,
            r = renew => Some(r),
        };
        match outcome {
            None => {
                let _ = lost.send(LeaseLost::Silent {
                    lease,
                    for_: answered.elapsed(),
                });
                return;
            }
            Some((sent, Ok(Some(t)))) => {
                alive_until = sent + t;
                answered = sent;
                next = sent + period;
            }
            Some((_, Ok(None))) => {
                let _ = lost.send(LeaseLost::Gone { lease });
                return;
            }
            Some((_, Err(()))) => {
                // The stream broke (a member went away): open a new one,
                // on whichever member answers.
                stream = None;
                next = Instant::now() + RETRY;
            }
        }
    }
}

/// One renewal: `Ok(Some(ttl))` renewed, `Ok(None)` the lease is gone,
/// `Err(())` no answer (try again).
async fn renew_once(
    etcd: &Etcd,
    lease: i64,
    ttl: Duration,
    period: Duration,
    stream: &mut Option<KeepAlive>,
) -> Result<Option<Duration>, ()> {
    // An answer later than the next renewal is of no use.
    let limit = etcd
        .shared
        .timeout
        .min(period.max(Duration::from_millis(500)));
    match stream {
        None => {
            // Opening the stream renews the lease once: etcd-client sends
            // the first keep-alive and checks its answer (a TTL of 0 means
            // the lease is gone), but does not return the TTL, which is
            // the lease's own.
            let open = etcd.run(None, move |mut c| async move {
                match c.lease_keep_alive(lease).await {
                    Ok(pair) => Ok(Some(pair)),
                    Err(etcd_client::Error::LeaseKeepAliveError(m)) if m.contains("not found") => {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            });
            match tokio::time::timeout(limit, open).await {
                Ok(Ok(Some(pair))) => {
                    *stream = Some(pair);
                    Ok(Some(ttl))
                }
                Ok(Ok(None)) => Ok(None),
                Ok(Err(_)) | Err(_) => Err(()),
            }
        }
        Some((keeper, responses)) => {
            let ask = async {
                keeper.keep_alive().await.map_err(|_| ())?;
                match responses.message().await {
                    Ok(Some(r)) if r.ttl() > 0 => Ok(Some(Duration::from_secs(r.ttl() as u64))),
                    Ok(Some(_)) => Ok(None),
                    Ok(None) | Err(_) => Err(()),
                }
            };
            tokio::time::timeout(limit, ask).await.unwrap_or(Err(()))
        }
    }
}
