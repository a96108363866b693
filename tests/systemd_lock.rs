//! Rendered host-command units under a lock, on a real systemd 252 as
//! PID 1: while something holds the lock, `on_busy: skip` ends the run as
//! a success without running the command (flock's exit 75 is in
//! `SuccessExitStatus=`), and `on_busy: fail` fails the unit, which starts
//! its `OnFailure=` unit; once the lock is free, the command runs.

mod common;

use std::time::Duration;

use common::systemd_host::SystemdHost;
use common::{run, unitgen, world_readable_tempdir};

const WAIT: Duration = Duration::from_secs(30);

const SPEC: &str = "version: 1
jobs:
  skipper:
    schedule: daily
    lock: { name: backups, wait: 1s, on_busy: skip }
    command: [/usr/bin/touch, /ran-skipper]
  failer:
    schedule: daily
    on_failure: noticed@.service
    lock: { name: backups, on_busy: fail }
    command: [/usr/bin/touch, /ran-failer]
";

fn rendered() -> Vec<(String, String)> {
    let dir = world_readable_tempdir();
    std::fs::write(dir.path().join("unitgen.yaml"), SPEC).unwrap();
    let r = run(unitgen()
        .args(["render", "--stdout"])
        .current_dir(dir.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    // `# NAME` then the unit, for each unit.
    r.stdout
        .split("# ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (name, text) = s.split_once('\n').unwrap();
            (name.to_owned(), text.trim_end().to_owned() + "\n")
        })
        .collect()
}

fn exists(host: &SystemdHost, path: &str) -> bool {
    host.exec(&["test", "-e", path]).status.success()
}

#[test]
fn a_busy_lock_skips_or_fails_the_unit_as_the_spec_says() {
    let host = SystemdHost::boot();
    let mut units = rendered();
    units.push((
        "noticed@.service".into(),
        "[Service]\nType=oneshot\nExecStart=/usr/bin/touch /failed-%i\n".into(),
    ));
    let units: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    host.install_units(&units);
    // A started timer keeps its service loaded between runs, so systemd
    // keeps the last run's exit status to show (daily: it will not fire).
    host.systemctl(&["start", "skipper.timer", "failer.timer"]);

    // The seed's own tool holds the lock, as a unit of its own.
    host.run(&["mkdir", "-p", "/run/lock/unitgen"]);
    host.run(&[
        "systemd-run",
        "--unit=holder",
        "/usr/bin/flock",
        "/run/lock/unitgen/backups.lock",
        "/bin/sleep",
        "300",
    ]);
    host.wait_until(WAIT, "the holder to take the lock", || {
        !host
            .exec(&["flock", "-n", "/run/lock/unitgen/backups.lock", "true"])
            .status
            .success()
    });

    // skip: the run succeeds, the command did not run, flock said why.
    let _ = host.exec(&["systemctl", "start", "skipper.service"]);
    assert_eq!(host.wait_finished("skipper.service", WAIT), "success");
    assert_eq!(host.property("skipper.service", "ExecMainStatus"), "75");
    assert!(!exists(&host, "/ran-skipper"));
    let journal = host.journal("skipper.service");
    assert!(
        journal
            .iter()
            .any(|(_, m)| m == "flock: timeout while waiting to get lock"),
        "{journal:?}"
    );

    // fail: the unit fails, OnFailure= runs, the command did not.
    let _ = host.exec(&["systemctl", "start", "failer.service"]);
    assert_eq!(host.wait_finished("failer.service", WAIT), "exit-code");
    assert!(!exists(&host, "/ran-failer"));
    host.wait_until(WAIT, "the OnFailure= unit", || {
        exists(&host, "/failed-failer.service")
    });

    // The lock free, both run their command.
    host.systemctl(&["stop", "holder.service"]);
    host.systemctl(&["start", "skipper.service"]);
    host.systemctl(&["start", "failer.service"]);
    assert!(exists(&host, "/ran-skipper") && exists(&host, "/ran-failer"));
    assert_eq!(host.property("failer.service", "Result"), "success");
}
