//! The operator-experience issue, generator side: each promise pinned by
//! its exact message on stderr and its exit status, through the real
//! binary. (The deploy commands have their own suites.)

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use common::*;

/// `unitgen validate` of `spec` exits 2 with exactly `stderr`.
fn assert_fails(dir: &Path, spec: &str, stderr: &str) {
    spec_in(dir, spec);
    let r = in_dir(dir, &["validate"]);
    assert_eq!(r.stderr, stderr);
    assert_eq!(r.status, 2);
    assert_eq!(r.stdout, "");
}

/// Runs unitgen in `dir` with `input` on its standard input.
fn with_stdin(dir: &Path, args: &[&str], input: &str) -> Run {
    let mut child = unitgen()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start unitgen");
    // A command that refuses `-f -` exits without reading: a broken pipe
    // is its answer, not the test's failure.
    let written = child.stdin.take().unwrap().write_all(input.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    Run {
        status: out.status.code().expect("exit status"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

const ONE_JOB: &str =
    "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n";

// `-f -` reads the spec from stdin.

#[test]
fn the_spec_may_come_from_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let r = with_stdin(tmp.path(), &["validate", "-f", "-"], ONE_JOB);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "<stdin>: ok, 1 job(s)\n")
    );
    let r = with_stdin(tmp.path(), &["render", "-f", "-", "--stdout"], ONE_JOB);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("# one.service\n[Unit]\n"),
        "{}",
        r.stdout
    );
    // Problems name it `<stdin>`.
    let r = with_stdin(
        tmp.path(),
        &["render", "-f", "-"],
        "version: 1\njobs:\n  one:\n    schedule: daily\n    bogus: 1\n    command: [/usr/bin/true]\n",
    );
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: <stdin>:5:5: jobs.one.bogus: unknown key `bogus`; expected one of: description, schedule, cron, timer, target, after, requires, on_failure, timeout, fleet, lock, container, command, environment, service, steps, notify\n"
        )
    );
    assert!(!tmp.path().join("units").exists());
    // `--check` names it too when the units are stale.
    let r = with_stdin(tmp.path(), &["render", "-f", "-", "--check"], ONE_JOB);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: units is out of date with <stdin>; run `unitgen render` and commit the result\n"
    );
}

#[test]
fn watch_refuses_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let r = with_stdin(tmp.path(), &["watch", "-f", "-"], ONE_JOB);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: watch re-reads the spec whenever it changes, so it needs a file, not `-f -` (standard input); save the spec to a file and pass its path\n"
        )
    );
    assert!(!tmp.path().join("units").exists());
}

// YAML errors in plain words, at the right place.

#[test]
fn a_tab_is_called_a_tab() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  a:\n\tschedule: daily\n",
        "error: unitgen.yaml:4:1: not valid YAML: found a tab, but YAML indents with spaces only; replace the tab with spaces\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  a:\n    schedule: daily\n  \t  command: [/usr/bin/true]\n",
        "error: unitgen.yaml:5:3: not valid YAML: found a tab, but YAML indents with spaces only; replace the tab with spaces\n",
    );
    // Other syntax errors keep libyaml's words.
    assert_fails(
        tmp.path(),
        "version: 1\njobs: [unclosed\n",
        "error: unitgen.yaml:3:1: not valid YAML: did not find expected ',' or ']'\n",
    );
}

#[test]
fn a_duplicate_points_at_the_second_occurrence() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  a:
    schedule: daily
    command: [/usr/bin/true]
  b:
    schedule: daily
    timer: { persistent: true, persistent: false }
    command: [/usr/bin/true]
  a:
    schedule: weekly
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:8:32: jobs.b.timer.persistent: `persistent` is given twice here (first at line 8); a YAML map holds each key once, so keep one
error: unitgen.yaml:10:3: jobs.a: job `a` is defined twice (first at line 3); give each job its own name, or merge the two
",
    );
}

// A misspelt schedule gets a suggestion, not a command that repeats the error.

#[test]
fn a_misspelt_schedule_gets_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  a:
    schedule: daly
    command: [/usr/bin/true]
  b:
    schedule: \"Mon,Tuz 02:00\"
    command: [/usr/bin/true]
  c:
    schedule: \"*-*-* 25:00\"
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:15: jobs.a.schedule: invalid calendar expression `daly`: unknown weekday or shorthand `daly` (did you mean `daily`?)
error: unitgen.yaml:7:15: jobs.b.schedule: invalid calendar expression `Mon,Tuz 02:00`: unknown weekday `Tuz` (did you mean `Tue`?)
error: unitgen.yaml:10:15: jobs.c.schedule: invalid calendar expression `*-*-* 25:00`: hour 25 is out of range 0..23; see \"Calendar Events\" in `man systemd.time`
",
    );
    // `unitgen schedule` says it on stderr, as an error (issue 14).
    let r = run(unitgen().args(["schedule", "daly"]));
    assert_eq!(
        (r.status, r.stdout.as_str(), r.stderr.as_str()),
        (
            2,
            "",
            "error: invalid calendar expression `daly`: unknown weekday or shorthand `daly` (did you mean `daily`?)\n"
        )
    );
}

