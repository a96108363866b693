//! The `lock` setting and the `copy` step at render time: every rule the
//! runner applies is refused here first, with the exact message at the
//! spec's key (exit 2), plus the rules only the generator can judge (the
//! copy's folders are mounted, a wait fits in the job's timeout, a lock
//! is held by something the job runs); and the unit lines a lock adds.

mod common;

use std::path::Path;

use common::*;

fn assert_fails(dir: &Path, spec: &str, stderr: &str) {
    write(&dir.join("unitgen.yaml"), spec);
    let r = run(unitgen().arg("validate").current_dir(dir));
    assert_eq!(r.stderr, stderr);
    assert_eq!(r.status, 2);
    assert_eq!(r.stdout, "");
}

#[test]
fn bad_lock_settings_are_refused_at_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
defaults:
  image: registry.example.com/unitgen-runner:0.1.0
jobs:
  both:
    schedule: daily
    lock: { name: backups, etcd: /locks/backups }
    command: [/usr/local/bin/backup]
  neither:
    schedule: daily
    lock: { wait: 10s }
    command: [/usr/local/bin/backup]
  names:
    schedule: daily
    lock: { name: ../etc/passwd, wait: soon, ttl: 10s }
    command: [/usr/local/bin/backup]
  keys:
    schedule: daily
    lock: { etcd: locks/backups/, ttl: 1s }
    container: { volumes: [\"/data:/data:ro\", \"/backups:/backups\"] }
    steps:
      - copy: { source: /data, destination: /backups }
  busy:
    schedule: daily
    lock: { name: backups, on_busy: wait }
    command: [/usr/local/bin/backup]
",
        "error: unitgen.yaml:7:28: jobs.both.lock.etcd: a lock is either a host lock (`name`) or an etcd lock (`etcd`), not both
error: unitgen.yaml:11:5: jobs.neither.lock: a lock needs `name: NAME` (a host lock, under /run/lock/unitgen) or `etcd: /KEY` (a lock across machines, in etcd)
error: unitgen.yaml:15:19: jobs.names.lock.name: `../etc/passwd` is not a lock name: use letters, digits and `_.-`, starting with a letter or digit, at most 100 characters (it becomes /run/lock/unitgen/NAME.lock)
error: unitgen.yaml:15:40: jobs.names.lock.wait: `soon` is not a time span: expected a number at `soon`
error: unitgen.yaml:15:46: jobs.names.lock.ttl: `ttl` is an etcd lock's lease time to live; a host lock needs none (the kernel releases it when the runner ends, however it ends)
error: unitgen.yaml:19:19: jobs.keys.lock.etcd: `locks/backups/` is not an etcd key for a lock: write an absolute key such as `/locks/backups`, without whitespace and not ending in `/`
error: unitgen.yaml:19:40: jobs.keys.lock.ttl: `1s` is not a lease time to live: give whole seconds from 2s to 3600s, e.g. `10s`
error: unitgen.yaml:25:28: jobs.busy.lock.on_busy: unknown value `wait`; expected one of: fail, skip
",
    );
}

#[test]
fn a_lock_needs_something_to_hold_it_and_time_to_wait() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
defaults:
  image: registry.example.com/unitgen-runner:0.1.0
  timeout: 1min
jobs:
  host-etcd:
    schedule: daily
    lock: { etcd: /locks/backups }
    command: [/usr/local/bin/backup]
  custom:
    schedule: daily
    lock: { name: backups }
    container: { command: [/bin/backup] }
  long-wait:
    schedule: daily
    lock: { name: backups, wait: 1min }
    command: [/usr/local/bin/backup]
  forever:
    schedule: daily
    timeout: 6h
    lock: { name: backups, wait: infinity }
    command: [/usr/local/bin/backup]
  no-etcd:
    schedule: daily
    lock: { etcd: /locks/backups }
    container: { volumes: [\"/data:/data:ro\", \"/backups:/backups\"] }
    steps:
      - copy: { source: /data, destination: /backups }
",
        "error: unitgen.yaml:8:19: jobs.host-etcd.lock.etcd: an etcd lock is held by unitgen-runner, which a host `command` does not run; use a host lock (`name: NAME`), or give the job `steps`
error: unitgen.yaml:12:5: jobs.custom.lock: a lock is held by unitgen-runner, which `container.command` replaces; give the job `steps`, or run a host `command` (which `flock(1)` can hold a host lock around)
error: unitgen.yaml:16:34: jobs.long-wait.lock.wait: waiting `1min` for the lock is not shorter than the job's timeout `1min`: systemd would stop the run while it waits; wait less, or raise `timeout`
error: unitgen.yaml:21:34: jobs.forever.lock.wait: waiting `infinity` for the lock is not shorter than the job's timeout `6h`: systemd would stop the run while it waits; wait less, or raise `timeout`
error: unitgen.yaml:23:3: jobs.no-etcd: `lock.etcd` needs etcd at run time, but `etcd.endpoints` is empty
",
    );
}

