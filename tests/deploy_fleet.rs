//! `unitgen plan` and `unitgen apply` against fleet v1.0.0's fleetctl, as
//! the stand-in in tests/fleetctl/ reproduces it (its README lists every
//! behaviour with its fleet source). One test per trap: each would fail if
//! unitgen fell into it. `standin-ctl calls` is the proof of what unitgen
//! asked fleet to do; `standin-ctl interrupted` that no backup was killed.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Run, run, unitgen, write};

const STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fleetctl");
const MACHINE: &str = "c31e4f2a.../172.17.8.101";

/// Two jobs: `backup` (with a notify unit) and `other`.
const SPEC: &str = "version: 1
defaults:
  target: fleet
  image: registry.example.com/unitgen-runner:0.1.0
jobs:
  backup:
    schedule: daily
    notify: { webhook: \"http://10.0.0.1/hook\" }
    container: { command: [/bin/backup] }
  other:
    schedule: weekly
    container: { command: [/bin/other] }
";

/// A folder with a spec, and a fleet (the stand-in's state) of one machine
/// whose agents act at once.
struct Fleet {
    dir: tempfile::TempDir,
    state: PathBuf,
}

impl Fleet {
    fn new(spec: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("fleet");
        let f = Fleet { dir, state };
        f.spec(spec);
        f.ctl(&["init"]);
        f
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spec(&self, text: &str) {
        write(&self.path().join("unitgen.yaml"), text);
    }

    fn edit(&self, from: &str, to: &str) {
        let path = self.path().join("unitgen.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from} not in the spec");
        write(&path, &text.replacen(from, to, 1));
    }

    fn env(&self, cmd: &mut Command) {
        let path = format!("{STANDIN}:{}", std::env::var("PATH").unwrap_or_default());
        cmd.current_dir(self.path())
            .env("PATH", path)
            .env("FLEETCTL_STANDIN_STATE", &self.state)
            .env("FLEETCTL_STANDIN_TIME_SCALE", "0")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("FLEETCTL_ENDPOINT")
            .env_remove("FLEETCTL_STANDIN_AGENT");
    }

    fn unitgen(&self, args: &[&str]) -> Run {
        let mut cmd = unitgen();
        cmd.args(args);
        self.env(&mut cmd);
        run(&mut cmd)
    }

    fn tool(&self, tool: &str, args: &[&str]) -> Run {
        let mut cmd = Command::new(format!("{STANDIN}/{tool}"));
        cmd.args(args);
        self.env(&mut cmd);
        run(&mut cmd)
    }

    /// `standin-ctl ARGS`, which must succeed; its stdout.
    fn ctl(&self, args: &[&str]) -> String {
        let r = self.tool("standin-ctl", args);
        assert_eq!(r.status, 0, "standin-ctl {args:?}: {}", r.stderr);
        r.stdout
    }

    fn fleetctl(&self, args: &[&str]) -> Run {
        self.tool("fleetctl", args)
    }

    /// Every fleetctl call so far, `EXIT fleetctl ARGS`, with the folder
    /// shown as `DIR`.
    fn calls(&self) -> Vec<String> {
        let dir = self.path().display().to_string();
        self.ctl(&["calls"])
            .lines()
            .map(|l| {
                let mut f = l.splitn(3, '\t');
                let (_n, exit, argv) = (f.next(), f.next().unwrap(), f.next().unwrap());
                format!("{exit} {}", argv.replace(&dir, "DIR"))
            })
            .collect()
    }

    /// The calls after the first `from`.
    fn calls_since(&self, from: usize) -> Vec<String> {
        self.calls()[from..].to_vec()
    }

    /// fleet's registry: unit -> (full hash, desired state, state).
    fn registry(&self) -> BTreeMap<String, (String, String, String)> {
        let r = self.fleetctl(&[
            "list-unit-files",
            "--full",
            "--no-legend",
            "--fields",
            "unit,hash,dstate,state",
        ]);
        assert_eq!(r.status, 0, "{}", r.stderr);
        r.stdout
            .lines()
            .map(|l| {
                let c: Vec<&str> = l.split('\t').filter(|c| !c.is_empty()).collect();
                (c[0].into(), (c[1].into(), c[2].into(), c[3].into()))
            })
            .collect()
    }

    /// `sha1sum units/UNIT`.
    fn sha1(&self, unit: &str) -> String {
        let out = Command::new("sha1sum")
            .arg(self.path().join("units").join(unit))
            .output()
            .expect("run sha1sum");
        String::from_utf8(out.stdout).unwrap()[..40].to_owned()
    }

    fn unit(&self, unit: &str) -> String {
        std::fs::read_to_string(self.path().join("units").join(unit)).unwrap()
    }

    /// fleet's stored text of a unit (`fleetctl cat`).
    fn cat(&self, unit: &str) -> String {
        let r = self.fleetctl(&["cat", unit]);
        assert_eq!(r.status, 0, "{}", r.stderr);
        r.stdout
    }

    fn record(&self) -> String {
        std::fs::read_to_string(self.path().join("units/.unitgen-deployed")).unwrap_or_default()
    }

    /// Applies and checks it succeeded.
    fn apply(&self, args: &[&str]) -> Run {
        let mut all = vec!["apply"];
        all.extend_from_slice(args);
        let r = self.unitgen(&all);
        assert_eq!(r.status, 0, "apply failed:\n{}{}", r.stdout, r.stderr);
        r
    }
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

const FIRST_APPLY: &[&str] = &[
    "fleetctl submit units/backup.service",
    "fleetctl submit units/backup.timer",
    "fleetctl submit units/unitgen-notify@backup.service",
    "fleetctl load units/backup.service",
    "fleetctl load units/unitgen-notify@backup.service",
    "fleetctl start units/backup.timer",
    "fleetctl submit units/other.service",
    "fleetctl submit units/other.timer",
    "fleetctl load units/other.service",
    "fleetctl start units/other.timer",
];

#[test]
fn the_first_apply_submits_loads_the_services_and_starts_the_timers() {
    let fleet = Fleet::new(SPEC);
    let r = fleet.apply(&[]);
    let mut want = FIRST_APPLY.to_vec();
    want.push("done: 10 actions; fleet runs the 5 units of 2 jobs as rendered");
    assert_eq!(r.stdout, lines(&want));
    assert_eq!(r.stderr, "");
    // Every unit was named by its path: nothing for fleetctl to read from
    // stdin (`No units given`), and the --replace rules are picked by the
    // command word alone (an absolute path is never `start`).
    assert_eq!(
        fleet.calls(),
        [
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
            "0 fleetctl submit DIR/units/backup.service",
            "0 fleetctl submit DIR/units/backup.timer",
            "0 fleetctl submit DIR/units/unitgen-notify@backup.service",
            "0 fleetctl load --block-attempts=30 DIR/units/backup.service",
            "0 fleetctl load --block-attempts=30 DIR/units/unitgen-notify@backup.service",
            "0 fleetctl start --block-attempts=30 DIR/units/backup.timer",
            "0 fleetctl submit DIR/units/other.service",
            "0 fleetctl submit DIR/units/other.timer",
            "0 fleetctl load --block-attempts=30 DIR/units/other.service",
            "0 fleetctl start --block-attempts=30 DIR/units/other.timer",
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
        ]
    );

    // fleet holds each file as written (its hash is the file's sha1); the
    // services are loaded (never started: a oneshot would make `start`
    // exit 1), the notify unit sits with its job, the timers run.
    let registry = fleet.registry();
    let state = |s: &str| (s.to_owned(), s.to_owned());
    for (unit, want) in [
        ("backup.service", state("loaded")),
        ("backup.timer", state("launched")),
        ("unitgen-notify@backup.service", state("loaded")),
        ("other.service", state("loaded")),
        ("other.timer", state("launched")),
    ] {
        let (hash, dstate, st) = &registry[unit];
        assert_eq!(hash, &fleet.sha1(unit), "{unit}");
        assert_eq!((dstate.clone(), st.clone()), want, "{unit}");
    }
    assert_eq!(registry.len(), 5);
    let lsu = fleet.fleetctl(&["list-units", "--no-legend", "--fields", "unit,machine"]);
    assert!(
        lsu.stdout
            .contains(&format!("unitgen-notify@backup.service\t{MACHINE}")),
        "{}",
        lsu.stdout
    );
    assert_eq!(
        fleet.record(),
        "# Units `unitgen apply` deployed from this folder; only these are ever removed.\n\
         # TARGET<TAB>WHERE<TAB>UNIT<TAB>JOB\n\
         fleet\tunix:///var/run/fleet.sock\tbackup.service\tbackup\n\
         fleet\tunix:///var/run/fleet.sock\tbackup.timer\tbackup\n\
         fleet\tunix:///var/run/fleet.sock\tother.service\tother\n\
         fleet\tunix:///var/run/fleet.sock\tother.timer\tother\n\
         fleet\tunix:///var/run/fleet.sock\tunitgen-notify@backup.service\tbackup\n"
    );

    // A second apply has nothing to do, and does nothing.
    let before = fleet.calls().len();
    let r = fleet.apply(&[]);
    assert_eq!(
        r.stdout,
        "nothing to do: fleet runs the 5 units of 2 jobs as rendered\n"
    );
    assert_eq!(
        fleet.calls_since(before),
        [
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
            "0 fleetctl list-units --full --no-legend --fields unit,machine,active,sub",
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
        ]
    );
}

#[test]
fn plan_prints_the_actions_exits_1_when_there_are_some_and_writes_nothing() {
    let fleet = Fleet::new(SPEC);
    let r = fleet.unitgen(&["plan"]);
    assert_eq!(r.stdout, lines(FIRST_APPLY));
    assert_eq!(r.stderr, "");
    assert_eq!(r.status, 1);
    assert!(!fleet.path().join("units").exists(), "plan wrote files");
    assert_eq!(
        fleet.calls(),
        ["0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state"]
    );

    let r = fleet.unitgen(&["plan", "--json"]);
    assert_eq!(r.status, 1);
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(json["target"], "fleet");
    assert_eq!(json["location"], "unix:///var/run/fleet.sock");
    assert_eq!(
        json["actions"][0],
        serde_json::json!({
            "op": "submit", "unit": "backup.service", "job": "backup", "why": "new",
            "line": "fleetctl submit units/backup.service"
        })
    );
    assert_eq!(json["actions"][5]["op"], "start");
    assert_eq!(json["actions"].as_array().unwrap().len(), 10);
    assert_eq!(json["notes"], serde_json::json!([]));
    assert_eq!(r.stdout.lines().count(), 1, "one JSON object");

    fleet.apply(&[]);
    let r = fleet.unitgen(&["plan"]);
    assert_eq!((r.status, r.stdout.as_str()), (0, ""));
    assert_eq!(
        r.stderr,
        "nothing to do: fleet runs the 5 units of 2 jobs as rendered\n"
    );
    let r = fleet.unitgen(&["plan", "--json"]);
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        "{\"target\":\"fleet\",\"location\":\"unix:///var/run/fleet.sock\",\"actions\":[],\"notes\":[]}\n"
    );
}

#[test]
fn a_changed_service_is_replaced_not_resubmitted_and_its_timer_restarted() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    let old = fleet.sha1("backup.service");
    fleet.edit("/bin/backup", "/bin/backup --v2");
    // The trap: submitting the changed file warns, exits 0 and keeps the
    // old text (fleetctl.go checkUnitCreation).
    let r = fleet.unitgen(&["render"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let r = fleet.fleetctl(&["submit", "units/backup.service"]);
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stderr,
        "WARNING: Unit backup.service in registry differs from local unit file units/backup.service. Add --replace to override.\n"
    );
    assert_eq!(fleet.registry()["backup.service"].0, old);

    let before = fleet.calls().len();
    let r = fleet.apply(&[]);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl stop backup.timer  # no run starts while backup.service is replaced",
            "fleetctl load --replace units/backup.service",
            "fleetctl start units/backup.timer  # again, after backup.service was replaced",
            "done: 3 actions; fleet runs the 5 units of 2 jobs as rendered",
        ])
    );
    let calls = fleet.calls_since(before);
    let new = fleet.sha1("backup.service");
    assert_ne!(new, old);
    let registry = fleet.registry();
    assert_eq!(registry["backup.service"].0, new);
    assert!(fleet.cat("backup.service").contains("/bin/backup --v2"));
    for (unit, (hash, dstate, state)) in &registry {
        assert_eq!(hash, &fleet.sha1(unit), "{unit}");
        let want = if unit.ends_with(".timer") {
            "launched"
        } else {
            "loaded"
        };
        assert_eq!((dstate.as_str(), state.as_str()), (want, want), "{unit}");
    }
    assert_eq!(
        calls,
        [
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
            "0 fleetctl list-units --full --no-legend --fields unit,machine,active,sub",
            "0 fleetctl cat backup.service",
            "0 fleetctl stop --block-attempts=30 backup.timer",
            "0 fleetctl list-units --full --no-legend --fields unit,machine,active,sub",
            "0 fleetctl load --replace --block-attempts=30 DIR/units/backup.service",
            "0 fleetctl start --block-attempts=30 DIR/units/backup.timer",
            "0 fleetctl list-unit-files --full --no-legend --fields unit,hash,dstate,state",
        ],
        "only backup's units were touched"
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "");
}

