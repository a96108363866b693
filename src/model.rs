//! The validated model: everything a template needs, already escaped for
//! its systemd context. Templates only place these values.

use serde::Serialize;

use crate::escape::{UnitName, UnitValue};

#[derive(Debug, Clone, Serialize)]
pub struct Model {
    /// Sorted by name, so output never depends on the spec's key order.
    pub jobs: Vec<JobUnits>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobUnits {
    /// The spec's job name, which is also the units' base name.
    pub name: String,
    pub fleet: bool,
    pub service: ServiceUnit,
    pub timer: TimerUnit,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceUnit {
    pub description: UnitValue,
    pub after: Vec<UnitName>,
    pub requires: Vec<UnitName>,
    pub on_failure: Option<UnitName>,
    pub timeout: Option<String>,
    /// Complete `Environment=` values (`"KEY=value"`).
    pub environment: Vec<String>,
    /// Complete command lines (quoted argv, with any line continuations).
    pub exec_start_pre: Vec<String>,
    pub exec_start: String,
    pub exec_stop_post: Vec<String>,
    pub x_fleet: Vec<FleetOption>,
    pub job: UnitValue,
}

#[derive(Debug, Clone, Serialize)]
pub struct TimerUnit {
    pub description: UnitValue,
    pub on_calendar: Vec<UnitValue>,
    /// `"true"` or `"false"`: written whenever the spec sets it, even to false.
    pub persistent: Option<&'static str>,
    pub randomized_delay: Option<String>,
    pub accuracy: Option<String>,
    pub unit: UnitName,
    pub x_fleet: Vec<FleetOption>,
    /// `[Install] WantedBy=timers.target` (plain systemd only: fleet starts
    /// units itself).
    pub install: bool,
    pub job: UnitValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetOption {
    pub key: &'static str,
    pub value: String,
}
