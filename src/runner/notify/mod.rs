//! `unitgen-runner notify`: tells someone about a job's run, from a
//! container of the job's image (on fleet hosts only containers run).
//!
//! - `--event start`: a healthchecks `/start` ping (the job unit's
//!   `ExecStartPre=-`);
//! - `--event finish`: a healthchecks success ping, or `/<exit status>`,
//!   or `/fail` (the job unit's `ExecStopPost=-`, with systemd's
//!   `$SERVICE_RESULT`, `$EXIT_CODE` and `$EXIT_STATUS` passed in by
//!   `docker run --env NAME`);
//! - `--event failure`: mail and webhook (the notify unit, started by the
//!   job's `OnFailure=`), with the failed unit's result and last journal
//!   lines on stdin: `systemctl show`'s `Result=`, `ExecMainCode=` and
//!   `ExecMainStatus=` lines, an empty line, then the log lines.
//!
//! Every notifier is tried, whatever the others did. One that cannot be
//! reached is a warning in the journal and exit status 1: the unit that ran
//! the notifier may fail, but never the job (the hooks carry systemd's `-`
//! prefix, and the notify unit is a unit of its own). 2: misconfigured,
//! nothing sent.
//!
//! What a webhook receives (one JSON object, `Content-Type:
//! application/json`; `text` makes it a Slack message as it is):
//!
//! ```json
//! {"text": "unitgen: backup failed on host1: exit-code (exited, status 1)",
//!  "job": "backup", "unit": "backup.service", "host": "host1",
//!  "result": "exit-code", "exit_code": "exited", "exit_status": "1",
//!  "log": ["...", "..."]}
//! ```
//!
//! `result` is systemd's (`exit-code`, `timeout`, `signal`, `core-dump`,
//! `start-limit-hit`, ...), `exit_code` and `exit_status` as systemd names
//! them for `$EXIT_CODE`/`$EXIT_STATUS` (`exited` and a number, `killed` or
//! `dumped` and a signal name such as `TERM`), `null` when the job's main
//! process never ran; `log` holds at most 30 lines, oldest first.

pub mod http;
mod net;
pub mod smtp;

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};

use clap::Parser;

use super::log;
use crate::contract::invocation as flag;
use crate::contract::notify::{self as contract, Event, HttpUrl, LOG_LINES, Notifiers};
use crate::contract::secret::SecretString;
use crate::diag::{cut, flat};

/// A notifier could not be reached, or refused (each one a warning).
pub const EXIT_NOT_DELIVERED: i32 = 1;
/// The command line is wrong; nothing was sent.
pub const EXIT_CONFIG: i32 = 2;
/// How much of stdin is read: the result lines and 30 log lines fit many
/// times over.
const MAX_INPUT_BYTES: u64 = 1024 * 1024;
/// A log line longer than this is cut in mail and webhook.
const MAX_LOG_LINE_CHARS: usize = 500;

#[derive(Debug, Parser)]
#[command(
    name = "unitgen-runner notify",
    version,
    about = "Report a unitgen job's run: healthchecks pings, failure mail and webhook",
    long_about = "Sends what `--notify JSON` (written into the units by `unitgen render`) asks \
for the event: `start` and `finish` ping healthchecks (`finish` reads systemd's SERVICE_RESULT, \
EXIT_CODE and EXIT_STATUS), `failure` sends mail and the webhook with the failed unit's result \
and last log lines, read from stdin. Secrets (the SMTP password, a URL holding a token) are read \
from etcd.\n\nExit status: 0 delivered, 1 a notifier could not be reached or refused (each is \
logged as a warning), 2 misconfigured (nothing sent)."
)]
pub struct Args {
    /// What happened: start, finish or failure
    #[arg(long = contract::EVENT, value_name = "EVENT", value_parser = ["start", "finish", "failure"])]
    pub event: String,
    /// The job's name
    #[arg(long = flag::JOB, value_name = "NAME")]
    pub job: String,
    /// The job's unit, e.g. backup.service
    #[arg(long = contract::UNIT, value_name = "UNIT")]
    pub unit: String,
    /// The host's name (the unit passes systemd's %H: inside a container
    /// the host name is the container's)
    #[arg(long = contract::HOST, value_name = "NAME")]
    pub host: Option<String>,
    /// The notifiers, as JSON
    #[arg(long = contract::NOTIFY, value_name = "JSON")]
    pub notify: String,
    #[command(flatten)]
    pub etcd: crate::runner::secrets::EtcdFlags,
}