#[test]
fn a_changed_timer_is_replaced_with_start_replace_while_it_runs() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    fleet.edit("schedule: weekly", "schedule: monthly");
    // The trap: `load --replace` refuses a launched unit, then loads it
    // anyway (stopping it) and exits 0.
    let r = fleet.unitgen(&["render"]);
    assert_eq!(r.status, 0);
    let r = fleet.fleetctl(&["load", "--replace", "units/other.timer"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            0,
            "Warning: can not replace Unit(other.timer) in state 'launched', use the appropriate command\n"
        )
    );
    assert_eq!(
        fleet.registry()["other.timer"].1,
        "loaded",
        "it was stopped"
    );
    assert!(
        !fleet.cat("other.timer").contains("monthly"),
        "and not replaced"
    );

    let r = fleet.apply(&[]);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl start --replace units/other.timer",
            "done: 1 action; fleet runs the 5 units of 2 jobs as rendered",
        ])
    );
    assert!(fleet.cat("other.timer").contains("OnCalendar=monthly\n"));
    let (hash, dstate, state) = &fleet.registry()["other.timer"];
    assert_eq!(
        (hash, dstate.as_str(), state.as_str()),
        (&fleet.sha1("other.timer"), "launched", "launched")
    );
}

#[test]
fn a_launched_service_is_stopped_before_load_replace() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    // Someone started the oneshot service through fleet: it is launched
    // (fleetctl exits 1 waiting for `active`, which a oneshot never is).
    let r = fleet.fleetctl(&["start", "units/other.service"]);
    assert_eq!(r.status, 1);
    fleet.ctl(&["finish", "other.service"]);
    assert_eq!(fleet.registry()["other.service"].1, "launched");
    fleet.edit("/bin/other", "/bin/other --v2");

    let r = fleet.apply(&[]);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl stop other.timer  # no run starts while other.service is replaced",
            "fleetctl stop other.service  # load --replace refuses a launched unit",
            "fleetctl load --replace units/other.service",
            "fleetctl start units/other.timer  # again, after other.service was replaced",
            "done: 4 actions; fleet runs the 5 units of 2 jobs as rendered",
        ])
    );
    let (hash, dstate, _) = &fleet.registry()["other.service"];
    assert_eq!(
        (hash, dstate.as_str()),
        (&fleet.sha1("other.service"), "loaded")
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "");
}

