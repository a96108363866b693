//! The fleet backend: drives `fleetctl` (v1.0.0) as a child process.
//!
//! Every fleet behaviour relied on here is in tests/fleetctl/README.md with
//! the fleet source it comes from; the ones that shape this file:
//! - names come only from arguments; unitgen passes each rendered unit as
//!   an absolute path (fleetctl.go unitNameMangle takes `path.Base`), so
//!   no name is ever read as a flag or as the command word that picks the
//!   `--replace` rules (fleetctl.go main, currentCommand);
//! - fleetctl exits 0 when it did nothing: `No units given`, `differs from
//!   local unit file` (the old text stays), `can not replace`, an unknown
//!   flag (`cannot execute cmdFleet`), `Units not found in registry`. Each
//!   is an error here, and after the last action the registry is read back
//!   and compared, which catches any silent no-op this list misses;
//! - load and start wait without limit for a state no agent may ever
//!   report, and the wait inside `--replace` ignores `--no-block`
//!   (lazyCreateUnits): `--block-attempts` is always given, derived from
//!   `--wait` (one attempt is fleetctl's 2 s window), and every call has a
//!   deadline besides;
//! - `list-unit-files` shows 7 characters of the hash without `--full`;
//!   columns are separated by runs of tabs (text/tabwriter).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::plan::{Action, Op, Why};
use super::process::{self, Ran};
use super::{Activation, Backend, Desired, Owner, Present, State, Target, Waits, unitgen_job};
use crate::error::Error;

/// fleetctl's block attempt: 8 polls 250 ms apart (fleetctl.go
/// waitForState, defaultSleepTime).
const BLOCK_ATTEMPT: Duration = Duration::from_secs(2);
/// Beyond the wait fleetctl was given: its requests (3 s request timeout
/// each, fleetctl.go) and start-up.
const BACKSTOP: Duration = Duration::from_secs(60);
/// fleetctl's own default (fleetctl.go init: `--endpoint`).
const DEFAULT_ENDPOINT: &str = "unix:///var/run/fleet.sock";

/// Output fleetctl prints when it exits 0 having done nothing, and why.
const NO_OPS: &[(&str, &str)] = &[
    (
        "No units given",
        "it was given no unit names (submit.go: names come only from arguments)",
    ),
    (
        "differs from local",
        "fleet kept the old text of the unit (fleetctl.go checkUnitCreation)",
    ),
    (
        "can not replace Unit(",
        "fleet refused to replace the unit in its state (fleetctl.go checkReplaceUnitState)",
    ),
    (
        "cannot execute cmdFleet",
        "fleetctl did not understand its arguments",
    ),
    (
        "Units not found in registry",
        "the unit is not in fleet's registry",
    ),
];

pub struct Fleet {
    program: OsString,
    /// Global flags for every call (`--fleetctl-arg`), before the command.
    global: Vec<String>,
    waits: Waits,
    /// The output folder as given (for printing) and absolute (for fleetctl).
    dir: PathBuf,
    abs: PathBuf,
}

/// One row of `list-unit-files --full --no-legend --fields unit,hash,dstate,state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    unit: String,
    hash: String,
    dstate: Activation,
    /// `None`: `-`, a global unit.
    state: Option<Activation>,
}

impl Fleet {
    pub fn new(program: OsString, global: Vec<String>, waits: Waits, dir: PathBuf) -> Fleet {
        let abs = std::path::absolute(&dir).unwrap_or_else(|_| dir.clone());
        Fleet {
            program,
            global,
            waits,
            dir,
            abs,
        }
    }

    fn shown(&self, unit: &str) -> String {
        self.dir.join(unit).display().to_string()
    }

    fn path(&self, unit: &str) -> String {
        self.abs.join(unit).display().to_string()
    }

