//! A job's lock (`lock:` in the spec, `--lock JSON` on the runner's command
//! line): what keeps two runs that touch the same data apart. Its fields,
//! its rules, and the names both sides derive from it.
//!
//! A systemd timer never starts a service that is still active, so a lock
//! adds exclusion against what systemd cannot see: a manual run, another
//! job that touches the same data, and (for fleet jobs that move between
//! machines) a run on another machine.
//!
//! - A host lock (`name: backups`) is `flock(2)` on
//!   `/run/lock/unitgen/backups.lock`. The kernel releases it when the
//!   holder dies, SIGKILL included, and any `flock(1)` on that file (the
//!   seed's `flock -w 10`) takes part in the same exclusion.
//! - An etcd lock (`etcd: /locks/backups`) uses etcd's lock protocol (the
//!   keys `etcdctl lock` and etcd's Lock API use) with a lease the runner
//!   keeps alive; it is held only while that lease is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Text, Violation, timespan};
use crate::diag::{KeyPath, shown};

/// Where host locks live on the host, and inside the runner's container
/// (the unit bind-mounts the one onto the other). `/run/lock` is a tmpfs on
/// systemd hosts (CoreOS included), so stale files vanish at boot, and its
/// own folder keeps unitgen's lock files apart from everyone else's.
pub const HOST_LOCK_DIR: &str = "/run/lock/unitgen";

/// The etcd lease's time to live when the spec gives none: how long a
/// lock outlives a runner that died without releasing it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// etcd grants no lease shorter than 1.5 election timeouts (2 s with its
/// defaults); a shorter one would be silently lengthened.
pub const MIN_TTL: Duration = Duration::from_secs(2);
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// The exit status `flock(1)` is told to use when a host command's lock is
/// busy and `on_busy: skip`, so that `SuccessExitStatus=` can make exactly
/// that a success (75 is EX_TEMPFAIL, which systemd shows as `TEMPFAIL`).
pub const BUSY_EXIT_STATUS: u8 = 75;

/// The longest host lock name (a file name, with room for `.lock`).
const MAX_NAME: usize = 100;

/// What a run does when the lock is still held after `wait`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OnBusy {
    /// Fail the run (exit 1): a run that did not happen is a failure to see.
    #[default]
    Fail,
    /// Exit 0 with one log line: the other run does the work.
    Skip,
}

impl OnBusy {
    pub fn as_str(self) -> &'static str {
        match self {
            OnBusy::Fail => "fail",
            OnBusy::Skip => "skip",
        }
    }
}

/// A job's lock, as the runner receives it. Exactly one of `name` and
/// `etcd` is set ([`JobLock::check`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct JobLock<S = String> {
    /// A host lock: `/run/lock/unitgen/NAME.lock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<S>,
    /// An etcd lock under this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<S>,
    /// How long to wait for the lock (a time span); default 0: try once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_busy: Option<OnBusy>,
    /// The etcd lease's time to live (whole seconds); etcd locks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<S>,
}

/// Which lock, once judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind<'a> {
    Host { name: &'a str },
    Etcd { key: &'a str },
}

/// A host lock's name becomes a file name: letters, digits, `_.-`, not
/// starting with a dot (no hidden files, no `..`).
fn is_lock_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// An etcd lock's key: contenders' keys are `KEY/LEASE`, so it is an
/// absolute key that does not end in `/`.
fn is_lock_key(key: &str) -> bool {
    super::secret::is_etcd_key(key) && key.len() > 1 && !key.ends_with('/')
}

/// A lease TTL: whole seconds (etcd's unit) from [`MIN_TTL`] to [`MAX_TTL`].
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "`{}` is not a lease time to live: give whole seconds from {}s to {}s, e.g. `10s`",
            shown(text),
            MIN_TTL.as_secs(),
            MAX_TTL.as_secs()
        )
    };
    match timespan::parse(text) {
        Ok(Some(d)) if d.subsec_nanos() == 0 && (MIN_TTL..=MAX_TTL).contains(&d) => Ok(d),
        Ok(_) => Err(bad()),
        Err(e) => Err(e),
    }
}