#[test]
fn an_etcd_lock_must_be_reachable_from_the_container_and_lock_is_no_default() {
    let tmp = tempfile::tempdir().unwrap();
    let job = "jobs:
  loop:
    schedule: daily
    lock: { etcd: /locks/backups }
    container: { volumes: [\"/data:/data:ro\", \"/backups:/backups\"] }
    steps:
      - copy: { source: /data, destination: /backups }
";
    let loopback = "error: unitgen.yaml:2:20: etcd.endpoints: job `loop` holds its lock in etcd inside its container, where `http://127.0.0.1:2379` is the container itself, not the host; set `etcd.runner.endpoints` to an address the container can reach (the docker0 address, e.g. http://172.17.0.1:2379), or use `container.network: host`\n";
    assert_fails(
        tmp.path(),
        &format!(
            "version: 1\netcd: {{ endpoints: [\"http://127.0.0.1:2379\"] }}\ndefaults:\n  image: r\n{job}"
        ),
        loopback,
    );
    // A lock names the data one job touches: a default would tie every
    // job to one lock, with no way out.
    assert_fails(
        tmp.path(),
        &format!(
            "version: 1\netcd: {{ endpoints: [\"http://127.0.0.1:2379\"] }}\ndefaults:\n  image: r\n  lock: {{ name: all }}\n{job}"
        ),
        &format!(
            "{loopback}error: unitgen.yaml:5:3: defaults.lock: unknown key `lock`; expected one of: target, image, pull, docker, runner, timer, timeout, on_failure, fleet, notify\n"
        ),
    );
}

#[test]
fn bad_copy_steps_are_refused_at_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
defaults:
  image: registry.example.com/unitgen-runner:0.1.0
jobs:
  paths:
    schedule: daily
    container: { volumes: [\"/srv:/srv\"] }
    steps:
      - copy: { source: data, destination: /srv/../backups }
      - copy: { source: /srv/data, destination: / }
      - copy: { source: /srv/data, destination: /srv/data/snapshots, retention: { keep_daily: 0 } }
  mounts:
    schedule: daily
    container: { volumes: [\"/data:/data:ro\", \"/backups:/backups:ro\", \"/backups/daily:/backups/daily\"] }
    steps:
      - copy: { source: /data, destination: /backups/weekly }
      - copy: { source: /data, destination: /backups/daily }
      - copy: { source: /srv, destination: /var/backups }
",
        "error: unitgen.yaml:9:25: jobs.paths.steps[0].copy.source: `data` must be an absolute path inside the runner's container, without `..` (mount the host folder with `container.volumes`)
error: unitgen.yaml:9:44: jobs.paths.steps[0].copy.destination: `/srv/../backups` must be an absolute path inside the runner's container, without `..` (mount the host folder with `container.volumes`)
error: unitgen.yaml:10:49: jobs.paths.steps[1].copy.destination: the snapshots need a folder of their own, not `/`
error: unitgen.yaml:11:49: jobs.paths.steps[2].copy.destination: `/srv/data/snapshots` and the source `/srv/data` must not be inside one another
error: unitgen.yaml:11:81: jobs.paths.steps[2].copy.retention: an empty retention policy would delete every snapshot; set at least one `keep_*` above 0, or remove `retention`
error: unitgen.yaml:16:45: jobs.mounts.steps[0].copy.destination: `/backups/weekly` is on the read-only volume `/backups:/backups:ro`; snapshots cannot be written there
error: unitgen.yaml:18:25: jobs.mounts.steps[2].copy.source: `/srv` is not inside any of `container.volumes`, so the runner would copy its container's own folder; mount the host folder, e.g. `/srv:/srv:ro`
error: unitgen.yaml:18:44: jobs.mounts.steps[2].copy.destination: `/var/backups` is not inside any of `container.volumes`, so the snapshots would be written into the container and deleted with it; mount the host folder, e.g. `/var/backups:/var/backups`
",
    );
}

/// What systemd makes of a rendered unit's commands, by `systemd --test`.
#[test]
fn lock_lines_mean_to_systemd_what_they_say() {
    let tmp = world_readable_tempdir();
    write(
        &tmp.path().join("unitgen.yaml"),
        "version: 1
jobs:
  runner:
    schedule: daily
    lock: { name: backups, wait: 2.5s }
    container:
      image: registry.example.com/unitgen-runner:0.1.0
      volumes: [\"/data:/data:ro\", \"/backups:/backups\"]
    steps:
      - copy: { source: /data, destination: /backups, retention: { keep_daily: 7 } }
  host:
    schedule: daily
    lock: { name: backups, on_busy: skip }
    command: [/usr/local/bin/rsync-backups.sh, \"100%\"]
",
    );
    let out = tmp.path().join("units");
    let r = run(unitgen()
        .args(["render", "-o"])
        .arg(&out)
        .current_dir(tmp.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    write(
        &out.join("all.target"),
        "[Unit]\nWants=runner.service host.service\n",
    );
    let parsed = systemd_dump(&out, "all.target");
    let commands = |unit: &str| parsed[unit].commands.clone();
    let mkdir = (
        "ExecStartPre".to_owned(),
        ["/bin/mkdir", "-p", "/run/lock/unitgen"]
            .map(String::from)
            .to_vec(),
    );
    let host = commands("host.service");
    assert!(host.contains(&mkdir), "{host:?}");
    let start = &host.iter().find(|(s, _)| s == "ExecStart").unwrap().1;
    assert_eq!(
        start,
        &[
            "/usr/bin/flock",
            "--verbose",
            "-n",
            "-E",
            "75",
            "/run/lock/unitgen/backups.lock",
            "/usr/local/bin/rsync-backups.sh",
            "100%"
        ]
    );
    let text = std::fs::read_to_string(out.join("host.service")).unwrap();
    assert!(text.contains("\nSuccessExitStatus=75\n"), "{text}");

    let runner = commands("runner.service");
    assert!(runner.contains(&mkdir), "{runner:?}");
    let start = &runner.iter().find(|(s, _)| s == "ExecStart").unwrap().1;
    let at = |flag: &str, value: &str| start.windows(2).any(|w| w[0] == flag && w[1] == value);
    assert!(
        at("--volume", "/run/lock/unitgen:/run/lock/unitgen"),
        "{start:?}"
    );
    assert!(
        at("--lock", r#"{"name":"backups","wait":"2.5s"}"#),
        "{start:?}"
    );
    let text = std::fs::read_to_string(out.join("runner.service")).unwrap();
    assert!(!text.contains("SuccessExitStatus"), "{text}");
}
