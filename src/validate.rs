//! Spec -> validated [`Model`]. Defaults are merged into each job, every
//! value is checked and escaped for its systemd context, and every problem
//! is collected (with its location) before any is reported.

use std::collections::{BTreeMap, HashMap};

use crate::error::Problem;
use crate::escape::{self, ExecLine, ExecWord, UnitName, UnitValue};
use crate::job::{RpcCall, RunnerCredentials, RunnerStep, SnapshotJob};
use crate::model::{FleetOption, JobUnits, Model, ServiceUnit, TimerUnit};
use crate::resolve::Values;
use crate::schedule::{CalendarSpec, cron_to_on_calendar};
use crate::source::{KeyPath, Source};
use crate::spec::{
    ContainerSpec, Credentials, Defaults, EbsSnapshotStep, Job, PullPolicy, RpcStep, Secret, Spec,
    Step, Str, Target, TimerSpec,
};
use crate::timespan;

const DEFAULT_DOCKER: &str = "/usr/bin/docker";
const DEFAULT_RUNNER: &str = "/unitgen-runner";

/// Validates `spec` (decoded from `src`), resolving etcd references from `values`.
pub fn validate(spec: &Spec, src: &Source, values: &Values) -> Result<Model, Vec<Problem>> {
    let mut cx = Cx {
        src,
        values,
        problems: Vec::new(),
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
    let runner_etcd = runner_etcd(&mut cx, spec);
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
        let before = cx.problems.len();
        match cx.job(
            name,
            job,
            &spec.defaults,
            &runner_etcd,
            &path,
            &mut seen_containers,
        ) {
            Some(units) => jobs.push(units),
            // A job must never vanish from the output without a reason.
            None if cx.problems.len() == before => cx.key_err(
                &path,
                "internal error: this job produced no units and no error; this is a bug in unitgen, please report it",
            ),
            None => {}
        }
    }
    // Settings from `defaults` are checked once per job that inherits them,
    // at the same key: report each such problem once.
    let mut seen = std::collections::HashSet::new();
    cx.problems.retain(|p| seen.insert(p.to_string()));
    if cx.problems.is_empty() {
        Ok(Model { jobs })
    } else {
        Err(cx.problems)
    }
}

/// How the runner reaches etcd from inside its container: endpoints
/// (`etcd.runner.endpoints`, else `etcd.endpoints`) and connection flags.
#[derive(Default)]
struct RunnerEtcdArgs {
    endpoints: Vec<String>,
    /// Where the endpoints were written, for errors about them.
    path: Option<KeyPath>,
    flags: Vec<(&'static str, String)>,
}

fn runner_etcd(cx: &mut Cx, spec: &Spec) -> RunnerEtcdArgs {
    let Some(etcd) = &spec.etcd else {
        return RunnerEtcdArgs::default();
    };
    let root = KeyPath::root().key("etcd");
    let mut check = |list: &[String], path: &KeyPath| -> Vec<String> {
        let mut out = Vec::new();
        for (i, url) in list.iter().enumerate() {
            if !is_http_url(url) {
                cx.err(
                    &path.index(i),
                    format!("`{}` is not an http:// or https:// URL", shown(url)),
                );
            } else {
                out.push(url.clone());
            }
        }
        out
    };
    let own = check(&etcd.endpoints, &root.key("endpoints"));
    let mut args = RunnerEtcdArgs {
        endpoints: own,
        path: Some(root.key("endpoints")),
        flags: Vec::new(),
    };
    let Some(runner) = &etcd.runner else {
        return args;
    };
    let rp = root.key("runner");
    if !runner.endpoints.is_empty() {
        args.endpoints = check(&runner.endpoints, &rp.key("endpoints"));
        args.path = Some(rp.key("endpoints"));
    }
    let tls = runner.tls.clone().unwrap_or_default();
    let files = [
        (
            "--etcd-ca-file",
            tls.ca_file.as_ref(),
            rp.key("tls").key("ca_file"),
        ),
        (
            "--etcd-cert-file",
            tls.cert_file.as_ref(),
            rp.key("tls").key("cert_file"),
        ),
        (
            "--etcd-key-file",
            tls.key_file.as_ref(),
            rp.key("tls").key("key_file"),
        ),
        (
            "--etcd-password-file",
            runner.password_file.as_ref(),
            rp.key("password_file"),
        ),
    ];
    for (flag, value, path) in files {
        let Some(value) = value else { continue };
        if let Err(e) = escape::reject_line_breaks(value) {
            cx.err(&path, format!("value {e}"));
        } else if !value.starts_with('/') {
            cx.err(
                &path,
                format!("`{}` must be an absolute path inside the runner's container (mount it with `container.volumes`)", shown(value)),
            );
        } else {
            args.flags.push((flag, value.clone()));
        }
    }
    if let Some(user) = &runner.username {
        match escape::reject_line_breaks(user) {
            Err(e) => cx.err(&rp.key("username"), format!("value {e}")),
            Ok(()) => args.flags.push(("--etcd-user", user.clone())),
        }
    }
    if (tls.cert_file.is_some()) != (tls.key_file.is_some()) {
        cx.err(
            &rp.key("tls"),
            "a client certificate needs both `cert_file` and `key_file`",
        );
    }
    args
}

/// Whether a URL's host is this machine's loopback, which inside a
/// container on a bridge network is the container itself.
fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost") || host.starts_with("127.") || host == "::1"
}

