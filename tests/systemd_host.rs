//! The systemd host harness against a real systemd 252 as PID 1: it boots,
//! timers fire on schedule, the journal keeps a line's `<N>` priority,
//! `OnFailure=` units run, shared folders and the host's Docker Engine
//! work from inside units. Later tests deploy rendered units on it.

mod common;

use std::time::Duration;

use common::docker::{ScratchImage, unique_name};
use common::systemd_host::{DOCKER_CLI, SystemdHost, is_container_artifact};

/// Enough for any event below on a loaded 2-core machine; each usually
/// takes well under 5 s.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn boots_systemd_252_as_pid_1_and_reports_running() {
    let host = SystemdHost::boot();
    assert_eq!(
        host.run(&["systemctl", "is-system-running"]).trim(),
        "running"
    );
    assert_eq!(host.run(&["cat", "/proc/1/comm"]).trim(), "systemd");
    let version = host.systemctl(&["--version"]);
    assert!(version.starts_with("systemd 252 "), "{version}");
    assert_eq!(host.run(&["systemd-detect-virt"]).trim(), "docker");
    // Nothing but what the tests install fires: Debian's own timers are
    // masked in the image, so a test's `list-timers` sees only its own.
    let timers = host.systemctl(&["list-timers", "--no-legend", "--plain"]);
    assert!(
        timers
            .lines()
            .all(|l| l.contains("systemd-tmpfiles-clean.timer")),
        "unexpected timers:\n{timers}"
    );
}

#[test]
fn a_timer_fires_its_service_and_the_journal_keeps_each_line_s_priority() {
    let host = SystemdHost::boot();
    let dir = tempfile::tempdir().unwrap();
    // A line starting `<3>` is logged at priority 3 (err), the prefix
    // removed: SyslogLevelPrefix= defaults to yes (systemd.exec(5)).
    common::write(
        &dir.path().join("tick.service"),
        "[Unit]\nDescription=unitgen harness: a timer's job\n\n\
         [Service]\nType=oneshot\n\
         ExecStart=/bin/sh -c 'echo \"<3>tick went wrong\"; echo \"tick ran\"'\n",
    );
    // Every third second; AccuracySec=1s, or systemd may postpone the
    // elapse by up to a minute to batch wakeups (systemd.timer(5)).
    common::write(
        &dir.path().join("tick.timer"),
        "[Unit]\nDescription=unitgen harness: every 3 s\n\n\
         [Timer]\nOnCalendar=*:*:0/3\nAccuracySec=1s\nUnit=tick.service\n\n\
         [Install]\nWantedBy=timers.target\n",
    );
    for unit in ["tick.service", "tick.timer"] {
        host.copy_in(
            dir.path().join(unit),
            &format!("/etc/systemd/system/{unit}"),
        );
    }
    host.systemctl(&["daemon-reload"]);
    host.systemctl(&["enable", "--now", "tick.timer"]);

    // Only the timer can start tick.service here.
    host.wait_until(WAIT, "tick.service's output in the journal", || {
        host.journal("tick.service")
            .iter()
            .any(|(_, m)| m == "tick ran")
    });
    let journal = host.journal("tick.service");
    assert!(
        journal.contains(&(3, "tick went wrong".to_owned())),
        "the <3> line is not at priority 3: {journal:?}"
    );
    assert!(
        journal.contains(&(6, "tick ran".to_owned())),
        "a plain line is not at priority 6 (info): {journal:?}"
    );
    // Nothing else at warning or worse: the unit and the host are clean.
    let warnings: Vec<_> = journal
        .iter()
        .filter(|(p, m)| *p <= 4 && m != "tick went wrong" && !is_container_artifact(m))
        .collect();
    assert!(warnings.is_empty(), "unexpected warnings: {warnings:?}");
    assert_ne!(host.property("tick.timer", "LastTriggerUSecMonotonic"), "0");
    assert_eq!(host.wait_finished("tick.service", WAIT), "success");
}

