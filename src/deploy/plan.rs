//! The planner: rendered units + what the target holds + the record of
//! what unitgen deployed -> the actions, in the order they run. Pure; the
//! backends only read the target before and run the actions after.
//!
//! fleet (v1.0.0; file names are fleet's, see tests/fleetctl/README.md):
//! - new units are submitted, then the services loaded and the timers
//!   started. A service is never `start`ed: fleetctl's start waits for
//!   systemd's `active`, which a oneshot service never reports
//!   (fleetctl.go tryWaitForSystemdActiveState), so it would exit 1;
//!   OnFailure= and the timer start it on the machine.
//! - a changed unit is re-created with `--replace`: a service with `load
//!   --replace`, a timer with `start --replace` (checkReplaceUnitState:
//!   load may replace inactive and loaded units, start all three). Without
//!   `--replace` fleet keeps the old text and exits 0 (checkUnitCreation).
//!   A replace unloads the unit first (registry CreateUnit resets its
//!   desired state to inactive), which kills a running backup: a busy
//!   service is waited for, and its timer is stopped first so that no new
//!   run starts meanwhile and the timer never fires at an unloaded service
//!   (fleet #1697). A launched service is stopped first, since `load
//!   --replace` refuses it and then loads it anyway, unchanged.
//! - a removed job: the timer is destroyed first (no new run), then the
//!   services, each once idle.
//! - templates (`x@.service`) before the rest; they are only submitted,
//!   as an agent never loads a bare template (coreos/fleet#1118).
//!
//! A systemd host (systemctl(1)): a changed or removed file never stops a
//! running service (daemon-reload keeps the run, the new text applies from
//! its next start), so nothing waits. Removed jobs' timers are disabled
//! (`disable --now`) while their files still exist, files are written and
//! removed, one `daemon-reload`, then new timers are `enable --now`ed and
//! changed running ones restarted, so they compute their next elapse from
//! the new `OnCalendar=`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Activation, Desired, Owner, Present, State, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    // fleet, through fleetctl
    Submit,
    Load,
    Start,
    Stop,
    ReplaceLoad,
    ReplaceStart,
    ReplaceSubmit,
    Destroy,
    /// Wait until the service's running backup ends.
    WaitIdle,
    // a systemd host
    Write,
    Remove,
    DaemonReload,
    EnableNow,
    Restart,
    DisableNow,
}

/// Why an action is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The target does not hold the unit yet.
    New,
    /// The rendered unit differs from the one the target holds.
    Changed,
    /// Unchanged, but not loaded or started (an earlier apply stopped half
    /// way, or someone unloaded it).
    Resume,
    /// A timer stopped so that no run starts while its service is replaced.
    Quiesce,
    /// That timer started again.
    Restore,
    /// That timer started again because the apply failed before
    /// `Restore` (`apply` adds this; never in a plan).
    Undo,
    /// The service is running a backup.
    Busy,
    /// A launched service is stopped before `load --replace`, which
    /// refuses launched units.
    Unlaunch,
    /// Its job is gone from the spec.
    Removed,
    /// systemd reads the changed unit files.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub op: Op,
    /// Empty for `DaemonReload`.
    pub unit: String,
    pub job: String,
    pub why: Why,
}

