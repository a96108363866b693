//! `unitgen plan` and `unitgen apply`: make a fleet cluster or a plain
//! systemd host run exactly the rendered units.
//!
//! Three parts, one way:
//! 1. a backend reads what the target runs ([`State`]): fleet through
//!    `fleetctl` (`fleet.rs`), a host through its unit folder and
//!    `systemctl` (`systemd.rs`);
//! 2. the planner (`plan.rs`, pure) compares it with the rendered units and
//!    with the record of what unitgen deployed (`record.rs`), and orders the
//!    actions;
//! 3. [`apply`] runs them one by one through the backend, stops at the first
//!    failure, and keeps the record current after every step.
//!
//! What may be destroyed is decided twice: a unit must be in the record of
//! this output folder *and* still carry the `[X-Unitgen]` section naming
//! the same job where it runs. A unit of a rendered name that carries no
//! such section is someone else's: the plan stops with an error naming it.

pub mod fleet;
pub mod plan;
mod process;
pub mod record;
pub mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;
pub use plan::{Action, Op, Plan, Why};
pub use record::Record;

/// Where units are deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Fleet,
    Systemd,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Fleet => "fleet",
            Target::Systemd => "systemd",
        }
    }
}

/// What a unit is told to be. fleet's three desired states (job/job.go:
/// inactive = submitted only, loaded = placed on a machine, launched =
/// started); on a systemd host a timer is `Launched` when it is enabled
/// and active, every other unit file present is `Loaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Inactive,
    Loaded,
    Launched,
}

impl Activation {
    pub fn parse(text: &str) -> Option<Activation> {
        match text {
            "inactive" => Some(Activation::Inactive),
            "loaded" => Some(Activation::Loaded),
            "launched" => Some(Activation::Launched),
            _ => None,
        }
    }
}

/// Who wrote a unit the target holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// It carries `[X-Unitgen]` with `Job=JOB`.
    Unitgen { job: String },
    /// It does not; `what` says where it is, for the error.
    Foreign { what: String },
    /// Not read: its hash equals the rendered unit's, which carries the
    /// section, so it is unitgen's.
    Same,
}

/// A unit the target holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// fleet: the sha1 it shows (`list-unit-files --full`); a host: the
    /// sha1 of the file.
    pub hash: String,
    pub owner: Owner,
    /// What the target is told (fleet's DSTATE).
    pub desired: Activation,
    /// What the target reports (fleet's STATE); `None` where there is
    /// none (a global fleet unit).
    pub current: Option<Activation>,
    /// A service whose process runs: replacing or destroying it now would
    /// kill a backup.
    pub busy: bool,
}

impl Present {
    /// A timer that may fire right now.
    pub fn is_running(&self) -> bool {
        match self.current {
            Some(c) => c == Activation::Launched,
            None => self.desired == Activation::Launched,
        }
    }
}

/// What the target holds, for the units the plan is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub units: BTreeMap<String, Present>,
}

/// A rendered unit as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub job: String,
    /// sha1 of the file, hex.
    pub hash: String,
}

/// sha1 in hex, as fleet shows it.
pub fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a rendered unit's text holds `[X-Unitgen]`, the job it names.
/// `None`: not unitgen's. fleet hands back its own serialization of the
/// unit (`fleetctl cat`), which keeps unknown sections (go-systemd
/// unit/serialize.go), so the same reading works for both targets.
pub fn unitgen_job(text: &str) -> Option<String> {
    let mut in_section = false;
    let mut found = false;
    let mut job = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[X-Unitgen]";
            found |= in_section;
            continue;
        }
        if in_section
            && let Some(value) = line.strip_prefix("Job")
            && let Some(value) = value.trim_start().strip_prefix('=')
        {
            job = Some(value.trim().to_owned());
        }
    }
    match (found, job) {
        (true, Some(job)) => Some(job),
        (true, None) => Some(String::new()),
        (false, _) => None,
    }
}

