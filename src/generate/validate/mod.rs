//! Spec -> validated [`Model`]. Pure but for one read of the clock (a
//! one-off schedule that has passed never fires, see `timer.rs`): it reads
//! the decoded spec and the values fetched for its references, and
//! collects every problem (with its location) before any is reported.
//!
//! One file per concern, each an `impl Cx` block:
//! - this file: the value plumbing every rule uses (a `Str` resolved and
//!   checked for line breaks, a secret's key checked to exist, a word or
//!   value escaped for its systemd context) and the job's unit assembly;
//! - `etcd.rs`: the spec's `etcd` section (endpoints, the runner's view);
//! - `timer.rs`: schedules (refusing those that never fire), monotonic
//!   starts and timer options;
//! - `container.rs`: what a service runs (host command or container), the
//!   docker command lines;
//! - `steps.rs`: runner steps, judged by the contract (`contract/`), and
//!   `copy.rs`, the copy step's folders mounted into the container;
//! - `lock.rs`: the job's lock, and how the service takes it;
//! - `service.rs`: how systemd runs a host command (user, priorities,
//!   sandbox);
//! - `fleet.rs`: fleet placement and fleet's limits.

mod container;
mod copy;
pub mod etcd;
pub mod fleet;
mod lock;
mod notify;
mod service;
mod steps;
mod timer;

pub(crate) use notify::UNIT_PREFIX as NOTIFY_UNIT_PREFIX;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::contract::Maybe;
use crate::diag::{KeyPath, Kind, Problem, shown};
use crate::generate::escape::{self, ExecWord, UnitName, UnitValue};
use crate::generate::model::{
    FleetOption, JobUnits, Model, NotifyUnit, ServiceUnit, Setting, TimerUnit,
};
use crate::generate::source::Source;
use crate::generate::spec::{Defaults, Job, Spec, Str, Target};
use crate::generate::values::Values;

/// Validates `spec` (decoded from `src`), reading etcd references from `values`.
pub fn validate(spec: &Spec, src: &Source, values: &Values) -> Result<Model, Vec<Problem>> {
    let partial = run(spec, src, values, false);
    if partial.problems.is_empty() && partial.jobs.len() == spec.jobs.len() {
        Ok(Model { jobs: partial.jobs })
    } else {
        Err(partial.problems)
    }
}

/// What validation found when some values may not be known (`list`,
/// `validate --offline`): every problem the spec has regardless of them,
/// the jobs that needed nothing unknown, and what is known of every job.
#[derive(Debug)]
pub struct Partial {
    /// The complete jobs, sorted by name; a job that needs an unknown
    /// value is not among them.
    pub jobs: Vec<JobUnits>,
    /// Every job's timer and placement, as far as they are known.
    pub parts: BTreeMap<String, JobParts>,
    pub problems: Vec<Problem>,
}

/// A job's schedule and placement, validated, each `None` when it needs a
/// value that is not known.
#[derive(Debug, Clone)]
pub struct JobParts {
    pub target: Target,
    /// The `OnCalendar=` expressions, as written into the timer.
    pub on_calendar: Option<Vec<String>>,
    /// `OnBootSec=` and the other monotonic timers.
    pub monotonic: Option<Vec<Setting>>,
    /// The service's `[X-Fleet]` options (none on plain systemd).
    pub x_fleet: Option<Vec<FleetOption>>,
}

/// [`validate`], keeping what is known of jobs that need unknown values.
pub fn validate_partial(spec: &Spec, src: &Source, values: &Values) -> Partial {
    run(spec, src, values, true)
}

