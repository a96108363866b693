//! One job at a glance, for `unitgen list`: where it runs, when, what it
//! does, and its unit files, as far as they can be known without etcd.
//! Pure: the schedule and placement come from validation (so they read
//! exactly as the units will), the steps from the spec, and the next run
//! from the offline calendar engine, counted from a time the caller gives.

use jiff::Zoned;

use crate::diag::escape_controls;
use crate::generate::model::{FleetOption, Setting};
use crate::generate::render::UnitFile;
use crate::generate::spec::{Job, Step, Str, Target};
use crate::generate::validate::JobParts;
use crate::schedule::CalendarSpec;

/// One job. Each `Option` is `None` when it depends on an etcd value that
/// is not known (no `--values`, and etcd is never asked).
#[derive(Debug, Clone)]
pub struct JobOverview {
    pub name: String,
    pub target: Target,
    /// The service's `[X-Fleet]` lines (`MachineOf=bitcoind.service`);
    /// empty on plain systemd.
    pub x_fleet: Option<Vec<String>>,
    /// The `OnCalendar=` expressions, in systemd's normalized form.
    pub on_calendar: Option<Vec<String>>,
    /// The monotonic timers, as their lines (`OnBootSec=15min`).
    pub monotonic: Option<Vec<String>>,
    /// What the service runs, in short: one entry per runner step
    /// (`rpc(backupwallet)`), or the host command.
    pub steps: Vec<String>,
    /// The job's unit files, as `render` would write them.
    pub files: Option<Vec<UnitFile>>,
    /// The parsed calendar expressions, for [`JobOverview::next_run`].
    calendar: Option<Vec<CalendarSpec>>,
}

impl JobOverview {
    /// `files` are the job's rendered units, if it could be rendered.
    pub fn new(name: &str, job: &Job, parts: &JobParts, files: Option<Vec<UnitFile>>) -> Self {
        // Validation parsed each expression already; one that did not
        // parse would have been reported, so this never drops any.
        let calendar: Option<Vec<CalendarSpec>> = parts.on_calendar.as_ref().map(|exprs| {
            exprs
                .iter()
                .filter_map(|e| CalendarSpec::parse(e).ok())
                .collect()
        });
        JobOverview {
            name: name.to_owned(),
            target: parts.target,
            x_fleet: parts.x_fleet.as_ref().map(|o| o.iter().map(line).collect()),
            on_calendar: calendar
                .as_ref()
                .map(|specs| specs.iter().map(CalendarSpec::normalized).collect()),
            monotonic: parts
                .monotonic
                .as_ref()
                .map(|s| s.iter().map(setting).collect()),
            steps: steps(job),
            files,
            calendar,
        }
    }