// Cron lines: what the extra field is, and Vixie cron's refusals.

#[test]
fn cron_says_what_the_extra_field_is() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  seconds:
    cron: \"0 15 0 * * *\"
    command: [/usr/bin/true]
  tz:
    cron: \"CRON_TZ=Europe/Berlin 15 0 * * *\"
    command: [/usr/bin/true]
  seed:
    cron: \"15 00 * * * root /usr/bin/flock -w 10 /var/lock/backups /usr/local/bin/rsync-backups.sh\"
    command: [/usr/bin/true]
  command:
    cron: \"15 0 * * * /usr/local/bin/rsync-backups.sh\"
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:11: jobs.seconds.cron: invalid cron schedule `0 15 0 * * *`: 6 fields are another scheduler's syntax (Quartz, Spring), where the first field is the seconds and a seventh the year; cron has 5 (minute hour day-of-month month day-of-week): drop the seconds, or write `schedule:` as a calendar expression, which has seconds (`*-*-* 00:15:30`), instead of `cron`
error: unitgen.yaml:7:11: jobs.tz.cron: invalid cron schedule `CRON_TZ=Europe/Berlin 15 0 * * *`: `CRON_TZ=Europe/Berlin` is a crontab setting, not part of a schedule; for a schedule in that time zone, write `schedule: \"*-*-* 00:15:00 Europe/Berlin\"` instead of `cron`
error: unitgen.yaml:10:11: jobs.seed.cron: invalid cron schedule `15 00 * * * root /usr/bin/flock -w 10 /var/lock/backups /usr/local/bin/rsync-backups.sh`: the sixth field, `root`, is the user field of /etc/crontab and /etc/cron.d, and the rest is the command; `cron` takes only the schedule: run as that user with `service: { user: root }` and put the command in `command:`
error: unitgen.yaml:13:11: jobs.command.cron: invalid cron schedule `15 0 * * * /usr/local/bin/rsync-backups.sh`: the sixth field, `/usr/local/bin/rsync-backups.sh`, starts a command; `cron` takes only the schedule, and the command goes in `command:`
",
    );
}

#[test]
fn cron_refuses_what_vixie_cron_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  upper:
    cron: \"@DAILY\"
    command: [/usr/bin/true]
  step:
    cron: \"*/90 * * * *\"
    command: [/usr/bin/true]
  backwards:
    cron: \"0 0 * * fri-mon\"
    command: [/usr/bin/true]
  zero:
    cron: \"*/0 * * * *\"
    command: [/usr/bin/true]
  long-name:
    cron: \"0 0 * * Monday\"
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:11: jobs.upper.cron: invalid cron schedule `@DAILY`: cron's shorthands are lowercase (Vixie cron refuses `@DAILY`); write `@daily`
error: unitgen.yaml:7:11: jobs.step.cron: invalid cron schedule `*/90 * * * *`: step 90 in `*/90` is larger than the minute range it steps through (0-59), and crons disagree on what that means (Debian's runs at 0 only, Vixie cron 4.1 at every value); write `0` to run once
error: unitgen.yaml:10:11: jobs.backwards.cron: invalid cron schedule `0 0 * * fri-mon`: range `fri-mon` in the day of week field goes backwards (cron ranges cannot wrap)
error: unitgen.yaml:13:11: jobs.zero.cron: invalid cron schedule `*/0 * * * *`: step must not be zero in the minute field (`*/0`)
error: unitgen.yaml:16:11: jobs.long-name.cron: invalid cron schedule `0 0 * * Monday`: invalid day of week `Monday` (expected a number 0-7 or one of sun,mon,tue,wed,thu,fri,sat); cron takes the first three letters: `mon`
",
    );
    // What it accepts: names in any case and in ranges, `$` for the last day.
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  a:\n    cron: \"0 4 $ JaN-mar MON-fri\"\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render", "--stdout"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            "\nOnCalendar=Mon..Fri *-01..03-* 04:00:00\nOnCalendar=*-01..03~01 04:00:00\n"
        ),
        "{}",
        r.stdout
    );
}

// Monotonic timers: what `@reboot` advises is a key of the spec.