/// Limits on waiting, from `--wait` and `--wait-idle`.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// For a state fleet or systemd reports (`fleetctl --block-attempts`);
    /// zero: trigger and do not wait (`--no-block`).
    pub state: Duration,
    /// For a running backup to finish before its service is replaced or
    /// destroyed.
    pub idle: Duration,
}

/// Only these jobs and units (`watch --apply`): the units a re-render
/// rewrote or removed.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub jobs: BTreeSet<String>,
    pub removed: BTreeSet<String>,
}

/// A target's view and actions, behind which `apply` is the same for
/// fleet and a host.
pub trait Backend {
    fn target(&self) -> Target;
    /// Which cluster or unit folder, for the record.
    fn location(&self) -> String;
    /// Whether `systemctl` may act on a running manager (not `--root`).
    fn live(&self) -> bool {
        true
    }
    /// The state of `names` (rendered ones and recorded ones).
    fn read(&mut self, names: &BTreeSet<String>, desired: &[Desired]) -> Result<State, Error>;
    /// The line `plan` prints and `apply` runs.
    fn line(&self, action: &Action) -> String;
    fn run(&mut self, action: &Action) -> Result<(), Error>;
    /// After the last action: does the target hold what was rendered?
    fn verify(&mut self, desired: &[Desired], gone: &[String]) -> Result<(), Error>;
    /// Problems worth a warning after an apply (failed units).
    fn warnings(&mut self, _desired: &[Desired]) -> Vec<String> {
        Vec::new()
    }
}

/// Set by SIGINT/SIGTERM during an apply: it stops before its next action
/// or at its next wait, and first starts again a timer it stopped, rather
/// than dying with the job unscheduled.
static STOP: AtomicBool = AtomicBool::new(false);

pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// For `unitgen apply`: the first SIGINT or SIGTERM asks the apply to
/// stop (see [`STOP`]); a second one kills as usual.
pub fn stop_on_signals() {
    extern "C" fn on_signal(signal: libc::c_int) {
        STOP.store(true, Ordering::SeqCst);
        // SAFETY: signal(2) is async-signal-safe (signal-safety(7)).
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores an atomic and calls signal(2).
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
}

/// The error of an apply stopped by a signal while `doing`.
pub fn interrupted(doing: &str) -> Error {
    Error::Deploy {
        lines: vec![format!("stopped by a signal {doing}")],
        detail: Vec::new(),
    }
}

/// Reads the target and plans. `desired` holds this target's rendered
/// units; with a scope, only its jobs and removed units are planned.
pub fn prepare(
    backend: &mut dyn Backend,
    record: &Record,
    desired: &[Desired],
    scope: Option<&Scope>,
) -> Result<(Plan, Vec<Desired>), Error> {
    let location = backend.location();
    let mut owned = record.owned(backend.target(), &location);
    let desired: Vec<Desired> = match scope {
        Some(s) => desired
            .iter()
            .filter(|d| s.jobs.contains(&d.job))
            .cloned()
            .collect(),
        None => desired.to_vec(),
    };
    if let Some(s) = scope {
        owned.retain(|unit, job| s.removed.contains(unit) || s.jobs.contains(job));
    }
    let mut names: BTreeSet<String> = desired.iter().map(|d| d.name.clone()).collect();
    names.extend(owned.keys().cloned());
    let state = backend.read(&names, &desired)?;
    let options = plan::Options {
        target: backend.target(),
        live: backend.live(),
    };
    let plan =
        plan::plan(options, &desired, &state, &owned).map_err(|conflicts| Error::Deploy {
            lines: conflicts,
            detail: Vec::new(),
        })?;
    Ok((plan, desired))
}

/// What an apply did, for its summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub actions: usize,
}

