//! `unitgen plan` and `unitgen apply --target systemd` on a real systemd
//! 252 as PID 1 (the systemd host harness). unitgen runs inside the host,
//! as an operator runs it there: the binary is copied in, the spec and the
//! output folder are a folder shared with this test, and apply writes
//! /etc/systemd/system and calls the host's own systemctl.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::systemd_host::SystemdHost;
use common::{Run, write};

const WAIT: Duration = Duration::from_secs(60);
const OPS: &str = "/srv/ops";
const ARGS: &[&str] = &["-f", "/srv/ops/unitgen.yaml", "-o", "/srv/ops/units"];

/// A booted host with unitgen installed and `/srv/ops` shared.
struct Host {
    host: SystemdHost,
    ops: tempfile::TempDir,
}

impl Host {
    fn boot(spec: &str) -> Host {
        let ops = common::world_readable_tempdir();
        write(&ops.path().join("unitgen.yaml"), spec);
        let host = SystemdHost::options().share(ops.path(), OPS).boot();
        host.copy_in(env!("CARGO_BIN_EXE_unitgen"), "/usr/local/bin/unitgen");
        Host { host, ops }
    }

    fn spec(&self, text: &str) {
        write(&self.ops.path().join("unitgen.yaml"), text);
    }

    fn edit(&self, from: &str, to: &str) {
        let path = self.ops.path().join("unitgen.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from} not in the spec");
        write(&path, &text.replacen(from, to, 1));
    }

