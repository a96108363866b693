//! A host command's `service:` settings on a real systemd 252 as PID 1:
//! the command runs as the user and group, at the priority, in the folder
//! and with the environment files the spec gives; under `protect_system:
//! strict` with a host lock, the lock folder is still made and writable.

mod common;

use std::time::Duration;

use common::systemd_host::SystemdHost;
use common::{run, unitgen, world_readable_tempdir};

const WAIT: Duration = Duration::from_secs(30);

const SPEC: &str = r#"version: 1
jobs:
  as-nobody:
    schedule: daily
    command: [/bin/sh, -c, 'echo "$(id -un) $(id -gn) $(nice) $(pwd) $FROM_FILE" > /var/tmp/who']
    service:
      user: nobody
      group: nogroup
      working_directory: /var/tmp
      environment_files: [-/etc/unitgen-test/missing.env, /etc/unitgen-test/100% real.env]
      nice: 10
      cpu_scheduling_policy: batch
      io_scheduling_class: idle
      no_new_privileges: true
  strict:
    schedule: daily
    lock: { name: strict-test }
    command: [/usr/bin/touch, /var/tmp/ran-strict]
    service:
      protect_system: strict
      private_tmp: true
      read_write_paths: [/var/tmp]
"#;

fn rendered() -> Vec<(String, String)> {
    let dir = world_readable_tempdir();
    std::fs::write(dir.path().join("unitgen.yaml"), SPEC).unwrap();
    let r = run(unitgen()
        .args(["render", "--stdout"])
        .current_dir(dir.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    r.stdout
        .split("# ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (name, text) = s.split_once('\n').unwrap();
            (name.to_owned(), text.trim_end().to_owned() + "\n")
        })
        .collect()
}

#[test]
fn a_host_command_runs_as_its_service_settings_say() {
    let host = SystemdHost::boot();
    let units = rendered();
    let units: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    host.install_units(&units);
    // A started timer keeps its service loaded between runs, so systemd
    // keeps the last run's result to show (daily: it will not fire).
    host.systemctl(&["start", "as-nobody.timer", "strict.timer"]);
    host.run(&["mkdir", "-p", "/etc/unitgen-test"]);
    host.write_file("/etc/unitgen-test/100% real.env", "FROM_FILE=read\n");

    let _ = host.exec(&["systemctl", "start", "as-nobody.service"]);
    assert_eq!(
        host.wait_finished("as-nobody.service", WAIT),
        "success",
        "{}",
        host.journal_text(&["-u", "as-nobody.service"])
    );
    assert_eq!(
        host.run(&["cat", "/var/tmp/who"]),
        "nobody nogroup 10 /var/tmp read\n"
    );
    assert_eq!(
        host.property("as-nobody.service", "CPUSchedulingPolicy"),
        "3"
    );

    // The lock folder is made with `+` (outside the sandbox), opened to
    // flock(1) in it, and the command writes only where it may.
    let _ = host.exec(&["systemctl", "start", "strict.service"]);
    assert_eq!(
        host.wait_finished("strict.service", WAIT),
        "success",
        "{}",
        host.journal_text(&["-u", "strict.service"])
    );
    assert!(
        host.exec(&["test", "-e", "/var/tmp/ran-strict"])
            .status
            .success()
    );
    assert!(
        host.exec(&["test", "-e", "/run/lock/unitgen/strict-test.lock"])
            .status
            .success()
    );
}