    /// `--block-attempts=N` covering `--wait`, or `--no-block` for 0.
    /// A replace also gets one attempt: its creation wait ignores
    /// `--no-block` and would block forever without an agent.
    fn blocking(&self, replace: bool) -> Vec<String> {
        if self.waits.state.is_zero() {
            let mut flags = vec!["--no-block".to_owned()];
            if replace {
                flags.push("--block-attempts=1".to_owned());
            }
            return flags;
        }
        let attempts = self
            .waits
            .state
            .as_millis()
            .div_ceil(BLOCK_ATTEMPT.as_millis())
            .max(1);
        vec![format!("--block-attempts={attempts}")]
    }

    /// The command an action runs, as `plan` prints it: paths as given
    /// with `-o` (fleetctl gets them absolute), no blocking flags.
    fn command(&self, action: &Action) -> String {
        let unit = &action.unit;
        let path = self.shown(unit);
        match action.op {
            Op::Submit => format!("fleetctl submit {path}"),
            Op::Load => format!("fleetctl load {path}"),
            Op::Start => format!("fleetctl start {path}"),
            Op::Stop => format!("fleetctl stop {unit}"),
            Op::ReplaceLoad => format!("fleetctl load --replace {path}"),
            Op::ReplaceStart => format!("fleetctl start --replace {path}"),
            Op::ReplaceSubmit => format!("fleetctl submit --replace {path}"),
            Op::Destroy => format!("fleetctl destroy {unit}"),
            Op::WaitIdle => format!("wait until {unit} has finished its running backup"),
            op => format!("{op:?} {unit}"),
        }
    }