#[test]
fn a_service_running_a_backup_is_waited_for_then_replaced() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    fleet.ctl(&["fire", "backup.timer"]);
    fleet.edit("/bin/backup", "/bin/backup --v2");
    let apply = Background::start(&fleet, &["apply", "--wait-idle", "60s"]);
    // The apply waits: the service stays untouched while it runs.
    apply.wait_for("is running a backup", 1);
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, state) = &fleet.registry()["backup.service"];
    assert_eq!(state, "loaded");
    assert_eq!(
        fleet
            .fleetctl(&["list-units", "--no-legend", "--fields", "unit,active,sub"])
            .stdout
            .lines()
            .find(|l| l.starts_with("backup.service"))
            .map(|l| l.split('\t').filter(|c| !c.is_empty()).collect::<Vec<_>>()),
        Some(vec!["backup.service", "activating", "start"])
    );
    fleet.ctl(&["finish", "backup.service"]);
    let (status, stdout, stderr) = apply.finish();
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        lines(&[
            "fleetctl stop backup.timer  # no run starts while backup.service is replaced",
            "wait until backup.service has finished its running backup",
            "fleetctl load --replace units/backup.service",
            "fleetctl start units/backup.timer  # again, after backup.service was replaced",
            "done: 4 actions; fleet runs the 5 units of 2 jobs as rendered",
        ])
    );
    assert_eq!(
        stderr,
        "unitgen: backup.service is running a backup; waiting up to 1min for it to finish\n"
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "", "no backup was killed");
    assert_eq!(
        fleet.registry()["backup.service"].0,
        fleet.sha1("backup.service")
    );
}

