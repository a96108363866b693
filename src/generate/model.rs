//! The validated model: everything a template needs, held in the escaping
//! types of `escape.rs` (a [`UnitValue`], a [`UnitName`], an [`ExecLine`]
//! of [`ExecWord`](super::escape::ExecWord)s), so no unescaped value can
//! reach a unit. `render.rs` turns it into text.

use crate::generate::escape::{EnvAssignment, ExecLine, ListWord, UnitName, UnitValue};
use crate::generate::spec::Target;

#[derive(Debug, Clone)]
pub struct Model {
    /// Sorted by name, so output never depends on the spec's key order.
    pub jobs: Vec<JobUnits>,
}

#[derive(Debug, Clone)]
pub struct JobUnits {
    /// The spec's job name, which is also the units' base name.
    pub name: String,
    pub target: Target,
    pub service: ServiceUnit,
    pub timer: TimerUnit,
    /// `unitgen-notify@NAME.service`, when the job notifies on failure.
    pub notify: Option<NotifyUnit>,
}

#[derive(Debug, Clone)]
pub struct ServiceUnit {
    pub description: UnitValue,
    pub after: Vec<UnitName>,
    pub requires: Vec<UnitName>,
    pub on_failure: Option<UnitName>,
    /// A second `OnFailure=`: the job's notify unit.
    pub on_failure_notify: Option<UnitName>,
    /// `TimeoutStartSec=`.
    pub timeout: Option<UnitValue>,
    /// How systemd runs a host command (`User=`, `Nice=`, sandboxing),
    /// in systemd.exec(5)'s order.
    pub exec: Vec<Setting>,
    pub environment: Vec<EnvAssignment>,
    pub exec_start_pre: Vec<Command>,
    pub exec_start: Command,
    pub exec_stop_post: Vec<Command>,
    /// `SuccessExitStatus=`: an exit status that is not a failure (a host
    /// command's busy lock, with `on_busy: skip`).
    pub success_exit_status: Option<u8>,
    pub x_fleet: Vec<FleetOption>,
    pub job: UnitValue,
}

/// One `Exec*=` setting.
#[derive(Debug, Clone)]
pub struct Command {
    /// The `-` prefix: a failure is not the unit's failure (systemd.service(5),
    /// "Command lines").
    pub ignore_failure: bool,
    /// The `+` prefix: run with full privileges, outside the job's
    /// `User=` and sandbox. For the commands unitgen adds around a host
    /// command that has them (the lock folder, healthchecks pings), which
    /// must work whoever the job runs as.
    pub privileged: bool,
    pub line: ExecLine,
}

#[derive(Debug, Clone)]
pub struct TimerUnit {
    pub description: UnitValue,
    pub on_calendar: Vec<UnitValue>,
    /// `OnBootSec=` and the other monotonic timers, in systemd.timer(5)'s
    /// order.
    pub monotonic: Vec<Setting>,
    /// Written whenever the spec sets it, even to false.
    pub persistent: Option<bool>,
    pub randomized_delay: Option<UnitValue>,
    pub accuracy: Option<UnitValue>,
    pub unit: UnitName,
    pub x_fleet: Vec<FleetOption>,
    pub job: UnitValue,
}

/// One setting of a fixed name whose value was checked and escaped for
/// it (a timer's `OnBootSec=`, a service's `User=`, one path of
/// `ReadWritePaths=`). Built only from the escaping types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    value: String,
}

impl Setting {
    /// A value systemd takes verbatim (after resolving specifiers).
    pub fn new(key: &'static str, value: UnitValue) -> Self {
        Setting {
            key,
            value: value.as_str().to_owned(),
        }
    }

    /// One word of a space-separated list (`ReadWritePaths=`).
    pub fn word(key: &'static str, word: ListWord) -> Self {
        Setting {
            key,
            value: word.as_str().to_owned(),
        }
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

/// One `[X-Fleet]` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOption {
    pub key: &'static str,
    pub value: UnitValue,
}

/// The unit that reports a job's failure (mail, webhook), started by the
/// job's `OnFailure=`. A concrete instance file per job, not a shared
/// template: fleet never places a template on a machine by itself, so an
/// `OnFailure=` naming one would find nothing there.
#[derive(Debug, Clone)]
pub struct NotifyUnit {
    pub name: UnitName,
    pub description: UnitValue,
    pub after: Vec<UnitName>,
    pub requires: Vec<UnitName>,
    /// `TimeoutStartSec=`.
    pub timeout: UnitValue,
    pub exec_start: Command,
    pub x_fleet: Vec<FleetOption>,
    pub job: UnitValue,
}