    /// `unitgen COMMAND -f /srv/ops/unitgen.yaml -o /srv/ops/units ARGS`
    /// inside the host.
    fn unitgen(&self, command: &str, args: &[&str]) -> Run {
        let mut argv = vec!["unitgen", command];
        argv.extend_from_slice(ARGS);
        argv.extend_from_slice(args);
        let out = self.host.exec(&argv);
        Run {
            status: out.status.code().expect("exit status"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn apply(&self) -> Run {
        let r = self.unitgen("apply", &[]);
        assert_eq!(r.status, 0, "apply failed:\n{}{}", r.stdout, r.stderr);
        r
    }

    fn read(&self, path: &str) -> String {
        self.host.run(&["cat", path])
    }

    fn exists(&self, path: &str) -> bool {
        self.host.exec(&["test", "-e", path]).status.success()
    }

    /// The rendered unit in the shared output folder.
    fn rendered(&self, unit: &str) -> String {
        std::fs::read_to_string(self.ops.path().join("units").join(unit)).unwrap()
    }
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

const SPEC: &str = "version: 1
jobs:
  alpha:
    schedule: daily
    command: [/bin/true]
  beta:
    schedule: weekly
    command: [/bin/true, beta]
";

#[test]
fn first_apply_a_change_a_removed_job_and_foreign_units_on_a_real_systemd() {
    let h = Host::boot(SPEC);
    // A unit of the host's own, of another name: never touched.
    let hand = "[Unit]\nDescription=hand-written\n\n[Service]\nExecStart=/bin/true\n";
    h.host.install_units(&[("hand.service", hand)]);

    let first = [
        "write /etc/systemd/system/alpha.service",
        "write /etc/systemd/system/alpha.timer",
        "write /etc/systemd/system/beta.service",
        "write /etc/systemd/system/beta.timer",
        "systemctl daemon-reload",
        "systemctl enable --now alpha.timer",
        "systemctl enable --now beta.timer",
    ];
    let r = h.unitgen("plan", &[]);
    assert_eq!((r.status, r.stdout.as_str()), (1, lines(&first).as_str()));
    assert!(!h.exists("/etc/systemd/system/alpha.service"), "plan wrote");

    let r = h.apply();
    let mut want = first.to_vec();
    want.push("done: 7 actions; systemd runs the 4 units of 2 jobs as rendered");
    assert_eq!(r.stdout, lines(&want));
    assert_eq!(r.stderr, "");
    for unit in ["alpha.service", "alpha.timer", "beta.service", "beta.timer"] {
        assert_eq!(
            h.read(&format!("/etc/systemd/system/{unit}")),
            h.rendered(unit),
            "{unit}"
        );
        assert_eq!(h.host.property(unit, "LoadState"), "loaded", "{unit}");
    }
    for timer in ["alpha.timer", "beta.timer"] {
        assert_eq!(h.host.property(timer, "UnitFileState"), "enabled");
        assert_eq!(h.host.property(timer, "ActiveState"), "active");
    }
    let r = h.unitgen("plan", &[]);
    assert_eq!((r.status, r.stdout.as_str()), (0, ""));
    assert_eq!(
        r.stderr,
        "nothing to do: systemd runs the 4 units of 2 jobs as rendered\n"
    );

    // A changed service: its file and a reload; its timer keeps running.
    let since = h
        .host
        .property("alpha.timer", "ActiveEnterTimestampMonotonic");
    h.edit("command: [/bin/true]", "command: [/bin/true, --v2]");
    let r = h.apply();
    assert_eq!(
        r.stdout,
        lines(&[
            "write /etc/systemd/system/alpha.service",
            "systemctl daemon-reload",
            "done: 2 actions; systemd runs the 4 units of 2 jobs as rendered",
        ])
    );
    assert!(
        h.host
            .property("alpha.service", "ExecStart")
            .contains("--v2")
    );
    assert_eq!(
        h.host
            .property("alpha.timer", "ActiveEnterTimestampMonotonic"),
        since,
        "the timer was not restarted"
    );

    // A changed timer: restarted, so its next elapse follows the new text.
    h.edit("schedule: weekly", "schedule: monthly");
    let r = h.apply();
    assert_eq!(
        r.stdout,
        lines(&[
            "write /etc/systemd/system/beta.timer",
            "systemctl daemon-reload",
            "systemctl restart beta.timer",
            "done: 3 actions; systemd runs the 4 units of 2 jobs as rendered",
        ])
    );
    let calendar = h.host.property("beta.timer", "TimersCalendar");
    assert!(
        calendar.contains("OnCalendar=*-*-01 00:00:00"),
        "{calendar}"
    );

    // A removed job: its timer disabled and stopped while its file exists,
    // then both files removed.
    h.spec("version: 1\njobs:\n  alpha:\n    schedule: daily\n    command: [/bin/true, --v2]\n");
    let r = h.apply();
    assert_eq!(
        r.stdout,
        lines(&[
            "systemctl disable --now beta.timer",
            "remove /etc/systemd/system/beta.timer",
            "remove /etc/systemd/system/beta.service",
            "systemctl daemon-reload",
            "done: 4 actions; systemd runs the 2 units of 1 job as rendered",
        ])
    );
    assert_eq!(
        r.stderr,
        "removed /srv/ops/units/beta.service\nremoved /srv/ops/units/beta.timer\n"
    );
    for unit in ["beta.service", "beta.timer"] {
        assert!(!h.exists(&format!("/etc/systemd/system/{unit}")), "{unit}");
        assert_eq!(h.host.property(unit, "LoadState"), "not-found", "{unit}");
    }
    assert!(!h.exists("/etc/systemd/system/timers.target.wants/beta.timer"));

    // A unit of a rendered name that is not unitgen's: in /etc, and one
    // a package installed. Both are refused; nothing is written.
    h.host.install_units(&[("gamma.service", hand)]);
    h.host.write_file(
        "/usr/lib/systemd/system/delta.timer",
        "[Timer]\nOnCalendar=daily\n",
    );
    h.edit(
        "jobs:\n",
        "jobs:\n  gamma:\n    schedule: daily\n    command: [/bin/true]\n  \
         delta:\n    schedule: daily\n    command: [/bin/true]\n",
    );
    for command in ["plan", "apply"] {
        let r = h.unitgen(command, &[]);
        assert_eq!((r.status, r.stdout.as_str()), (1, ""), "{command}");
        assert_eq!(
            r.stderr,
            "error: /usr/lib/systemd/system/delta.timer was not written by unitgen (it has no \
             [X-Unitgen] section); job `delta` would replace it. Rename the job, or remove that \
             unit yourself if it should go\n\
             error: /etc/systemd/system/gamma.service was not written by unitgen (it has no \
             [X-Unitgen] section); job `gamma` would replace it. Rename the job, or remove that \
             unit yourself if it should go\n",
            "{command}"
        );
    }
    assert_eq!(h.read("/etc/systemd/system/gamma.service"), hand);
    for absent in [
        "/etc/systemd/system/gamma.timer",
        "/etc/systemd/system/delta.service",
        "/etc/systemd/system/delta.timer",
    ] {
        assert!(!h.exists(absent), "{absent}");
    }
    assert_eq!(h.read("/etc/systemd/system/hand.service"), hand);
    assert_eq!(
        std::fs::read_to_string(h.ops.path().join("units/.unitgen-deployed")).unwrap(),
        "# Units `unitgen apply` deployed from this folder; only these are ever removed.\n\
         # TARGET<TAB>WHERE<TAB>UNIT<TAB>JOB\n\
         systemd\t/etc/systemd/system\talpha.service\talpha\n\
         systemd\t/etc/systemd/system\talpha.timer\talpha\n"
    );
}

#[test]
fn an_image_root_gets_the_units_and_their_symlinks_offline() {
    // No host needed: `systemctl --root` edits the image's folder here.
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("unitgen.yaml"), SPEC);
    let apply = || {
        common::run(
            common::unitgen()
                .args(["apply", "--root", "img"])
                .current_dir(dir.path()),
        )
    };
    let root = dir.path().join("img");
    let shown = |text: &str| text.replace(&root.display().to_string(), "IMG");
    let r = apply();
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        shown(&r.stdout),
        lines(&[
            "write IMG/etc/systemd/system/alpha.service",
            "write IMG/etc/systemd/system/alpha.timer",
            "write IMG/etc/systemd/system/beta.service",
            "write IMG/etc/systemd/system/beta.timer",
            "systemctl --root=IMG enable alpha.timer",
            "systemctl --root=IMG enable beta.timer",
            "done: 6 actions; IMG/etc/systemd/system holds the 4 units of 2 jobs as rendered",
        ])
    );
    let wants = root.join("etc/systemd/system/timers.target.wants");
    assert_eq!(
        std::fs::read_link(wants.join("alpha.timer")).unwrap(),
        Path::new("/etc/systemd/system/alpha.timer")
    );
    write(
        &dir.path().join("unitgen.yaml"),
        "version: 1\njobs:\n  alpha:\n    schedule: daily\n    command: [/bin/true]\n",
    );
    let r = apply();
    assert_eq!(
        shown(&r.stdout),
        lines(&[
            "systemctl --root=IMG disable beta.timer",
            "remove IMG/etc/systemd/system/beta.timer",
            "remove IMG/etc/systemd/system/beta.service",
            "done: 3 actions; IMG/etc/systemd/system holds the 2 units of 1 job as rendered",
        ])
    );
    // The links point into the image: look at them, not through them.
    assert!(std::fs::symlink_metadata(wants.join("beta.timer")).is_err());
    assert!(std::fs::symlink_metadata(wants.join("alpha.timer")).is_ok());
    assert!(!root.join("etc/systemd/system/beta.service").exists());
}

#[test]
fn deployed_timers_fire_and_a_failing_job_runs_on_failure_and_is_reported() {
    let h = Host::boot(
        "version: 1
jobs:
  tick:
    schedule: \"*:*:0/5\"
    timer: { accuracy: 1s }
    command: [/bin/sh, -c, \"echo tick ran\"]
  broken:
    schedule: \"*:*:0/5\"
    timer: { accuracy: 1s }
    on_failure: report@.service
    command: [/bin/sh, -c, \"echo broken; exit 3\"]
",
    );
    // The host's own failure handler, as `unit-status-mail@.service` would be.
    h.host.install_units(&[(
        "report@.service",
        "[Service]\nType=oneshot\nExecStart=/bin/echo \"failure reported for %i\"\n",
    )]);
    h.apply();
    h.host
        .wait_until(WAIT, "tick.service ran from its timer", || {
            h.host
                .journal("tick.service")
                .iter()
                .any(|(_, m)| m == "tick ran")
        });
    assert_eq!(h.host.wait_finished("broken.service", WAIT), "exit-code");
    h.host.wait_until(WAIT, "OnFailure= ran report@", || {
        h.host
            .journal("report@broken.service.service")
            .iter()
            .any(|(_, m)| m == "failure reported for broken.service")
    });
    // An apply with nothing to do still says what has failed.
    let r = h.apply();
    assert_eq!(
        r.stdout,
        "nothing to do: systemd runs the 4 units of 2 jobs as rendered\n"
    );
    assert_eq!(
        r.stderr,
        "warning: broken.service has failed; see `systemctl status broken.service` and \
         `journalctl -u broken.service`\n"
    );
}

#[test]
fn the_rsync_example_is_deployed_as_committed_and_runs() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/rsync-backups/unitgen.yaml"
    );
    let h = Host::boot(&std::fs::read_to_string(example).unwrap());
    // What the seed's host has: the script (here a copy with cp, as the
    // image has no rsync), the mail handler, data.
    h.host.write_file(
        "/usr/local/bin/rsync-backups.sh",
        "#!/bin/sh\nset -e\nmkdir -p \"$RSYNC_DEST\"\ncp -a \"$RSYNC_SOURCE\". \"$RSYNC_DEST\"\n",
    );
    h.host
        .run(&["chmod", "755", "/usr/local/bin/rsync-backups.sh"]);
    h.host.install_units(&[(
        "unit-status-mail@.service",
        "[Service]\nType=oneshot\nExecStart=/bin/echo \"mail about %i\"\n",
    )]);
    h.host.write_file("/data/wallet.dat", "precious\n");
    let r = h.apply();
    assert_eq!(
        r.stdout,
        lines(&[
            "write /etc/systemd/system/rsync-backups.service",
            "write /etc/systemd/system/rsync-backups.timer",
            "systemctl daemon-reload",
            "systemctl enable --now rsync-backups.timer",
            "done: 4 actions; systemd runs the 2 units of 1 job as rendered",
        ])
    );
    // The host runs the committed units, byte for byte.
    for unit in ["rsync-backups.service", "rsync-backups.timer"] {
        let committed = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("units/rsync-backups")
                .join(unit),
        )
        .unwrap();
        assert_eq!(h.read(&format!("/etc/systemd/system/{unit}")), committed);
    }
    let calendar = h.host.property("rsync-backups.timer", "TimersCalendar");
    assert!(calendar.contains("OnCalendar=*-*-* 00:15:00"), "{calendar}");
    assert_eq!(
        h.host.property("rsync-backups.timer", "ActiveState"),
        "active"
    );
    // 00:15 is far: run the service as its timer would.
    h.host.systemctl(&["start", "rsync-backups.service"]);
    assert_eq!(h.read("/backups/wallet.dat"), "precious\n");
    assert_eq!(
        h.host.property("rsync-backups.service", "Result"),
        "success"
    );
}

/// `docker exec HOST unitgen watch --apply ...`, its stderr collected.
struct Watch {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    fn start(h: &Host) -> Watch {
        let mut child = Command::new("docker")
            .args(["exec", &h.host.name, "unitgen", "watch"])
            .args(ARGS)
            .args(["--apply", "--target", "systemd", "--debounce", "100ms"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker exec");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watch { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.stderr().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {n}× `{needle}` on stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The docker client; the watch inside ends with the host.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_apply_deploys_an_etcd_change_on_a_real_systemd_host() {
    let gateway = common::docker::docker0();
    let etcd = common::etcd::Etcd::start_on(&[&gateway]);
    etcd.put("/wallet/volume", "vol-0aaaaaaaaaaaaaaaa");
    let other_job = "  other:\n    schedule: weekly\n    command: [/bin/true, other]\n";
    let h = Host::boot(&format!(
        "version: 1\netcd:\n  endpoints: [\"{}\"]\njobs:\n  wallet:\n    schedule: daily\n    \
         environment: {{ VOLUME: {{ etcd: /wallet/volume }} }}\n    command: [/bin/true]\n{other_job}",
        etcd.endpoint_on(&gateway)
    ));
    let watch = Watch::start(&h);
    watch.wait_for("done: 7 actions", 1);
    watch.wait_for("watching 1 etcd key(s)", 1);
    let timers = |h: &Host| {
        ["wallet.timer", "other.timer"].map(|t| h.host.property(t, "ActiveEnterTimestampMonotonic"))
    };
    let before = timers(&h);
    let other = h.read("/etc/systemd/system/other.service");

    etcd.put("/wallet/volume", "vol-0bbbbbbbbbbbbbbbb");
    let put = Instant::now();
    h.host.wait_until(
        Duration::from_secs(10),
        "systemd runs the new wallet.service",
        || {
            h.host
                .property("wallet.service", "Environment")
                .contains("VOLUME=vol-0bbbbbbbbbbbbbbbb")
        },
    );
    eprintln!("the change reached systemd in {:?}", put.elapsed());
    watch.wait_for("done: 2 actions", 1);
    assert!(
        watch.stderr().contains(
            "unitgen watch: write /etc/systemd/system/wallet.service\n\
             unitgen watch: systemctl daemon-reload\n\
             unitgen watch: done: 2 actions; systemd runs the 2 units of job wallet as rendered\n"
        ),
        "only the wallet job is applied:\n{}",
        watch.stderr()
    );
    assert_eq!(
        h.read("/etc/systemd/system/wallet.service"),
        h.rendered("wallet.service")
    );
    assert_eq!(timers(&h), before, "no timer was restarted");
    assert_eq!(h.read("/etc/systemd/system/other.service"), other);

    // A job removed from the spec: its units go.
    h.edit(other_job, "");
    watch.wait_for("done: 4 actions; the removed units are gone", 1);
    assert!(!h.exists("/etc/systemd/system/other.timer"));
    assert_eq!(h.host.property("other.timer", "LoadState"), "not-found");
    assert_eq!(h.host.property("wallet.timer", "ActiveState"), "active");
}