#[test]
fn a_service_busy_for_too_long_fails_naming_it_and_its_timer_runs_again() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    let old = fleet.registry();
    fleet.ctl(&["fire", "backup.timer"]);
    fleet.edit("/bin/backup", "/bin/backup --v2");
    let r = fleet.unitgen(&["apply", "--wait-idle", "1s"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl stop backup.timer  # no run starts while backup.service is replaced",
            "wait until backup.service has finished its running backup",
            "fleetctl start units/backup.timer  # again: this apply stopped it, then failed",
        ])
    );
    assert_eq!(
        r.stderr,
        "unitgen: backup.service is running a backup; waiting up to 1s for it to finish\n\
         error: backup.service is still running a backup after 1s; unitgen does not replace or \
         destroy a running service (that would kill the run). Apply again once it has finished, \
         or give --wait-idle more time\n"
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "", "no backup was killed");
    assert_eq!(
        fleet.registry(),
        old,
        "fleet runs what it ran, timer included"
    );
}

#[test]
fn a_signal_stops_a_waiting_apply_and_its_timer_runs_again() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    let old = fleet.registry();
    fleet.ctl(&["fire", "backup.timer"]);
    fleet.edit("/bin/backup", "/bin/backup --v2");
    let apply = Background::start(&fleet, &["apply"]);
    apply.wait_for("is running a backup", 1);
    let killed = Command::new("kill")
        .args(["-TERM", &apply.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, stdout, stderr) = apply.finish();
    assert_eq!(status, Some(1), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        lines(&[
            "fleetctl stop backup.timer  # no run starts while backup.service is replaced",
            "wait until backup.service has finished its running backup",
            "fleetctl start units/backup.timer  # again: this apply stopped it, then failed",
        ])
    );
    assert_eq!(
        stderr,
        "unitgen: backup.service is running a backup; waiting up to 10min for it to finish\n\
         error: stopped by a signal while backup.service was running a backup\n"
    );
    assert_eq!(fleet.registry(), old, "the timer runs again");
    assert_eq!(fleet.ctl(&["interrupted"]), "");
}