impl Action {
    fn new(op: Op, unit: &str, job: &str, why: Why) -> Action {
        Action {
            op,
            unit: unit.to_owned(),
            job: job.to_owned(),
            why,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Said on stderr (units left alone, runs that go on).
    pub notes: Vec<String>,
    /// Recorded units to drop from the record without an action: gone, or
    /// no longer unitgen's.
    pub forget: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub target: Target,
    /// A running systemd (not `--root`): daemon-reload, start, restart.
    pub live: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Timer,
    Service,
    /// `x@.service`: never loaded by itself.
    Template,
}

fn kind(name: &str) -> Kind {
    match name.rsplit_once('.') {
        Some((base, _)) if base.ends_with('@') => Kind::Template,
        Some((_, "timer")) => Kind::Timer,
        _ => Kind::Service,
    }
}

/// The service a unitgen timer starts: its own name with `.service`
/// (the timer's `Unit=`, systemd.timer(5)'s default too).
fn triggered(timer: &str) -> String {
    match timer.strip_suffix(".timer") {
        Some(base) => format!("{base}.service"),
        None => timer.to_owned(),
    }
}

/// The plan, or every rendered unit that someone else's unit of the same
/// name stands in the way of.
pub fn plan(
    options: Options,
    desired: &[Desired],
    state: &State,
    owned: &BTreeMap<String, String>,
) -> Result<Plan, Vec<String>> {
    let conflicts: Vec<String> = desired
        .iter()
        .filter_map(|d| match state.units.get(&d.name) {
            Some(Present {
                owner: Owner::Foreign { what },
                ..
            }) => Some(format!(
                "{what} was not written by unitgen (it has no [X-Unitgen] section); job `{}` \
                 would replace it. Rename the job, or remove that unit yourself if it should go",
                d.job
            )),
            _ => None,
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(conflicts);
    }
    let mut plan = Plan::default();
    let jobs = by_job(desired);
    let removed = removed(desired, state, owned, &mut plan);
    match options.target {
        Target::Fleet => fleet(&jobs, &removed, state, &mut plan),
        Target::Systemd => systemd(&jobs, &removed, state, options.live, &mut plan),
    }
    Ok(plan)
}

/// Rendered units by job, jobs and units in render order.
fn by_job(desired: &[Desired]) -> Vec<(&str, Vec<&Desired>)> {
    let mut out: Vec<(&str, Vec<&Desired>)> = Vec::new();
    for d in desired {
        match out.iter_mut().find(|(job, _)| *job == d.job) {
            Some((_, units)) => units.push(d),
            None => out.push((&d.job, vec![d])),
        }
    }
    out
}

/// Recorded units the spec no longer renders and the target still holds
/// as unitgen's, by job: timers, then the job's own service, then other
/// services, then templates.
fn removed<'a>(
    desired: &[Desired],
    state: &State,
    owned: &'a BTreeMap<String, String>,
    plan: &mut Plan,
) -> Vec<(&'a str, Vec<&'a str>)> {
    let rendered: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
    let mut jobs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (unit, job) in owned {
        if rendered.contains(unit.as_str()) {
            continue;
        }
        match state.units.get(unit).map(|p| &p.owner) {
            None => plan.forget.push(unit.clone()),
            Some(Owner::Foreign { what }) => {
                plan.notes.push(format!(
                    "{what} is left alone: unitgen deployed it for job `{job}`, but it no longer \
                     carries [X-Unitgen], so it is not unitgen's to remove"
                ));
                plan.forget.push(unit.clone());
            }
            Some(Owner::Unitgen { job: now }) if now != job => {
                plan.notes.push(format!(
                    "{unit} is left alone: unitgen deployed it for job `{job}`, but it now \
                     belongs to job `{now}`"
                ));
                plan.forget.push(unit.clone());
            }
            Some(_) => jobs.entry(job).or_default().push(unit),
        }
    }
    jobs.into_iter()
        .map(|(job, mut units)| {
            let own = format!("{job}.service");
            units.sort_by_key(|u| (kind(u), *u != own, *u));
            (job, units)
        })
        .collect()
}

fn fleet(
    jobs: &[(&str, Vec<&Desired>)],
    removed: &[(&str, Vec<&str>)],
    state: &State,
    plan: &mut Plan,
) {
    let mut templates = Vec::new();
    let mut new = Vec::new();
    let mut changed = Vec::new();
    for (job, units) in jobs {
        let (tpl, rest): (Vec<&Desired>, Vec<&Desired>) =
            units.iter().partition(|u| kind(&u.name) == Kind::Template);
        for t in tpl {
            match state.units.get(&t.name) {
                None => templates.push(Action::new(Op::Submit, &t.name, job, Why::New)),
                Some(p) if p.hash != t.hash => {
                    templates.push(Action::new(Op::ReplaceSubmit, &t.name, job, Why::Changed))
                }
                Some(_) => {}
            }
        }
        let actions = fleet_job(job, &rest, state);
        if rest.iter().all(|u| !state.units.contains_key(&u.name)) {
            new.extend(actions);
        } else {
            changed.extend(actions);
        }
    }
    plan.actions.extend(templates);
    plan.actions.extend(new);
    plan.actions.extend(changed);
    for (job, units) in removed {
        for unit in units {
            let busy = state.units.get(*unit).is_some_and(|p| p.busy);
            if busy {
                plan.actions
                    .push(Action::new(Op::WaitIdle, unit, job, Why::Busy));
            }
            plan.actions
                .push(Action::new(Op::Destroy, unit, job, Why::Removed));
        }
    }
}

/// One job's services and timers on fleet (no templates).
fn fleet_job(job: &str, units: &[&Desired], state: &State) -> Vec<Action> {
    let get = |name: &str| state.units.get(name);
    let differs = |u: &Desired| get(&u.name).is_some_and(|p| p.hash != u.hash);
    let (timers, services): (Vec<&Desired>, Vec<&Desired>) =
        units.iter().partition(|u| kind(&u.name) == Kind::Timer);
    let mut out = Vec::new();
    for u in units {
        if get(&u.name).is_none() {
            out.push(Action::new(Op::Submit, &u.name, job, Why::New));
        }
    }
    let mut quiesced = BTreeSet::new();
    for t in &timers {
        let Some(p) = get(&t.name) else { continue };
        let service = triggered(&t.name);
        let replaced = services.iter().any(|s| s.name == service && differs(s));
        if replaced && p.is_running() {
            out.push(Action::new(Op::Stop, &t.name, job, Why::Quiesce));
            quiesced.insert(t.name.as_str());
        }
    }
    for s in &services {
        match get(&s.name) {
            None => out.push(Action::new(Op::Load, &s.name, job, Why::New)),
            Some(p) if p.hash != s.hash => {
                if p.busy {
                    out.push(Action::new(Op::WaitIdle, &s.name, job, Why::Busy));
                }
                if p.desired == Activation::Launched {
                    out.push(Action::new(Op::Stop, &s.name, job, Why::Unlaunch));
                }
                out.push(Action::new(Op::ReplaceLoad, &s.name, job, Why::Changed));
            }
            Some(p) if p.desired == Activation::Inactive => {
                out.push(Action::new(Op::Load, &s.name, job, Why::Resume))
            }
            Some(_) => {}
        }
    }
    for t in &timers {
        match get(&t.name) {
            None => out.push(Action::new(Op::Start, &t.name, job, Why::New)),
            Some(p) if p.hash != t.hash => {
                out.push(Action::new(Op::ReplaceStart, &t.name, job, Why::Changed))
            }
            Some(_) if quiesced.contains(t.name.as_str()) => {
                out.push(Action::new(Op::Start, &t.name, job, Why::Restore))
            }
            Some(p) if p.desired != Activation::Launched => {
                out.push(Action::new(Op::Start, &t.name, job, Why::Resume))
            }
            Some(_) => {}
        }
    }
    out
}

fn systemd(
    jobs: &[(&str, Vec<&Desired>)],
    removed: &[(&str, Vec<&str>)],
    state: &State,
    live: bool,
    plan: &mut Plan,
) {
    let get = |name: &str| state.units.get(name);
    for (job, units) in removed {
        for unit in units.iter().filter(|u| kind(u) == Kind::Timer) {
            plan.actions
                .push(Action::new(Op::DisableNow, unit, job, Why::Removed));
        }
    }
    let mut files = Vec::new();
    // Templates first: an instance written in the same apply finds its
    // template when systemd reloads.
    let mut ordered: Vec<&Desired> = jobs.iter().flat_map(|(_, u)| u.iter().copied()).collect();
    ordered.sort_by_key(|u| kind(&u.name) != Kind::Template);
    for u in ordered {
        match get(&u.name) {
            None => files.push(Action::new(Op::Write, &u.name, &u.job, Why::New)),
            Some(p) if p.hash != u.hash => {
                if p.busy {
                    plan.notes.push(format!(
                        "{} is running; systemd lets the run finish, and the new file applies \
                         from its next start",
                        u.name
                    ));
                }
                files.push(Action::new(Op::Write, &u.name, &u.job, Why::Changed))
            }
            Some(_) => {}
        }
    }
    for (job, units) in removed {
        for unit in units {
            if get(unit).is_some_and(|p| p.busy) {
                plan.notes.push(format!(
                    "{unit} is running; systemd lets the run finish after its file is removed"
                ));
            }
            files.push(Action::new(Op::Remove, unit, job, Why::Removed));
        }
    }
    let reload = live && !files.is_empty();
    plan.actions.extend(files);
    if reload {
        plan.actions
            .push(Action::new(Op::DaemonReload, "", "", Why::Reload));
    }
    for (job, units) in jobs {
        for t in units.iter().filter(|u| kind(&u.name) == Kind::Timer) {
            let action = match get(&t.name) {
                None => Some((Op::EnableNow, Why::New)),
                Some(p) if p.desired != Activation::Launched => {
                    let why = if p.hash != t.hash {
                        Why::Changed
                    } else {
                        Why::Resume
                    };
                    Some((Op::EnableNow, why))
                }
                Some(p) if p.hash != t.hash && live => Some((Op::Restart, Why::Changed)),
                Some(_) => None,
            };
            if let Some((op, why)) = action {
                plan.actions.push(Action::new(op, &t.name, job, why));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, job: &str, hash: &str) -> Desired {
        Desired {
            name: name.into(),
            job: job.into(),
            hash: hash.into(),
        }
    }

    fn pair(job: &str, hash: &str) -> Vec<Desired> {
        vec![
            d(&format!("{job}.service"), job, hash),
            d(&format!("{job}.timer"), job, hash),
        ]
    }

    fn present(hash: &str, desired: Activation) -> Present {
        Present {
            hash: hash.into(),
            owner: Owner::Same,
            desired,
            current: Some(desired),
            busy: false,
        }
    }

    /// fleet as `unitgen apply` leaves it: services loaded, timers launched.
    fn deployed(units: &[Desired]) -> State {
        let mut s = State::default();
        for u in units {
            let a = if u.name.ends_with(".timer") {
                Activation::Launched
            } else {
                Activation::Loaded
            };
            s.units.insert(u.name.clone(), present(&u.hash, a));
        }
        s
    }

    fn owned(units: &[Desired]) -> BTreeMap<String, String> {
        units
            .iter()
            .map(|u| (u.name.clone(), u.job.clone()))
            .collect()
    }

    const FLEET: Options = Options {
        target: Target::Fleet,
        live: true,
    };
    const HOST: Options = Options {
        target: Target::Systemd,
        live: true,
    };

    fn lines(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .map(|a| format!("{:?} {} {:?}", a.op, a.unit, a.why))
            .collect()
    }

    #[test]
    fn new_pairs_are_submitted_then_the_service_loaded_then_the_timer_started() {
        let mut want = pair("a", "1");
        want.push(d("unitgen-notify@a.service", "a", "1"));
        let p = plan(FLEET, &want, &State::default(), &BTreeMap::new()).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Submit a.service New",
                "Submit a.timer New",
                "Submit unitgen-notify@a.service New",
                "Load a.service New",
                "Load unitgen-notify@a.service New",
                "Start a.timer New",
            ]
        );
    }

    #[test]
    fn nothing_to_do_when_fleet_runs_what_is_rendered() {
        let want = pair("a", "1");
        let p = plan(FLEET, &want, &deployed(&want), &owned(&want)).unwrap();
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_changed_service_is_replaced_with_its_timer_stopped_around_it() {
        let old = pair("a", "1");
        let mut want = pair("a", "1");
        want[0].hash = "2".into();
        let p = plan(FLEET, &want, &deployed(&old), &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Stop a.timer Quiesce",
                "ReplaceLoad a.service Changed",
                "Start a.timer Restore",
            ]
        );
    }

    #[test]
    fn a_busy_service_is_waited_for_after_its_timer_stopped() {
        let old = pair("a", "1");
        let want = pair("a", "2");
        let mut state = deployed(&old);
        state.units.get_mut("a.service").unwrap().busy = true;
        let p = plan(FLEET, &want, &state, &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Stop a.timer Quiesce",
                "WaitIdle a.service Busy",
                "ReplaceLoad a.service Changed",
                "ReplaceStart a.timer Changed",
            ],
            "service before timer; a changed timer is replaced, not just started"
        );
    }

    #[test]
    fn a_launched_service_is_stopped_before_load_replace() {
        let old = pair("a", "1");
        let mut want = pair("a", "1");
        want[0].hash = "2".into();
        let mut state = deployed(&old);
        let s = state.units.get_mut("a.service").unwrap();
        s.desired = Activation::Launched;
        s.current = Some(Activation::Launched);
        // a timer that is not running needs no stop
        let t = state.units.get_mut("a.timer").unwrap();
        t.current = Some(Activation::Loaded);
        let p = plan(FLEET, &want, &state, &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            ["Stop a.service Unlaunch", "ReplaceLoad a.service Changed"]
        );
    }

    #[test]
    fn a_changed_timer_alone_is_start_replaced() {
        let old = pair("a", "1");
        let mut want = pair("a", "1");
        want[1].hash = "2".into();
        let p = plan(FLEET, &want, &deployed(&old), &owned(&old)).unwrap();
        assert_eq!(lines(&p), ["ReplaceStart a.timer Changed"]);
    }

    #[test]
    fn a_half_applied_job_resumes() {
        let want = pair("a", "1");
        let mut state = State::default();
        for u in &want {
            state
                .units
                .insert(u.name.clone(), present("1", Activation::Inactive));
        }
        let p = plan(FLEET, &want, &state, &owned(&want)).unwrap();
        assert_eq!(lines(&p), ["Load a.service Resume", "Start a.timer Resume"]);
    }

    #[test]
    fn a_removed_job_loses_its_timer_first_and_its_busy_service_is_waited_for() {
        let mut old = pair("gone", "1");
        old.push(d("unitgen-notify@gone.service", "gone", "1"));
        old.extend(pair("kept", "1"));
        let want = pair("kept", "1");
        let mut state = deployed(&old);
        state.units.get_mut("gone.service").unwrap().busy = true;
        let p = plan(FLEET, &want, &state, &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Destroy gone.timer Removed",
                "WaitIdle gone.service Busy",
                "Destroy gone.service Removed",
                "Destroy unitgen-notify@gone.service Removed",
            ]
        );
    }

