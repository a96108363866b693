//! `unitgen plan`, `unitgen apply` and the deploying half of `unitgen
//! watch --apply`: flags to a backend, the plan to the terminal.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::cmd::cli::{ApplyArgs, PlanArgs, TargetArg, TargetArgs, WaitArgs};
use crate::deploy::fleet::Fleet;
use crate::deploy::systemd::Systemd;
use crate::deploy::{self, Backend, Desired, Plan, Record, Scope, Target, Waits};
use crate::error::Error;
use crate::generate::Loaded;
use crate::generate::output::{self, Written};
use crate::generate::render::UnitFile;
use crate::generate::spec;

pub fn plan(args: &PlanArgs) -> Result<(), Error> {
    let (loaded, files) = super::render_loaded(&args.spec)?;
    let target = choose_target(&job_targets(&loaded), args.target.target)?;
    check_flags(target, &args.target)?;
    // plan waits for nothing; this only bounds each fleetctl call.
    let waits = Waits {
        state: std::time::Duration::from_secs(60),
        idle: std::time::Duration::ZERO,
    };
    let mut backend = backend(target, &args.target, waits, &args.output, &files);
    let desired = desired(&files, &job_targets(&loaded), target);
    let record = Record::read(&args.output)?;
    let (plan, desired) = deploy::prepare(backend.as_mut(), &record, &desired, None)?;
    for note in &plan.notes {
        eprintln!("note: {}", crate::diag::escape_controls(note));
    }
    let mut out = std::io::stdout().lock();
    let io = crate::cmd::term::stdout_error;
    if args.json {
        let json = plan_json(backend.as_ref(), &plan);
        writeln!(out, "{json}").map_err(io)?;
    } else {
        for action in &plan.actions {
            writeln!(out, "{}", backend.line(action)).map_err(io)?;
        }
    }
    if plan.actions.is_empty() {
        if !args.json {
            crate::cmd::term::info(format_args!(
                "nothing to do: {}",
                runs(backend.as_ref(), &desired, false)
            ));
        }
        return Ok(());
    }
    // CI gates on it: 1 means there is something to apply.
    Err(Error::Silent(1))
}

