//! `unitgen-runner notify`, the real binary, against real servers: mail
//! delivered to an SMTP server the test starts (aiosmtpd; STARTTLS and AUTH
//! with the password from etcd), webhook and healthchecks pings received by
//! a local HTTP server with the exact paths and bodies; a notifier that
//! cannot be reached is a warning and exit 1, and nothing secret is shown.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::etcd::Etcd;
use common::http_recorder::Recorder;
use common::smtp::{Options, Smtpd};

const WAIT: Duration = Duration::from_secs(20);
const CANARY: &str = "canary-smtp-password-5b0e";

/// What the notify unit's script pipes in: `systemctl show`'s lines, an
/// empty line, the journal's last lines.
const FAILED_RSYNC: &str = "Result=exit-code\nExecMainCode=1\nExecMainStatus=23\n\n\
Starting rsync-backups.service - Rsync /data to the /backups RAID1...\n\
rsync: [sender] link_stat \"/data/x\" failed: No such file or directory (2)\n\
.hidden line that starts with a dot\n\
rsync error: some files/attrs were not transferred (code 23)\n";

struct Out {
    status: i32,
    stderr: String,
}

/// Runs `unitgen-runner notify ARGS` with `stdin` and extra environment.
fn notify(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
    cmd.arg("notify")
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("SERVICE_RESULT")
        .env_remove("EXIT_CODE")
        .env_remove("EXIT_STATUS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run unitgen-runner");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        status: out.status.code().expect("exit status"),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn base<'a>(event: &'a str, json: &'a str) -> Vec<&'a str> {
    vec![
        "--event",
        event,
        "--job",
        "rsync-backups",
        "--unit",
        "rsync-backups.service",
        "--host",
        "backup-host-1",
        "--notify",
        json,
    ]
}

#[test]
fn failure_mail_is_delivered_to_a_real_smtp_server() {
    let smtpd = Smtpd::start();
    let json = format!(
        r#"{{"mail":{{"to":["me@me.biz","ops@example.com"],"smtp":"{}"}}}}"#,
        smtpd.url()
    );
    let out = notify(&base("failure", &json), FAILED_RSYNC, &[]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "rsync-backups: notify: mail sent to me@me.biz, ops@example.com via 127.0.0.1:{}\n",
            smtpd.port
        )
    );
    let got = smtpd.wait_for(1, WAIT);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "unitgen@backup-host-1");
    assert_eq!(m.rcpt_tos, ["me@me.biz", "ops@example.com"]);
    assert_eq!(m.header("From").as_deref(), Some("unitgen@backup-host-1"));
    assert_eq!(
        m.header("To").as_deref(),
        Some("me@me.biz, ops@example.com")
    );
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("unitgen: rsync-backups failed on backup-host-1")
    );
    assert_eq!(
        m.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    assert!(m.header("Date").is_some() && m.header("Message-ID").is_some());
    assert_eq!(
        m.body(),
        "The job rsync-backups (rsync-backups.service) failed on backup-host-1.\n\n\
         Result: exit-code (exited, status 23)\n\n\
         The last 4 lines of its journal (journalctl -u rsync-backups.service):\n\n\
         Starting rsync-backups.service - Rsync /data to the /backups RAID1...\n\
         rsync: [sender] link_stat \"/data/x\" failed: No such file or directory (2)\n\
         .hidden line that starts with a dot\n\
         rsync error: some files/attrs were not transferred (code 23)\n\
         \n-- \nunitgen-runner notify\n"
    );
}