/// How a run of the job ended, in systemd's words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `success`, `exit-code`, `timeout`, ... (`$SERVICE_RESULT`, the
    /// unit's `Result=`).
    pub result: String,
    /// `exited`, `killed` or `dumped` (`$EXIT_CODE`).
    pub exit_code: Option<String>,
    /// A number for `exited`, a signal name for the others (`$EXIT_STATUS`).
    pub exit_status: Option<String>,
}

impl Outcome {
    /// `exit-code (exited, status 1)`, `timeout (killed, signal TERM)`.
    pub fn describe(&self) -> String {
        match (&self.exit_code, &self.exit_status) {
            (Some(code), Some(status)) if code == "exited" => {
                format!("{} ({code}, status {status})", self.result)
            }
            (Some(code), Some(status)) => format!("{} ({code}, signal {status})", self.result),
            _ => self.result.clone(),
        }
    }

    /// From systemd's `ExecStopPost=` environment.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Outcome> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty()).map(|v| flat(&v, 40));
        Some(Outcome {
            result: non_empty("SERVICE_RESULT")?,
            exit_code: non_empty("EXIT_CODE"),
            exit_status: non_empty("EXIT_STATUS"),
        })
    }
}

/// The failed unit's outcome and last log lines, from the notify unit's
/// stdin (see the module's documentation).
pub fn parse_failure_input(text: &str) -> (Outcome, Vec<String>) {
    let mut props = BTreeMap::new();
    let mut lines = text.lines();
    for line in lines.by_ref() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            props.insert(k.trim().to_owned(), flat(v.trim(), 40));
        }
    }
    let log: Vec<String> = lines
        .map(|l| flat(l, MAX_LOG_LINE_CHARS))
        .collect::<Vec<_>>();
    let log = log[log.len().saturating_sub(LOG_LINES)..].to_vec();
    let result = props
        .get("Result")
        .filter(|r| !r.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".to_owned());
    // `ExecMainCode=` is the si_code of the main process's end (0: it never
    // ran), `ExecMainStatus=` its exit status or signal number.
    let status: Option<i32> = props.get("ExecMainStatus").and_then(|s| s.parse().ok());
    let (exit_code, exit_status) = match (props.get("ExecMainCode").map(String::as_str), status) {
        (Some("1"), Some(s)) => (Some("exited"), Some(s.to_string())),
        (Some("2"), Some(s)) => (Some("killed"), Some(signal_name(s))),
        (Some("3"), Some(s)) => (Some("dumped"), Some(signal_name(s))),
        _ => (None, None),
    };
    (
        Outcome {
            result,
            exit_code: exit_code.map(str::to_owned),
            exit_status,
        },
        log,
    )
}

/// A signal's name as systemd writes it in `$EXIT_STATUS` (`TERM`).
fn signal_name(n: i32) -> String {
    const NAMES: [&str; 16] = [
        "", "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM",
    ];
    match usize::try_from(n).ok().and_then(|i| NAMES.get(i)) {
        Some(name) if !name.is_empty() => (*name).to_owned(),
        _ => n.to_string(),
    }
}

/// What a failure report says.
#[derive(Debug, Clone)]
pub struct Report {
    pub job: String,
    pub unit: String,
    pub host: String,
    pub outcome: Outcome,
    pub log: Vec<String>,
}

impl Report {
    pub fn subject(&self) -> String {
        format!("unitgen: {} failed on {}", self.job, self.host)
    }

    /// The webhook's JSON body (see the module's documentation).
    pub fn webhook_json(&self) -> serde_json::Value {
        serde_json::json!({
            "text": format!("{}: {}", self.subject(), self.outcome.describe()),
            "job": self.job,
            "unit": self.unit,
            "host": self.host,
            "result": self.outcome.result,
            "exit_code": self.outcome.exit_code,
            "exit_status": self.outcome.exit_status,
            "log": self.log,
        })
    }

    /// The mail's text body, LF line ends.
    pub fn mail_body(&self) -> String {
        let mut body = format!(
            "The job {} ({}) failed on {}.\n\nResult: {}\n",
            self.job,
            self.unit,
            self.host,
            self.outcome.describe()
        );
        if self.log.is_empty() {
            body.push_str("\nNo log lines were found in the journal.\n");
        } else {
            body.push_str(&format!(
                "\nThe last {} lines of its journal (journalctl -u {}):\n\n",
                self.log.len(),
                self.unit
            ));
            for line in &self.log {
                body.push_str(line);
                body.push('\n');
            }
        }
        body.push_str("\n-- \nunitgen-runner notify\n");
        body
    }