fn run(spec: &Spec, src: &Source, values: &Values, keep_parts: bool) -> Partial {
    let mut cx = Cx {
        src,
        values,
        problems: Vec::new(),
        unknown: false,
        lifecycle_owners: HashMap::new(),
        now: jiff::Timestamp::now(),
        parts: keep_parts.then(BTreeMap::new),
    };
    let root = KeyPath::root();
    if spec.version != 1 {
        cx.err(
            &root.key("version"),
            format!(
                "unsupported version {}; only `version: 1` exists",
                spec.version
            ),
        );
    }
    let runner_etcd = cx.runner_etcd(spec);
    if spec.jobs.is_empty() {
        cx.err(&root.key("jobs"), "no jobs; add at least one under `jobs:`");
    }

    let mut jobs = Vec::new();
    // Unit files must stay distinct on case-insensitive file systems too
    // (an ops repo checked out on a laptop).
    let mut seen_units: HashMap<String, &str> = HashMap::new();
    let mut seen_containers: HashMap<String, &str> = HashMap::new();
    for (name, job) in &spec.jobs {
        let path = root.key("jobs").key(name);
        if let Some(other) = seen_units.insert(name.to_lowercase(), name) {
            cx.key_err(
                &path,
                format!("job `{name}` and job `{other}` would write the same unit files on a case-insensitive file system; rename one"),
            );
        }
        if name.to_lowercase().starts_with(notify::UNIT_PREFIX) {
            cx.key_err(
                &path,
                format!(
                    "job names starting with `{}` are reserved for the notify units of other jobs; rename the job",
                    notify::UNIT_PREFIX
                ),
            );
        }
        let before = cx.problems.len();
        cx.unknown = false;
        let found = cx.job(name, job, &spec.defaults, &runner_etcd, &path);
        match found {
            Some((units, container)) => {
                if let Some(c) = container
                    && let Some(other) = seen_containers.insert(c.clone(), name)
                {
                    cx.key_err(
                        &path,
                        format!("container name `{c}` is also used by job `{other}`; set `container.name` on one of them"),
                    );
                }
                jobs.push(units);
            }
            // A job must never vanish from the output without a reason: a
            // reported problem, or a value not known yet (offline).
            None if cx.problems.len() == before && !cx.unknown => cx.key_err(
                &path,
                "internal error: this job produced no units and no error; this is a bug in unitgen, please report it",
            ),
            None => {}
        }
    }
    // Settings from `defaults` are checked once per job that inherits them,
    // at the same key: report each such problem once.
    let mut seen = HashSet::new();
    cx.problems.retain(|p| seen.insert(p.to_string()));
    Partial {
        jobs,
        parts: cx.parts.unwrap_or_default(),
        problems: cx.problems,
    }
}

/// The validation context: the spec's source (for locations), the values
/// of its references, and the problems found so far.
struct Cx<'a> {
    src: &'a Source,
    values: &'a Values,
    problems: Vec<Problem>,
    /// Whether the current job used a value that is not known (offline).
    unknown: bool,
    /// The `s3_lifecycle` step that manages each (endpoint, bucket).
    lifecycle_owners: HashMap<(String, String), KeyPath>,
    /// The render time: a one-off schedule before it never fires (the
    /// only rule that reads the clock; see `timer.rs`).
    now: jiff::Timestamp,
    /// Each job's schedule and placement, when asked for ([`Partial`]).
    parts: Option<BTreeMap<String, JobParts>>,
}