#[test]
fn mail_over_starttls_logs_in_with_the_password_from_etcd() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = common::etcd::make_certs(certs_dir.path());
    let smtpd = Smtpd::start_with(Options {
        tls: Some((certs.server_cert(), certs.server_key())),
        auth: Some(("notify".into(), CANARY.into())),
        ..Options::default()
    });
    let etcd = Etcd::start();
    etcd.put("/smtp/password", CANARY);
    let json = format!(
        r#"{{"mail":{{"to":["me@me.biz"],"from":"backups@example.com","smtp":"{}","starttls":true,"user":"notify","password_etcd":"/smtp/password"}}}}"#,
        smtpd.url()
    );
    let mut args = base("failure", &json);
    let endpoint = etcd.endpoint();
    args.extend(["--etcd-endpoint", &endpoint]);
    // The test's CA stands in for the system's bundle.
    let ca = certs.ca();
    let env = [("SSL_CERT_FILE", ca.to_str().unwrap())];
    let out = notify(&args, FAILED_RSYNC, &env);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let got = smtpd.wait_for(1, WAIT);
    assert_eq!(got[0].login.as_deref(), Some("notify"));
    assert_eq!(got[0].mail_from, "backups@example.com");
    assert!(!got[0].data.contains(CANARY));
    assert!(!out.stderr.contains(CANARY), "{}", out.stderr);

    // A wrong password: refused, said so, and still never shown.
    etcd.put("/smtp/password", "wrong-canary-password");
    let out = notify(&args, FAILED_RSYNC, &env);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("refused the login of user `notify`: 535"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("wrong-canary"), "{}", out.stderr);

    // Without the test's CA the server's certificate is not trusted.
    let out = notify(&args, FAILED_RSYNC, &[("SSL_CERT_FILE", "/dev/null")]);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(out.stderr.contains("warning: "), "{}", out.stderr);
    assert_eq!(smtpd.received().len(), 1, "nothing more was delivered");
}

#[test]
fn webhook_posts_the_report_as_json() {
    let http = Recorder::start();
    let json = format!(
        r#"{{"webhook":{{"url":"{}"}}}}"#,
        http.url("/hooks/T000/B000/token")
    );
    let out = notify(&base("failure", &json), FAILED_RSYNC, &[]);
    assert_eq!(out.status, 0, "{}", out.stderr);
    let got = http.wait_for(1, WAIT);
    let r = &got[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/hooks/T000/B000/token")
    );
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(
        r.json(),
        serde_json::json!({
            "text": "unitgen: rsync-backups failed on backup-host-1: exit-code (exited, status 23)",
            "job": "rsync-backups",
            "unit": "rsync-backups.service",
            "host": "backup-host-1",
            "result": "exit-code",
            "exit_code": "exited",
            "exit_status": "23",
            "log": [
                "Starting rsync-backups.service - Rsync /data to the /backups RAID1...",
                "rsync: [sender] link_stat \"/data/x\" failed: No such file or directory (2)",
                ".hidden line that starts with a dot",
                "rsync error: some files/attrs were not transferred (code 23)",
            ],
        })
    );
    // The log names the server, never the URL's path (a Slack token).
    assert_eq!(
        out.stderr,
        format!(
            "rsync-backups: notify: webhook posted to http://127.0.0.1:{}\n",
            http.port
        )
    );
}

#[test]
fn healthchecks_pings_follow_the_pinging_api() {
    let http = Recorder::start();
    let json = format!(
        r#"{{"healthchecks":{{"url":"{}"}}}}"#,
        http.url("/ping/5ff3f7bb")
    );
    let run = |event: &str, env: &[(&str, &str)]| {
        let out = notify(&base(event, &json), "", env);
        assert_eq!(out.status, 0, "{event}: {}", out.stderr);
        out.stderr
    };
    assert_eq!(
        run("start", &[]),
        format!(
            "rsync-backups: notify: healthchecks ping `start` sent to http://127.0.0.1:{}\n",
            http.port
        )
    );
    run(
        "finish",
        &[
            ("SERVICE_RESULT", "success"),
            ("EXIT_CODE", "exited"),
            ("EXIT_STATUS", "0"),
        ],
    );
    run(
        "finish",
        &[
            ("SERVICE_RESULT", "exit-code"),
            ("EXIT_CODE", "exited"),
            ("EXIT_STATUS", "3"),
        ],
    );
    run(
        "finish",
        &[
            ("SERVICE_RESULT", "timeout"),
            ("EXIT_CODE", "killed"),
            ("EXIT_STATUS", "TERM"),
        ],
    );
    let got = http.wait_for(4, WAIT);
    let seen: Vec<(&str, &str, String)> = got
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.text()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/ping/5ff3f7bb/start", String::new()),
            (
                "POST",
                "/ping/5ff3f7bb",
                "rsync-backups on backup-host-1: success\n".into()
            ),
            (
                "POST",
                "/ping/5ff3f7bb/3",
                "rsync-backups on backup-host-1: exit-code (exited, status 3)\n".into()
            ),
            (
                "POST",
                "/ping/5ff3f7bb/fail",
                "rsync-backups on backup-host-1: timeout (killed, signal TERM)\n".into()
            ),
        ]
    );
    // Without systemd's SERVICE_RESULT the finish cannot be told: exit 2.
    let out = notify(&base("finish", &json), "", &[]);
    assert_eq!(out.status, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("needs SERVICE_RESULT"),
        "{}",
        out.stderr
    );
}