    /// The whole message: headers, then the body (base64 when it is not
    /// ASCII, so it passes any relay without 8BITMIME). No header holds a
    /// value that could end it: addresses are checked, the rest is
    /// [`header_text`].
    pub fn mail_message(&self, from: &str, to: &[String], date: Option<String>) -> String {
        let mut m = String::new();
        let mut header = |name: &str, value: &str| {
            m.push_str(name);
            m.push_str(": ");
            m.push_str(&header_text(value));
            m.push('\n');
        };
        header("From", from);
        header("To", &to.join(", "));
        header("Subject", &self.subject());
        if let Some(d) = date {
            header("Date", &d);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        header(
            "Message-ID",
            &format!("<{nanos}.{}.unitgen@{}>", std::process::id(), self.host),
        );
        // RFC 3834: an automatic message; no vacation replies to it.
        header("Auto-Submitted", "auto-generated");
        header("MIME-Version", "1.0");
        header("Content-Type", "text/plain; charset=utf-8");
        let body = self.mail_body();
        if body.is_ascii() {
            header("Content-Transfer-Encoding", "7bit");
            m.push('\n');
            m.push_str(&body);
        } else {
            use base64::Engine as _;
            header("Content-Transfer-Encoding", "base64");
            m.push('\n');
            let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
            for chunk in encoded.as_bytes().chunks(76) {
                m.push_str(&String::from_utf8_lossy(chunk));
                m.push('\n');
            }
        }
        m
    }
}

/// A header value: control characters (CR and LF above all) become `?`, so
/// a value can never end its header or start another; cut well below the
/// 998 bytes a line may have (RFC 5322 2.1.1), as nothing here folds lines.
fn header_text(value: &str) -> String {
    cut(value, 900)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The host's name as it may appear in a header, an EHLO and an address:
/// letters, digits, `.`, `-`; `localhost` when nothing is left.
fn host_name(given: Option<&str>) -> String {
    let name: String = given
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .take(253)
        .collect();
    let name = name.trim_matches(['.', '-']).to_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Why nothing was sent.
enum Refused {
    Config(String),
    /// Secrets could not be read: no notifier could be used.
    Secrets(String),
}

/// Entry point of `unitgen-runner notify ...`; `argv` starts with `notify`.
pub fn main(argv: Vec<std::ffi::OsString>) -> i32 {
    use clap::{CommandFactory as _, FromArgMatches as _};
    // Usage lines say `unitgen-runner notify`, not argv's `notify`.
    let matches = Args::command()
        .bin_name("unitgen-runner notify")
        .get_matches_from(argv);
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let job = args.job.clone();
    let prefix = |m: String| format!("{job}: notify: {m}");
    let event = match Event::parse(&args.event) {
        Some(e) => e,
        None => {
            log::error(prefix(format!("unknown event `{}`", flat(&args.event, 40))));
            return EXIT_CONFIG;
        }
    };
    // The report's input is read before anything else: the pipe's writer
    // (journalctl) should never wait on a slow notifier.
    let input = if event == Event::Failure && !std::io::stdin().is_terminal() {
        let mut raw = Vec::new();
        let _ = std::io::stdin().take(MAX_INPUT_BYTES).read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    } else {
        String::new()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::warn(prefix(format!("cannot start: {e}")));
            return EXIT_NOT_DELIVERED;
        }
    };
    match runtime.block_on(run(&args, event, &input)) {
        Ok(0) => 0,
        Ok(_) => EXIT_NOT_DELIVERED,
        Err(Refused::Config(m)) => {
            log::error(prefix(m));
            EXIT_CONFIG
        }
        Err(Refused::Secrets(m)) => {
            log::warn(prefix(format!("nothing sent: {m}")));
            EXIT_NOT_DELIVERED
        }
    }
}

/// Runs the notifiers of `event`; the number that failed (each logged).
async fn run(args: &Args, event: Event, input: &str) -> Result<usize, Refused> {
    let notifiers: Notifiers = serde_json::from_str(&args.notify).map_err(|e| {
        Refused::Config(format!(
            "--notify is not valid ({e}); the unit must be rendered by a unitgen that matches \
             this runner"
        ))
    })?;
    if let Some(v) = notifiers.check().into_iter().next() {
        return Err(Refused::Config(format!("--notify: {v}; refused")));
    }
    let is_unit_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":_.@-".contains(&b))
    };
    if !is_unit_name(&args.job) || !is_unit_name(&args.unit) {
        return Err(Refused::Config(
            "--job and --unit take unit names (ASCII letters, digits and `:_.@-`)".into(),
        ));
    }
    let notifiers = notifiers.for_event(event);
    if notifiers.is_empty() {
        return Err(Refused::Config(format!(
            "nothing to send for `--event {}`",
            event.as_str()
        )));
    }
    let outcome = match event {
        Event::Finish => Some(Outcome::from_env(|k| std::env::var(k).ok()).ok_or_else(|| {
            Refused::Config(
                "`--event finish` needs SERVICE_RESULT, which systemd (232 or later) sets for \
                 ExecStopPost= (pass it with `docker run --env SERVICE_RESULT`)"
                    .into(),
            )
        })?),
        _ => None,
    };
    let secrets = read_secrets(args, &notifiers).await?;
    let host = host_name(args.host.as_deref());
    let mut failed = 0;
    let mut outcome_of = |what: &str, result: Result<String, String>| match result {
        Ok(done) => log::info(format!("{}: notify: {done}", args.job)),
        Err(e) => {
            failed += 1;
            log::warn(format!(
                "{}: notify: {what} failed: {e} (the job's own result is unchanged)",
                args.job
            ));
        }
    };
    match event {
        Event::Start | Event::Finish => {
            if let Some(hc) = &notifiers.healthchecks {
                let r = ping(hc, &secrets, event, outcome.as_ref(), &args.job, &host).await;
                outcome_of("healthchecks ping", r);
            }
        }
        Event::Failure => {
            let (outcome, log) = parse_failure_input(input);
            let report = Report {
                job: args.job.clone(),
                unit: args.unit.clone(),
                host: host.clone(),
                outcome,
                log,
            };
            if let Some(mail) = &notifiers.mail {
                let r = send_mail(mail, &secrets, &report).await;
                outcome_of("mail", r);
            }
            if let Some(hook) = &notifiers.webhook {
                let r = webhook(hook, &secrets, &report).await;
                outcome_of("webhook", r);
            }
        }
    }
    Ok(failed)
}