#[test]
fn without_agents_every_wait_is_bounded_and_says_why() {
    let fleet = Fleet::new(SPEC);
    fleet.ctl(&["agent", "none"]);
    let started = Instant::now();
    let r = fleet.unitgen(&["apply", "--wait", "4s"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl submit units/backup.service",
            "fleetctl submit units/backup.timer",
            "fleetctl submit units/unitgen-notify@backup.service",
            "fleetctl load units/backup.service",
        ])
    );
    assert_eq!(
        r.stderr,
        "error: `fleetctl load units/backup.service` failed (exit status 1)\n\
         error: no fleet agent reported the unit's state within --wait (4s); is fleetd running \
         on the machines, and can one of them run the unit?\n\
         \x20 Error waiting for units: timed out waiting for unit backup.service to report state loaded\n\
         \x20 Error waiting for unit states, exit status: timed out waiting for unit backup.service to report state loaded\n"
    );
    assert!(
        fleet
            .calls()
            .contains(&"1 fleetctl load --block-attempts=2 DIR/units/backup.service".to_owned())
    );

    // A replace waits too (its creation wait ignores --no-block): with
    // --wait 0 it still gets one block attempt, never an endless wait.
    fleet.ctl(&["agent", "auto"]);
    fleet.apply(&[]);
    fleet.ctl(&["agent", "none"]);
    fleet.edit("/bin/other", "/bin/other --v2");
    let r = fleet.unitgen(&["apply", "--wait", "0"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: `fleetctl load --replace units/other.service` failed (exit status 1)\n\
         error: no fleet agent reported the unit's state within --wait (0s); is fleetd running \
         on the machines, and can one of them run the unit?\n\
         \x20 Error waiting on unit creation: timed out waiting for unit other.service to report state inactive\n\
         \x20 Error creating units: One or more errors creating units\n"
    );
    let calls: Vec<String> = fleet
        .calls()
        .into_iter()
        .filter(|c| !c.contains(" list-"))
        .collect();
    let tail: Vec<&str> = calls
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "0 fleetctl stop --no-block other.timer",
            "1 fleetctl load --replace --no-block --block-attempts=1 DIR/units/other.service",
            "0 fleetctl start --no-block DIR/units/other.timer",
        ]
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // Once the agents answer, apply finishes the job.
    fleet.ctl(&["agent", "auto"]);
    fleet.apply(&[]);
    assert_eq!(
        fleet.registry()["other.service"].0,
        fleet.sha1("other.service")
    );
}

/// A fleetctl that falls into a trap on purpose (`$TRAP`), in front of
/// the stand-in: unitgen must see that nothing happened although fleetctl
/// exited 0.
const TRAP_FLEETCTL: &str = r#"#!/bin/sh
case "$TRAP" in
  stdin)   # names on stdin instead of arguments
    case "$1" in submit|load|start) exec fleetctl "$1" ;; esac ;;
  noreplace)   # --replace dropped: fleet keeps the old text
    shift_args=""
    for a; do [ "$a" = --replace ] || shift_args="$shift_args $a"; done
    exec fleetctl $shift_args ;;
  loadtimer)   # the timer replaced with load instead of start
    if [ "$1" = start ] && [ "$2" = --replace ]; then shift; exec fleetctl load "$@"; fi ;;
esac
exec fleetctl "$@"
"#;

#[test]
fn fleetctl_s_silent_no_ops_are_errors() {
    let fleet = Fleet::new(SPEC);
    let wrapper = fleet.path().join("trap-fleetctl");
    write(&wrapper, TRAP_FLEETCTL);
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let apply = |trap: &str| {
        let mut cmd = unitgen();
        cmd.args(["apply", "--fleetctl"]).arg(&wrapper);
        fleet.env(&mut cmd);
        cmd.env("TRAP", trap);
        run(&mut cmd)
    };
    let r = apply("stdin");
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: `fleetctl submit units/backup.service` did nothing, though fleetctl exited 0: it \
         was given no unit names (submit.go: names come only from arguments): `No units given`\n\
         \x20 No units given\n"
    );

    fleet.apply(&[]);
    fleet.edit("/bin/backup", "/bin/backup --v2");
    let r = apply("noreplace");
    assert_eq!(r.status, 1);
    assert!(
        r.stderr.starts_with(
            "error: `fleetctl load --replace units/backup.service` did nothing, though fleetctl \
             exited 0: fleet kept the old text of the unit (fleetctl.go checkUnitCreation): \
             `WARNING: Unit backup.service in registry differs from local unit file "
        ),
        "{}",
        r.stderr
    );

    fleet.apply(&[]);
    fleet.edit("schedule: weekly", "schedule: monthly");
    let r = apply("loadtimer");
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: `fleetctl start --replace units/other.timer` did nothing, though fleetctl exited \
         0: fleet refused to replace the unit in its state (fleetctl.go checkReplaceUnitState): \
         `Warning: can not replace Unit(other.timer) in state 'launched', use the appropriate \
         command`\n\
         \x20 Unit other.timer loaded on c31e4f2a.../172.17.8.101\n\
         \x20 Warning: can not replace Unit(other.timer) in state 'launched', use the appropriate command\n"
    );
    // The honest fleetctl puts it right.
    fleet.apply(&[]);
    assert!(fleet.cat("other.timer").contains("OnCalendar=monthly\n"));
    assert_eq!(fleet.registry()["other.timer"].1, "launched");
}

