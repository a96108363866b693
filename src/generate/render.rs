//! Model -> unit files. Pure: no I/O. Templates are embedded at compile
//! time, run in strict mode (an undefined variable is a bug, not an empty
//! string), and handlebars' HTML escaping is off: every value was already
//! escaped for systemd by `escape.rs`, and the model holds only escaped
//! types. This file decides only the layout: each command on one line for
//! fleet (see `validate/fleet.rs`), spread over continuation lines for
//! review on plain systemd.

use handlebars::Handlebars;
use serde::Serialize;

use crate::error::Error;
use crate::generate::escape::ExecLine;
use crate::generate::model::{Command, FleetOption, JobUnits, Model, NotifyUnit, Setting};
use crate::generate::spec::Target;

/// A rendered file: its name inside the output folder and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub name: String,
    pub job: String,
    pub contents: String,
}

const SERVICE: (&str, &str) = ("service.hbs", include_str!("../../templates/service.hbs"));
const TIMER: (&str, &str) = ("timer.hbs", include_str!("../../templates/timer.hbs"));
const NOTIFY: (&str, &str) = ("notify.hbs", include_str!("../../templates/notify.hbs"));

pub struct Renderer {
    hb: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

/// What the templates see: the model's values as text, laid out.
#[derive(Serialize)]
struct View<'a> {
    service: ServiceView<'a>,
    timer: TimerView<'a>,
    notify: Option<NotifyView<'a>>,
}

#[derive(Serialize)]
struct ServiceView<'a> {
    description: &'a str,
    after: Vec<&'a str>,
    requires: Vec<&'a str>,
    on_failure: Option<&'a str>,
    on_failure_notify: Option<&'a str>,
    timeout: Option<&'a str>,
    exec: Vec<OptionView<'a>>,
    environment: Vec<&'a str>,
    exec_start_pre: Vec<String>,
    exec_start: String,
    exec_stop_post: Vec<String>,
    success_exit_status: Option<u8>,
    x_fleet: Vec<OptionView<'a>>,
    job: &'a str,
}

#[derive(Serialize)]
struct TimerView<'a> {
    description: &'a str,
    on_calendar: Vec<&'a str>,
    monotonic: Vec<OptionView<'a>>,
    persistent: Option<&'static str>,
    randomized_delay: Option<&'a str>,
    accuracy: Option<&'a str>,
    unit: &'a str,
    x_fleet: Vec<OptionView<'a>>,
    install: bool,
    job: &'a str,
}

#[derive(Serialize)]
struct NotifyView<'a> {
    description: &'a str,
    after: Vec<&'a str>,
    requires: Vec<&'a str>,
    timeout: &'a str,
    exec_start: String,
    x_fleet: Vec<OptionView<'a>>,
    job: &'a str,
}

#[derive(Serialize)]
struct OptionView<'a> {
    key: &'static str,
    value: &'a str,
}

fn options(opts: &[FleetOption]) -> Vec<OptionView<'_>> {
    opts.iter()
        .map(|o| OptionView {
            key: o.key,
            value: o.value.as_str(),
        })
        .collect()
}

fn settings(settings: &[Setting]) -> Vec<OptionView<'_>> {
    settings
        .iter()
        .map(|s| OptionView {
            key: s.key,
            value: s.value(),
        })
        .collect()
}

fn command(cmd: &Command, target: Target) -> String {
    let line = match target {
        // fleet joins continuation lines before its line-length check, and
        // old releases mangle them: one physical line.
        Target::Fleet => ExecLine::render_single(&cmd.line),
        Target::Systemd => cmd.line.render(),
    };
    // systemd.service(5), "Command lines": prefixes combine in any order.
    let ignore = if cmd.ignore_failure { "-" } else { "" };
    let privileged = if cmd.privileged { "+" } else { "" };
    format!("{ignore}{privileged}{line}")
}

fn view(job: &JobUnits) -> View<'_> {
    let (s, t) = (&job.service, &job.timer);
    let commands = |cmds: &[Command]| cmds.iter().map(|c| command(c, job.target)).collect();
    View {
        service: ServiceView {
            description: s.description.as_str(),
            after: s.after.iter().map(|u| u.as_str()).collect(),
            requires: s.requires.iter().map(|u| u.as_str()).collect(),
            on_failure: s.on_failure.as_ref().map(|u| u.as_str()),
            on_failure_notify: s.on_failure_notify.as_ref().map(|u| u.as_str()),
            timeout: s.timeout.as_ref().map(|v| v.as_str()),
            exec: settings(&s.exec),
            environment: s.environment.iter().map(|e| e.as_str()).collect(),
            exec_start_pre: commands(&s.exec_start_pre),
            exec_start: command(&s.exec_start, job.target),
            exec_stop_post: commands(&s.exec_stop_post),
            success_exit_status: s.success_exit_status,
            x_fleet: options(&s.x_fleet),
            job: s.job.as_str(),
        },
        timer: TimerView {
            description: t.description.as_str(),
            on_calendar: t.on_calendar.iter().map(|v| v.as_str()).collect(),
            monotonic: settings(&t.monotonic),
            persistent: t.persistent.map(|p| if p { "true" } else { "false" }),
            randomized_delay: t.randomized_delay.as_ref().map(|v| v.as_str()),
            accuracy: t.accuracy.as_ref().map(|v| v.as_str()),
            unit: t.unit.as_str(),
            x_fleet: options(&t.x_fleet),
            // fleet starts units itself; only a plain host enables the timer.
            install: job.target == Target::Systemd,
            job: t.job.as_str(),
        },
        notify: job.notify.as_ref().map(|n| notify_view(n, job.target)),
    }
}

fn notify_view(n: &NotifyUnit, target: Target) -> NotifyView<'_> {
    NotifyView {
        description: n.description.as_str(),
        after: n.after.iter().map(|u| u.as_str()).collect(),
        requires: n.requires.iter().map(|u| u.as_str()).collect(),
        timeout: n.timeout.as_str(),
        exec_start: command(&n.exec_start, target),
        x_fleet: options(&n.x_fleet),
        job: n.job.as_str(),
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        for (name, text) in [SERVICE, TIMER, NOTIFY] {
            hb.register_template_string(name, text)
                .unwrap_or_else(|e| panic!("embedded template {name} does not parse: {e}"));
        }
        Renderer { hb }
    }

    /// Every job's units, sorted by job name: each service, then its
    /// timer, then its notify unit if it has one. `unitgen render | xargs
    /// fleetctl submit` takes them in this order; the notify unit comes
    /// last because its `MachineOf=` names the service.
    pub fn render(&self, model: &Model) -> Result<Vec<UnitFile>, Error> {
        let mut files = Vec::with_capacity(model.jobs.len() * 3);
        for job in &model.jobs {
            let view = view(job);
            for (template, suffix) in [(SERVICE.0, "service"), (TIMER.0, "timer")] {
                files.push(UnitFile {
                    name: format!("{}.{suffix}", job.name),
                    job: job.name.clone(),
                    contents: self.one(template, &view)?,
                });
            }
            if let Some(notify) = &job.notify {
                files.push(UnitFile {
                    name: notify.name.as_str().to_owned(),
                    job: job.name.clone(),
                    contents: self.one(NOTIFY.0, &view)?,
                });
            }
        }
        Ok(files)
    }

    fn one(&self, template: &'static str, view: &View) -> Result<String, Error> {
        self.hb.render(template, view).map_err(|e| Error::Template {
            template,
            message: e.to_string(),
        })
    }
}