    #[test]
    fn only_recorded_units_that_are_still_unitgen_s_are_destroyed() {
        let old = pair("gone", "1");
        let mut state = deployed(&old);
        // not in the record: never touched, even with the section
        state
            .units
            .insert("stray.service".into(), present("9", Activation::Loaded));
        // recorded, but replaced by a hand-written unit since
        state.units.get_mut("gone.timer").unwrap().owner = Owner::Foreign {
            what: "fleet unit gone.timer".into(),
        };
        state.units.get_mut("gone.service").unwrap().owner = Owner::Unitgen { job: "gone".into() };
        let mut rec = owned(&old);
        rec.insert("vanished.service".into(), "vanished".into());
        let p = plan(FLEET, &[], &state, &rec).unwrap();
        assert_eq!(lines(&p), ["Destroy gone.service Removed"]);
        assert_eq!(p.forget, ["gone.timer", "vanished.service"]);
        assert_eq!(
            p.notes,
            [
                "fleet unit gone.timer is left alone: unitgen deployed it for job `gone`, but it no \
              longer carries [X-Unitgen], so it is not unitgen's to remove"
            ]
        );
    }

    #[test]
    fn a_foreign_unit_of_a_rendered_name_stops_the_plan() {
        let want = pair("a", "1");
        let mut state = State::default();
        let mut p = present("x", Activation::Loaded);
        p.owner = Owner::Foreign {
            what: "fleet unit a.service".into(),
        };
        state.units.insert("a.service".into(), p);
        let err = plan(FLEET, &want, &state, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            err,
            [
                "fleet unit a.service was not written by unitgen (it has no [X-Unitgen] section); \
              job `a` would replace it. Rename the job, or remove that unit yourself if it \
              should go"
            ]
        );
    }