#[test]
fn a_failed_service_runs_its_on_failure_unit() {
    let host = SystemdHost::boot();
    // The shape unitgen renders for `on_failure: status-report@.service`:
    // the template's instance is the failed unit's full name.
    host.install_units(&[
        (
            "failing-job.service",
            "[Unit]\nDescription=unitgen harness: a job that fails\n\
             OnFailure=status-report@failing-job.service.service\n\n\
             [Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo \"<3>disk full\"; exit 3'\n",
        ),
        (
            "status-report@.service",
            "[Unit]\nDescription=unitgen harness: report %i\n\n\
             [Service]\nType=oneshot\nExecStart=/bin/echo \"failure reported for %i\"\n",
        ),
    ]);
    let out = host.exec(&["systemctl", "start", "failing-job.service"]);
    assert!(!out.status.success(), "failing-job.service did not fail");
    assert_eq!(host.property("failing-job.service", "Result"), "exit-code");
    assert_eq!(host.property("failing-job.service", "ExecMainStatus"), "3");

    let handler = "status-report@failing-job.service.service";
    assert_eq!(host.wait_finished(handler, WAIT), "success");
    host.wait_until(WAIT, "the OnFailure= unit's output", || {
        host.journal(handler)
            .contains(&(6, "failure reported for failing-job.service".to_owned()))
    });
    assert!(
        host.journal("failing-job.service")
            .contains(&(3, "disk full".to_owned()))
    );
}

#[test]
fn a_shared_folder_is_read_and_written_by_units() {
    let shared = tempfile::tempdir().unwrap();
    common::write(&shared.path().join("data/input.txt"), "from the test\n");
    let host = SystemdHost::options()
        .share(shared.path(), "/srv/shared")
        .boot();
    host.install_units(&[(
        "copy-job.service",
        "[Unit]\nDescription=unitgen harness: copies in a shared folder\n\n\
         [Service]\nType=oneshot\n\
         ExecStart=/usr/bin/flock -w 10 /run/lock/copy-job /bin/cp /srv/shared/data/input.txt /srv/shared/output.txt\n",
    )]);
    host.systemctl(&["start", "copy-job.service"]);
    assert_eq!(
        std::fs::read_to_string(shared.path().join("output.txt")).unwrap(),
        "from the test\n"
    );
}

#[test]
fn a_unit_runs_docker_run_on_the_host_engine() {
    // No registry: the container's image is built here, FROM scratch, with
    // the machine's own echo.
    let image = ScratchImage::build(&[("/bin/echo", "/echo")]);
    let host = SystemdHost::options().with_docker().boot();
    assert_eq!(host.property("docker.service", "ActiveState"), "active");
    // As a rendered container unit runs it: a named container, removed
    // before and after, `JOURNAL_STREAM` passed so the job may prefix `<N>`.
    let name = unique_name("unitgen-test-inner");
    host.install_units(&[(
        "container-job.service",
        &format!(
            "[Unit]\nDescription=unitgen harness: a job in a container\n\
             After=docker.service\nRequires=docker.service\n\n\
             [Service]\nType=oneshot\n\
             ExecStartPre=-{DOCKER_CLI} rm --force {name}\n\
             ExecStart={DOCKER_CLI} run --rm --name {name} --env JOURNAL_STREAM {tag} /echo \"<3>hello from {name}\"\n\
             ExecStopPost=-{DOCKER_CLI} rm --force {name}\n",
            tag = image.tag
        ),
    )]);
    let out = host.exec(&["systemctl", "start", "container-job.service"]);
    assert!(
        out.status.success(),
        "container-job.service failed:\n{}",
        host.journal_text(&["-u", "container-job.service"])
    );
    host.wait_until(WAIT, "the container's output in the journal", || {
        host.journal("container-job.service")
            .contains(&(3, format!("hello from {name}")))
    });
}