    /// Runs fleetctl; the error says `line` (what the plan printed).
    fn call(&self, line: &str, args: Vec<String>) -> Result<Ran, Error> {
        let mut argv = self.global.clone();
        argv.extend(args);
        let deadline = self.waits.state + BACKSTOP;
        let ran = process::run(&self.program, &argv, &[], deadline).map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                "; install fleetctl or give its path with --fleetctl"
            } else {
                ""
            };
            Error::Deploy {
                lines: vec![format!(
                    "cannot run {}: {e}{hint}",
                    self.program.to_string_lossy()
                )],
                detail: Vec::new(),
            }
        })?;
        if ran.timed_out {
            return Err(Error::Deploy {
                lines: vec![format!(
                    "`{line}` did not finish within {} and was stopped; is fleet answering?",
                    span(deadline)
                )],
                detail: ran.lines(),
            });
        }
        if ran.code != Some(0) {
            let status = match ran.code {
                Some(c) => format!("exit status {c}"),
                None => "killed by a signal".to_owned(),
            };
            let mut lines = vec![format!("`{line}` failed ({status})")];
            // fleetctl's words for a state no agent reported in time
            // (fleetctl.go waitForUnitStates).
            if ran.stderr.contains("timed out waiting for unit") {
                lines.push(format!(
                    "no fleet agent reported the unit's state within --wait ({}); is fleetd \
                     running on the machines, and can one of them run the unit?",
                    span(self.waits.state)
                ));
            }
            return Err(Error::Deploy {
                lines,
                detail: ran.lines(),
            });
        }
        if let Some(why) = no_op(&ran) {
            return Err(Error::Deploy {
                lines: vec![format!(
                    "`{line}` did nothing, though fleetctl exited 0: {why}"
                )],
                detail: ran.lines(),
            });
        }
        Ok(ran)
    }

    fn list_unit_files(&self) -> Result<BTreeMap<String, Row>, Error> {
        let args = [
            "list-unit-files",
            "--full",
            "--no-legend",
            "--fields",
            "unit,hash,dstate,state",
        ];
        let line = format!("fleetctl {}", args.join(" "));
        let ran = self.call(&line, args.iter().map(|s| s.to_string()).collect())?;
        parse_unit_files(&ran.stdout).map_err(|message| Error::Deploy {
            lines: vec![format!("cannot read the output of `{line}`: {message}")],
            detail: Vec::new(),
        })
    }

    /// Services with a running process on any machine.
    fn busy(&self) -> Result<BTreeSet<String>, Error> {
        let args = [
            "list-units",
            "--full",
            "--no-legend",
            "--fields",
            "unit,machine,active,sub",
        ];
        let line = format!("fleetctl {}", args.join(" "));
        let ran = self.call(&line, args.iter().map(|s| s.to_string()).collect())?;
        parse_busy(&ran.stdout).map_err(|message| Error::Deploy {
            lines: vec![format!("cannot read the output of `{line}`: {message}")],
            detail: Vec::new(),
        })
    }

    /// Who wrote a unit, from the text fleet stores.
    fn owner(&self, unit: &str) -> Result<Owner, Error> {
        let line = format!("fleetctl cat {unit}");
        let ran = self.call(&line, vec!["cat".into(), unit.into()])?;
        Ok(match unitgen_job(&ran.stdout) {
            Some(job) => Owner::Unitgen { job },
            None => Owner::Foreign {
                what: format!("fleet unit {unit}"),
            },
        })
    }

    /// Waits, bounded by `--wait-idle`, until `unit` runs no backup:
    /// unloading it (a replace, stop or destroy) would kill the run.
    fn wait_idle(&self, unit: &str) -> Result<(), Error> {
        let deadline = Instant::now() + self.waits.idle;
        let mut pause = Duration::from_millis(250);
        let mut said = false;
        loop {
            if !self.busy()?.contains(unit) {
                return Ok(());
            }
            if super::stop_requested() {
                return Err(super::interrupted(&format!(
                    "while {unit} was running a backup"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Deploy {
                    lines: vec![format!(
                        "{unit} is still running a backup after {}; unitgen does not replace or \
                         destroy a running service (that would kill the run). Apply again once \
                         it has finished, or give --wait-idle more time",
                        span(self.waits.idle)
                    )],
                    detail: Vec::new(),
                });
            }
            if !said {
                eprintln!(
                    "unitgen: {unit} is running a backup; waiting up to {} for it to finish",
                    span(self.waits.idle)
                );
                said = true;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The first line of fleetctl's output that shows it did nothing, and why.
fn no_op(ran: &Ran) -> Option<String> {
    for line in ran.lines() {
        for (needle, why) in NO_OPS {
            if line.contains(needle) {
                return Some(format!("{why}: `{}`", line.trim()));
            }
        }
    }
    None
}

/// Columns are padded with tabs (text/tabwriter, padchar '\t'): split on
/// runs of tabs, never on spaces.
fn columns(line: &str) -> Vec<&str> {
    line.split('\t').filter(|c| !c.is_empty()).collect()
}

fn parse_unit_files(text: &str) -> Result<BTreeMap<String, Row>, String> {
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let [unit, hash, dstate, state] = columns(line)[..] else {
            return Err(format!("expected 4 columns in {line:?}"));
        };
        if hash.len() != 40 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a full sha1 in {line:?}"));
        }
        let dstate = Activation::parse(dstate)
            .ok_or_else(|| format!("unknown desired state `{dstate}` in {line:?}"))?;
        let state = match state {
            "-" => None,
            s => Some(
                Activation::parse(s).ok_or_else(|| format!("unknown state `{s}` in {line:?}"))?,
            ),
        };
        rows.insert(
            unit.to_owned(),
            Row {
                unit: unit.to_owned(),
                hash: hash.to_ascii_lowercase(),
                dstate,
                state,
            },
        );
    }
    Ok(rows)
}

/// A service is busy while systemd runs its process: a oneshot shows
/// `activating start` until its ExecStart= exits (systemd.service(5)),
/// others `active running`; `deactivating` runs ExecStop*=. `active
/// exited` is a finished RemainAfterExit= service.
fn parse_busy(text: &str) -> Result<BTreeSet<String>, String> {
    let mut busy = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let [unit, _machine, active, sub] = columns(line)[..] else {
            return Err(format!("expected 4 columns in {line:?}"));
        };
        let running = matches!(active, "activating" | "deactivating" | "reloading")
            || (active == "active" && sub != "exited");
        if unit.ends_with(".service") && running {
            busy.insert(unit.to_owned());
        }
    }
    Ok(busy)
}

/// Which fleet: `--endpoint` (and `--tunnel`) as fleetctl would take them,
/// from the flags passed through, else its environment (fleetctl.go
/// getFlagsFromEnv), else its default.
fn endpoint(global: &[String]) -> String {
    let flag = |name: &str| {
        let long = format!("--{name}");
        let mut found = None;
        let mut args = global.iter();
        while let Some(a) = args.next() {
            if let Some(v) = a.strip_prefix(&format!("{long}=")) {
                found = Some(v.to_owned());
            } else if *a == long {
                found = args.next().cloned();
            }
        }
        found.or_else(|| {
            let var = format!("FLEETCTL_{}", name.to_ascii_uppercase());
            std::env::var(var).ok().filter(|v| !v.is_empty())
        })
    };
    let endpoint = flag("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    match flag("tunnel") {
        Some(tunnel) => format!("{endpoint} via {tunnel}"),
        None => endpoint,
    }
}

/// A wait for printing: `2s`, `1min`, `1h 30min`.
pub fn span(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}min"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

impl Backend for Fleet {
    fn target(&self) -> Target {
        Target::Fleet
    }

    fn location(&self) -> String {
        endpoint(&self.global)
    }

    fn read(&mut self, names: &BTreeSet<String>, desired: &[Desired]) -> Result<State, Error> {
        let rows = self.list_unit_files()?;
        let want: BTreeMap<&str, &str> = desired
            .iter()
            .map(|d| (d.name.as_str(), d.hash.as_str()))
            .collect();
        let mut state = State::default();
        let ours: Vec<&Row> = rows.values().filter(|r| names.contains(&r.unit)).collect();
        let busy = if ours.iter().any(|r| r.unit.ends_with(".service")) {
            self.busy()?
        } else {
            BTreeSet::new()
        };
        for row in ours {
            // Same bytes as the rendered unit: unitgen's. Anything else is
            // read back to see whose it is (one `cat` per such unit).
            let owner = if want.get(row.unit.as_str()) == Some(&row.hash.as_str()) {
                Owner::Same
            } else {
                self.owner(&row.unit)?
            };
            state.units.insert(
                row.unit.clone(),
                Present {
                    hash: row.hash.clone(),
                    owner,
                    desired: row.dstate,
                    current: row.state,
                    busy: busy.contains(&row.unit),
                },
            );
        }
        Ok(state)
    }

    fn line(&self, action: &Action) -> String {
        let service = || format!("{}.service", action.unit.trim_end_matches(".timer"));
        let why = match action.why {
            Why::Quiesce => format!("no run starts while {} is replaced", service()),
            Why::Restore => format!("again, after {} was replaced", service()),
            Why::Undo => "again: this apply stopped it, then failed".to_owned(),
            Why::Unlaunch => "load --replace refuses a launched unit".to_owned(),
            Why::Resume => "unchanged, but not loaded or started yet".to_owned(),
            _ => return self.command(action),
        };
        format!("{}  # {why}", self.command(action))
    }

    fn run(&mut self, action: &Action) -> Result<(), Error> {
        let unit = action.unit.as_str();
        let line = self.command(action);
        let is_service = unit.ends_with(".service");
        let mut args: Vec<String> = Vec::new();
        match action.op {
            Op::Submit => {
                args.push("submit".into());
                args.push(self.path(unit));
            }
            Op::ReplaceSubmit => {
                args.extend(["submit".into(), "--replace".into()]);
                args.push(self.path(unit));
            }
            Op::Load | Op::Start => {
                args.push(
                    if action.op == Op::Load {
                        "load"
                    } else {
                        "start"
                    }
                    .into(),
                );
                args.extend(self.blocking(false));
                args.push(self.path(unit));
            }
            Op::ReplaceLoad | Op::ReplaceStart => {
                if is_service {
                    self.wait_idle(unit)?;
                }
                let verb = if action.op == Op::ReplaceLoad {
                    "load"
                } else {
                    "start"
                };
                args.extend([verb.into(), "--replace".into()]);
                args.extend(self.blocking(true));
                args.push(self.path(unit));
            }
            Op::Stop => {
                if is_service {
                    self.wait_idle(unit)?;
                }
                args.push("stop".into());
                args.extend(self.blocking(false));
                args.push(unit.into());
            }
            Op::Destroy => {
                if is_service {
                    self.wait_idle(unit)?;
                }
                args.extend(["destroy".into(), unit.into()]);
            }
            Op::WaitIdle => return self.wait_idle(unit),
            op => {
                return Err(Error::Deploy {
                    lines: vec![format!(
                        "{op:?} is not a fleet action; this is a bug in unitgen"
                    )],
                    detail: Vec::new(),
                });
            }
        }
        self.call(&line, args).map(|_| ())
    }

    /// Reads the registry back until every rendered unit has the file's
    /// hash and its state (bounded by `--wait`; with `--wait 0` only the
    /// hashes), and every destroyed unit is gone.
    fn verify(&mut self, desired: &[Desired], gone: &[String]) -> Result<(), Error> {
        let deadline = Instant::now() + self.waits.state;
        let mut pause = Duration::from_millis(100);
        loop {
            let rows = self.list_unit_files()?;
            let mut wrong = Vec::new();
            let mut settling = Vec::new();
            for d in desired {
                let Some(row) = rows.get(&d.name) else {
                    wrong.push(format!("{} is not in fleet's registry", d.name));
                    continue;
                };
                if row.hash != d.hash {
                    wrong.push(format!(
                        "{} has hash {} in fleet, not {} (the sha1 of {})",
                        d.name,
                        row.hash,
                        d.hash,
                        self.shown(&d.name)
                    ));
                    continue;
                }
                if self.waits.state.is_zero() {
                    continue;
                }
                let template = d.name.contains("@.");
                let wanted: &[Activation] = if template {
                    &[
                        Activation::Inactive,
                        Activation::Loaded,
                        Activation::Launched,
                    ]
                } else if d.name.ends_with(".timer") {
                    &[Activation::Launched]
                } else {
                    &[Activation::Loaded, Activation::Launched]
                };
                let reached = row.state.unwrap_or(row.dstate);
                if !wanted.contains(&row.dstate) || (!template && reached != row.dstate) {
                    settling.push(format!(
                        "{} is {} (desired {}), not {}",
                        d.name,
                        row.state.map_or("-", name),
                        name(row.dstate),
                        name(wanted[0])
                    ));
                }
            }
            for g in gone {
                if rows.contains_key(g) {
                    wrong.push(format!("{g} is still in fleet's registry"));
                }
            }
            let now = Instant::now();
            if wrong.is_empty() && settling.is_empty() {
                return Ok(());
            }
            if wrong.is_empty() && now < deadline && !super::stop_requested() {
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
            wrong.extend(settling);
            return Err(Error::Deploy {
                lines: vec![format!(
                    "after the apply, fleet does not run what {} holds",
                    self.dir.display()
                )],
                detail: wrong,
            });
        }
    }
}

fn name(a: Activation) -> &'static str {
    match a {
        Activation::Inactive => "inactive",
        Activation::Loaded => "loaded",
        Activation::Launched => "launched",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "3a9f394aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn list_unit_files_is_split_on_runs_of_tabs() {
        let text = format!(
            "job.service\t{H1}\tloaded\t\tloaded\njob.timer\t{H1}\tlaunched\tlaunched\n\
             g.service\t{H1}\tloaded\t\t-\n"
        );
        let rows = parse_unit_files(&text).unwrap();
        assert_eq!(rows["job.timer"].dstate, Activation::Launched);
        assert_eq!(rows["job.service"].state, Some(Activation::Loaded));
        assert_eq!(rows["g.service"].state, None);
        assert_eq!(
            parse_unit_files("job.service\t3a9f394\tloaded\tloaded\n").unwrap_err(),
            "`3a9f394` is not a full sha1 in \"job.service\\t3a9f394\\tloaded\\tloaded\""
        );
    }

    #[test]
    fn a_running_oneshot_is_busy_and_its_timer_is_not() {
        let text = "job.service\tc31e4f2a9b8d4e6f8a7b6c5d4e3f2a1b/172.17.8.101\tactivating\tstart\n\
                    job.timer\tc31e4f2a9b8d4e6f8a7b6c5d4e3f2a1b/172.17.8.101\tactive\t\trunning\n\
                    idle.service\tc31e4f2a9b8d4e6f8a7b6c5d4e3f2a1b/172.17.8.101\tinactive\tdead\n\
                    done.service\tc31e4f2a9b8d4e6f8a7b6c5d4e3f2a1b/172.17.8.101\tactive\t\texited\n";
        assert_eq!(
            parse_busy(text).unwrap(),
            BTreeSet::from(["job.service".to_owned()])
        );
    }

    #[test]
    fn silent_no_ops_are_recognized() {
        let ran = |stderr: &str| Ran {
            code: Some(0),
            stdout: String::new(),
            stderr: stderr.into(),
            timed_out: false,
        };
        assert_eq!(
            no_op(&ran(
                "WARNING: Unit a.service in registry differs from local unit file /u/a.service. Add --replace to override.\n"
            ))
            .unwrap(),
            "fleet kept the old text of the unit (fleetctl.go checkUnitCreation): `WARNING: Unit a.service in registry differs from local unit file /u/a.service. Add --replace to override.`"
        );
        assert!(no_op(&ran("No units given\n")).is_some());
        assert!(
            no_op(&ran(
                "Warning: can not replace Unit(a.timer) in state 'launched', use the appropriate command\n"
            ))
            .is_some()
        );
        assert!(no_op(&ran("Successfully stopped units [a.timer].\n")).is_none());
    }

    #[test]
    fn block_attempts_cover_the_wait() {
        let fleet = |state: Duration| {
            Fleet::new(
                "fleetctl".into(),
                Vec::new(),
                Waits {
                    state,
                    idle: Duration::ZERO,
                },
                "units".into(),
            )
        };
        assert_eq!(
            fleet(Duration::from_secs(5)).blocking(false),
            ["--block-attempts=3"]
        );
        assert_eq!(
            fleet(Duration::from_millis(100)).blocking(true),
            ["--block-attempts=1"]
        );
        assert_eq!(fleet(Duration::ZERO).blocking(false), ["--no-block"]);
        assert_eq!(
            fleet(Duration::ZERO).blocking(true),
            ["--no-block", "--block-attempts=1"]
        );
    }

    #[test]
    fn the_endpoint_comes_from_the_flags_passed_through() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            endpoint(&args(&[
                "--driver=etcd",
                "--endpoint",
                "http://10.0.0.1:2379"
            ])),
            "http://10.0.0.1:2379"
        );
        assert_eq!(
            endpoint(&args(&[
                "--endpoint=http://a:2379",
                "--tunnel=core@bastion"
            ])),
            "http://a:2379 via core@bastion"
        );
    }

    #[test]
    fn spans_print_as_systemd_writes_them() {
        assert_eq!(span(Duration::from_secs(90)), "1min 30s");
        assert_eq!(span(Duration::from_secs(3600)), "1h");
        assert_eq!(span(Duration::ZERO), "0s");
        assert_eq!(span(Duration::from_millis(1500)), "1500ms");
    }
}
