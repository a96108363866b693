//! Failure notification end to end, under a real systemd 252 (the systemd
//! host harness) with the machine's Docker Engine: the rendered units of a
//! job whose runner step fails are installed and started; `OnFailure=`
//! starts the job's notify unit, whose notifier (the real `unitgen-runner`
//! in an image built FROM scratch) mails a real SMTP server and posts the
//! webhook on this machine's loopback (`network: host`), and the job's own
//! unit pings healthchecks when the run starts and ends. The job's result
//! stays its own; a notifier that cannot be reached fails only the notify
//! unit, with a warning in the journal.

mod common;

use std::time::Duration;

use common::docker::ScratchImage;
use common::http_recorder::Recorder;
use common::smtp::Smtpd;
use common::systemd_host::{SystemdHost, is_container_artifact};

const WAIT: Duration = Duration::from_secs(90);

/// Renders `spec` and returns every unit file, `(name, contents)`.
fn render(spec: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unitgen.yaml");
    common::write(&path, spec);
    let out = dir.path().join("units");
    let r = common::run(
        common::unitgen()
            .arg("render")
            .arg("-f")
            .arg(&path)
            .arg("-o")
            .arg(&out),
    );
    assert_eq!(r.status, 0, "render failed:\n{}", r.stderr);
    common::read_tree(&out)
        .into_iter()
        .map(|(p, text)| (p.to_str().unwrap().to_owned(), text))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect()
}