    /// Where the job runs, in short: `this host` on plain systemd; on
    /// fleet, its placement (`with bitcoind.service`, `every machine`,
    /// `region=us-east-1`), or `any machine`.
    pub fn runs_on(&self) -> Option<String> {
        if self.target == Target::Systemd {
            return Some("this host".to_owned());
        }
        let options = self.x_fleet.as_ref()?;
        let mut parts: Vec<String> = Vec::new();
        let mut metadata: Vec<(String, Vec<String>)> = Vec::new();
        let mut global = false;
        for option in options {
            let (key, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
            match key {
                "MachineOf" => parts.push(format!("with {value}")),
                "MachineID" => parts.push(format!("machine {}", &value[..value.len().min(12)])),
                "Conflicts" => parts.push(format!("not with {value}")),
                "Global" => global = true,
                "MachineMetadata" => {
                    let (k, v) = value.split_once('=').unwrap_or((value, ""));
                    match metadata.iter_mut().find(|(key, _)| key == k) {
                        Some((_, values)) => values.push(v.to_owned()),
                        None => metadata.push((k.to_owned(), vec![v.to_owned()])),
                    }
                }
                _ => parts.push(option.clone()),
            }
        }
        // Values of one key are alternatives for fleet; keys must all match.
        parts.extend(
            metadata
                .into_iter()
                .map(|(k, values)| format!("{k}={}", values.join("|"))),
        );
        let placement = parts.join(", ");
        Some(match (global, placement.is_empty()) {
            (true, true) => "every machine".to_owned(),
            (true, false) => format!("every machine with {placement}"),
            (false, true) => "any machine".to_owned(),
            (false, false) => placement,
        })
    }

    /// The first time any of its `OnCalendar=` expressions elapses after
    /// `base`, in `base`'s zone (where an expression without a zone is
    /// read, as systemd reads it in the host's). `None` for a job started
    /// by monotonic timers only, or whose schedule needs etcd.
    pub fn next_run(&self, base: &Zoned) -> Option<Zoned> {
        let specs = self.calendar.as_ref()?;
        crate::schedule::report::next_elapses(specs, base, 1)
            .into_iter()
            .next()
    }
}

fn line(option: &FleetOption) -> String {
    format!("{}={}", option.key, option.value.as_str())
}

fn setting(setting: &Setting) -> String {
    format!("{}={}", setting.key, setting.value())
}

/// A spec value as it reads in one line: a literal as written (control
/// characters escaped), a reference as the spec writes it.
fn text(value: &Str) -> String {
    match value {
        Str::Literal(s) => escape_controls(s).into_owned(),
        Str::Etcd(r) => format!("{{etcd: {}}}", escape_controls(&r.etcd)),
    }
}

/// A command line as a shell would take it back: words with anything but
/// plain characters in single quotes.
fn command_line(words: &[Str]) -> String {
    words
        .iter()
        .map(|w| {
            let t = text(w);
            let plain = !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
            if plain || matches!(w, Str::Etcd(_)) {
                t
            } else {
                format!("'{}'", t.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `keep last 7, daily 14`: a retention policy's non-zero counts, in the
/// policy's order (newest first, then by widening periods).
fn retention(policy: Option<&crate::contract::retention::RetentionPolicy>) -> Option<String> {
    let p = policy?;
    let counts = [
        ("last", p.keep_last),
        ("hourly", p.keep_hourly),
        ("daily", p.keep_daily),
        ("weekly", p.keep_weekly),
        ("monthly", p.keep_monthly),
        ("yearly", p.keep_yearly),
    ];
    let kept: Vec<String> = counts
        .iter()
        .filter_map(|(name, n)| n.filter(|n| *n > 0).map(|n| format!("{name} {n}")))
        .collect();
    (!kept.is_empty()).then(|| format!("keep {}", kept.join(", ")))
}

/// What the job's service runs, in short. Secrets are never shown (they
/// are not even values here: only their keys).
pub fn steps(job: &Job) -> Vec<String> {
    if let Some(command) = &job.command {
        return vec![command_line(command)];
    }
    if let Some(command) = job.container.as_ref().and_then(|c| c.command.as_ref()) {
        return vec![format!("container: {}", command_line(command))];
    }
    let with = |name: &str, args: Vec<String>| {
        let args: Vec<String> = args.into_iter().filter(|a| !a.is_empty()).collect();
        format!("{name}({})", args.join(", "))
    };
    job.steps
        .iter()
        .map(|step| match step {
            Step::Rpc(s) => with("rpc", vec![text(&s.method)]),
            Step::EbsSnapshot(s) => with(
                "ebs_snapshot",
                vec![
                    text(&s.volume_id),
                    retention(s.retention.as_ref()).unwrap_or_default(),
                ],
            ),
            Step::Copy(s) => with(
                "copy",
                vec![
                    format!("{} -> {}", text(&s.source), text(&s.destination)),
                    retention(s.retention.as_ref()).unwrap_or_default(),
                ],
            ),
            Step::S3Sync(s) => with(
                "s3_sync",
                vec![format!(
                    "{} -> s3://{}/{}",
                    text(&s.source),
                    text(&s.bucket),
                    s.prefix.as_ref().map(text).unwrap_or_default()
                )],
            ),
            Step::S3Lifecycle(s) => with(
                "s3_lifecycle",
                vec![
                    format!("s3://{}", text(&s.bucket)),
                    match s.rules.len() {
                        1 => "1 rule".to_owned(),
                        n => format!("{n} rules"),
                    },
                ],
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::spec::EtcdRef;

    fn lit(s: &str) -> Str {
        Str::Literal(s.into())
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let words = [
            lit("/usr/bin/flock"),
            lit("-w"),
            lit("10"),
            lit("a b"),
            lit("it's"),
            lit(""),
            Str::Etcd(EtcdRef {
                etcd: "/cmd/arg".into(),
            }),
        ];
        assert_eq!(
            command_line(&words),
            r"/usr/bin/flock -w 10 'a b' 'it'\''s' '' {etcd: /cmd/arg}"
        );
    }

    fn overview(target: Target, x_fleet: &[(&'static str, &str)]) -> JobOverview {
        let parts = JobParts {
            target,
            on_calendar: Some(vec!["daily".into()]),
            monotonic: Some(Vec::new()),
            x_fleet: Some(
                x_fleet
                    .iter()
                    .map(|&(key, value)| FleetOption {
                        key,
                        value: crate::generate::escape::UnitValue::new(value).unwrap(),
                    })
                    .collect(),
            ),
        };
        let job: Job = serde_yaml::from_str("command: [/bin/true]").unwrap();
        JobOverview::new("j", &job, &parts, None)
    }

    #[test]
    fn placement_in_short() {
        let runs_on = |t, o: &[(&'static str, &str)]| overview(t, o).runs_on().unwrap();
        assert_eq!(runs_on(Target::Systemd, &[]), "this host");
        assert_eq!(runs_on(Target::Fleet, &[]), "any machine");
        assert_eq!(
            runs_on(Target::Fleet, &[("MachineOf", "bitcoind.service")]),
            "with bitcoind.service"
        );
        assert_eq!(
            runs_on(
                Target::Fleet,
                &[
                    ("MachineMetadata", "region=us-east-1"),
                    ("MachineMetadata", "region=us-west-2"),
                    ("MachineMetadata", "disk=ssd"),
                    ("Global", "true"),
                ]
            ),
            "every machine with region=us-east-1|us-west-2, disk=ssd"
        );
        assert_eq!(
            runs_on(
                Target::Fleet,
                &[("MachineID", "0123456789abcdef0123456789abcdef")]
            ),
            "machine 0123456789ab"
        );
        assert_eq!(
            runs_on(Target::Fleet, &[("Conflicts", "db*.service")]),
            "not with db*.service"
        );
    }

    #[test]
    fn the_next_run_merges_every_expression() {
        let mut o = overview(Target::Systemd, &[]);
        o.calendar = Some(vec![
            CalendarSpec::parse("Sat 04:00 UTC").unwrap(),
            CalendarSpec::parse("*-*-01 00:00 UTC").unwrap(),
        ]);
        let base: Zoned = "2024-01-15T00:00:00+00:00[UTC]".parse().unwrap();
        assert_eq!(
            o.next_run(&base).unwrap().timestamp().to_string(),
            "2024-01-20T04:00:00Z"
        );
        o.calendar = None;
        assert!(o.next_run(&base).is_none());
    }
}
