//! The job's lock, taken before the first step and held until the last
//! one ends (rules and kinds: `contract/lock.rs`).
//!
//! A host lock is `flock(2)` (`File::try_lock`, polled until `wait` is
//! up) on `LOCK_DIR/NAME.lock`: the kernel drops it when the process
//! ends, however it ends, so a SIGKILLed run never leaves it held, and
//! `flock(1)` on the same file (the seed's cron line, a host command's
//! unit) takes part. Lock files are never deleted: deleting one while a
//! waiter has it open would let two runs hold "the" lock on two files.
//!
//! An etcd lock is [`EtcdLock`]: held only while its lease is, and
//! [`Held::lost`] resolves when the lease is lost, so that the runner
//! stops the running step.
//!
//! The holder writes who it is (job, pid, host, since when) into the lock
//! file or its etcd key, for the "held by ..." message of the run that
//! finds it busy. Nothing trusts it: the kernel and etcd decide who holds.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{Args, Failure, Signals, log};
use crate::contract::lock::{JobLock, LockKind};
use crate::diag::flat;
use crate::etcd::{Etcd, EtcdError, EtcdLock, LeaseLost, LockError};

/// How often a busy host lock is tried again. flock(2) has no timeout;
/// a short poll costs nothing and keeps SIGTERM able to end the wait.
const POLL: Duration = Duration::from_millis(100);

/// What a holder says about itself.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    job: String,
    pid: u32,
    host: String,
    since: String,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "?".into())
}

/// This run, as a holder (JSON).
pub fn holder_info(job: &str) -> String {
    let me = Holder {
        job: job.to_owned(),
        pid: std::process::id(),
        host: hostname(),
        since: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
    };
    serde_json::to_string(&me).expect("a holder serializes")
}

/// `job X (pid N on host H, since T)`, or what the holder wrote, or that
/// it is not known.
fn describe_holder(text: Option<&str>) -> String {
    match text.map(str::trim) {
        None | Some("") => "another run (which did not say who it is)".into(),
        Some(t) => match serde_json::from_str::<Holder>(t) {
            Ok(h) => format!(
                "job {} (pid {} on host {}, since {})",
                flat(&h.job, 100),
                h.pid,
                flat(&h.host, 100),
                flat(&h.since, 40)
            ),
            Err(_) => format!("`{}`", flat(t, 200)),
        },
    }
}

/// `flock(2)` on a host lock file.
pub struct HostLock {
    file: File,
    path: PathBuf,
}

impl HostLock {
    /// Opens (creating) `DIR/NAME.lock`, creating `DIR` if needed.
    pub fn open(dir: &Path, name: &str) -> Result<HostLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the lock folder {}: {e}", dir.display()))?;
        let path = dir.join(format!("{name}.lock"));
        // 0600: flock(2) needs only a read-only descriptor, so anyone who
        // could open the file could hold the lock forever. O_NOFOLLOW:
        // the holder's line is written into it, never through a symlink
        // someone planted.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match file.metadata() {
            Ok(m) if m.is_file() => Ok(HostLock { file, path }),
            Ok(_) => Err(format!(
                "the lock file {} is not a regular file",
                path.display()
            )),
            Err(e) => Err(format!("cannot stat the lock file {}: {e}", path.display())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock, trying until `wait` is up (`None`: forever).
    /// `Ok(false)`: still held by another.
    pub async fn acquire(&self, wait: Option<Duration>, holder: &str) -> Result<bool, String> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match self.file.try_lock() {
                Ok(()) => {
                    // Best effort: who holds it, for others' messages.
                    let _ = self.file.set_len(0);
                    let _ = self.file.write_all_at(format!("{holder}\n").as_bytes(), 0);
                    return Ok(true);
                }
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(format!("cannot lock {}: {e}", self.path.display()));
                }
            }
            let now = Instant::now();
            let nap = match deadline {
                Some(d) if now >= d => return Ok(false),
                Some(d) => POLL.min(d - now),
                None => POLL,
            };
            tokio::time::sleep(nap).await;
        }
    }

    /// What the current holder wrote.
    fn holder(&self) -> Option<String> {
        std::fs::read(&self.path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(4096)]).into_owned())
    }

    /// Clears the holder's line, then unlocks (closing the file would
    /// too; the kernel does it if this process dies first).
    fn release(self) {
        let _ = self.file.set_len(0);
        let _ = (&self.file).flush();
        let _ = self.file.unlock();
    }
}

/// A lock this run holds.
pub enum Held {
    Host(HostLock),
    Etcd { lock: EtcdLock, key: String },
}

impl Held {
    /// Resolves when the lock is lost (an etcd lease); a host lock never is.
    pub async fn lost(&mut self) -> LeaseLost {
        match self {
            Held::Host(_) => std::future::pending().await,
            Held::Etcd { lock, .. } => lock.lost().await,
        }
    }