#[test]
fn unreachable_notifiers_are_warnings_and_each_is_tried() {
    // Ports that were free a moment ago: connection refused.
    let (smtp_port, http_port) = (common::free_port(), common::free_port());
    let json = format!(
        r#"{{"mail":{{"to":["me@me.biz"],"smtp":"smtp://127.0.0.1:{smtp_port}"}},"webhook":{{"url":"http://127.0.0.1:{http_port}/hook"}}}}"#
    );
    // As the notify unit runs it: systemd's JOURNAL_STREAM, so each line
    // carries its priority; `<4>` is a warning, not an error.
    let out = notify(
        &base("failure", &json),
        FAILED_RSYNC,
        &[("JOURNAL_STREAM", "8:1234")],
    );
    assert_eq!(out.status, 1, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "<4>rsync-backups: notify: mail failed: mail server 127.0.0.1:{smtp_port}: "
        )) && lines[0].ends_with("(the job's own result is unchanged)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(&format!(
            "<4>rsync-backups: notify: webhook failed: http://127.0.0.1:{http_port}: "
        )) && lines[1].contains("(attempt 3 of 3)"),
        "{}",
        lines[1]
    );
}

#[test]
fn a_refusing_webhook_never_shows_its_secret_url() {
    let http = Recorder::start();
    let path = "/hooks/T000/B000/secret-token-canary";
    // A server that echoes the path back, as some do.
    http.answer(path, 404, &format!("no route for {path}"));
    let etcd = Etcd::start();
    etcd.put("/slack/webhook", &http.url(path));
    let json = r#"{"webhook":{"url_etcd":"/slack/webhook"}}"#;
    let endpoint = etcd.endpoint();
    let mut args = base("failure", json);
    args.extend(["--etcd-endpoint", &endpoint]);
    let out = notify(&args, FAILED_RSYNC, &[]);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert_eq!(http.requests()[0].path, path);
    assert!(
        out.stderr.contains("HTTP 404 Not Found: no route for /…"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("secret-token-canary"),
        "{}",
        out.stderr
    );

    // A secret that is no URL is not shown either.
    etcd.put("/slack/webhook", "not a url secret-token-canary");
    let out = notify(&args, FAILED_RSYNC, &[]);
    assert_eq!(out.status, 1, "{}", out.stderr);
    assert!(out.stderr.contains("it is not shown"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("secret-token-canary"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_misconfigured_notifier_is_exit_2_and_sends_nothing() {
    let out = notify(
        &base(
            "failure",
            r#"{"mail":{"to":["not an address"],"smtp":"smtp://h"}}"#,
        ),
        "",
        &[],
    );
    assert_eq!(out.status, 2);
    assert_eq!(
        out.stderr,
        "error: rsync-backups: notify: --notify: `mail.to[0]`: `not an address` is not a mail address such as `ops@example.com`; refused\n"
    );
    let out = notify(
        &base("start", r#"{"webhook":{"url":"http://h/"}}"#),
        "",
        &[],
    );
    assert_eq!(out.status, 2);
    assert_eq!(
        out.stderr,
        "error: rsync-backups: notify: nothing to send for `--event start`\n"
    );
}

#[test]
fn mail_over_smtps_speaks_tls_from_the_first_byte() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = common::etcd::make_certs(certs_dir.path());
    let smtpd = Smtpd::start_with(Options {
        smtps: Some((certs.server_cert(), certs.server_key())),
        ..Options::default()
    });
    let json = format!(
        r#"{{"mail":{{"to":["me@me.biz"],"smtp":"smtps://127.0.0.1:{}"}}}}"#,
        smtpd.port
    );
    let ca = certs.ca();
    let out = notify(
        &base("failure", &json),
        FAILED_RSYNC,
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    assert_eq!(out.status, 0, "{}", out.stderr);
    let got = smtpd.wait_for(1, WAIT);
    assert_eq!(got[0].rcpt_tos, ["me@me.biz"]);
    assert_eq!(smtpd.received().len(), 1);
}
