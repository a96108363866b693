//! Failure notification (`notify:`): the job's settings merged field by
//! field with `defaults.notify`, judged by the contract's own
//! [`Notifiers::check`] (the runner runs the same), and turned into
//! commands: the notify unit's (mail, webhook) and the healthchecks hooks
//! of the job's own unit.
//!
//! Why a notify unit started by `OnFailure=` for mail and webhook, and not
//! an `ExecStopPost=` of the job's unit: `OnFailure=` is how systemd says
//! "this unit failed", whatever the cause, including failures where no
//! `ExecStopPost=` runs (`start-limit-hit`); the notifier's own time and
//! failures stay in a unit of their own, so its journal says whether the
//! mail went out, and its failure can never become the job's. Why one
//! concrete unit per job (`unitgen-notify@JOB.service`, a full file) and
//! not one shared template: fleet places only the files it is given, and
//! never a template by itself, so `OnFailure=` naming a template instance
//! would find nothing on the job's machine. healthchecks needs a ping when
//! a run starts too, which only the job's own unit can send: `-`-prefixed
//! hooks, whose failure systemd ignores (systemd.service(5), "Command
//! lines").

use super::Cx;
use super::container::{check_volume, is_docker_name, pull_word};
use super::etcd::RunnerEtcdArgs;
use super::steps::DEFAULT_RUNNER;
use crate::contract::notify::{Endpoint, Event, LOG_LINES, Mail, Notifiers, NotifyInvocation};
use crate::contract::secret::is_etcd_key;
use crate::contract::{Maybe, Text};
use crate::diag::{KeyPath, shown};
use crate::generate::escape::{ExecLine, ExecWord, UnitName};
use crate::generate::model::Command;
use crate::generate::spec::{Defaults, EndpointSpec, Job, MailSpec, NotifySpec, Str};

/// The notify unit of job `JOB` is `unitgen-notify@JOB.service`; no job may
/// take such a name itself.
pub(crate) const UNIT_PREFIX: &str = "unitgen-notify@";

/// The notify unit's shell script. systemd starts an `OnFailure=` unit
/// without a word about the failure (`$MONITOR_SERVICE_RESULT` and friends
/// exist only from systemd 251 on), so the script asks systemd for the
/// failed unit's result and the journal for its last lines, and pipes both
/// into the notifier's container (`docker run --interactive`): first
/// `systemctl show`'s `KEY=VALUE` lines, an empty line, then the log lines.
///
/// The script is fixed: the failed unit's name comes in as `$1`, and the
/// notifier's whole command line as the remaining words, run by `exec
/// "$@"` without being parsed again. No spec value is ever shell text.
///
/// A pipe, not a file bind-mounted into the container: `docker run
/// --volume` names a path of the Docker daemon's file system, which is the
/// unit's only when the daemon runs on the same host (not for a CLI talking
/// to the engine of another machine or namespace); stdin travels over the
/// CLI's own connection to the daemon. `/bin/sh`, `systemctl` and
/// `journalctl` exist on CoreOS and on Debian alike.
fn failure_script() -> String {
    format!(
        "unit=$1; shift; {{ systemctl show --property=Result --property=ExecMainCode \
         --property=ExecMainStatus -- \"$unit\"; echo; journalctl --unit=\"$unit\" \
         --lines={LOG_LINES} --output=cat --no-pager; }} | exec \"$@\""
    )
}

/// How long the notify unit may take: the image may have to be pulled, and
/// each notifier has its own time limit in the runner.
pub(super) const NOTIFY_TIMEOUT: &str = "5min";

/// What a job's notify settings add to its units.
pub(super) struct Notify {
    /// The notify unit's name and its command (mail, webhook).
    pub unit: Option<(UnitName, Command)>,
    /// healthchecks: `ExecStartPre=-` of the job's unit.
    pub start_hook: Option<Command>,
    /// healthchecks: `ExecStopPost=-` of the job's unit.
    pub finish_hook: Option<Command>,
}

/// A setting from the job's `notify`, else from `defaults.notify`, with the
/// spec path of whichever is used.
fn pick<'a, T>(
    own: Option<&'a T>,
    own_path: KeyPath,
    default: Option<&'a T>,
    default_path: KeyPath,
) -> Option<(&'a T, KeyPath)> {
    match (own, default) {
        (Some(v), _) => Some((v, own_path)),
        (None, Some(v)) => Some((v, default_path)),
        (None, None) => None,
    }
}