    /// Lets go. A failure is logged: an etcd lock then ends with its
    /// lease, within its TTL.
    pub async fn release(self) {
        match self {
            Held::Host(lock) => lock.release(),
            Held::Etcd { lock, key } => {
                if let Err(e) = lock.release().await {
                    log::warn(format!(
                        "could not release the etcd lock {key}: {e}; etcd releases it when its \
                         lease expires"
                    ));
                }
            }
        }
    }
}

/// The outcome of taking the lock.
pub enum Taken {
    Held(Held),
    /// Still held by another after `wait`: why, in one sentence.
    Busy(String),
}

fn waited(lock: &JobLock) -> String {
    match lock.wait.as_deref() {
        None => "without waiting (no `wait`)".into(),
        Some(w) => format!("after waiting {}", w.trim()),
    }
}

/// Takes the job's lock. A signal while waiting ends the wait, lets go
/// of whatever was taken, and fails the run.
pub async fn take(args: &Args, lock: &JobLock, signals: &mut Signals) -> Result<Taken, Failure> {
    let kind = lock.kind().map_err(Failure::Config)?;
    let wait = lock.wait_limit().map_err(Failure::Config)?;
    let me = holder_info(&args.job);
    let stopped = |sig: &str| {
        Failure::Step(format!(
            "stopped by {sig} while waiting for the {}",
            lock.describe()
        ))
    };
    match kind {
        LockKind::Host { name } => {
            let host = HostLock::open(&args.lock_dir, name).map_err(Failure::Step)?;
            let acquired = tokio::select! {
                r = host.acquire(wait, &me) => r.map_err(Failure::Step)?,
                sig = signals.recv() => return Err(stopped(sig)),
            };
            if acquired {
                log::info(format!(
                    "took the host lock {name} ({})",
                    host.path().display()
                ));
                return Ok(Taken::Held(Held::Host(host)));
            }
            Ok(Taken::Busy(format!(
                "the host lock {name} ({}) is held by {}; gave up {}",
                host.path().display(),
                describe_holder(host.holder().as_deref()),
                waited(lock)
            )))
        }
        LockKind::Etcd { key } => {
            let ttl = lock.ttl().map_err(Failure::Config)?;
            let etcd = Etcd::connect(&args.etcd.settings().map_err(|e| etcd_failure(key, e))?)
                .await
                .map_err(|e| etcd_failure(key, e))?;
            let mut contender = tokio::select! {
                r = etcd.lock_contender(key, &me, ttl) => r.map_err(|e| etcd_failure(key, e))?,
                sig = signals.recv() => return Err(stopped(sig)),
            };
            let acquired = tokio::select! {
                r = contender.acquire(wait) => r,
                sig = signals.recv() => {
                    let _ = contender.release().await;
                    return Err(stopped(sig));
                }
            };
            match acquired {
                Ok(true) => {
                    log::info(format!(
                        "took the etcd lock {key} (as {}, lease TTL {}s)",
                        contender.key(),
                        ttl.as_secs()
                    ));
                    Ok(Taken::Held(Held::Etcd {
                        lock: contender,
                        key: key.to_owned(),
                    }))
                }
                Ok(false) => {
                    let holder = contender.holder().await.ok().flatten();
                    if let Err(e) = contender.release().await {
                        log::warn(format!(
                            "could not withdraw from the etcd lock {key}: {e}; etcd does when \
                             the lease expires"
                        ));
                    }
                    Ok(Taken::Busy(format!(
                        "the etcd lock {key} is held by {}; gave up {}",
                        describe_holder(holder.as_deref()),
                        waited(lock)
                    )))
                }
                Err(LockError::Etcd(e)) => {
                    let _ = contender.release().await;
                    Err(etcd_failure(key, e))
                }
                Err(LockError::Lost(lost)) => Err(Failure::Step(format!(
                    "lost the etcd lock {key} while waiting for it: {lost}"
                ))),
            }
        }
    }
}

fn etcd_failure(key: &str, e: EtcdError) -> Failure {
    let message = format!("cannot take the etcd lock {key}: {e}");
    match e {
        EtcdError::Config(_) => Failure::Config(message),
        _ => Failure::Step(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_described_from_what_they_wrote() {
        let me = holder_info("nightly");
        let text = describe_holder(Some(&me));
        assert!(
            text.starts_with(&format!("job nightly (pid {} on host ", std::process::id())),
            "{text}"
        );
        assert_eq!(
            describe_holder(Some("  ")),
            "another run (which did not say who it is)"
        );
        assert_eq!(describe_holder(Some("cron\x1b[2J")), "`cron?[2J`");
    }

    #[test]
    fn a_host_lock_excludes_a_second_holder_until_released() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let a = HostLock::open(dir.path(), "x").unwrap();
            let b = HostLock::open(dir.path(), "x").unwrap();
            assert!(a.acquire(Some(Duration::ZERO), "a").await.unwrap());
            assert!(!b.acquire(Some(Duration::ZERO), "b").await.unwrap());
            assert_eq!(b.holder().as_deref(), Some("a\n"));
            a.release();
            assert!(b.acquire(Some(Duration::from_secs(5)), "b").await.unwrap());
        });
    }
}