    #[test]
    fn templates_come_before_instances_and_are_only_submitted() {
        let want = vec![
            d("a.service", "a", "1"),
            d("a.timer", "a", "1"),
            d("mail@a.service", "a", "1"),
            d("mail@.service", "a", "1"),
        ];
        let p = plan(FLEET, &want, &State::default(), &BTreeMap::new()).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Submit mail@.service New",
                "Submit a.service New",
                "Submit a.timer New",
                "Submit mail@a.service New",
                "Load a.service New",
                "Load mail@a.service New",
                "Start a.timer New",
            ]
        );
        let old = want.clone();
        let mut want = want;
        want[3].hash = "2".into();
        let mut state = deployed(&old);
        state.units.get_mut("mail@.service").unwrap().desired = Activation::Inactive;
        let p = plan(FLEET, &want, &state, &owned(&old)).unwrap();
        assert_eq!(lines(&p), ["ReplaceSubmit mail@.service Changed"]);
    }

    #[test]
    fn new_jobs_come_before_changed_ones_and_removed_ones_last() {
        let old = [pair("b", "1"), pair("c", "1")].concat();
        let want = [pair("a", "1"), pair("b", "2")].concat();
        let p = plan(FLEET, &want, &deployed(&old), &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Submit a.service New",
                "Submit a.timer New",
                "Load a.service New",
                "Start a.timer New",
                "Stop b.timer Quiesce",
                "ReplaceLoad b.service Changed",
                "ReplaceStart b.timer Changed",
                "Destroy c.timer Removed",
                "Destroy c.service Removed",
            ]
        );
    }

    #[test]
    fn a_host_gets_files_then_one_reload_then_its_timers() {
        let old = [pair("b", "1"), pair("c", "1"), pair("d", "1")].concat();
        let mut want = [pair("a", "1"), pair("b", "2"), pair("d", "1")].concat();
        want[5].hash = "2".into(); // d.timer
        let mut state = deployed(&old);
        state.units.get_mut("b.service").unwrap().busy = true;
        let p = plan(HOST, &want, &state, &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "DisableNow c.timer Removed",
                "Write a.service New",
                "Write a.timer New",
                "Write b.service Changed",
                "Write b.timer Changed",
                "Write d.timer Changed",
                "Remove c.timer Removed",
                "Remove c.service Removed",
                "DaemonReload  Reload",
                "EnableNow a.timer New",
                "Restart b.timer Changed",
                "Restart d.timer Changed",
            ]
        );
        assert_eq!(
            p.notes,
            [
                "b.service is running; systemd lets the run finish, and the new file applies from \
              its next start"
            ]
        );
    }

    #[test]
    fn an_image_root_gets_files_and_enablement_only() {
        let old = pair("b", "1");
        let want = [pair("a", "1"), pair("b", "2")].concat();
        let offline = Options {
            target: Target::Systemd,
            live: false,
        };
        let p = plan(offline, &want, &deployed(&old), &owned(&old)).unwrap();
        assert_eq!(
            lines(&p),
            [
                "Write a.service New",
                "Write a.timer New",
                "Write b.service Changed",
                "Write b.timer Changed",
                "EnableNow a.timer New",
            ]
        );
    }

    #[test]
    fn a_disabled_timer_on_a_host_is_enabled_again() {
        let want = pair("a", "1");
        let mut state = deployed(&want);
        state.units.get_mut("a.timer").unwrap().desired = Activation::Loaded;
        let p = plan(HOST, &want, &state, &owned(&want)).unwrap();
        assert_eq!(lines(&p), ["EnableNow a.timer Resume"]);
    }
}