impl<S: Text> JobLock<S> {
    /// Every rule the lock breaks, with fields named as in the spec's
    /// `lock:`; empty when the runner can take it.
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        match (&self.name, &self.etcd) {
            (Some(_), Some(_)) => out.push(Violation::at_key(
                KeyPath::root().key("etcd"),
                "a lock is either a host lock (`name`) or an etcd lock (`etcd`), not both",
            )),
            (None, None) => out.push(Violation::at_key(
                KeyPath::root(),
                "a lock needs `name: NAME` (a host lock, under /run/lock/unitgen) or \
                 `etcd: /KEY` (a lock across machines, in etcd)",
            )),
            _ => {}
        }
        if let Some(name) = self.name.as_ref().and_then(Text::known)
            && !is_lock_name(name)
        {
            out.push(Violation::at(
                "name",
                format!(
                    "`{}` is not a lock name: use letters, digits and `_.-`, starting with a \
                     letter or digit, at most {MAX_NAME} characters (it becomes \
                     {HOST_LOCK_DIR}/NAME.lock)",
                    shown(name)
                ),
            ));
        }
        if let Some(key) = self.etcd.as_ref().and_then(Text::known)
            && !is_lock_key(key)
        {
            out.push(Violation::at(
                "etcd",
                format!(
                    "`{}` is not an etcd key for a lock: write an absolute key such as \
                     `/locks/backups`, without whitespace and not ending in `/`",
                    shown(key)
                ),
            ));
        }
        if let Some(w) = self.wait.as_ref().and_then(Text::known)
            && let Err(e) = timespan::parse(w)
        {
            out.push(Violation::at("wait", e));
        }
        if let Some(ttl) = &self.ttl {
            if self.name.is_some() {
                out.push(Violation::at_key(
                    KeyPath::root().key("ttl"),
                    "`ttl` is an etcd lock's lease time to live; a host lock needs none (the \
                     kernel releases it when the runner ends, however it ends)",
                ));
            } else if let Some(t) = ttl.known()
                && let Err(e) = parse_ttl(t)
            {
                out.push(Violation::at("ttl", e));
            }
        }
        out
    }

    pub fn is_etcd(&self) -> bool {
        self.etcd.is_some()
    }

    pub fn on_busy(&self) -> OnBusy {
        self.on_busy.unwrap_or_default()
    }
}

impl JobLock<String> {
    /// The lock's kind and subject. [`JobLock::check`] has made sure there
    /// is exactly one; a lock that skipped the check reads as its host name.
    pub fn kind(&self) -> Result<LockKind<'_>, String> {
        match (&self.name, &self.etcd) {
            (Some(name), None) => Ok(LockKind::Host { name }),
            (None, Some(key)) => Ok(LockKind::Etcd { key }),
            _ => Err("a lock needs exactly one of `name` and `etcd`".into()),
        }
    }

    /// How long to wait: `Some(d)` at most `d` (0 by default: try once),
    /// `None` without limit (`infinity`).
    pub fn wait_limit(&self) -> Result<Option<Duration>, String> {
        match &self.wait {
            None => Ok(Some(Duration::ZERO)),
            Some(w) => timespan::parse(w),
        }
    }

    /// The etcd lease's time to live.
    pub fn ttl(&self) -> Result<Duration, String> {
        self.ttl.as_deref().map_or(Ok(DEFAULT_TTL), parse_ttl)
    }

    /// How the lock is named in messages: `host lock backups` or `etcd
    /// lock /locks/backups`.
    pub fn describe(&self) -> String {
        match self.kind() {
            Ok(LockKind::Host { name }) => format!("host lock {name}"),
            Ok(LockKind::Etcd { key }) => format!("etcd lock {key}"),
            Err(_) => "lock".into(),
        }
    }
}

