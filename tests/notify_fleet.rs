//! fleet takes the notify unit as it is: `unitgen render | xargs fleetctl
//! submit` submits it (a concrete `unitgen-notify@JOB.service` file, not
//! a template, which fleet would never place by itself), and `fleetctl
//! load` places it on the machine of its job, where the job's
//! `OnFailure=` can start it. Run against the fleetctl stand-in
//! (`tests/fleetctl/`, fleet v1.0.0's scheduling and unit parser).

mod common;

use std::path::Path;
use std::process::Command;

const STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleetctl");

fn sh(dir: &Path, state: &Path, script: &str) -> String {
    let path = format!("{STANDIN}:{}", std::env::var("PATH").unwrap_or_default());
    let unitgen = Path::new(env!("CARGO_BIN_EXE_unitgen"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("PATH", path)
        .env("UNITGEN", unitgen)
        .env("FLEETCTL_STANDIN_STATE", state)
        .env("FLEETCTL_STANDIN_TIME_SCALE", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script}:\n{text}");
    text
}

#[test]
fn fleet_places_the_notify_unit_with_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("fleet");
    common::write(
        &dir.path().join("unitgen.yaml"),
        "version: 1\ndefaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\n\
         jobs:\n  backup:\n    schedule: daily\n    fleet: { machine_metadata: { role: db } }\n\
         \x20   notify: { webhook: \"http://10.0.0.1/hook\" }\n    container: { command: [/bin/backup] }\n",
    );
    // Two machines; only the second may run the job.
    sh(
        dir.path(),
        &state,
        "standin-ctl init >/dev/null && \
         standin-ctl machine add 0123456789abcdef0123456789abcdef --ip 172.17.8.102 --metadata role=db >/dev/null",
    );
    let submitted = sh(
        dir.path(),
        &state,
        "\"$UNITGEN\" render | xargs fleetctl submit",
    );
    assert_eq!(
        submitted,
        "Unit backup.service inactive\nUnit backup.timer inactive\n\
         Unit unitgen-notify@backup.service inactive\n"
    );
    let loaded = sh(
        dir.path(),
        &state,
        "fleetctl load backup.service backup.timer unitgen-notify@backup.service",
    );
    assert_eq!(
        loaded,
        "Unit backup.service loaded on 01234567.../172.17.8.102\n\
         Unit backup.timer loaded on 01234567.../172.17.8.102\n\
         Unit unitgen-notify@backup.service loaded on 01234567.../172.17.8.102\n"
    );
    // fleet stores the file as written: its hash is the file's.
    let listed = sh(
        dir.path(),
        &state,
        "fleetctl list-unit-files --full --no-legend",
    );
    let hash = sh(
        dir.path(),
        &state,
        "standin-ctl hash units/unitgen-notify@backup.service",
    );
    assert!(
        listed.contains(hash.split_whitespace().next().unwrap()),
        "{listed}\n{hash}"
    );
}