pub fn apply(args: &ApplyArgs) -> Result<(), Error> {
    let waits = waits(&args.wait)?;
    let (loaded, files) = super::render_loaded(&args.spec)?;
    let targets = job_targets(&loaded);
    let target = choose_target(&targets, args.target.target)?;
    check_flags(target, &args.target)?;
    let deployer = Deployer {
        target: args.target.clone(),
        waits,
        output: args.output.clone(),
    };
    deploy::stop_on_signals();
    // A closed stdout must not stop an apply half way: its lines are lost.
    let mut say = |line: &str| {
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    let mut warn = |line: &str| eprintln!("{line}");
    deployer.deploy(
        target,
        &files,
        &targets,
        Deploy::WriteFirst,
        &mut say,
        &mut warn,
    )
}

/// What [`Deployer::deploy`] covers.
pub enum Deploy<'a> {
    /// Every rendered unit, written into the output folder once the plan
    /// holds (no conflict), before the first action: fleetctl reads units
    /// from those files.
    WriteFirst,
    /// The units already written; with a scope, only its jobs and units.
    Written(Option<&'a Scope>),
}

/// What `watch --apply` keeps between batches.
#[derive(Debug, Clone)]
pub struct Deployer {
    pub target: TargetArgs,
    pub waits: Waits,
    pub output: PathBuf,
}

impl Deployer {
    pub fn new(target: &TargetArgs, wait: &WaitArgs, output: &Path) -> Result<Deployer, Error> {
        Ok(Deployer {
            target: target.clone(),
            waits: waits(wait)?,
            output: output.to_owned(),
        })
    }

    /// The target `loaded`'s jobs go to, checked against the flags.
    pub fn target_for(&self, loaded: &Loaded) -> Result<Target, Error> {
        let target = choose_target(&job_targets(loaded), self.target.target)?;
        check_flags(target, &self.target)?;
        Ok(target)
    }

    /// Plans and applies `files` (or, with a scope, the jobs in it),
    /// saying each action on `say` and warnings on `warn`.
    pub fn deploy(
        &self,
        target: Target,
        files: &[UnitFile],
        targets: &BTreeMap<String, Target>,
        what: Deploy,
        say: &mut dyn FnMut(&str),
        warn: &mut dyn FnMut(&str),
    ) -> Result<(), Error> {
        std::fs::create_dir_all(&self.output).map_err(Error::io(&self.output))?;
        let mut record = Record::lock(&self.output, self.waits.idle + self.waits.state)?;
        let mut backend = backend(target, &self.target, self.waits, &self.output, files);
        let desired = desired(files, targets, target);
        let scope = match what {
            Deploy::Written(scope) => scope,
            Deploy::WriteFirst => None,
        };
        let (plan, desired) = deploy::prepare(backend.as_mut(), &record, &desired, scope)?;
        for note in &plan.notes {
            warn(&format!("note: {note}"));
        }
        if let Deploy::WriteFirst = what {
            let written = output::write(&self.output, files)?;
            for path in &written.removed {
                warn(&format!("removed {}", path.display()));
            }
        }
        let applied = deploy::apply(backend.as_mut(), &mut record, &plan, &desired, say)?;
        for warning in backend.warnings(&desired) {
            warn(&format!("warning: {warning}"));
        }
        let runs = runs(backend.as_ref(), &desired, scope.is_some());
        match applied.actions {
            0 => say(&format!("nothing to do: {runs}")),
            n => say(&format!("done: {}; {runs}", count(n, "action"))),
        }
        Ok(())
    }
}

/// The scope of one `watch` batch: the jobs whose units it rewrote, and
/// the units it removed.
pub fn scope(written: &Written, files: &[UnitFile]) -> Scope {
    let name = |p: &PathBuf| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let changed: BTreeSet<String> = written.changed.iter().map(name).collect();
    Scope {
        jobs: files
            .iter()
            .filter(|f| changed.contains(&f.name))
            .map(|f| f.job.clone())
            .collect(),
        removed: written.removed.iter().map(name).collect(),
    }
}

fn waits(args: &WaitArgs) -> Result<Waits, Error> {
    Ok(Waits {
        state: deploy::parse_wait("--wait", &args.wait)?,
        idle: deploy::parse_wait("--wait-idle", &args.wait_idle)?,
    })
}

/// Each job's target, as validation decides it (the job's own, else
/// `defaults.target`, else systemd).
pub fn job_targets(loaded: &Loaded) -> BTreeMap<String, Target> {
    let Some(spec) = loaded.spec() else {
        return BTreeMap::new();
    };
    spec.jobs
        .iter()
        .map(|(name, job)| {
            let t = match job.target.or(spec.defaults.target) {
                Some(spec::Target::Fleet) => Target::Fleet,
                Some(spec::Target::Systemd) | None => Target::Systemd,
            };
            (name.clone(), t)
        })
        .collect()
}

fn choose_target(
    targets: &BTreeMap<String, Target>,
    flag: Option<TargetArg>,
) -> Result<Target, Error> {
    match flag {
        Some(TargetArg::Fleet) => return Ok(Target::Fleet),
        Some(TargetArg::Systemd) => return Ok(Target::Systemd),
        None => {}
    }
    let mut by: BTreeMap<Target, Vec<&str>> = BTreeMap::new();
    for (job, t) in targets {
        by.entry(*t).or_default().push(job);
    }
    match by.len() {
        0 => Ok(Target::Systemd),
        1 => Ok(*by.keys().next().expect("one")),
        _ => Err(Error::Usage(format!(
            "the spec has jobs for fleet ({}) and for systemd ({}); choose which to deploy \
             with --target fleet or --target systemd",
            by[&Target::Fleet].join(", "),
            by[&Target::Systemd].join(", ")
        ))),
    }
}

fn check_flags(target: Target, args: &TargetArgs) -> Result<(), Error> {
    match target {
        Target::Fleet if args.root.is_some() => Err(Error::Usage(
            "--root is for --target systemd (an image's root folder); fleet has none".into(),
        )),
        Target::Systemd if !args.fleetctl_args.is_empty() => {
            Err(Error::Usage("--fleetctl-arg is for --target fleet".into()))
        }
        _ => Ok(()),
    }
}

fn backend(
    target: Target,
    args: &TargetArgs,
    waits: Waits,
    output: &Path,
    files: &[UnitFile],
) -> Box<dyn Backend> {
    match target {
        Target::Fleet => Box::new(Fleet::new(
            args.fleetctl.clone().into_os_string(),
            args.fleetctl_args.clone(),
            waits,
            output.to_owned(),
        )),
        Target::Systemd => Box::new(Systemd::new(args.root.clone(), waits, files)),
    }
}

/// The rendered units of `target`'s jobs, in render order.
fn desired(files: &[UnitFile], targets: &BTreeMap<String, Target>, target: Target) -> Vec<Desired> {
    files
        .iter()
        .filter(|f| targets.get(&f.job) == Some(&target))
        .map(|f| Desired {
            name: f.name.clone(),
            job: f.job.clone(),
            hash: deploy::sha1_hex(f.contents.as_bytes()),
        })
        .collect()
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// "fleet runs the 3 units of 1 job as rendered"; for a `watch` batch
/// (`scoped`), the jobs by name.
fn runs(backend: &dyn Backend, desired: &[Desired], scoped: bool) -> String {
    let jobs: BTreeSet<&str> = desired.iter().map(|d| d.job.as_str()).collect();
    let place = match (backend.target(), backend.live()) {
        (Target::Fleet, _) => "fleet runs".to_owned(),
        (Target::Systemd, true) => "systemd runs".to_owned(),
        (Target::Systemd, false) => format!("{} holds", backend.location()),
    };
    let units = count(desired.len(), "unit");
    match (scoped, jobs.len()) {
        (true, 0) => "the removed units are gone".to_owned(),
        (true, 1) => format!(
            "{place} the {units} of job {} as rendered",
            jobs.iter().next().expect("one")
        ),
        (true, _) => format!(
            "{place} the {units} of jobs {} as rendered",
            jobs.into_iter().collect::<Vec<_>>().join(", ")
        ),
        (false, n) => format!("{place} the {units} of {} as rendered", count(n, "job")),
    }
}

fn plan_json(backend: &dyn Backend, plan: &Plan) -> String {
    #[derive(serde::Serialize)]
    struct Step<'a> {
        op: deploy::Op,
        unit: &'a str,
        job: &'a str,
        why: deploy::Why,
        line: String,
    }
    #[derive(serde::Serialize)]
    struct Json<'a> {
        target: Target,
        location: String,
        actions: Vec<Step<'a>>,
        notes: &'a [String],
    }
    let json = Json {
        target: backend.target(),
        location: backend.location(),
        actions: plan
            .actions
            .iter()
            .map(|a| Step {
                op: a.op,
                unit: &a.unit,
                job: &a.job,
                why: a.why,
                line: backend.line(a),
            })
            .collect(),
        notes: &plan.notes,
    };
    serde_json::to_string(&json).expect("a plan serializes")
}