/// The endpoint's URL: as written, or read from etcd. A secret URL is never
/// shown, not even when it is malformed.
fn endpoint_url(
    e: &contract::Endpoint,
    secrets: &BTreeMap<String, SecretString>,
    ping: bool,
) -> Result<HttpUrl, String> {
    match (&e.url, &e.url_etcd) {
        (Some(url), _) => HttpUrl::parse(url, ping),
        (None, Some(key)) => {
            let value = secrets
                .get(key)
                .ok_or_else(|| format!("etcd key `{key}` was not read"))?;
            HttpUrl::parse(value.expose(), ping).map_err(|_| {
                format!(
                    "the value of etcd key `{key}` is not a usable http(s) URL{} (it is not shown: \
                     it is a secret)",
                    if ping { " without a query" } else { "" }
                )
            })
        }
        (None, None) => Err("no URL".into()),
    }
}

async fn ping(
    e: &contract::Endpoint,
    secrets: &BTreeMap<String, SecretString>,
    event: Event,
    outcome: Option<&Outcome>,
    job: &str,
    host: &str,
) -> Result<String, String> {
    let url = endpoint_url(e, secrets, true)?;
    // healthchecks.io's Pinging API: /start, the URL itself for success,
    // /<exit status> (1-255) or /fail for a failure.
    let (target, what, body) = match (event, outcome) {
        (Event::Start, _) => (url.with_suffix("start"), "start".to_owned(), String::new()),
        (_, Some(o)) if o.result == "success" => (
            url.target.clone(),
            "success".to_owned(),
            format!("{job} on {host}: success\n"),
        ),
        (_, Some(o)) => {
            let status = o
                .exit_status
                .as_deref()
                .and_then(|s| s.parse::<u8>().ok())
                .filter(|s| *s != 0 && o.exit_code.as_deref() == Some("exited"));
            let suffix = status.map_or("fail".to_owned(), |s| s.to_string());
            (
                url.with_suffix(&suffix),
                format!("failure ({suffix})"),
                format!("{job} on {host}: {}\n", o.describe()),
            )
        }
        (_, None) => return Err("no outcome to report".into()),
    };
    http::post(
        &url,
        &target,
        "text/plain; charset=utf-8",
        body.into_bytes(),
    )
    .await?;
    Ok(format!(
        "healthchecks ping `{what}` sent to {}",
        url.origin()
    ))
}

async fn webhook(
    e: &contract::Endpoint,
    secrets: &BTreeMap<String, SecretString>,
    report: &Report,
) -> Result<String, String> {
    let url = endpoint_url(e, secrets, false)?;
    let body = serde_json::to_vec(&report.webhook_json()).map_err(|e| e.to_string())?;
    http::post(&url, &url.target, "application/json", body).await?;
    Ok(format!("webhook posted to {}", url.origin()))
}