/// Where each contract field came from in the spec (the job or
/// `defaults`), so that a violation of `mail.to[1]` is reported at, say,
/// `jobs.backup.notify.mail[1]`.
#[derive(Default)]
struct Origins(Vec<(KeyPath, KeyPath)>);

impl Origins {
    fn add(&mut self, field: KeyPath, spec: KeyPath) {
        self.0.push((field, spec));
    }

    fn locate(&self, field: &KeyPath, fallback: &KeyPath) -> KeyPath {
        let best = self
            .0
            .iter()
            .filter(|(f, _)| field.starts_with(f))
            .max_by_key(|(f, _)| f.len());
        match best {
            Some((f, spec)) => {
                let mut out = spec.clone();
                for seg in &field.segments()[f.len()..] {
                    out.push(seg.clone());
                }
                out
            }
            None => fallback.join(field),
        }
    }
}

/// The notifier's container, as far as it was validated.
struct Container {
    docker: ExecWord,
    image: ExecWord,
    pull: Option<crate::generate::spec::PullPolicy>,
    network: Option<ExecWord>,
    /// The job's volumes: the container path, and the whole `--volume` word.
    volumes: Vec<(String, ExecWord)>,
    runner: ExecWord,
}

impl Cx<'_> {
    /// The job's notification, `Some(None)` when it has none, `None` after
    /// reporting a problem (or meeting a value not known yet).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn notify(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        path: &KeyPath,
        service: Option<&UnitName>,
    ) -> Option<Option<Notify>> {
        if job.notify.is_none() && defaults.notify.is_none() {
            return Some(None);
        }
        let empty = NotifySpec::default();
        let own = job.notify.as_ref().unwrap_or(&empty);
        let def = defaults.notify.as_ref().unwrap_or(&empty);
        let own_path = path.key("notify");
        let def_path = KeyPath::root().key("defaults").key("notify");
        let before = self.problems.len();
        let mut origins = Origins::default();

        let mail = self.mail(own, &own_path, def, &def_path, &mut origins);
        let webhook = self.endpoint(
            "webhook",
            pick(
                own.webhook.as_ref(),
                own_path.key("webhook"),
                def.webhook.as_ref(),
                def_path.key("webhook"),
            ),
            &mut origins,
        );
        let healthchecks = self.endpoint(
            "healthchecks",
            pick(
                own.healthchecks.as_ref(),
                own_path.key("healthchecks"),
                def.healthchecks.as_ref(),
                def_path.key("healthchecks"),
            ),
            &mut origins,
        );
        let notifiers = Notifiers {
            mail,
            webhook,
            healthchecks,
        };
        for v in notifiers.check() {
            let at = origins.locate(&v.field, &own_path);
            if v.about_key {
                self.key_err(&at, v.message);
            } else {
                self.err(&at, v.message);
            }
        }
        for secret in notifiers.secrets() {
            if is_etcd_key(&secret.key) {
                let at = origins.locate(&secret.field, &own_path);
                self.secret_exists(&secret.key, &at);
            }
        }
        let on_failure = notifiers.mail.is_some() || notifiers.webhook.is_some();
        let unit = if on_failure {
            self.notify_unit_name(name, &own_path)
        } else {
            None
        };

        let container = self.notifier_container(job, defaults, own, def, &own_path, &def_path);
        let reads_etcd = !notifiers.secrets().is_empty();
        let host_network = matches!(&container, Some((_, Some(n))) if n == "host");
        self.notify_loopback(&notifiers, &origins, &own_path, host_network);
        if reads_etcd {
            self.notify_etcd(name, etcd, &own_path, host_network);
        }
        if self.problems.len() > before {
            return None;
        }
        let (container, _) = container?;
        let Some(notifiers) = notifiers.into_known() else {
            self.unknown = true;
            return None;
        };
        let service = service?;
        // Each event's command reads etcd only when its own notifiers have
        // a secret (a healthchecks ping needs none when its URL is in the
        // unit, even if the failure mail has a password).
        let invocation = |event| {
            let notifiers = notifiers.for_event(event);
            NotifyInvocation {
                event,
                job: name.to_owned(),
                unit: service.as_str().to_owned(),
                etcd: (!notifiers.secrets().is_empty()).then(|| etcd.etcd.clone()),
                notifiers,
            }
        };
        let mut out = Notify {
            unit: None,
            start_hook: None,
            finish_hook: None,
        };
        if notifiers.healthchecks.is_some() {
            out.start_hook = Some(Command {
                ignore_failure: true,
                privileged: false,
                line: self.notifier_line(&container, &invocation(Event::Start), &own_path)?,
            });
            out.finish_hook = Some(Command {
                ignore_failure: true,
                privileged: false,
                line: self.notifier_line(&container, &invocation(Event::Finish), &own_path)?,
            });
        }
        if on_failure {
            let docker_run =
                self.notifier_line(&container, &invocation(Event::Failure), &own_path)?;
            let script = self.word(&failure_script(), &own_path)?;
            let mut line = ExecLine::new(ExecWord::literal("/bin/sh")).inline([
                ExecWord::literal("-c"),
                script,
                // `$0` of the script, for its error messages.
                ExecWord::literal("unitgen-notify"),
                self.word(service.as_str(), &own_path)?,
            ]);
            for group in docker_run.groups() {
                line.group(group.iter().cloned());
            }
            // `-`? No: the notify unit's failure is its own (a warning in
            // the journal, "Failed with result"), never the job's.
            out.unit = Some((
                unit?,
                Command {
                    ignore_failure: false,
                    privileged: false,
                    line,
                },
            ));
        }
        Some(Some(out))
    }

    /// `unitgen-notify@JOB.service`, or `None` after reporting why the job's
    /// name cannot have one.
    fn notify_unit_name(&mut self, name: &str, at: &KeyPath) -> Option<UnitName> {
        if name.contains('@') {
            self.key_err(
                at,
                format!(
                    "mail and webhook notification need a job name without `@`: the job's notify \
                     unit `{UNIT_PREFIX}{}.service` would have a second one; rename the job, e.g. `{}`",
                    shown(name),
                    shown(&name.replace('@', "-"))
                ),
            );
            return None;
        }
        match UnitName::parse(&format!("{UNIT_PREFIX}{name}.service")) {
            Ok(u) => Some(u),
            Err(e) => {
                self.key_err(
                    at,
                    format!("the job's notify unit `{UNIT_PREFIX}{}.service` {e}; shorten the job's name", shown(name)),
                );
                None
            }
        }
    }

    fn mail(
        &mut self,
        own: &NotifySpec,
        own_path: &KeyPath,
        def: &NotifySpec,
        def_path: &KeyPath,
        origins: &mut Origins,
    ) -> Option<Mail<Maybe>> {
        if own.mail.is_none() && def.mail.is_none() {
            return None;
        }
        let (op, dp) = (own_path.key("mail"), def_path.key("mail"));
        let own_fields = own.mail.as_ref().map(MailSpec::fields).unwrap_or_default();
        let def_fields = def.mail.as_ref().map(MailSpec::fields).unwrap_or_default();
        // `defaults.notify.mail` without recipients only sets up the server
        // for the jobs that ask for mail; with recipients, every job mails.
        if own.mail.is_none() && def_fields.to.is_empty() {
            return None;
        }
        // The short form `mail: [a@b]` is the list itself.
        let to_path = |spec: Option<&MailSpec>, base: &KeyPath| match spec {
            Some(MailSpec::To(_)) => base.clone(),
            _ => base.key("to"),
        };
        let field = KeyPath::root().key("mail");
        let (to, to_at) = if own_fields.to.is_empty() && !def_fields.to.is_empty() {
            (&def_fields.to, to_path(def.mail.as_ref(), &dp))
        } else {
            (&own_fields.to, to_path(own.mail.as_ref(), &op))
        };
        origins.add(field.key("to"), to_at.clone());
        let to: Vec<Maybe> = to
            .iter()
            .enumerate()
            .map(|(i, a)| self.text(a, &to_at.index(i)))
            .collect();
        // The field, from the job's mail settings or else the defaults'.
        macro_rules! layer {
            ($name:ident) => {
                match (&own_fields.$name, &def_fields.$name) {
                    (Some(v), _) => Some((v, op.key(stringify!($name)))),
                    (None, Some(v)) => Some((v, dp.key(stringify!($name)))),
                    (None, None) => None,
                }
            };
        }
        let mut text = |cx: &mut Self, name: &str, v: Option<(&Str, KeyPath)>| {
            v.map(|(s, p)| {
                origins.add(field.key(name), p.clone());
                cx.text(s, &p)
            })
        };
        let from = text(self, "from", layer!(from));
        let user = text(self, "user", layer!(user));
        let smtp = match text(self, "smtp", layer!(smtp)) {
            Some(s) => s,
            None => {
                self.key_err(
                    &op,
                    "no SMTP server: set `smtp: smtp://HOST[:PORT]` here or in `defaults.notify.mail`",
                );
                Maybe::Unknown
            }
        };
        let starttls = layer!(starttls);
        if let Some((_, p)) = &starttls {
            origins.add(field.key("starttls"), p.clone());
        }
        let password = layer!(password);
        if let Some((_, p)) = &password {
            origins.add(field.key("password"), p.clone());
        }
        Some(Mail {
            to,
            from,
            smtp,
            starttls: starttls.is_some_and(|(b, _)| *b),
            user,
            password_etcd: password.map(|(s, _)| s.0.etcd.clone()),
        })
    }

    fn endpoint(
        &mut self,
        name: &str,
        spec: Option<(&EndpointSpec, KeyPath)>,
        origins: &mut Origins,
    ) -> Option<Endpoint<Maybe>> {
        let (spec, at) = spec?;
        let fields = spec.fields();
        let field = KeyPath::root().key(name);
        // The short form `webhook: URL` is the URL itself.
        let url_at = match spec {
            EndpointSpec::Url(_) => at.clone(),
            EndpointSpec::Full(_) => at.key("url"),
        };
        origins.add(field.clone(), at.clone());
        origins.add(field.key("url"), url_at.clone());
        Some(Endpoint {
            url: fields.url.as_ref().map(|u| self.text(u, &url_at)),
            url_etcd: fields.url_secret.map(|s| s.0.etcd),
        })
    }

    /// The notifier's container: the job's image, pull policy and network
    /// (or `notify.network`), and the job's volumes; with the network's
    /// name, for the loopback rule.
    fn notifier_container(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        own: &NotifySpec,
        def: &NotifySpec,
        own_path: &KeyPath,
        def_path: &KeyPath,
    ) -> Option<(Container, Option<String>)> {
        let docker = self.docker_path(defaults);
        let rp = KeyPath::root().key("defaults").key("runner");
        let runner = match &defaults.runner {
            Some(r) => self.str(r, &rp),
            None => Some(DEFAULT_RUNNER.to_owned()),
        };
        let runner = runner.and_then(|r| self.executable(&r, &rp));
        // A host `command` job has no `container` (validation refuses both):
        // its notifier gets `defaults.image` and `defaults.pull` only.
        let spec = job.container.as_ref();
        let cpath = own_path.parent().unwrap_or_default().key("container");
        let (image, image_path) = match spec.and_then(|c| c.image.as_ref()) {
            Some(i) => (Some(i), cpath.key("image")),
            None => (
                defaults.image.as_ref(),
                KeyPath::root().key("defaults").key("image"),
            ),
        };
        let image = match image {
            Some(i) => self.image(i, &image_path),
            None => {
                self.key_err(
                    own_path,
                    "the notifier runs unitgen-runner in a container: set `defaults.image` \
                     (or `container.image`) to an image that holds it",
                );
                None
            }
        };
        let (network, network_path) = match pick(
            own.network.as_ref(),
            own_path.key("network"),
            def.network.as_ref(),
            def_path.key("network"),
        ) {
            Some((n, p)) => (Some(n), p),
            None => (spec.and_then(|c| c.network.as_ref()), cpath.key("network")),
        };
        let network_name = match network {
            Some(n) => match self.str(n, &network_path) {
                Some(text) if is_docker_name(&text) => Some(Some(text)),
                Some(text) => {
                    self.err(
                        &network_path,
                        format!("`{}` is not a docker network name", shown(&text)),
                    );
                    None
                }
                None => None,
            },
            None => Some(None),
        };
        let mut volumes = Vec::new();
        for (i, v) in spec
            .map(|c| c.volumes.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let p = cpath.key("volumes").index(i);
            let text = self.str(v, &p)?;
            if let Err(e) = check_volume(&text) {
                self.err(&p, e);
                return None;
            }
            let inside = text.split(':').nth(1).unwrap_or_default().to_owned();
            volumes.push((inside, self.word(&text, &p)?));
        }
        let network_name = network_name?;
        let network = match &network_name {
            Some(n) => Some(self.word(n, &network_path)?),
            None => None,
        };
        Some((
            Container {
                docker: docker?,
                image: image?,
                pull: spec.and_then(|c| c.pull).or(defaults.pull),
                network,
                volumes,
                runner: runner?,
            },
            network_name,
        ))
    }

    /// A notifier on the loopback would be the container itself, unless it
    /// shares the host's network (the rule of the runner's etcd endpoints).
    fn notify_loopback(
        &mut self,
        n: &Notifiers<Maybe>,
        origins: &Origins,
        at: &KeyPath,
        host_network: bool,
    ) {
        if host_network {
            return;
        }
        let mut urls: Vec<(KeyPath, String)> = Vec::new();
        let root = KeyPath::root();
        if let Some(smtp) = n.mail.as_ref().and_then(|m| m.smtp.known()) {
            urls.push((root.key("mail").key("smtp"), smtp.to_owned()));
        }
        for (name, e) in [("webhook", &n.webhook), ("healthchecks", &n.healthchecks)] {
            if let Some(url) = e
                .as_ref()
                .and_then(|e| e.url.as_ref())
                .and_then(Text::known)
            {
                urls.push((root.key(name).key("url"), url.to_owned()));
            }
        }
        for (field, url) in urls {
            if crate::contract::url::is_loopback(&url) {
                let p = origins.locate(&field, at);
                self.err(
                    &p,
                    format!(
                        "`{}` is the loopback, which inside the notifier's container is the container \
                         itself; use an address the container can reach (the docker0 address, e.g. \
                         172.17.0.1), or `notify.network: host`",
                        shown(&url)
                    ),
                );
            }
        }
    }

    /// The notifier reads secrets from etcd: the same rules as a job's steps.
    fn notify_etcd(&mut self, name: &str, etcd: &RunnerEtcdArgs, at: &KeyPath, host_network: bool) {
        self.runner_reaches_etcd(
            etcd,
            host_network,
            at,
            &format!("job `{name}`'s notifier reads secrets from etcd"),
            "the notifier reads secrets from etcd at run time, but `etcd.endpoints` is empty",
            "notify.network",
        );
    }

    /// `docker run --rm ... IMAGE RUNNER notify --event E ...`.
    fn notifier_line(
        &mut self,
        c: &Container,
        invocation: &NotifyInvocation,
        at: &KeyPath,
    ) -> Option<ExecLine> {
        // No `--name`: a hook's container is anonymous, so two of them never
        // collide; `--rm` removes it, and the runner's own time limits end it.
        let mut run = ExecLine::new(c.docker.clone())
            .inline([ExecWord::literal("run"), ExecWord::literal("--rm")]);
        if invocation.event == Event::Failure {
            // stdin: the failed unit's result and last log lines.
            run = run.inline([ExecWord::literal("--interactive")]);
        }
        if let Some(pull) = c.pull {
            run.group([
                ExecWord::literal("--pull"),
                ExecWord::literal(pull_word(pull)),
            ]);
        }
        if let Some(net) = &c.network {
            run.group([ExecWord::literal("--network"), net.clone()]);
        }
        // Of the job's volumes, only those holding the runner's etcd files
        // (TLS, a password file): the notifier never sees the job's data.
        if let Some(etcd) = &invocation.etcd {
            let files: Vec<&String> = [
                &etcd.ca_file,
                &etcd.cert_file,
                &etcd.key_file,
                &etcd.password_file,
            ]
            .into_iter()
            .flatten()
            .collect();
            for (inside, volume) in &c.volumes {
                let holds = |f: &&String| {
                    f.strip_prefix(inside.trim_end_matches('/'))
                        .is_some_and(|rest| rest.starts_with('/'))
                };
                if files.iter().any(holds) {
                    run.group([ExecWord::literal("--volume"), volume.clone()]);
                }
            }
        }
        // `--env NAME` without a value: docker copies the variable from its
        // own environment (systemd's), or leaves it unset; the value never
        // goes through the unit file, so no `$` is expanded there.
        let mut env = vec![
            ExecWord::literal("--env"),
            ExecWord::literal("JOURNAL_STREAM"),
        ];
        if invocation.event == Event::Finish {
            // Set by systemd for ExecStopPost= since v232 (systemd.exec(5),
            // "Environment variables set or propagated by the service manager").
            for name in ["SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS"] {
                env.push(ExecWord::literal("--env"));
                env.push(ExecWord::literal(name));
            }
        }
        run.group(env);
        run.group([c.image.clone()]);
        for (i, group) in invocation.arg_groups().into_iter().enumerate() {
            let mut words = Vec::new();
            if i == 0 {
                words.push(c.runner.clone());
            }
            for w in group {
                words.push(self.word(&w, at)?);
            }
            if i == 0 {
                words.push(ExecWord::literal("--host"));
                words.push(ExecWord::host_name_specifier());
            }
            run.group(words);
        }
        Some(run)
    }
}