/// Runs `plan` through `backend`, one action at a time, saying each on
/// `say` before it runs. Stops at the first failure; a timer this apply
/// stopped (so that no run starts while its service is replaced) is
/// started again first, so a failed apply never leaves a job unscheduled.
/// The record follows every step, so a later apply knows what exists.
pub fn apply(
    backend: &mut dyn Backend,
    record: &mut Record,
    plan: &Plan,
    desired: &[Desired],
    say: &mut dyn FnMut(&str),
) -> Result<Applied, Error> {
    let target = backend.target();
    let location = backend.location();
    let mut stopped: Vec<&Action> = Vec::new();
    let mut gone = Vec::new();
    for action in &plan.actions {
        if stop_requested() {
            let e = interrupted(&format!("before `{}`", backend.line(action)));
            return Err(restart_stopped(backend, &stopped, say, e));
        }
        say(&backend.line(action));
        if let Err(e) = backend.run(action) {
            return Err(restart_stopped(backend, &stopped, say, e));
        }
        match action.op {
            Op::Stop if action.why == Why::Quiesce => stopped.push(action),
            Op::Start | Op::ReplaceStart => stopped.retain(|a| a.unit != action.unit),
            _ => {}
        }
        let recorded = match action.op {
            Op::Destroy | Op::Remove => {
                gone.push(action.unit.clone());
                record.remove(target, &location, &action.unit)
            }
            Op::WaitIdle | Op::Stop | Op::DaemonReload | Op::DisableNow => false,
            _ => record.add(target, &location, &action.unit, &action.job),
        };
        if recorded {
            record.save()?;
        }
    }
    // Units the record names that are gone or no longer unitgen's.
    let mut dropped = false;
    for unit in &plan.forget {
        dropped |= record.remove(target, &location, unit);
    }
    // Everything rendered that the target now holds is this folder's.
    for d in desired {
        dropped |= record.add(target, &location, &d.name, &d.job);
    }
    if dropped {
        record.save()?;
    }
    backend.verify(desired, &gone)?;
    Ok(Applied {
        actions: plan.actions.len(),
    })
}

fn restart_stopped(
    backend: &mut dyn Backend,
    stopped: &[&Action],
    say: &mut dyn FnMut(&str),
    e: Error,
) -> Error {
    let mut also = Vec::new();
    for action in stopped {
        let start = Action {
            op: Op::Start,
            unit: action.unit.clone(),
            job: action.job.clone(),
            why: Why::Undo,
        };
        say(&backend.line(&start));
        if let Err(failed) = backend.run(&start) {
            also.push(format!("and then: {failed}"));
            if let Error::Deploy { detail, .. } = failed {
                also.extend(detail);
            }
        }
    }
    match e {
        Error::Deploy { lines, mut detail } => {
            detail.extend(also);
            Error::Deploy { lines, detail }
        }
        // Another kind of error (a file): say the restarts' failures after it.
        other if also.is_empty() => other,
        other => Error::Deploy {
            lines: vec![other.to_string()],
            detail: also,
        },
    }
}

/// `--wait`-style spans: finite, `0` allowed.
pub fn parse_wait(flag: &str, text: &str) -> Result<Duration, Error> {
    match crate::contract::timespan::parse(text) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(Error::Usage(format!(
            "{flag} must be a finite time span such as `1min` (waiting is always bounded)"
        ))),
        Err(e) => Err(Error::Usage(format!("{flag} {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_and_its_job_are_read_from_fleet_s_serialization() {
        let text = "[Unit]\nDescription=x\n\n[X-Unitgen]\nJob=backup\nNote=Generated\n";
        assert_eq!(unitgen_job(text).as_deref(), Some("backup"));
        assert_eq!(unitgen_job("[Unit]\nDescription=[X-Unitgen]\n"), None);
        assert_eq!(
            unitgen_job("[X-Unitgen]\nNote=x\n").as_deref(),
            Some(""),
            "the section without a job is still unitgen's, of no job"
        );
    }

    #[test]
    fn sha1_is_what_sha1sum_prints() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
