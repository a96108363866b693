//! The job's `lock`: resolved, judged by the contract's own rules
//! (`contract/lock.rs`), and how the service takes it.
//!
//! - A runner job: unitgen-runner holds it around all steps (`--lock
//!   JSON`). A host lock needs the host's lock folder inside the container:
//!   the unit creates it (`ExecStartPre=/bin/mkdir -p`, which works on
//!   plain systemd and on fleet hosts alike, where no tmpfiles.d snippet
//!   can be shipped; `RuntimeDirectory=` would delete it when the unit
//!   stops, under another job's lock) and bind-mounts it.
//! - A host `command`: `flock(1)` holds a host lock around it, on the same
//!   file, so runner jobs and host commands naming one lock exclude each
//!   other. `on_busy: skip` becomes `flock -E 75` plus
//!   `SuccessExitStatus=75` (a command that itself exits 75 then counts as
//!   skipped too; the docs say so). An etcd lock needs the runner: refused.
//! - A `container.command` has neither the runner nor a way to run flock
//!   around what runs inside: refused, with the alternatives.

use std::time::Duration;

use super::Cx;
use crate::contract::lock::{BUSY_EXIT_STATUS, HOST_LOCK_DIR, JobLock, LockKind, OnBusy};
use crate::contract::{Maybe, timespan};
use crate::diag::{KeyPath, shown};
use crate::generate::escape::ExecWord;
use crate::generate::model::Command;
use crate::generate::spec::{Defaults, Job, Str};

/// util-linux's `flock(1)`, at the same path on Debian, CoreOS and
/// Fedora-like hosts.
const FLOCK: &str = "/usr/bin/flock";
/// `/bin` exists on merged-/usr hosts (as a link) and on the others.
const MKDIR: &str = "/bin/mkdir";

impl Cx<'_> {
    /// The job's lock, judged; `Some(None)` without one, `None` after
    /// reporting a problem (or meeting a value not known yet).
    pub(super) fn lock(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        path: &KeyPath,
    ) -> Option<Option<JobLock>> {
        let Some(spec) = &job.lock else {
            return Some(None);
        };
        let p = path.key("lock");
        let mut text = |v: Option<&Str>, field: &str| v.map(|v| self.text(v, &p.key(field)));
        let lock: JobLock<Maybe> = JobLock {
            name: text(spec.name.as_ref(), "name"),
            etcd: text(spec.etcd.as_ref(), "etcd"),
            wait: text(spec.wait.as_ref(), "wait"),
            on_busy: spec.on_busy,
            ttl: text(spec.ttl.as_ref(), "ttl"),
        };
        let before = self.problems.len();
        for v in lock.check() {
            let at = p.join(&v.field);
            if v.about_key {
                self.key_err(&at, v.message);
            } else {
                self.err(&at, v.message);
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let Some(lock) = lock.into_known() else {
            self.unknown = true;
            return None;
        };
        self.wait_within_timeout(&lock, job, defaults, &p)?;
        Some(Some(lock))
    }

    /// A wait as long as the job's `timeout` would have systemd stop the
    /// run while it waits: the lock could never help.
    fn wait_within_timeout(
        &mut self,
        lock: &JobLock,
        job: &Job,
        defaults: &Defaults,
        p: &KeyPath,
    ) -> Option<()> {
        // The timeout's own problems are reported where it is checked;
        // here it is only read.
        let timeout = match job.timeout.as_ref().or(defaults.timeout.as_ref()) {
            Some(Str::Literal(t)) => Some(t.clone()),
            Some(Str::Etcd(r)) => self.values.get(&r.etcd).ok().flatten().map(str::to_owned),
            None => None,
        };
        let Some(Ok(Some(limit))) = timeout.as_deref().map(timespan::parse) else {
            return Some(());
        };
        let Ok(wait) = lock.wait_limit() else {
            return Some(());
        };
        if wait.is_none_or(|w| w >= limit) {
            let shown_wait = lock.wait.as_deref().unwrap_or("0");
            self.err(
                &p.key("wait"),
                format!(
                    "waiting `{}` for the lock is not shorter than the job's timeout `{}`: \
                     systemd would stop the run while it waits; wait less, or raise `timeout`",
                    shown(shown_wait),
                    shown(timeout.as_deref().unwrap_or_default().trim())
                ),
            );
            return None;
        }
        Some(())
    }

    /// `/usr/bin/flock --verbose -w SECONDS [-E 75] FILE` for a host
    /// command (the command's words follow), and the exit status that
    /// means "skipped". `--verbose` makes a busy lock one journal line
    /// (`flock: timeout while waiting to get lock`) instead of a bare exit
    /// status.
    pub(super) fn flock_words(
        &mut self,
        lock: &JobLock,
        path: &KeyPath,
    ) -> Option<(Vec<ExecWord>, Option<u8>)> {
        let name = match lock.kind() {
            Ok(LockKind::Host { name }) => name,
            Ok(LockKind::Etcd { .. }) => {
                self.err(
                    &path.key("etcd"),
                    "an etcd lock is held by unitgen-runner, which a host `command` does not run; \
                     use a host lock (`name: NAME`), or give the job `steps`",
                );
                return None;
            }
            Err(e) => {
                self.key_err(path, e);
                return None;
            }
        };
        let mut words = vec![ExecWord::literal(FLOCK), ExecWord::literal("--verbose")];
        match lock.wait_limit() {
            Ok(Some(Duration::ZERO)) => words.push(ExecWord::literal("-n")),
            Ok(Some(w)) => {
                words.push(ExecWord::literal("-w"));
                words.push(self.word(&w.as_secs_f64().to_string(), &path.key("wait"))?);
            }
            Ok(None) => {}
            Err(e) => {
                self.err(&path.key("wait"), e);
                return None;
            }
        }
        let skip = lock.on_busy() == OnBusy::Skip;
        if skip {
            words.push(ExecWord::literal("-E"));
            words.push(self.word(&BUSY_EXIT_STATUS.to_string(), &path.key("on_busy"))?);
        }
        let file = crate::contract::lock::host_lock_file(HOST_LOCK_DIR, name);
        words.push(self.word(&file, &path.key("name"))?);
        Some((words, skip.then_some(BUSY_EXIT_STATUS)))
    }

    /// `ExecStartPre=/bin/mkdir -p /run/lock/unitgen`: the host's lock
    /// folder, before anything opens (or mounts) it.
    pub(super) fn lock_dir_command(&self) -> Command {
        Command {
            ignore_failure: false,
            privileged: false,
            line: crate::generate::escape::ExecLine::new(ExecWord::literal(MKDIR))
                .inline([ExecWord::literal("-p"), ExecWord::literal(HOST_LOCK_DIR)]),
        }
    }
}