struct Cx<'a> {
    src: &'a Source,
    values: &'a Values,
    problems: Vec<Problem>,
}

/// What a job runs, once validated.
enum Payload {
    Host { argv: Vec<ExecWord> },
    Container(Container),
}

struct Container {
    name: String,
    image: ExecWord,
    pull: Option<PullPolicy>,
    network: Option<ExecWord>,
    links: Vec<ExecWord>,
    volumes: Vec<ExecWord>,
    /// The command run in the image: the runner and its steps, or the spec's own.
    command: Vec<Vec<ExecWord>>,
    /// Whether `command` is unitgen-runner's.
    runner: bool,
}

impl Cx<'_> {
    fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(self.src.at_value(path, message));
    }

    fn key_err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.problems.push(self.src.at_key(path, message));
    }

    /// A string from the spec or, for `{ etcd: KEY }`, from the values.
    /// Every value passes here, so none can carry a line break into a unit,
    /// whatever context (or JSON encoding) it ends up in.
    fn str(&mut self, value: &Str, path: &KeyPath) -> Option<String> {
        let text = match value {
            Str::Literal(s) => s.clone(),
            Str::Etcd(r) => match self.values.get(&r.etcd) {
                Ok(v) => v.to_owned(),
                Err(message) => {
                    self.err(path, message);
                    return None;
                }
            },
        };
        match escape::reject_line_breaks(&text) {
            Ok(()) => Some(text),
            Err(e) => {
                let from = match value {
                    Str::Etcd(r) => format!(" (from etcd key `{}`)", r.etcd),
                    Str::Literal(_) => String::new(),
                };
                self.err(path, format!("value{from} {e}"));
                None
            }
        }
    }

    /// JSON parameters: the same rule for every string inside them.
    fn json_params(&mut self, value: &serde_json::Value, path: &KeyPath) -> bool {
        match value {
            serde_json::Value::String(s) => match escape::reject_line_breaks(s) {
                Ok(()) => true,
                Err(e) => {
                    self.err(path, format!("value {e}"));
                    false
                }
            },
            serde_json::Value::Array(items) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    ok &= self.json_params(item, &path.index(i));
                }
                ok
            }
            serde_json::Value::Object(map) => {
                let mut ok = true;
                for (k, v) in map {
                    ok &= self.json_params(&serde_json::Value::String(k.clone()), &path.key(k))
                        && self.json_params(v, &path.key(k));
                }
                ok
            }
            _ => true,
        }
    }

    fn opt_str(&mut self, value: Option<&Str>, path: &KeyPath) -> Option<String> {
        value.and_then(|v| self.str(v, path))
    }

    /// A secret's etcd key, checked to exist; its value is never read here.
    fn secret(&mut self, secret: &Secret, path: &KeyPath) -> Option<String> {
        let key = &secret.0.etcd;
        if !is_etcd_key(key) {
            self.err(
                path,
                format!("`{key}` is not an etcd key; keys start with `/`"),
            );
            return None;
        }
        if !self.values.exists(key) {
            let message = self.values.missing(key);
            self.err(path, message);
            return None;
        }
        Some(key.clone())
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

    fn timespan(&mut self, value: Option<&Str>, path: &KeyPath) -> Option<String> {
        let text = self.opt_str(value, path)?;
        match timespan::parse(&text) {
            Ok(_) => Some(text.trim().to_owned()),
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

    fn job<'s>(
        &mut self,
        name: &'s str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        path: &KeyPath,
        containers: &mut HashMap<String, &'s str>,
    ) -> Option<JobUnits> {
        let before = self.problems.len();
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
            None => Some(format!("unitgen backup job {name}")),
        };
        let description = description.and_then(|d| self.unit_value(&d, &path.key("description")));
        let on_calendar = self.schedule(job, path);
        let defaults_path = KeyPath::root().key("defaults");
        let timer_layer = |field, get: fn(&TimerSpec) -> Option<&Str>| {
            layered(
                job.timer.as_ref(),
                &path.key("timer"),
                defaults.timer.as_ref(),
                &defaults_path.key("timer"),
                field,
                get,
            )
        };
        let (value, p) = timer_layer("randomized_delay", |t| t.randomized_delay.as_ref());
        let randomized_delay = self.timespan(value, &p);
        let (value, p) = timer_layer("accuracy", |t| t.accuracy.as_ref());
        let accuracy = self.timespan(value, &p);
        let persistent = job
            .timer
            .as_ref()
            .and_then(|t| t.persistent)
            .or(defaults.timer.as_ref().and_then(|t| t.persistent));
        let (value, p) = match &job.timeout {
            Some(t) => (Some(t), path.key("timeout")),
            None => (defaults.timeout.as_ref(), defaults_path.key("timeout")),
        };
        let timeout = self.timespan(value, &p);

        let payload = self.payload(name, job, defaults, etcd, path);
        let mut after = Vec::new();
        let mut requires = Vec::new();
        if matches!(payload, Some(Payload::Container(_))) {
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

        let on_failure = self.on_failure(job, defaults, path, service_name.as_ref());
        let environment = self.environment(job, path);
        let docker = self.docker_path(defaults);
        let fleet = self.fleet(job, defaults, target, path, service_name.as_ref());

        let single_line = target == Target::Fleet;
        let (exec_start_pre, exec_start, exec_stop_post, env_lines) = match payload? {
            Payload::Host { argv } => {
                let mut argv = argv.into_iter();
                let line = ExecLine::new(argv.next()?).inline(argv);
                let env_lines = environment?
                    .iter()
                    .map(|(k, v)| {
                        escape::environment_assignment(k, v)
                            .map_err(|e| {
                                self.err(&path.key("environment").key(k), format!("value {e}"))
                            })
                            .ok()
                    })
                    .collect::<Option<Vec<_>>>()?;
                (
                    Vec::new(),
                    render_exec(&line, single_line),
                    Vec::new(),
                    env_lines,
                )
            }
            Payload::Container(c) => {
                let docker = docker?;
                if let Some(other) = containers.insert(c.name.clone(), name) {
                    self.key_err(
                        path,
                        format!("container name `{}` is also used by job `{other}`; set `container.name` on one of them", c.name),
                    );
                }
                let cname = ExecWord::new(&c.name).ok()?;
                let cleanup = ExecLine::new(docker.clone()).inline([
                    ExecWord::literal("rm"),
                    ExecWord::literal("--force"),
                    cname.clone(),
                ]);
                // `-`: a missing container is the normal case, not a failure.
                let cleanup = format!("-{}", cleanup.render());
                let mut run = ExecLine::new(docker).inline([
                    ExecWord::literal("run"),
                    ExecWord::literal("--rm"),
                    ExecWord::literal("--name"),
                    cname,
                ]);
                if let Some(pull) = c.pull {
                    run.group([
                        ExecWord::literal("--pull"),
                        ExecWord::literal(pull_word(pull)),
                    ]);
                }
                if let Some(net) = c.network {
                    run.group([ExecWord::literal("--network"), net]);
                }
                for link in c.links {
                    run.group([ExecWord::literal("--link"), link]);
                }
                for volume in c.volumes {
                    run.group([ExecWord::literal("--volume"), volume]);
                }
                for (k, v) in environment? {
                    run.group([
                        ExecWord::literal("--env"),
                        ExecWord::new(&format!("{k}={v}")).ok()?,
                    ]);
                }
                if c.runner {
                    // The runner prefixes its log lines with a syslog
                    // priority when it sees this (set by systemd).
                    run.group([
                        ExecWord::literal("--env"),
                        ExecWord::literal("JOURNAL_STREAM"),
                    ]);
                }
                run.group([c.image]);
                for group in c.command {
                    run.group(group);
                }
                (
                    vec![cleanup.clone()],
                    render_exec(&run, single_line),
                    vec![cleanup],
                    Vec::new(),
                )
            }
        };

        if self.problems.len() > before {
            return None;
        }
        let description = description?;
        let job_value = UnitValue::new(name).ok()?;
        let service_name = service_name?;
        let (service_fleet, timer_fleet) = fleet?;
        Some(JobUnits {
            name: name.to_owned(),
            fleet: target == Target::Fleet,
            service: ServiceUnit {
                description: description.clone(),
                after,
                requires,
                on_failure,
                timeout,
                environment: env_lines,
                exec_start_pre,
                exec_start,
                exec_stop_post,
                x_fleet: service_fleet,
                job: job_value.clone(),
            },
            timer: TimerUnit {
                description,
                on_calendar: on_calendar?,
                persistent: persistent.map(|p| if p { "true" } else { "false" }),
                randomized_delay,
                accuracy,
                unit: service_name,
                x_fleet: timer_fleet,
                install: target == Target::Systemd,
                job: job_value,
            },
        })
    }

    /// `OnCalendar=` values: the spec's calendar expression as written
    /// (after checking it parses exactly as systemd would), or the one or
    /// two expressions equivalent to a cron line.
    fn schedule(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<UnitValue>> {
        let (p, exprs) = match (&job.schedule, &job.cron) {
            (Some(s), None) => {
                let p = path.key("schedule");
                let text = self.str(s, &p)?;
                let text = text.trim().to_owned();
                if let Err(e) = CalendarSpec::parse(&text) {
                    self.err(
                        &p,
                        format!(
                            "{e}; see `man systemd.time`, or try `unitgen schedule '{}'`",
                            shown(&text)
                        ),
                    );
                    return None;
                }
                (p, vec![text])
            }
            (None, Some(c)) => {
                let p = path.key("cron");
                let text = self.str(c, &p)?;
                match cron_to_on_calendar(&text) {
                    Ok(exprs) => (p, exprs),
                    Err(e) => {
                        self.err(&p, e.to_string());
                        return None;
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.err(
                    &path.key("cron"),
                    "give either `schedule` or `cron`, not both",
                );
                return None;
            }
            (None, None) => {
                self.key_err(
                    path,
                    "missing `schedule` (a calendar expression such as `*-*-* 00:15:00`) or `cron`",
                );
                return None;
            }
        };
        exprs.iter().map(|e| self.unit_value(e, &p)).collect()
    }

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

    fn environment(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (key, value) in &job.environment {
            let p = path.key("environment").key(key);
            if !escape::is_env_name(key) {
                self.key_err(&p, format!("`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)", shown(key)));
                ok = false;
                continue;
            }
            match self.str(value, &p) {
                Some(v) => out.push((key.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn docker_path(&mut self, defaults: &Defaults) -> Option<ExecWord> {
        let p = KeyPath::root().key("defaults").key("docker");
        let path = match &defaults.docker {
            Some(d) => self.str(d, &p)?,
            None => DEFAULT_DOCKER.to_owned(),
        };
        self.executable(&path, &p)
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

    fn payload(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        path: &KeyPath,
    ) -> Option<Payload> {
        if let Some(command) = &job.command {
            let p = path.key("command");
            if job.container.is_some() || !job.steps.is_empty() {
                self.err(&p, "a host `command` cannot be combined with `container` or `steps`; a job runs one or the other");
                return None;
            }
            if command.is_empty() {
                self.err(
                    &p,
                    "the command is empty; give the program's absolute path and its arguments",
                );
                return None;
            }
            let mut argv = Vec::new();
            for (i, word) in command.iter().enumerate() {
                let wp = p.index(i);
                let text = self.str(word, &wp)?;
                argv.push(if i == 0 {
                    self.executable(&text, &wp)?
                } else {
                    self.word(&text, &wp)?
                });
            }
            return Some(Payload::Host { argv });
        }
        let empty = ContainerSpec::default();
        let spec = job.container.as_ref().unwrap_or(&empty);
        let cpath = path.key("container");
        if spec.command.is_none() && job.steps.is_empty() {
            self.key_err(path, "nothing to run: give `steps` for unitgen-runner, a `container.command`, or a host `command`");
            return None;
        }
        let command = match &spec.command {
            Some(_) if !job.steps.is_empty() => {
                self.err(&cpath.key("command"), "`container.command` replaces the runner, so it cannot be combined with `steps`");
                return None;
            }
            Some(cmd) => {
                let mut words = Vec::new();
                for (i, w) in cmd.iter().enumerate() {
                    let text = self.str(w, &cpath.key("command").index(i))?;
                    words.push(self.word(&text, &cpath.key("command").index(i))?);
                }
                vec![words]
            }
            None => self.runner_command(name, job, defaults, etcd, path)?,
        };
        let image_path = if spec.image.is_some() {
            cpath.key("image")
        } else {
            KeyPath::root().key("defaults").key("image")
        };
        let image = match spec.image.as_ref().or(defaults.image.as_ref()) {
            Some(i) => self.str(i, &image_path)?,
            None => {
                self.key_err(
                    path,
                    "no container image: set `container.image` or `defaults.image`",
                );
                return None;
            }
        };
        if !is_image_ref(&image) {
            self.err(&image_path, format!("`{}` is not a container image reference such as `registry.example.com/unitgen-runner:0.1.0`", shown(&image)));
            return None;
        }
        let cname = match &spec.name {
            Some(n) => {
                let text = self.str(n, &cpath.key("name"))?;
                if !is_docker_name(&text) {
                    self.err(&cpath.key("name"), format!("`{}` is not a container name (letters, digits, `_.-`, starting with a letter or digit)", shown(&text)));
                    return None;
                }
                text
            }
            None => container_name(name),
        };
        let network = match &spec.network {
            Some(n) => {
                let text = self.str(n, &cpath.key("network"))?;
                if !is_docker_name(&text) {
                    self.err(
                        &cpath.key("network"),
                        format!("`{}` is not a docker network name", shown(&text)),
                    );
                    return None;
                }
                Some(self.word(&text, &cpath.key("network"))?)
            }
            None => None,
        };
        let mut links = Vec::new();
        for (i, l) in spec.links.iter().enumerate() {
            let p = cpath.key("links").index(i);
            let text = self.str(l, &p)?;
            let valid = match text.split_once(':') {
                Some((n, alias)) => is_docker_name(n) && is_docker_name(alias),
                None => is_docker_name(&text),
            };
            if !valid {
                self.err(
                    &p,
                    format!(
                        "`{}` is not a link; write `CONTAINER:ALIAS`, e.g. `bitcoind:bitcoind`",
                        shown(&text)
                    ),
                );
                continue;
            }
            links.push(self.word(&text, &p)?);
        }
        let mut volumes = Vec::new();
        for (i, v) in spec.volumes.iter().enumerate() {
            let p = cpath.key("volumes").index(i);
            let text = self.str(v, &p)?;
            if let Err(e) = check_volume(&text) {
                self.err(&p, e);
                continue;
            }
            volumes.push(self.word(&text, &p)?);
        }
        Some(Payload::Container(Container {
            name: cname,
            image: ExecWord::new(&image).ok()?,
            pull: spec.pull.or(defaults.pull),
            network,
            links,
            volumes,
            command,
            runner: spec.command.is_none(),
        }))
    }

    /// `/unitgen-runner --job NAME [--etcd-endpoint URL]... --step JSON...`,
    /// one step per physical line so a review diff shows which step changed.
    fn runner_command(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        path: &KeyPath,
    ) -> Option<Vec<Vec<ExecWord>>> {
        let rp = KeyPath::root().key("defaults").key("runner");
        let runner = match &defaults.runner {
            Some(r) => self.str(r, &rp)?,
            None => DEFAULT_RUNNER.to_owned(),
        };
        let runner = self.executable(&runner, &rp)?;
        let mut steps = Vec::new();
        for (i, step) in job.steps.iter().enumerate() {
            steps.extend(self.step(step, &path.key("steps").index(i)));
        }
        if steps.len() != job.steps.len() {
            return None;
        }
        let mut groups = vec![vec![
            runner,
            ExecWord::literal("--job"),
            self.word(name, path)?,
        ]];
        if steps.iter().any(RunnerStep::reads_etcd) {
            if etcd.endpoints.is_empty() {
                self.key_err(
                    path,
                    "steps read secrets from etcd at run time, but `etcd.endpoints` is empty",
                );
                return None;
            }
            let host_network = job
                .container
                .as_ref()
                .and_then(|c| c.network.as_ref())
                .is_some_and(|n| matches!(n, Str::Literal(n) if n == "host"));
            if !host_network && let Some(e) = etcd.endpoints.iter().find(|e| is_loopback_url(e)) {
                let at = etcd.path.clone().unwrap_or_else(|| path.clone());
                self.err(
                    &at,
                    format!(
                        "job `{name}` reads secrets from etcd inside its container, where `{}` is the container itself, \
                         not the host; set `etcd.runner.endpoints` to an address the container can reach \
                         (the docker0 address, e.g. http://172.17.0.1:2379), or use `container.network: host`",
                        shown(e)
                    ),
                );
                return None;
            }
            for e in &etcd.endpoints {
                groups.push(vec![
                    ExecWord::literal("--etcd-endpoint"),
                    self.word(e, path)?,
                ]);
            }
            for (flag, value) in &etcd.flags {
                groups.push(vec![ExecWord::literal(flag), self.word(value, path)?]);
            }
        }
        for step in &steps {
            let json = serde_json::to_string(step).expect("runner steps serialize");
            groups.push(vec![ExecWord::literal("--step"), self.word(&json, path)?]);
        }
        Some(groups)
    }

    fn step(&mut self, step: &Step, path: &KeyPath) -> Option<RunnerStep> {
        match step {
            Step::Rpc(rpc) => self.rpc(rpc, &path.key("rpc")).map(RunnerStep::Rpc),
            Step::EbsSnapshot(s) => self
                .snapshot(s, &path.key("ebs_snapshot"))
                .map(RunnerStep::EbsSnapshot),
        }
    }

    fn rpc(&mut self, rpc: &RpcStep, path: &KeyPath) -> Option<RpcCall> {
        let url = self.str(&rpc.url, &path.key("url"));
        if let Some(u) = &url
            && !is_http_url(u)
        {
            self.err(
                &path.key("url"),
                format!("`{}` is not an http:// or https:// URL", shown(u)),
            );
        }
        let method = self.str(&rpc.method, &path.key("method"));
        if let Some(m) = &method
            && (m.is_empty()
                || !m
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)))
        {
            self.err(
                &path.key("method"),
                format!("`{}` is not an RPC method name", shown(m)),
            );
        }
        let wallet = self.opt_str(rpc.wallet.as_ref(), &path.key("wallet"));
        let user = self.opt_str(rpc.user.as_ref(), &path.key("user"));
        let password_etcd = rpc
            .password
            .as_ref()
            .and_then(|s| self.secret(s, &path.key("password")));
        let cookie_file = self.opt_str(rpc.cookie_file.as_ref(), &path.key("cookie_file"));
        match (&rpc.password, &rpc.cookie_file, &rpc.user) {
            (Some(_), Some(_), _) => self.err(
                &path.key("cookie_file"),
                "give either `password` or `cookie_file`, not both",
            ),
            (Some(_), None, None) => self.err(&path.key("password"), "a `password` needs a `user`"),
            (None, _, Some(_)) => {
                self.err(&path.key("user"), "a `user` needs a `password` (from etcd)")
            }
            _ => {}
        }
        if let Some(c) = &cookie_file
            && !c.starts_with('/')
        {
            self.err(
                &path.key("cookie_file"),
                "the cookie file must be an absolute path inside the container",
            );
        }
        let timeout = self.timespan(rpc.timeout.as_ref(), &path.key("timeout"));
        let params_ok = self.json_params(
            &serde_json::Value::Array(rpc.params.clone()),
            &path.key("params"),
        );
        if !params_ok {
            return None;
        }
        Some(RpcCall {
            url: url?,
            wallet,
            method: method?,
            params: rpc.params.clone(),
            user,
            password_etcd,
            cookie_file,
            timeout,
        })
    }

    fn snapshot(&mut self, s: &EbsSnapshotStep, path: &KeyPath) -> Option<SnapshotJob> {
        let volume_id = self.str(&s.volume_id, &path.key("volume_id"));
        if let Some(v) = &volume_id
            && !is_volume_id(v)
        {
            self.err(
                &path.key("volume_id"),
                format!(
                    "`{}` is not an EBS volume id such as `vol-0123456789abcdef0`",
                    shown(v)
                ),
            );
        }
        let region = self.str(&s.region, &path.key("region"));
        if let Some(r) = &region
            && (r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
        {
            self.err(
                &path.key("region"),
                format!("`{}` is not an AWS region such as `us-east-1`", shown(r)),
            );
        }
        let credentials = match &s.credentials {
            Credentials::DefaultChain => Some(RunnerCredentials::DefaultChain),
            Credentials::EtcdPrefix(prefix) => {
                let p = path.key("credentials").key("etcd_prefix");
                if !is_etcd_key(prefix) {
                    self.err(
                        &p,
                        format!(
                            "`{}` is not an etcd key prefix; it starts with `/`",
                            shown(prefix)
                        ),
                    );
                    None
                } else {
                    let mut ok = true;
                    for leaf in ["access-key-id", "secret-access-key"] {
                        let key = format!("{prefix}{leaf}");
                        if !self.values.exists(&key) {
                            let message = self.values.missing(&key);
                            self.err(&p, message);
                            ok = false;
                        }
                    }
                    ok.then(|| RunnerCredentials::EtcdPrefix(prefix.clone()))
                }
            }
        };
        let mut tags = BTreeMap::new();
        for (key, value) in &s.tags {
            let p = path.key("tags").key(key);
            if key.is_empty() || key.starts_with("aws:") || key.starts_with("unitgen:") {
                self.key_err(
                    &p,
                    format!(
                        "tag key `{}` is reserved (`aws:` and `unitgen:` prefixes)",
                        shown(key)
                    ),
                );
                continue;
            }
            if let Some(v) = self.str(value, &p) {
                tags.insert(key.clone(), v);
            }
        }
        let wait = self.timespan(s.wait.as_ref(), &path.key("wait"));
        let retention = s.retention.clone().filter(|policy| {
            let empty = policy.is_empty();
            if empty {
                self.err(&path.key("retention"), "an empty retention policy would delete every snapshot; set at least one `keep_*` above 0, or remove `retention`");
            }
            !empty
        });
        if retention.is_some() && s.wait.is_none() {
            self.key_err(
                &path.key("retention"),
                "retention prunes only after the new snapshot has completed, so it needs `wait` (e.g. `wait: 30min`)",
            );
        }
        let endpoint = self.opt_str(s.endpoint.as_ref(), &path.key("endpoint"));
        if let Some(e) = &endpoint
            && !is_http_url(e)
        {
            self.err(
                &path.key("endpoint"),
                format!("`{}` is not an http:// or https:// URL", shown(e)),
            );
        }
        Some(SnapshotJob {
            volume_id: volume_id?,
            region: region?,
            credentials: credentials?,
            tags,
            wait,
            retention,
            endpoint,
        })
    }

    /// Both units' `[X-Fleet]` options, or `None` after reporting a problem.
    #[allow(clippy::type_complexity)]
    fn fleet(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        target: Target,
        path: &KeyPath,
        service: Option<&UnitName>,
    ) -> Option<(Vec<FleetOption>, Vec<FleetOption>)> {
        let fp = path.key("fleet");
        if target == Target::Systemd {
            if job.fleet.is_some() {
                self.err(&fp, "fleet placement needs `target: fleet`");
                return None;
            }
            return Some((Vec::new(), Vec::new()));
        }
        let dfp = KeyPath::root().key("defaults").key("fleet");
        let (own, default) = (job.fleet.as_ref(), defaults.fleet.as_ref());
        let before = self.problems.len();
        let mut out = Vec::new();
        let (value, id_path) = layered(own, &fp, default, &dfp, "machine_id", |f| {
            f.machine_id.as_ref()
        });
        let machine_id = self.opt_str(value, &id_path);
        if let Some(id) = &machine_id {
            if id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push(FleetOption {
                    key: "MachineID",
                    value: id.clone(),
                });
            } else {
                self.err(
                    &id_path,
                    format!(
                        "`{}` is not a machine id: 32 lowercase hex digits, as in /etc/machine-id",
                        shown(id)
                    ),
                );
            }
        }
        let (value, of_path) = layered(own, &fp, default, &dfp, "machine_of", |f| {
            f.machine_of.as_ref()
        });
        let machine_of = value.and_then(|m| self.dependency(m, &of_path));
        if let (Some(m), Some(s)) = (&machine_of, service)
            && m == s
        {
            self.err(&of_path, "a unit cannot be placed with itself");
        }
        if let Some(m) = &machine_of {
            out.push(FleetOption {
                key: "MachineOf",
                value: m.to_string(),
            });
        }
        let (value, meta_path) = layered(own, &fp, default, &dfp, "machine_metadata", |f| {
            Some(&f.machine_metadata).filter(|m| !m.is_empty())
        });
        let machine_metadata = value.cloned().unwrap_or_default();
        let (value, conflicts_path) = layered(own, &fp, default, &dfp, "conflicts", |f| {
            Some(&f.conflicts).filter(|c| !c.is_empty())
        });
        let conflict_globs = value.cloned().unwrap_or_default();
        let (value, global_path) =
            layered(own, &fp, default, &dfp, "global", |f| f.global.as_ref());
        let global = value.copied().unwrap_or(false);
        let mut metadata = Vec::new();
        for (key, values) in &machine_metadata {
            let p = meta_path.key(key);
            if !is_metadata_word(key) {
                self.key_err(&p, format!("metadata key `{}` would be silently ignored by fleet; use at most 255 letters, digits and `_.-`", shown(key)));
                continue;
            }
            if values.as_slice().is_empty() {
                self.err(
                    &p,
                    "no values: fleet would ignore this key and place the unit anywhere",
                );
            }
            for (i, v) in values.as_slice().iter().enumerate() {
                let vp = if matches!(values, crate::spec::OneOrMany::Many(_)) {
                    p.index(i)
                } else {
                    p.clone()
                };
                let Some(text) = self.str(v, &vp) else {
                    continue;
                };
                if is_metadata_value(&text) {
                    metadata.push(FleetOption {
                        key: "MachineMetadata",
                        value: format!("{key}={text}"),
                    });
                } else {
                    self.err(&vp, format!("metadata value `{}` would be silently ignored by fleet; use at most 255 letters, digits and `_.:/-`", shown(&text)));
                }
            }
        }
        out.extend(metadata.iter().cloned());
        let mut conflicts = Vec::new();
        for (i, c) in conflict_globs.iter().enumerate() {
            let p = conflicts_path.index(i);
            let Some(text) = self.str(c, &p) else {
                continue;
            };
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_.@-*?[]".contains(&b))
            {
                self.err(
                    &p,
                    format!(
                        "`{}` is not a unit name glob such as `backup-*.service`",
                        shown(&text)
                    ),
                );
                continue;
            }
            if let Some(m) = &machine_of
                && glob_match(&text, m.as_str())
            {
                self.err(&p, format!("conflicts with `{m}`, the unit named in `machine_of`: fleet can never place this unit"));
            }
            conflicts.push(text.clone());
            out.push(FleetOption {
                key: "Conflicts",
                value: text,
            });
        }
        // Combinations fleet rejects (fleet api/units.go ValidateOptions, and
        // its scheduling docs: Global allows nothing but MachineMetadata).
        if machine_id.is_some() && (machine_of.is_some() || !conflicts.is_empty() || global) {
            self.err(
                &id_path,
                "fleet rejects `machine_id` together with `machine_of`, `conflicts` or `global`",
            );
        }
        if global && (machine_of.is_some() || !conflicts.is_empty()) {
            self.err(
                &global_path,
                "fleet rejects `global: true` with anything but `machine_metadata`",
            );
        }
        if global {
            out.push(FleetOption {
                key: "Global",
                value: "true".into(),
            });
        }
        if self.problems.len() > before {
            return None;
        }
        // The timer must run where its service runs (coreos/bugs#227).
        let timer = if global {
            let mut t = metadata;
            t.push(FleetOption {
                key: "Global",
                value: "true".into(),
            });
            t
        } else {
            vec![FleetOption {
                key: "MachineOf",
                value: service?.to_string(),
            }]
        };
        Some((out, timer))
    }
}

fn render_exec(line: &ExecLine, single_line: bool) -> String {
    if single_line {
        line.render_single()
    } else {
        line.render()
    }
}

fn pull_word(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "always",
        PullPolicy::Missing => "missing",
        PullPolicy::Never => "never",
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
    let mut seen = std::collections::HashSet::new();
    units.retain(|u| seen.insert(u.clone()));
}

/// A value quoted in an error message, cut short: a 10 kB value would bury
/// the message.
fn shown(value: &str) -> String {
    const MAX: usize = 60;
    let mut s: String = value.chars().take(MAX).collect();
    if value.chars().count() > MAX {
        s.push('…');
    }
    s.escape_debug().to_string()
}

pub fn is_http_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control()))
}

fn is_etcd_key(key: &str) -> bool {
    key.starts_with('/') && !key.chars().any(|c| c.is_control() || c.is_whitespace())
}

fn is_volume_id(v: &str) -> bool {
    v.strip_prefix("vol-").is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Docker's container and network name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_docker_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// The default container name: the job name, with the characters docker
/// refuses (`@`, `:`) as `_`.
fn container_name(job: &str) -> String {
    let name: String = job
        .chars()
        .map(|c| if c == '@' || c == ':' { '_' } else { c })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name
    } else {
        format!("job{name}")
    }
}

/// A conservative image reference check: `[registry[:port]/]path[:tag][@digest]`.
/// Above all it must not start with `-`, which docker would take as an option.
fn is_image_ref(image: &str) -> bool {
    let mut b = image.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && image.len() <= 512
        && b.all(|c| c.is_ascii_alphanumeric() || b"._-/:@".contains(&c))
}

const VOLUME_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
];

fn check_volume(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let usage = "write `HOST_PATH:CONTAINER_PATH[:OPTIONS]`, e.g. `/var/lib/bitcoind:/bitcoind:ro`";
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("`{}` is not a volume; {usage}", shown(spec)));
    }
    let (host, inside) = (parts[0], parts[1]);
    if !(host.starts_with('/') || is_docker_name(host)) {
        return Err(format!(
            "volume source `{}` must be an absolute path or a volume name; {usage}",
            shown(host)
        ));
    }
    if !inside.starts_with('/') {
        return Err(format!(
            "volume target `{}` must be an absolute path; {usage}",
            shown(inside)
        ));
    }
    if let Some(opts) = parts.get(2)
        && let Some(bad) = opts.split(',').find(|o| !VOLUME_OPTIONS.contains(o))
    {
        return Err(format!(
            "unknown volume option `{}`; use {}",
            shown(bad),
            VOLUME_OPTIONS.join(", ")
        ));
    }
    Ok(())
}

/// fleet splits machine metadata on `,` and `=` and drops what does not fit
/// without a word, so only plain words are allowed.
fn is_metadata_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn is_metadata_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// Go's path.Match, as fleet uses for `Conflicts=`: `*`, `?` and `[...]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(end) = p.iter().position(|&c| c == b']') else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some(b'^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let Some(&c) = n.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= (class[i]..=class[i + 2]).contains(&c);
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("bitcoind*", "bitcoind.service"));
        assert!(glob_match("b?tcoind.service", "bitcoind.service"));
        assert!(glob_match("[ab]*", "backup.service"));
        assert!(!glob_match("[^ab]*", "backup.service"));
        assert!(!glob_match("web*", "bitcoind.service"));
    }

    #[test]
    fn names_and_refs() {
        assert_eq!(container_name("wallet@hot"), "wallet_hot");
        assert_eq!(container_name("_x"), "job_x");
        assert!(is_image_ref(
            "registry.example.com:5000/unitgen-runner:0.1.0"
        ));
        assert!(!is_image_ref("--privileged"));
        assert!(!is_image_ref("Upper"));
        assert!(is_volume_id("vol-0123456789abcdef0"));
        assert!(!is_volume_id("vol-xyz"));
        assert!(check_volume("/var/lib/bitcoind:/bitcoind:ro").is_ok());
        assert!(check_volume("data:/data").is_ok());
        assert!(check_volume("/a").is_err());
        assert!(check_volume("/a:b").is_err());
        assert!(check_volume("/a:/b:rwx").is_err());
    }
}