#[test]
fn a_foreign_unit_of_a_rendered_name_is_refused_and_nothing_is_touched() {
    let fleet = Fleet::new(SPEC);
    let hand = fleet.path().join("hand/other.service");
    write(
        &hand,
        "[Unit]\nDescription=Hand-written\n\n[Service]\nExecStart=/bin/true\n",
    );
    let r = fleet.fleetctl(&["load", hand.to_str().unwrap()]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let before = fleet.registry();
    let calls = fleet.calls().len();
    let error = "error: fleet unit other.service was not written by unitgen (it has no \
                 [X-Unitgen] section); job `other` would replace it. Rename the job, or remove \
                 that unit yourself if it should go\n";
    for command in ["plan", "apply"] {
        let r = fleet.unitgen(&[command]);
        assert_eq!((r.status, r.stdout.as_str()), (1, ""), "{command}");
        assert_eq!(r.stderr, error, "{command}");
    }
    assert_eq!(fleet.registry(), before);
    assert!(
        fleet
            .calls_since(calls)
            .iter()
            .all(|c| c.contains(" list-") || c.contains(" cat ")),
        "only reads: {:?}",
        fleet.calls_since(calls)
    );
    assert!(
        !fleet.path().join("units/other.service").exists(),
        "apply wrote nothing"
    );
}

#[test]
fn a_removed_job_loses_its_timer_first_and_nothing_else_is_touched() {
    let fleet = Fleet::new(SPEC);
    // A unit unitgen did not deploy, of another name: never touched.
    let hand = fleet.path().join("hand/app.service");
    write(&hand, "[Service]\nExecStart=/bin/app\n");
    assert_eq!(fleet.fleetctl(&["load", hand.to_str().unwrap()]).status, 0);
    fleet.apply(&[]);
    fleet.ctl(&["fire", "backup.timer"]);
    // backup goes; its service is running and is waited for.
    fleet.spec(
        "version: 1\ndefaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\n\
         jobs:\n  other:\n    schedule: weekly\n    container: { command: [/bin/other] }\n",
    );
    let r = fleet.unitgen(&["plan"]);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl destroy backup.timer",
            "wait until backup.service has finished its running backup",
            "fleetctl destroy backup.service",
            "fleetctl destroy unitgen-notify@backup.service",
        ])
    );
    let before = fleet.calls().len();
    let apply = Background::start(&fleet, &["apply"]);
    apply.wait_for("is running a backup", 1);
    assert!(
        fleet.registry().contains_key("backup.service"),
        "still running"
    );
    fleet.ctl(&["finish", "backup.service"]);
    let (status, stdout, stderr) = apply.finish();
    assert_eq!(status, Some(0));
    assert_eq!(
        stdout,
        lines(&[
            "fleetctl destroy backup.timer",
            "wait until backup.service has finished its running backup",
            "fleetctl destroy backup.service",
            "fleetctl destroy unitgen-notify@backup.service",
            "done: 4 actions; fleet runs the 2 units of 1 job as rendered",
        ])
    );
    assert_eq!(
        stderr,
        "removed units/backup.service\nremoved units/backup.timer\n\
         removed units/unitgen-notify@backup.service\n\
         unitgen: backup.service is running a backup; waiting up to 10min for it to finish\n"
    );
    let calls = fleet.calls_since(before);
    let registry = fleet.registry();
    assert_eq!(
        registry.keys().collect::<Vec<_>>(),
        ["app.service", "other.service", "other.timer"]
    );
    let touched: Vec<String> = calls
        .into_iter()
        .filter(|c| !c.contains(" list-"))
        .collect();
    assert_eq!(
        touched,
        [
            "0 fleetctl cat backup.service",
            "0 fleetctl cat backup.timer",
            "0 fleetctl cat unitgen-notify@backup.service",
            "0 fleetctl destroy backup.timer",
            "0 fleetctl destroy backup.service",
            "0 fleetctl destroy unitgen-notify@backup.service",
        ]
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "");
    assert!(!fleet.record().contains("backup"), "{}", fleet.record());
}

#[test]
fn only_units_in_this_folder_s_record_that_are_still_unitgen_s_are_destroyed() {
    let fleet = Fleet::new(SPEC);
    fleet.apply(&[]);
    // Another folder (another spec) deploys `elsewhere` to the same fleet.
    let other = tempfile::tempdir().unwrap();
    write(
        &other.path().join("unitgen.yaml"),
        "version: 1\ndefaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\n\
         jobs:\n  elsewhere:\n    schedule: daily\n    container: { command: [/bin/x] }\n",
    );
    let mut cmd = unitgen();
    cmd.args(["apply", "-f"])
        .arg(other.path().join("unitgen.yaml"))
        .arg("-o")
        .arg(other.path().join("units"));
    fleet.env(&mut cmd);
    assert_eq!(run(&mut cmd).status, 0);
    // `other.timer` is replaced by hand with a unit that is not unitgen's.
    let hand = fleet.path().join("hand/other.timer");
    write(&hand, "[Timer]\nOnCalendar=hourly\n");
    assert_eq!(fleet.fleetctl(&["destroy", "other.timer"]).status, 0);
    assert_eq!(
        fleet
            .fleetctl(&["start", "--no-block", hand.to_str().unwrap()])
            .status,
        0
    );
    // This spec drops `other`: its service goes, the hand-written timer
    // stays, and so does the other folder's job.
    fleet.edit(
        "  other:\n    schedule: weekly\n    container: { command: [/bin/other] }\n",
        "",
    );
    let r = fleet.apply(&[]);
    assert_eq!(
        r.stdout,
        lines(&[
            "fleetctl destroy other.service",
            "done: 1 action; fleet runs the 3 units of 1 job as rendered",
        ])
    );
    assert_eq!(
        r.stderr,
        "note: fleet unit other.timer is left alone: unitgen deployed it for job `other`, but \
         it no longer carries [X-Unitgen], so it is not unitgen's to remove\n\
         removed units/other.service\nremoved units/other.timer\n"
    );
    assert_eq!(
        fleet.registry().keys().collect::<Vec<_>>(),
        [
            "backup.service",
            "backup.timer",
            "elsewhere.service",
            "elsewhere.timer",
            "other.timer",
            "unitgen-notify@backup.service"
        ]
    );
    assert!(!fleet.record().contains("other."), "{}", fleet.record());
}