async fn send_mail(
    mail: &contract::Mail,
    secrets: &BTreeMap<String, SecretString>,
    report: &Report,
) -> Result<String, String> {
    let from = mail
        .from
        .clone()
        .unwrap_or_else(|| format!("unitgen@{}", report.host));
    let password = match &mail.password_etcd {
        Some(key) => Some(
            secrets
                .get(key)
                .ok_or_else(|| format!("etcd key `{key}` was not read"))?,
        ),
        None => None,
    };
    let date = jiff::fmt::rfc2822::to_string(&jiff::Zoned::now()).ok();
    let message = report.mail_message(&from, &mail.to, date);
    smtp::send(mail, &from, &report.host, password, &message).await?;
    Ok(format!(
        "mail sent to {} via {}",
        mail.to.join(", "),
        contract::SmtpUrl::parse(&mail.smtp)?.addr()
    ))
}

/// Every secret the notifiers read, before any is used.
async fn read_secrets(
    args: &Args,
    notifiers: &Notifiers,
) -> Result<BTreeMap<String, SecretString>, Refused> {
    let keys = notifiers.secrets().into_iter().map(|s| s.key);
    let (values, _) = args.etcd.read(keys).await.map_err(|e| match e {
        crate::etcd::EtcdError::Config(_) => Refused::Config(format!("cannot read secrets: {e}")),
        e => Refused::Secrets(format!("cannot read secrets: {e}")),
    })?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn the_runner_accepts_every_flag_the_generator_writes() {
        use crate::contract::invocation::RunnerEtcd;
        use crate::contract::notify::NotifyInvocation;
        let notifiers: Notifiers = serde_json::from_str(
            r#"{"mail":{"to":["a@b.c"],"smtp":"smtps://m:465","user":"u","password_etcd":"/p"}}"#,
        )
        .unwrap();
        let invocation = NotifyInvocation {
            event: Event::Failure,
            job: "j".into(),
            unit: "j.service".into(),
            etcd: Some(RunnerEtcd {
                endpoints: vec!["http://172.17.0.1:2379".into()],
                ..RunnerEtcd::default()
            }),
            notifiers: notifiers.clone(),
        };
        let mut argv = vec!["unitgen-runner".to_owned()];
        argv.extend(invocation.arg_groups().into_iter().flatten());
        argv.extend(["--host".to_owned(), "h".to_owned()]);
        assert_eq!(argv[1], contract::SUBCOMMAND);
        let args = Args::try_parse_from(&argv[1..]).expect("the runner parses what render writes");
        assert_eq!(
            (args.event.as_str(), args.unit.as_str()),
            ("failure", "j.service")
        );
        assert_eq!(args.etcd.endpoints.len(), 1);
        let parsed: Notifiers = serde_json::from_str(&args.notify).unwrap();
        assert_eq!(parsed, notifiers);
    }

    #[test]
    fn failure_input_is_read_as_systemd_writes_it() {
        let (o, log) = parse_failure_input(
            "ExecMainCode=1\nExecMainStatus=3\nResult=exit-code\n\nStarting...\ndisk full\n",
        );
        assert_eq!(o.describe(), "exit-code (exited, status 3)");
        assert_eq!(log, ["Starting...", "disk full"]);
        let (o, _) = parse_failure_input("Result=timeout\nExecMainCode=2\nExecMainStatus=15\n\n");
        assert_eq!(o.describe(), "timeout (killed, signal TERM)");
        let (o, log) =
            parse_failure_input("Result=start-limit-hit\nExecMainCode=0\nExecMainStatus=0\n");
        assert_eq!((o.describe().as_str(), log.len()), ("start-limit-hit", 0));
        assert_eq!(parse_failure_input("").0.result, "unknown");
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let (_, log) = parse_failure_input(&format!("Result=signal\n\n{many}"));
        assert_eq!((log.len(), log[0].as_str()), (30, "line 70"));
    }

    #[test]
    fn no_header_can_be_ended_by_a_value() {
        let report = Report {
            job: "j".into(),
            unit: "j.service".into(),
            host: "h\r\nBcc: x@y".into(),
            outcome: Outcome {
                result: "exit-code".into(),
                ..Outcome::default()
            },
            log: vec!["ünï".into(), ".dot".into()],
        };
        let m = report.mail_message("a@b.c", &["d@e.f".into()], None);
        let (headers, _) = m.split_once("\n\n").unwrap();
        assert!(headers.lines().all(|l| l.contains(": ")), "{headers}");
        assert!(!headers.contains("\nBcc:"), "{headers}");
        assert!(headers.contains("Content-Transfer-Encoding: base64"));
        assert_eq!(host_name(Some("h\r\nBcc: x")), "hBccx");
        assert_eq!(host_name(None), "localhost");
    }
}
