//! The second seed's local half end to end: a copy job with a host lock is
//! rendered, systemd parses its service, and its commands run as written:
//! the runner in a container (an image built FROM scratch) makes dated
//! snapshots of a host folder in another, hard-linked across runs, and
//! while the seed's own `flock(1)` holds the lock on the host, the
//! container's run waits, then fails: the lock folder the unit mounts is
//! one lock for host and container alike.
//!
//! The unit creates and mounts the host's real `/run/lock/unitgen` (a
//! tmpfs); the test's lock has a name of its own, and its file is removed
//! at the end.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{Containers, ScratchImage, unique_name};
use common::{run, unitgen, world_readable_tempdir};

/// Removes the test's lock file however the test ends.
struct LockFile(PathBuf);

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the service's commands (ExecStartPre, ExecStart) as systemd
/// parsed them: ExecStart's exit status and everyone's output.
fn start(commands: &[(String, Vec<String>)]) -> (bool, String) {
    let mut output = String::new();
    for (setting, argv) in commands {
        if setting == "ExecStopPost" {
            continue;
        }
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        output += &String::from_utf8_lossy(&out.stdout);
        output += &String::from_utf8_lossy(&out.stderr);
        if setting == "ExecStart" {
            return (out.status.success(), output);
        }
        // `-` commands may fail (removing a container that is not there).
        assert!(
            out.status.success() || argv[0].ends_with("docker"),
            "{setting} failed:\n{output}"
        );
    }
    panic!("no ExecStart");
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

#[test]
fn a_locked_copy_job_runs_from_its_unit_and_shares_its_lock_with_the_host() {
    let image = ScratchImage::build(&[(env!("CARGO_BIN_EXE_unitgen-runner"), "/unitgen-runner")]);
    let job = unique_name("unitgen-e2e-copy");
    let lock = unique_name("unitgen-e2e-lock");
    let _containers = Containers(vec![job.clone()]);
    let lock_file = LockFile(PathBuf::from(format!("/run/lock/unitgen/{lock}.lock")));

    let host = world_readable_tempdir();
    let (data, backups) = (host.path().join("data"), host.path().join("backups"));
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::write(data.join("sub/wallet.dat"), "wallet\n").unwrap();

    let docker_path = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let spec = format!(
        "version: 1
defaults: {{ docker: {docker}, image: {image} }}
jobs:
  {job}:
    cron: \"15 00 * * *\"
    lock: {{ name: {lock}, wait: 2s }}
    container: {{ volumes: [\"{data}:/data:ro\", \"{backups}:/backups\"] }}
    steps:
      - copy: {{ source: /data, destination: /backups, retention: {{ keep_last: 2 }} }}
",
        docker = docker_path.trim(),
        image = image.tag,
        data = data.display(),
        backups = backups.display(),
    );
    let dir = world_readable_tempdir();
    std::fs::write(dir.path().join("unitgen.yaml"), &spec).unwrap();
    let units = dir.path().join("units");
    let r = run(unitgen()
        .args(["render", "-o"])
        .arg(&units)
        .current_dir(dir.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let unit = format!("{job}.service");
    let parsed = common::systemd_dump(&units, &unit);
    let commands = &parsed[&unit].commands;

    // Two runs: two snapshots, the unchanged file one inode in both.
    let (ok, output) = start(commands);
    assert!(ok, "{output}");
    assert!(output.contains("took the host lock"), "{output}");
    std::thread::sleep(Duration::from_millis(1100));
    let (ok, output) = start(commands);
    assert!(ok, "{output}");
    let made = snapshots(&backups);
    assert_eq!(made.len(), 2, "{made:?}");
    let inode = |p: &Path| std::fs::metadata(p.join("sub/wallet.dat")).unwrap().ino();
    assert_eq!(inode(&made[0]), inode(&made[1]));

    // The seed's flock(1) on the host holds the lock: the container waits
    // its two seconds and fails, and copies nothing.
    let mut holder = Command::new("flock")
        .arg(&lock_file.0)
        .args(["sleep", "60"])
        .stdout(Stdio::null())
        .spawn()
        .expect("run flock(1)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("flock")
        .args(["-n"])
        .arg(&lock_file.0)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "flock(1) took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (ok, output) = start(commands);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!ok, "{output}");
    assert!(
        output.contains(&format!(
            "the host lock {lock} (/run/lock/unitgen/{lock}.lock) is held by another run (which \
             did not say who it is); gave up after waiting 2s (on_busy: fail)"
        )),
        "{output}"
    );
    assert_eq!(snapshots(&backups), made);
}