#[test]
fn reboot_advises_the_on_boot_timer_which_renders() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  b:\n    cron: \"@reboot\"\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:4:11: jobs.b.cron: invalid cron schedule `@reboot`: `@reboot` runs once at boot, which is not a calendar event; drop `cron` and start the job from the timer instead: `timer: { on_boot: 1min }` (systemd's OnBootSec=)\n",
    );
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  b:\n    timer: { on_boot: 1min }\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render", "--stdout"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    assert!(
        r.stdout
            .contains("\n[Timer]\nOnBootSec=1min\nUnit=b.service\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn monotonic_timers_that_never_fire_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  never:
    timer: { on_unit_active: 1d }
    command: [/usr/bin/true]
  inf:
    timer: { on_boot: infinity }
    command: [/usr/bin/true]
  none:
    command: [/usr/bin/true]
  pers:
    timer: { on_boot: 1min, persistent: true }
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:30: jobs.never.timer.on_unit_active: `on_unit_active` counts from the job's last run, but nothing starts a first one, so the timer would never fire; add `on_boot` (e.g. `on_boot: 15min`), `schedule` or `cron`
error: unitgen.yaml:7:23: jobs.inf.timer.on_boot: `infinity` never comes, so the timer would never fire; give a time span such as `15min`
error: unitgen.yaml:9:3: jobs.none: nothing starts this job: give `schedule` (a calendar expression such as `*-*-* 00:15:00`), `cron`, or a start in `timer` such as `on_boot: 15min`
error: unitgen.yaml:12:41: jobs.pers.timer.persistent: `persistent` catches up on `schedule` or `cron` runs missed while the host was down (systemd's Persistent= applies to calendar timers only), and this job has neither; remove it
",
    );
}

// A calendar schedule that never fires is an error, like cron's.

#[test]
fn a_schedule_that_never_fires_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    // Far in the past or impossible: the same answer on any day the test runs.
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  feb30:
    schedule: \"*-02-30\"
    command: [/usr/bin/true]
  past:
    schedule: \"2001-01-01 03:00\"
    command: [/usr/bin/true]
  no-leap:
    schedule: \"2023-02-29\"
    command: [/usr/bin/true]
  cron:
    cron: \"0 0 30 2 *\"
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:15: jobs.feb30.schedule: `*-02-30` never fires: no date matches it
error: unitgen.yaml:7:15: jobs.past.schedule: `2001-01-01 03:00` never fires again: every date it matches has passed
error: unitgen.yaml:10:15: jobs.no-leap.schedule: `2023-02-29` never fires: no date matches it
error: unitgen.yaml:13:11: jobs.cron.cron: invalid cron schedule `0 0 30 2 *`: this schedule never fires: day 30 does not exist in feb
",
    );
    // A leap day, and a one-off date to come, fire.
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  leap:\n    schedule: \"*-02-29 03:00\"\n    command: [/usr/bin/true]\n  once:\n    schedule: \"2199-01-01 03:00 UTC\"\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "unitgen.yaml: ok, 2 job(s)\n")
    );
}

// A values file is committed: a secret's value in it is named by its key.

#[test]
fn a_secret_value_in_the_values_file_is_warned_about_by_key_only() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1
etcd: { endpoints: [\"http://172.17.0.1:2379\"] }
defaults: { image: registry.example.com/unitgen-runner:0.1.0 }
jobs:
  wallet:
    schedule: daily
    steps:
      - rpc:
          url: http://bitcoind:8332/
          method: backupwallet
          user: { etcd: /bitcoind/rpc/user }
          password: { etcd: /bitcoind/rpc/password }
",
    );
    write(
        &tmp.path().join("values.yaml"),
        "/bitcoind/rpc/user: bitcoinrpc\n/bitcoind/rpc/password: hunter2\n",
    );
    for args in [
        &["validate", "--values", "values.yaml"][..],
        &["render", "--values", "values.yaml", "--stdout"],
    ] {
        let r = in_dir(tmp.path(), args);
        assert_eq!(r.status, 0, "{args:?}: {}", r.stderr);
        let ok = match args[0] {
            "validate" => "unitgen.yaml: ok, 1 job(s)\n",
            _ => "",
        };
        assert_eq!(
            r.stderr,
            format!(
                "warning: values.yaml: `/bitcoind/rpc/password` holds a value, but the spec uses it as a secret: this file is meant to be committed, so list the key with `null` (render only checks that it exists; the runner reads the secret from etcd at run time)\n{ok}"
            )
        );
        assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
    }
    // Listed with `null`, as the bundled example does: no warning.
    write(
        &tmp.path().join("values.yaml"),
        "/bitcoind/rpc/user: bitcoinrpc\n/bitcoind/rpc/password: null\n",
    );
    let r = in_dir(tmp.path(), &["validate", "--values", "values.yaml"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "unitgen.yaml: ok, 1 job(s)\n")
    );
}

// Host commands: user, priority and sandboxing as typed keys.