#[test]
fn usage_errors_exit_2() {
    let fleet = Fleet::new(
        "version: 1\njobs:\n  f:\n    target: fleet\n    schedule: daily\n    command: [/bin/f]\n\
         \x20 s:\n    schedule: daily\n    command: [/bin/s]\n",
    );
    let r = fleet.unitgen(&["plan"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: the spec has jobs for fleet (f) and for systemd (s); choose which to deploy \
             with --target fleet or --target systemd\n"
        )
    );
    let r = fleet.unitgen(&["apply", "--target", "fleet", "--root", "/mnt"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: --root is for --target systemd (an image's root folder); fleet has none\n"
        )
    );
    let r = fleet.unitgen(&["apply", "--target", "fleet", "--wait", "infinity"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: --wait must be a finite time span such as `1min` (waiting is always bounded)\n"
        )
    );
    let r = fleet.unitgen(&[
        "plan",
        "--target",
        "fleet",
        "--fleetctl",
        "/nonexistent/fleetctl",
    ]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            1,
            "error: cannot run /nonexistent/fleetctl: No such file or directory (os error 2); \
             install fleetctl or give its path with --fleetctl\n"
        )
    );
}

/// unitgen running in the background (a waiting apply, `watch --apply`),
/// its output collected as it comes.
struct Background {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(fleet: &Fleet, args: &[&str]) -> Background {
        let mut cmd = unitgen();
        cmd.args(args);
        fleet.env(&mut cmd);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |pipe: Box<dyn std::io::Read + Send>, sink: Arc<Mutex<String>>| {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            })
        };
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(Box::new(child.stdout.take().unwrap()), Arc::clone(&stdout)),
            collect(Box::new(child.stderr.take().unwrap()), Arc::clone(&stderr)),
        ];
        Background {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the n-th occurrence of `needle` on stderr.
    fn wait_for(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.stderr().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "no {n}× `{needle}` on stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the end: exit status, stdout, stderr.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let status = self.child.wait().unwrap();
        for r in std::mem::take(&mut self.readers) {
            r.join().unwrap();
        }
        let out = self.stdout.lock().unwrap().clone();
        (status.code(), out, self.stderr())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_apply_deploys_an_etcd_change_within_seconds_and_touches_nothing_else() {
    let etcd = common::etcd::Etcd::start();
    etcd.put("/wallet/volume", "vol-0aaaaaaaaaaaaaaaa");
    etcd.put("/other/volume", "vol-0cccccccccccccccc");
    let fleet = Fleet::new(&format!(
        "version: 1\netcd:\n  endpoints: [\"{}\"]\ndefaults:\n  target: fleet\n  \
         image: registry.example.com/unitgen-runner:0.1.0\njobs:\n  wallet:\n    schedule: daily\n    \
         environment: {{ VOLUME: {{ etcd: /wallet/volume }} }}\n    container: {{ command: [/bin/backup] }}\n  \
         other:\n    schedule: weekly\n    environment: {{ VOLUME: {{ etcd: /other/volume }} }}\n    \
         container: {{ command: [/bin/other] }}\n",
        etcd.endpoint()
    ));
    let watch = Background::start(&fleet, &["watch", "--apply", "--debounce", "100ms"]);
    // The first render is applied in full.
    watch.wait_for("done: 8 actions", 1);
    watch.wait_for("watching 2 etcd key(s)", 1);
    let registry = fleet.registry();
    assert_eq!(registry.len(), 4);
    let before = fleet.calls().len();

    etcd.put("/wallet/volume", "vol-0bbbbbbbbbbbbbbbb");
    let put = Instant::now();
    let deadline = put + Duration::from_secs(5);
    loop {
        let now = fleet.registry();
        if fleet
            .unit("wallet.service")
            .contains("vol-0bbbbbbbbbbbbbbbb")
            && now["wallet.service"].0 == fleet.sha1("wallet.service")
            && now["wallet.timer"].2 == "launched"
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "fleet does not run the new wallet.service 5 s after the put:\n{}",
            watch.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    watch.wait_for("done: 3 actions", 1);
    let calls = fleet.calls_since(before);
    assert!(
        fleet
            .cat("wallet.service")
            .contains("vol-0bbbbbbbbbbbbbbbb")
    );
    let after = fleet.registry();
    for unit in ["other.service", "other.timer", "wallet.timer"] {
        assert_eq!(after[unit].0, registry[unit].0, "{unit}");
    }
    let touched: Vec<String> = calls
        .into_iter()
        .filter(|c| !c.contains(" list-"))
        .collect();
    assert_eq!(
        touched,
        [
            "0 fleetctl cat wallet.service",
            "0 fleetctl stop --block-attempts=30 wallet.timer",
            "0 fleetctl load --replace --block-attempts=30 DIR/units/wallet.service",
            "0 fleetctl start --block-attempts=30 DIR/units/wallet.timer",
        ],
        "nothing else was touched"
    );
    assert!(
        watch
            .stderr()
            .contains("unitgen watch: fleetctl load --replace units/wallet.service\n"),
        "{}",
        watch.stderr()
    );

    // A job removed from the spec: its units go, nothing else moves.
    let before = fleet.calls().len();
    fleet.edit(
        "  other:\n    schedule: weekly\n    environment: { VOLUME: { etcd: /other/volume } }\n    \
         container: { command: [/bin/other] }\n",
        "",
    );
    watch.wait_for("done: 2 actions", 1);
    assert_eq!(
        fleet.registry().keys().collect::<Vec<_>>(),
        ["wallet.service", "wallet.timer"]
    );
    let touched: Vec<String> = fleet
        .calls_since(before)
        .into_iter()
        .filter(|c| !c.contains(" list-"))
        .collect();
    assert_eq!(
        touched,
        [
            "0 fleetctl cat other.service",
            "0 fleetctl cat other.timer",
            "0 fleetctl destroy other.timer",
            "0 fleetctl destroy other.service",
        ]
    );
    assert_eq!(fleet.ctl(&["interrupted"]), "");
}

#[test]
fn watch_apply_reports_a_failed_apply_goes_on_and_retries_with_the_next_change() {
    let etcd = common::etcd::Etcd::start();
    etcd.put("/v", "one");
    let fleet = Fleet::new(&format!(
        "version: 1\netcd:\n  endpoints: [\"{}\"]\ndefaults:\n  target: fleet\n  \
         image: registry.example.com/unitgen-runner:0.1.0\njobs:\n  j:\n    schedule: daily\n    \
         environment: {{ V: {{ etcd: /v }} }}\n    container: {{ command: [/bin/j] }}\n",
        etcd.endpoint()
    ));
    let mut watch = Background::start(&fleet, &["watch", "--apply", "--debounce", "100ms"]);
    watch.wait_for("done: 4 actions", 1);
    fleet.ctl(&["fire", "j.timer"]);
    // The change meets a running backup; --wait-idle's default is long,
    // so the watch waits; the run ends; the change is applied.
    etcd.put("/v", "two");
    watch.wait_for("is running a backup; waiting up to 10min", 1);
    fleet.ctl(&["finish", "j.service"]);
    watch.wait_for("done: 4 actions", 2);
    assert!(fleet.cat("j.service").contains("V=two"));
    assert_eq!(fleet.ctl(&["interrupted"]), "");

    // Agents gone: the apply fails, is reported, and the watch goes on.
    fleet.ctl(&["agent", "none"]);
    etcd.put("/v", "three");
    watch.wait_for("the apply failed; the watch goes on", 1);
    assert!(watch.child.try_wait().unwrap().is_none(), "the watch ended");
    fleet.ctl(&["agent", "auto"]);
    etcd.put("/v", "four");
    watch.wait_for("done: ", 3);
    assert_eq!(fleet.registry()["j.service"].0, fleet.sha1("j.service"));
    assert!(fleet.cat("j.service").contains("V=four"));
}

#[test]
fn watch_apply_ends_on_sigterm_even_while_waiting_and_puts_the_timer_back() {
    let etcd = common::etcd::Etcd::start();
    etcd.put("/v", "one");
    let fleet = Fleet::new(&format!(
        "version: 1\netcd:\n  endpoints: [\"{}\"]\ndefaults:\n  target: fleet\n  \
         image: registry.example.com/unitgen-runner:0.1.0\njobs:\n  j:\n    schedule: daily\n    \
         environment: {{ V: {{ etcd: /v }} }}\n    container: {{ command: [/bin/j] }}\n",
        etcd.endpoint()
    ));
    let watch = Background::start(&fleet, &["watch", "--apply", "--debounce", "100ms"]);
    watch.wait_for("done: 4 actions", 1);
    let deployed = fleet.registry();
    fleet.ctl(&["fire", "j.timer"]);
    etcd.put("/v", "two");
    watch.wait_for("is running a backup; waiting up to 10min", 1);
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &watch.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (status, _, stderr) = watch.finish();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        stderr.contains(
            "unitgen watch: fleetctl start units/j.timer  # again: this apply stopped it, then failed\n\
             error: stopped by a signal while j.service was running a backup\n"
        ),
        "{stderr}"
    );
    assert_eq!(fleet.registry(), deployed, "fleet runs what it ran");
    assert_eq!(fleet.ctl(&["interrupted"]), "");
}