#[test]
fn a_failed_job_is_reported_by_its_notify_unit_and_keeps_its_own_result() {
    let image = ScratchImage::build(&[(env!("CARGO_BIN_EXE_unitgen-runner"), "/unitgen-runner")]);
    let smtpd = Smtpd::start();
    let http = Recorder::start();
    // A "bitcoind" that accepts and never answers: the third job's run
    // outlasts its `timeout` and systemd kills it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            held.push(conn);
        }
    });
    // Closed ports: the runner's step and the second job's notifiers.
    let closed = common::free_port();
    let spec = format!(
        r#"version: 1
defaults:
  image: {image}
  pull: never
jobs:
  failing-backup:
    description: A backup whose bitcoind is down
    schedule: daily
    container: {{ network: host }}
    steps:
      - rpc: {{ url: "http://127.0.0.1:{closed}/", method: backupwallet }}
    notify:
      mail: {{ to: [me@me.biz], smtp: "{smtp}" }}
      webhook: "{hook}"
      healthchecks: "{ping}"
  failing-unheard:
    schedule: daily
    container: {{ network: host }}
    steps:
      - rpc: {{ url: "http://127.0.0.1:{closed}/", method: backupwallet }}
    notify:
      mail: {{ to: [me@me.biz], smtp: "smtp://127.0.0.1:{closed}" }}
      healthchecks: "http://127.0.0.1:{closed}/ping/nobody"
  hanging-backup:
    schedule: daily
    timeout: 3s
    container: {{ network: host }}
    steps:
      - rpc: {{ url: "http://127.0.0.1:{silent_port}/", method: backupwallet, timeout: 10min }}
    notify:
      mail: {{ to: [me@me.biz], smtp: "{smtp}" }}
"#,
        image = image.tag,
        smtp = smtpd.url(),
        hook = http.url("/hooks/T000/token"),
        ping = http.url("/ping/5ff3f7bb"),
    );
    let units = render(&spec);
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "failing-backup.service",
            "failing-backup.timer",
            "failing-unheard.service",
            "failing-unheard.timer",
            "hanging-backup.service",
            "hanging-backup.timer",
            "unitgen-notify@failing-backup.service",
            "unitgen-notify@failing-unheard.service",
            "unitgen-notify@hanging-backup.service",
        ]
    );

    let host = SystemdHost::options().with_docker().boot();
    let refs: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    host.install_units(&refs);

    // The job fails, and its result is the runner's step failing.
    let out = host.exec(&["systemctl", "start", "failing-backup.service"]);
    assert!(!out.status.success(), "failing-backup.service did not fail");
    assert_eq!(
        host.wait_finished("failing-backup.service", WAIT),
        "exit-code"
    );
    assert_eq!(
        host.property("failing-backup.service", "ExecMainStatus"),
        "1"
    );

    // OnFailure= ran the notify unit, which succeeded.
    let notify = "unitgen-notify@failing-backup.service";
    assert_eq!(
        host.wait_finished(notify, WAIT),
        "success",
        "{}",
        host.journal_text(&["-u", notify])
    );

    let mail = smtpd.wait_for(1, WAIT);
    assert_eq!(mail.len(), 1);
    let m = &mail[0];
    assert_eq!(m.rcpt_tos, ["me@me.biz"]);
    let hostname = host.run(&["cat", "/etc/hostname"]).trim().to_owned();
    assert_eq!(
        m.header("Subject").as_deref(),
        Some(format!("unitgen: failing-backup failed on {hostname}").as_str())
    );
    assert_eq!(m.mail_from, format!("unitgen@{hostname}"));
    let body = m.body();
    assert!(
        body.contains("Result: exit-code (exited, status 1)\n"),
        "{body}"
    );
    // The failed unit's journal, read on the systemd host: the runner's
    // own error line from inside the job's container.
    assert!(
        body.contains("failing-backup: step 1/1 (rpc backupwallet) failed"),
        "{body}"
    );

    // The webhook and both healthchecks pings reached this machine.
    let requests = http.wait_for(3, WAIT);
    let hook = requests
        .iter()
        .find(|r| r.path == "/hooks/T000/token")
        .expect("the webhook's POST");
    let json = hook.json();
    assert_eq!(json["unit"], "failing-backup.service");
    assert_eq!(json["result"], "exit-code");
    assert_eq!(json["exit_status"], "1");
    assert!(
        json["log"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("step 1/1 (rpc backupwallet) failed")),
        "{json}"
    );
    let mut pings: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.starts_with("/ping/"))
        .map(|r| r.path.as_str())
        .collect();
    pings.sort();
    assert_eq!(pings, ["/ping/5ff3f7bb/1", "/ping/5ff3f7bb/start"]);

    // Unreachable notifiers: the hooks' failures are ignored (`-`), the
    // notify unit fails on its own with the runner's warnings, and the
    // job's result is still the job's.
    let out = host.exec(&["systemctl", "start", "failing-unheard.service"]);
    assert!(!out.status.success());
    assert_eq!(
        host.wait_finished("failing-unheard.service", WAIT),
        "exit-code"
    );
    let unheard = "unitgen-notify@failing-unheard.service";
    assert_eq!(host.wait_finished(unheard, WAIT), "exit-code");
    assert_eq!(
        host.property("failing-unheard.service", "Result"),
        "exit-code"
    );
    assert_eq!(
        host.property("failing-unheard.service", "ExecMainStatus"),
        "1"
    );
    let warnings: Vec<String> = host
        .journal(unheard)
        .into_iter()
        .filter(|(p, m)| *p == 4 && !is_container_artifact(m))
        .map(|(_, m)| m)
        .collect();
    assert!(
        warnings
            .iter()
            .any(|m| m.starts_with("failing-unheard: notify: mail failed: mail server 127.0.0.1:")),
        "{warnings:?}"
    );
    // The finish ping's failure is in the job's journal as a warning, not
    // an error, and changed nothing.
    assert!(
        host.journal("failing-unheard.service")
            .iter()
            .any(|(p, m)| *p == 4
                && m.starts_with("failing-unheard: notify: healthchecks ping failed")),
        "{}",
        host.journal_text(&["-u", "failing-unheard.service"])
    );
    assert_eq!(smtpd.received().len(), 1, "nothing else was mailed");

    // A run killed for taking too long is a failure too: `OnFailure=`
    // fires after the timeout, when a notifier inside the job's own
    // container would have been killed with it.
    // The runner is PID 1 in its container, where SIGTERM has no default
    // action, so systemd's stop after the timeout waits TimeoutStopSec=
    // (90 s) before it kills; this host waits 5 s.
    host.write_file(
        "/etc/systemd/system/hanging-backup.service.d/stop.conf",
        "[Service]\nTimeoutStopSec=5s\n",
    );
    host.systemctl(&["daemon-reload"]);
    let out = host.exec(&["systemctl", "start", "hanging-backup.service"]);
    assert!(!out.status.success());
    assert_eq!(
        host.wait_finished("hanging-backup.service", WAIT),
        "timeout"
    );
    let hanging = "unitgen-notify@hanging-backup.service";
    assert_eq!(host.wait_finished(hanging, WAIT), "success");
    let mail = smtpd.wait_for(2, WAIT);
    assert_eq!(
        mail[1].header("Subject").as_deref(),
        Some(format!("unitgen: hanging-backup failed on {hostname}").as_str())
    );
    assert!(
        mail[1].body().contains("Result: timeout"),
        "{}",
        mail[1].body()
    );
}