#[test]
fn a_host_command_runs_as_a_user_with_priorities_and_a_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1
jobs:
  rsync-backups:
    cron: \"15 00 * * *\"
    command: [/usr/local/bin/rsync-backups.sh]
    service:
      user: backup
      group: backup
      environment_files: [-/etc/default/rsync-backups]
      nice: 19
      io_scheduling_class: idle
      protect_system: strict
      private_tmp: true
      read_write_paths: [/backups]
",
    );
    let r = in_dir(tmp.path(), &["render", "--stdout"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    assert!(
        r.stdout.contains(
            "[Service]\nType=oneshot\nUser=backup\nGroup=backup\n\
             EnvironmentFile=-/etc/default/rsync-backups\nNice=19\nIOSchedulingClass=idle\n\
             ProtectSystem=strict\nPrivateTmp=true\nReadWritePaths=/backups\n\
             ExecStart=/usr/local/bin/rsync-backups.sh\n"
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn service_settings_are_checked_as_systemd_would() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  host:
    schedule: daily
    lock: { name: backups }
    command: [/usr/local/bin/rsync-backups.sh]
    service:
      user: backup
      group: \"wheel users\"
      working_directory: var/lib/backup
      environment_files: [/etc/../shadow]
      nice: 20
      io_scheduling_priority: 8
      read_write_paths: [backups]
",
        "error: unitgen.yaml:8:13: jobs.host.service.user: a host lock is a file in /run/lock/unitgen, which only root may create files in, so the job cannot take it as another user; drop `lock` and run flock(1) inside the command on a file that user may write, or run as root
error: unitgen.yaml:9:14: jobs.host.service.group: `wheel users` is not a group name or numeric ID (up to 32 letters, digits and `_.-`, starting with a letter or `_`)
error: unitgen.yaml:10:26: jobs.host.service.working_directory: `var/lib/backup` must be an absolute path (starting with `/`)
error: unitgen.yaml:11:27: jobs.host.service.environment_files[0]: `/etc/../shadow` has a `.` or `..` in it, which systemd refuses; write the path without them
error: unitgen.yaml:12:13: jobs.host.service.nice: 20 is out of range -20..19
error: unitgen.yaml:13:31: jobs.host.service.io_scheduling_priority: 8 is out of range 0..7
error: unitgen.yaml:14:26: jobs.host.service.read_write_paths[0]: `backups` must be an absolute path (starting with `/`)
",
    );
    assert_fails(
        tmp.path(),
        "version: 1
defaults: { image: registry.example.com/unitgen-runner:0.1.0 }
jobs:
  host:
    schedule: daily
    command: [/usr/local/bin/rsync-backups.sh]
    service: { io_scheduling_class: low, protect_system: maybe }
  container:
    schedule: daily
    container: { command: [/bin/true] }
    service: { user: backup }
",
        "error: unitgen.yaml:7:16: jobs.host.service.io_scheduling_class: unknown value `low`; expected one of: realtime, best-effort, idle
error: unitgen.yaml:7:58: jobs.host.service.protect_system: invalid value: string \"maybe\", expected true, false, `full`, `strict`
error: unitgen.yaml:11:5: jobs.container.service: `service` sets how systemd runs a host `command`; this job runs a container, where it would constrain only the docker CLI, not the container: remove it (the container runs as its image's user, and sees only `container.volumes`)
",
    );
}

// The schema is as strict as the parser where JSON Schema can say it, and
// written for users (tests/schema.rs runs a real validator over it).

#[test]
fn the_schema_says_the_parsers_rules_in_users_words() {
    let r = run(unitgen().arg("schema"));
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        schema["description"],
        "unitgen's spec: backup jobs, each rendered into a systemd `NAME.service`\nand `NAME.timer` for a fleet cluster or a plain systemd host. See\n`unitgen --help` and the README."
    );
    assert_eq!(schema["properties"]["version"]["const"], 1);
    let jobs = &schema["properties"]["jobs"];
    assert_eq!(jobs["minProperties"], 1);
    assert_eq!(
        jobs["propertyNames"]["pattern"],
        "^[A-Za-z0-9:_][A-Za-z0-9:_.-]*(@[A-Za-z0-9:_.-]+)?$"
    );
    assert_eq!(jobs["propertyNames"]["maxLength"], 247);
    // Editors show a description for every definition and key.
    for (name, def) in schema["$defs"].as_object().unwrap() {
        assert!(def["description"].is_string(), "{name} has no description");
        for (key, prop) in def["properties"].as_object().into_iter().flatten() {
            assert!(
                prop["description"].is_string(),
                "{name}.{key} has no description"
            );
        }
    }
    // Nothing about unitgen's insides in what editors show.
    for internal in ["source.rs", ".rs`", "`J`", "decode", "the seed"] {
        assert!(
            !r.stdout.contains(internal),
            "the schema mentions {internal}"
        );
    }
}