impl JobLock<super::Maybe> {
    pub fn into_known(self) -> Option<JobLock> {
        let opt = |v: Option<super::Maybe>| match v {
            None => Some(None),
            Some(m) => m.into_known().map(Some),
        };
        Some(JobLock {
            name: opt(self.name)?,
            etcd: opt(self.etcd)?,
            wait: opt(self.wait)?,
            on_busy: self.on_busy,
            ttl: opt(self.ttl)?,
        })
    }
}

/// The host lock file of lock `name`, under `dir` ([`HOST_LOCK_DIR`]
/// unless the runner is told otherwise).
pub fn host_lock_file(dir: &str, name: &str) -> String {
    format!("{}/{name}.lock", dir.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> JobLock {
        JobLock {
            name: Some("backups".into()),
            etcd: None,
            wait: Some("10s".into()),
            on_busy: None,
            ttl: None,
        }
    }

    fn fields(l: &JobLock) -> Vec<String> {
        l.check().into_iter().map(|v| v.field.to_string()).collect()
    }

    #[test]
    fn rules() {
        assert!(host().check().is_empty());
        let etcd = JobLock {
            name: None,
            etcd: Some("/locks/backups".into()),
            ttl: Some("3s".into()),
            ..host()
        };
        assert!(etcd.check().is_empty());
        assert_eq!(etcd.ttl(), Ok(Duration::from_secs(3)));
        assert_eq!(host().ttl(), Ok(DEFAULT_TTL));

        let both = JobLock {
            etcd: Some("/l".into()),
            ..host()
        };
        assert_eq!(fields(&both), ["etcd"]);
        let neither = JobLock {
            name: None,
            ..host()
        };
        assert_eq!(fields(&neither), ["(top level)"]);
        assert!(neither.check()[0].about_key);

        for bad in [".hidden", "a/b", "", "x y", &"n".repeat(101)] {
            let l = JobLock {
                name: Some(bad.to_owned()),
                ..host()
            };
            assert_eq!(fields(&l), ["name"], "{bad:?}");
        }
        for bad in ["locks/x", "/", "/locks/", "/a b"] {
            let l = JobLock {
                name: None,
                etcd: Some(bad.into()),
                ..host()
            };
            assert_eq!(fields(&l), ["etcd"], "{bad:?}");
        }
        let l = JobLock {
            wait: Some("soon".into()),
            ttl: Some("10s".into()),
            ..host()
        };
        assert_eq!(fields(&l), ["wait", "ttl"]);
        for bad in ["1s", "2.5s", "2h", "infinity", "x"] {
            let l = JobLock {
                name: None,
                etcd: Some("/l".into()),
                ttl: Some(bad.into()),
                ..host()
            };
            assert_eq!(fields(&l), ["ttl"], "{bad:?}");
        }
    }

    #[test]
    fn wait_defaults_to_trying_once() {
        let l = JobLock {
            wait: None,
            ..host()
        };
        assert_eq!(l.wait_limit(), Ok(Some(Duration::ZERO)));
        let l = JobLock {
            wait: Some("infinity".into()),
            ..host()
        };
        assert_eq!(l.wait_limit(), Ok(None));
        assert_eq!(host().describe(), "host lock backups");
        assert_eq!(
            host_lock_file(HOST_LOCK_DIR, "backups"),
            "/run/lock/unitgen/backups.lock"
        );
    }

    #[test]
    fn the_json_is_the_spec_as_written() {
        let json = serde_json::to_string(&host()).unwrap();
        assert_eq!(json, r#"{"name":"backups","wait":"10s"}"#);
        let back: JobLock = serde_json::from_str(&json).unwrap();
        assert_eq!(back, host());
        assert!(serde_json::from_str::<JobLock>(r#"{"name":"x","bogus":1}"#).is_err());
        let skip: JobLock = serde_json::from_str(r#"{"etcd":"/l","on_busy":"skip"}"#).unwrap();
        assert_eq!(skip.on_busy(), OnBusy::Skip);
    }
}