impl Cx<'_> {
    fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems
            .push(self.src.at_value(path, Kind::Invalid, message));
    }

    fn key_err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems
            .push(self.src.at_key(path, Kind::Invalid, message));
    }

    fn etcd_err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems
            .push(self.src.at_value(path, Kind::EtcdKey, message));
    }

    /// A string from the spec or, for `{ etcd: KEY }`, from the values;
    /// `Unknown` when that value is not known, or was refused (and the
    /// problem reported). Every value passes here, so none can carry a line
    /// break into a unit, whatever context (or JSON encoding) it ends up in.
    fn text(&mut self, value: &Str, path: &KeyPath) -> Maybe {
        let text = match value {
            Str::Literal(s) => s.clone(),
            Str::Etcd(r) => match self.values.get(&r.etcd) {
                Ok(Some(v)) => v.to_owned(),
                Ok(None) => {
                    self.unknown = true;
                    return Maybe::Unknown;
                }
                Err(message) => {
                    self.etcd_err(path, message);
                    return Maybe::Unknown;
                }
            },
        };
        match escape::reject_line_breaks(&text) {
            Ok(()) => Maybe::Known(text),
            Err(e) => {
                let from = match value {
                    Str::Etcd(r) => format!(" (from etcd key `{}`)", r.etcd),
                    Str::Literal(_) => String::new(),
                };
                self.err(path, format!("value{from} {e}"));
                Maybe::Unknown
            }
        }
    }

    /// [`Cx::text`] when only a known value is of use.
    fn str(&mut self, value: &Str, path: &KeyPath) -> Option<String> {
        self.text(value, path).into_known()
    }

    fn opt_str(&mut self, value: Option<&Str>, path: &KeyPath) -> Option<String> {
        value.and_then(|v| self.str(v, path))
    }

    /// Checks that a secret's etcd key exists; its value is never read.
    fn secret_exists(&mut self, key: &str, path: &KeyPath) {
        if let Err(message) = self.values.secret(key) {
            self.etcd_err(path, message);
        }
    }

    fn unit_value(&mut self, value: &str, path: &KeyPath) -> Option<UnitValue> {
        UnitValue::new(value)
            .map_err(|e| self.err(path, format!("value {e}")))
            .ok()
    }

    fn word(&mut self, value: &str, path: &KeyPath) -> Option<ExecWord> {
        ExecWord::new(value)
            .map_err(|e| self.err(path, format!("value {e}")))
            .ok()
    }

    /// A systemd time span, as written (trimmed).
    fn timespan(&mut self, value: Option<&Str>, path: &KeyPath) -> Option<UnitValue> {
        let text = self.opt_str(value, path)?;
        match crate::contract::timespan::parse(&text) {
            Ok(_) => self.unit_value(text.trim(), path),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn unit_name(&mut self, value: &Str, path: &KeyPath) -> Option<UnitName> {
        let text = self.str(value, path)?;
        match UnitName::parse(&text) {
            Ok(name) => Some(name),
            Err(e) => {
                self.err(
                    path,
                    format!("`{}` is not a unit name: it {e}", shown(&text)),
                );
                None
            }
        }
    }

    /// A unit the job depends on (`After=`, `Requires=`): an instance, not
    /// a template.
    fn dependency(&mut self, unit: &Str, path: &KeyPath) -> Option<UnitName> {
        let name = self.unit_name(unit, path)?;
        if name.is_template() {
            self.err(
                path,
                format!(
                    "`{name}` is a template; name an instance such as `{}`",
                    name.as_str().replace("@.", "@instance.")
                ),
            );
            return None;
        }
        Some(name)
    }

    /// An absolute executable path. The first word of a command line may
    /// carry prefixes (`-`, `@`, `+`, `!`, `:`) that change how systemd runs
    /// it; requiring a leading `/` rules them out.
    fn executable(&mut self, path: &str, p: &KeyPath) -> Option<ExecWord> {
        if !path.starts_with('/') {
            self.err(
                p,
                format!(
                    "`{}` must be an absolute path (starting with `/`)",
                    shown(path)
                ),
            );
            return None;
        }
        self.word(path, p)
    }

    /// The job's units, and its container's name (for collisions), or
    /// `None` after reporting a problem (or meeting an unknown value).
    fn job(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &etcd::RunnerEtcdArgs,
        path: &KeyPath,
    ) -> Option<(JobUnits, Option<String>)> {
        let base = match UnitName::job_base(name) {
            Ok(base) => Some(base),
            Err(e) => {
                self.key_err(
                    path,
                    format!(
                        "job name `{}` cannot be a unit name: it {e}; try `{}`",
                        shown(name),
                        escape::suggest_job_name(name)
                    ),
                );
                None
            }
        };
        let target = job.target.or(defaults.target).unwrap_or(Target::Systemd);
        let service_name = base
            .as_ref()
            .and_then(|b| UnitName::with_suffix(b, "service").ok());

        let description = match &job.description {
            Some(d) => self.str(d, &path.key("description")),
            // A name that is not a unit name was reported above.
            None => base.as_ref().map(|_| format!("unitgen backup job {name}")),
        };
        let description = description.and_then(|d| self.unit_value(&d, &path.key("description")));
        let timer = self.timer(job, defaults, path);
        let defaults_path = KeyPath::root().key("defaults");
        let (value, p) = match &job.timeout {
            Some(t) => (Some(t), path.key("timeout")),
            None => (defaults.timeout.as_ref(), defaults_path.key("timeout")),
        };
        let timeout = self.timespan(value, &p);

        let mut run = self.payload(name, job, defaults, etcd, path);
        let notify = self.notify(name, job, defaults, etcd, path, service_name.as_ref());
        let hooks = matches!(&notify, Some(Some(n)) if n.start_hook.is_some());
        if let (Some(run), Some(Some(n))) = (run.as_mut(), &notify) {
            // The start ping after the leftover container is removed, the
            // finish ping after this run's container is gone.
            run.exec_start_pre.extend(n.start_hook.clone());
            run.exec_stop_post.extend(n.finish_hook.clone());
        }
        if let Some(run) = run.as_mut()
            && !run.exec.is_empty()
        {
            // What unitgen adds around the job's own command (the lock
            // folder, the pings) must work whoever the job runs as and
            // whatever its sandbox: `+` runs it outside both.
            for cmd in run.exec_start_pre.iter_mut().chain(&mut run.exec_stop_post) {
                cmd.privileged = true;
            }
        }
        let mut after = Vec::new();
        let mut requires = Vec::new();
        if hooks || matches!(run, Some(ref r) if r.container.is_some()) {
            let docker = UnitName::parse("docker.service").expect("a valid unit name");
            after.push(docker.clone());
            requires.push(docker);
        }
        for (i, unit) in job.requires.iter().enumerate() {
            if let Some(u) = self.dependency(unit, &path.key("requires").index(i)) {
                requires.push(u.clone());
                // Requires= alone does not order; a backup must start after
                // the application it needs is up.
                after.push(u);
            }
        }
        for (i, unit) in job.after.iter().enumerate() {
            after.extend(self.dependency(unit, &path.key("after").index(i)));
        }
        dedup(&mut after);
        dedup(&mut requires);
        if let Some(service) = &service_name
            && after.iter().chain(&requires).any(|u| u == service)
        {
            // systemd would drop the dependency with a warning (a unit
            // cannot order itself), silently losing what was asked for.
            let docker = matches!(run, Some(ref r) if r.container.is_some())
                && service.as_str() == "docker.service";
            let why = if docker {
                "container jobs run after and require docker.service"
            } else {
                "its `after` or `requires` names it"
            };
            self.key_err(
                path,
                format!(
                    "job `{name}` would depend on its own unit `{service}` ({why}); rename the job"
                ),
            );
        }

        let on_failure = self.on_failure(job, defaults, path, service_name.as_ref());
        let fleet = self.fleet(job, defaults, target, path, service_name.as_ref());
        if let Some(parts) = &mut self.parts {
            parts.insert(
                name.to_owned(),
                JobParts {
                    target,
                    on_calendar: timer.as_ref().map(|t| {
                        t.on_calendar
                            .iter()
                            .map(|v| v.as_str().to_owned())
                            .collect()
                    }),
                    monotonic: timer.as_ref().map(|t| t.monotonic.clone()),
                    x_fleet: fleet.as_ref().map(|(service, _)| service.clone()),
                },
            );
        }

        let run = run?;
        let notify = notify?;
        let description = description?;
        let timer = timer?;
        let job_value = self.unit_value(name, path)?;
        let service_name = service_name?;
        let (service_fleet, timer_fleet) = fleet?;
        let notify_unit = match notify.and_then(|n| n.unit) {
            Some((unit, exec_start)) => {
                let docker = UnitName::parse("docker.service").expect("a valid unit name");
                Some(NotifyUnit {
                    name: unit,
                    description: self.unit_value(
                        &format!("unitgen: report a failure of {service_name}"),
                        path,
                    )?,
                    after: vec![docker.clone()],
                    requires: vec![docker],
                    timeout: self.unit_value(notify::NOTIFY_TIMEOUT, path)?,
                    exec_start,
                    // Where the job runs, as its timer: the failed unit's
                    // journal is on that machine, and `OnFailure=` starts
                    // only units that machine has.
                    x_fleet: timer_fleet.clone(),
                    job: job_value.clone(),
                })
            }
            None => None,
        };
        Some((
            JobUnits {
                name: name.to_owned(),
                target,
                service: ServiceUnit {
                    description: description.clone(),
                    after,
                    requires,
                    on_failure,
                    on_failure_notify: notify_unit.as_ref().map(|n| n.name.clone()),
                    timeout,
                    exec: run.exec,
                    environment: run.environment,
                    exec_start_pre: run.exec_start_pre,
                    exec_start: run.exec_start,
                    exec_stop_post: run.exec_stop_post,
                    success_exit_status: run.success_exit_status,
                    x_fleet: service_fleet,
                    job: job_value.clone(),
                },
                timer: TimerUnit {
                    description,
                    on_calendar: timer.on_calendar,
                    monotonic: timer.monotonic,
                    persistent: timer.persistent,
                    randomized_delay: timer.randomized_delay,
                    accuracy: timer.accuracy,
                    unit: service_name,
                    x_fleet: timer_fleet,
                    job: job_value,
                },
                notify: notify_unit,
            },
            run.container,
        ))
    }

    fn on_failure(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        path: &KeyPath,
        service: Option<&UnitName>,
    ) -> Option<UnitName> {
        let value = job.on_failure.as_ref().or(defaults.on_failure.as_ref())?;
        let p = if job.on_failure.is_some() {
            path.key("on_failure")
        } else {
            KeyPath::root().key("defaults").key("on_failure")
        };
        let unit = self.unit_name(value, &p)?;
        if !unit.is_template() {
            if Some(&unit) == service {
                self.err(
                    &p,
                    "a job cannot be its own `on_failure` unit: its failure would start it again",
                );
                return None;
            }
            return Some(unit);
        }
        // `unit-status-mail@.service` is the usual MAILTO stand-in: it gets
        // the failed unit's name as its instance, as `%n` would give, but
        // spelled out so the unit reads the same everywhere.
        match unit.instantiate(service?.as_str()) {
            Ok(u) => Some(u),
            Err(e) => {
                self.err(&p, format!("`{unit}` with this job's name {e}"));
                None
            }
        }
    }
}

/// A setting from the job's own section or, failing that, from
/// `defaults`, with the path of whichever is used: a bad default is reported
/// at its own key (once, see `validate`), not at every job that inherits it.
fn layered<'a, S, T: ?Sized>(
    own: Option<&'a S>,
    own_path: &KeyPath,
    default: Option<&'a S>,
    default_path: &KeyPath,
    field: &str,
    get: impl Fn(&'a S) -> Option<&'a T>,
) -> (Option<&'a T>, KeyPath) {
    match own.and_then(&get) {
        Some(v) => (Some(v), own_path.key(field)),
        None => (default.and_then(&get), default_path.key(field)),
    }
}

fn dedup(units: &mut Vec<UnitName>) {
    let mut seen = HashSet::new();
    units.retain(|u| seen.insert(u.clone()));
}
