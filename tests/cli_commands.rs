//! The commands of the operator-experience issue: `list`, `init`,
//! `validate --offline`, an unreachable etcd as one problem among the
//! spec's own, and `--format json` for `validate` and `render --check`.
//! Each pinned through the real binary: exact stdout, stderr and exit
//! status.

mod common;

use std::path::Path;

use common::*;

/// Runs unitgen in `dir` (so paths in messages are relative), in UTC so
/// that times read the same on every machine.
fn in_dir(dir: &Path, args: &[&str]) -> Run {
    run(unitgen().args(args).current_dir(dir).env("TZ", "UTC"))
}

/// Three kinds of job: a fleet job that needs an etcd value, a cron line
/// on the host (two `OnCalendar=`, ORed days), a job started by monotonic
/// timers. The spec's etcd does not exist: `list` never asks it.
const LIST_SPEC: &str = r#"version: 1
etcd:
  endpoints: ["http://127.0.0.1:9"]
  runner: { endpoints: ["http://172.17.0.1:2379"] }
defaults:
  image: registry.example.com/unitgen-runner:0.1.0
jobs:
  wallet:
    target: fleet
    schedule: "*-*-* 00:15"
    fleet: { machine_of: bitcoind.service }
    steps:
      - rpc: { url: "http://bitcoind:8332/", method: backupwallet, user: u, password: { etcd: /rpc/password } }
      - ebs_snapshot:
          volume_id: { etcd: /aws/volume-id }
          region: us-east-1
          credentials: { etcd_prefix: /aws/ }
          wait: 30min
          retention: { keep_last: 7, keep_weekly: 4 }
  rsync:
    cron: "15 0 1,15 * mon"
    command: [/usr/bin/rsync, -a, /data/, "/mnt/back ups/"]
  warmup:
    timer: { on_boot: 15min, on_unit_active: 1d }
    command: [/usr/local/bin/warm]
"#;

const LIST_VALUES: &str = "/aws/volume-id: vol-0123456789abcdef0
/rpc/password: null
/aws/access-key-id: null
/aws/secret-access-key: null
";

const BASE: &str = "2026-11-26T12:00:00Z";

fn list_dir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("unitgen.yaml"), LIST_SPEC);
    write(&tmp.path().join("values.yaml"), LIST_VALUES);
    tmp
}

/// The table for `units` of rsync, wallet and warmup.
fn table(rsync: &str, wallet: &str, warmup: &str) -> String {
    let rows = [
        [
            "JOB", "TARGET", "RUNS ON", "SCHEDULE", "NEXT RUN", "UNITS", "STEPS",
        ],
        [
            "rsync",
            "systemd",
            "this host",
            "Mon *-*-* 00:15:00; *-*-01,15 00:15:00",
            "2026-11-30 00:15:00 UTC",
            rsync,
            "/usr/bin/rsync -a /data/ '/mnt/back ups/'",
        ],
        [
            "wallet",
            "fleet",
            "with bitcoind.service",
            "*-*-* 00:15:00",
            "2026-11-27 00:15:00 UTC",
            wallet,
            "rpc(backupwallet), ebs_snapshot({etcd: /aws/volume-id}, keep last 7, weekly 4)",
        ],
        [
            "warmup",
            "systemd",
            "this host",
            "OnBootSec=15min; OnUnitActiveSec=1d",
            "-",
            warmup,
            "/usr/local/bin/warm",
        ],
    ];
    let width = |i: usize| rows.iter().map(|r| r[i].len()).max().unwrap();
    let widths: Vec<usize> = (0..7).map(width).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  ", w = widths[i]));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn list_shows_every_job_offline_and_whether_its_units_are_current() {
    let tmp = list_dir();
    let dir = tmp.path();
    let list = |extra: &[&str]| {
        let mut args = vec!["list", "--base-time", BASE];
        args.extend_from_slice(extra);
        in_dir(dir, &args)
    };

    // Nothing rendered yet; the wallet's units need an etcd value.
    let r = list(&[]);
    assert_eq!(r.stderr, "");
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        table("missing", "unknown (needs etcd)", "missing")
    );

    assert_eq!(
        in_dir(dir, &["render", "--values", "values.yaml"]).status,
        0
    );
    let r = list(&[]);
    assert_eq!(
        (r.status, r.stdout),
        (0, table("up to date", "unknown (needs etcd)", "up to date"))
    );
    let r = list(&["--values", "values.yaml"]);
    assert_eq!(
        (r.status, r.stdout),
        (0, table("up to date", "up to date", "up to date"))
    );

    // An edited unit, one removed, both removed.
    let timer = dir.join("units/rsync.timer");
    let text = std::fs::read_to_string(&timer).unwrap();
    write(&timer, &text.replace("00:15:00", "00:16:00"));
    std::fs::remove_file(dir.join("units/wallet.service")).unwrap();
    std::fs::remove_file(dir.join("units/warmup.service")).unwrap();
    std::fs::remove_file(dir.join("units/warmup.timer")).unwrap();
    let r = list(&["--values", "values.yaml"]);
    assert_eq!(
        (r.status, r.stdout),
        (0, table("stale", "stale", "missing"))
    );
}

#[test]
fn list_json_has_one_object_per_job_with_stable_fields() {
    let tmp = list_dir();
    let dir = tmp.path();
    assert_eq!(
        in_dir(dir, &["render", "--values", "values.yaml", "-o", "out"]).status,
        0
    );
    let r = in_dir(dir, &["list", "--json", "-o", "out", "--base-time", BASE]);
    assert_eq!(r.stderr, "");
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        concat!(
            r#"{"job":"rsync","target":"systemd","runs_on":"this host","x_fleet":[],"on_calendar":["Mon *-*-* 00:15:00","*-*-01,15 00:15:00"],"timers":[],"next_run":"2026-11-30T00:15:00Z","units":"up_to_date","files":["out/rsync.service","out/rsync.timer"],"steps":["/usr/bin/rsync -a /data/ '/mnt/back ups/'"]}"#,
            "\n",
            r#"{"job":"wallet","target":"fleet","runs_on":"with bitcoind.service","x_fleet":["MachineOf=bitcoind.service"],"on_calendar":["*-*-* 00:15:00"],"timers":[],"next_run":"2026-11-27T00:15:00Z","units":"needs_etcd","files":null,"steps":["rpc(backupwallet)","ebs_snapshot({etcd: /aws/volume-id}, keep last 7, weekly 4)"]}"#,
            "\n",
            r#"{"job":"warmup","target":"systemd","runs_on":"this host","x_fleet":[],"on_calendar":[],"timers":["OnBootSec=15min","OnUnitActiveSec=1d"],"next_run":null,"units":"up_to_date","files":["out/warmup.service","out/warmup.timer"],"steps":["/usr/local/bin/warm"]}"#,
            "\n",
        )
    );
}

#[test]
fn list_of_the_bundled_example_and_its_committed_units() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = in_dir(
        root,
        &[
            "list",
            "-f",
            "examples/bitcoind-wallet/unitgen.yaml",
            "--values",
            "examples/bitcoind-wallet/values.yaml",
            "-o",
            "units/bitcoind-wallet",
            "--base-time",
            BASE,
        ],
    );
    assert_eq!(r.stderr, "");
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        "JOB              TARGET  RUNS ON                SCHEDULE        NEXT RUN                 UNITS       STEPS\n\
         bitcoind-backup  fleet   with bitcoind.service  *-*-* 00:15:00  2026-11-27 00:15:00 UTC  up to date  \
         rpc(backupwallet), ebs_snapshot({etcd: /aws/volume-id}, keep last 7, daily 14, weekly 8)\n"
    );
}

#[test]
fn list_never_shows_a_secret_value() {
    let tmp = list_dir();
    let dir = tmp.path();
    // A values file that (wrongly) holds a secret's value.
    write(
        &dir.join("values.yaml"),
        &LIST_VALUES.replace("/rpc/password: null", "/rpc/password: hunter2"),
    );
    for extra in [&[][..], &["--json"]] {
        let mut args = vec!["list", "--values", "values.yaml", "--base-time", BASE];
        args.extend_from_slice(extra);
        let r = in_dir(dir, &args);
        assert_eq!(r.status, 0, "{}", r.stderr);
        assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
        assert_eq!(
            r.stderr,
            "warning: values.yaml: `/rpc/password` holds a value, but the spec uses it as a secret: \
             this file is meant to be committed, so list the key with `null` (render only checks \
             that it exists; the runner reads the secret from etcd at run time)\n"
        );
    }
}

#[test]
fn list_of_an_invalid_spec_reports_every_problem() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("unitgen.yaml"),
        "version: 1\njobs:\n  a:\n    schedule: dayly\n    command: [/usr/bin/true]\n  b:\n    cron: \"15 0 * *\"\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["list"]);
    assert_eq!(r.stdout, "");
    assert_eq!(r.status, 2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert!(
        lines[0].starts_with("error: unitgen.yaml:4:15: jobs.a.schedule: "),
        "{}",
        r.stderr
    );
    assert!(
        lines[1].starts_with("error: unitgen.yaml:7:11: jobs.b.cron: "),
        "{}",
        r.stderr
    );

    let r = in_dir(tmp.path(), &["list", "--base-time", "soon"]);
    assert_eq!(
        r.stderr,
        "error: --base-time: invalid base time `soon` (expected e.g. `2024-01-15T00:00:00Z` or `2024-01-15 00:00:00 [ZONE]`)\n"
    );
    assert_eq!(r.status, 2);
}

// `unitgen init`

#[test]
fn init_writes_a_starter_that_validates_renders_and_systemd_accepts() {
    let tmp = world_readable_tempdir();
    let dir = tmp.path();
    let r = in_dir(dir, &["init", "ops"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "ops/unitgen.yaml\nops/unitgen.schema.json\nops/values.yaml\n"
    );
    assert_eq!(
        r.stderr,
        "unitgen init: wrote a starter spec; edit ops/unitgen.yaml, then run\n  \
         unitgen validate -f ops/unitgen.yaml --values ops/values.yaml\n\
         and, once it says ok, `unitgen render -f ops/unitgen.yaml --values ops/values.yaml` to write its units\n"
    );
    let names: Vec<String> = read_tree(&dir.join("ops"))
        .keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        names,
        ["unitgen.schema.json", "unitgen.yaml", "values.yaml"]
    );

    let ops = dir.join("ops");
    let spec = std::fs::read_to_string(ops.join("unitgen.yaml")).unwrap();
    assert_eq!(
        spec.lines().next().unwrap(),
        "# yaml-language-server: $schema=./unitgen.schema.json"
    );
    // The schema is exactly what `unitgen schema` prints.
    let schema = in_dir(dir, &["schema"]);
    assert_eq!(
        std::fs::read_to_string(ops.join("unitgen.schema.json")).unwrap(),
        schema.stdout
    );
    // No secret value: secrets are listed with null.
    let values = std::fs::read_to_string(ops.join("values.yaml")).unwrap();
    assert!(values.contains("\n/aws/access-key-id: null\n"), "{values}");
    assert!(
        values.contains("\n/aws/secret-access-key: null\n"),
        "{values}"
    );

    let r = in_dir(&ops, &["validate", "--values", "values.yaml"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "unitgen.yaml: ok, 2 job(s)\n")
    );
    let r = in_dir(&ops, &["validate", "--offline"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            0,
            "unitgen.yaml: ok, 2 job(s), offline (etcd not asked); a render reads 3 etcd key(s):\n\
             \x20 /aws/access-key-id      secret: render checks that it exists; the runner reads it at run time\n\
             \x20 /aws/secret-access-key  secret: render checks that it exists; the runner reads it at run time\n\
             \x20 /backups/volume-id      value: written into the units\n"
        )
    );
    let r = in_dir(&ops, &["render", "--values", "values.yaml"]);
    assert_eq!(r.stderr, "");
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        "units/backups.service\nunits/backups.timer\nunits/volume-snapshot.service\nunits/volume-snapshot.timer\n"
    );
    let (ok, stderr) = systemd_verify(&ops.join("units"));
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !(l.contains("/usr/bin/docker") && l.contains("not executable")))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{stderr}");
    assert!(ok || !stderr.is_empty());
}

#[test]
fn init_refuses_to_overwrite_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("values.yaml"), "/mine: 1\n");
    let r = in_dir(dir, &["init"]);
    assert_eq!(
        r.stderr,
        "error: values.yaml: already exists; `unitgen init` never overwrites a file: move it away, or init another folder (`unitgen init DIR`)\n"
    );
    assert_eq!((r.status, r.stdout.as_str()), (2, ""));
    let names: Vec<String> = read_tree(dir)
        .keys()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(names, ["values.yaml"], "nothing else was written");
    assert_eq!(
        std::fs::read_to_string(dir.join("values.yaml")).unwrap(),
        "/mine: 1\n"
    );

    std::fs::remove_file(dir.join("values.yaml")).unwrap();
    let r = in_dir(dir, &["init"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "unitgen.yaml\nunitgen.schema.json\nvalues.yaml\n");
    assert!(
        r.stderr
            .contains("\n  unitgen validate --values values.yaml\n"),
        "{}",
        r.stderr
    );
    let before = read_tree(dir);
    let r = in_dir(dir, &["init", "."]);
    let refusal = "already exists; `unitgen init` never overwrites a file: move it away, or init another folder (`unitgen init DIR`)";
    assert_eq!(
        r.stderr,
        format!(
            "error: unitgen.yaml: {refusal}\nerror: unitgen.schema.json: {refusal}\nerror: values.yaml: {refusal}\n"
        )
    );
    assert_eq!(r.status, 2);
    assert_eq!(read_tree(dir), before);
}

// `unitgen validate --offline`

/// A spec whose jobs need etcd values and secrets, with two mistakes.
const TWO_MISTAKES: &str = r#"version: 1
etcd:
  endpoints: ["http://127.0.0.1:PORT"]
  runner: { endpoints: ["http://172.17.0.1:2379"] }
defaults:
  image: registry.example.com/unitgen-runner:0.1.0
jobs:
  snap:
    schedule: daily
    timer: { persistant: true }
    steps:
      - ebs_snapshot:
          volume_id: { etcd: /aws/volume-id }
          region: us-east-1
          credentials: { etcd_prefix: /aws/ }
          retention: { keep_last: 0 }
          wait: 30min
"#;

fn two_mistakes(port: u16) -> String {
    TWO_MISTAKES.replace("PORT", &port.to_string())
}

const MISTAKES: &str = "error: unitgen.yaml:10:14: jobs.snap.timer.persistant: unknown key `persistant` (did you mean `persistent`?)\n";

#[test]
fn validate_offline_checks_every_rule_that_needs_no_etcd() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("unitgen.yaml"), &two_mistakes(free_port()));
    let r = in_dir(dir, &["validate", "--offline"]);
    assert_eq!(r.stdout, "");
    assert_eq!(r.status, 2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{}", r.stderr);
    assert_eq!(format!("{}\n", lines[0]), MISTAKES);
    assert!(
        lines[1].starts_with(
            "error: unitgen.yaml:16:22: jobs.snap.steps[0].ebs_snapshot.retention: an empty retention policy"
        ),
        "{}",
        r.stderr
    );

    let fixed = two_mistakes(free_port())
        .replace("persistant", "persistent")
        .replace("keep_last: 0", "keep_last: 7");
    write(&dir.join("unitgen.yaml"), &fixed);
    let r = in_dir(dir, &["validate", "--offline"]);
    assert_eq!(
        (r.status, r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "",
            "unitgen.yaml: ok, 1 job(s), offline (etcd not asked); a render reads 3 etcd key(s):\n\
             \x20 /aws/access-key-id      secret: render checks that it exists; the runner reads it at run time\n\
             \x20 /aws/secret-access-key  secret: render checks that it exists; the runner reads it at run time\n\
             \x20 /aws/volume-id          value: written into the units\n"
        )
    );

    write(
        &dir.join("plain.yaml"),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(dir, &["validate", "--offline", "-f", "plain.yaml"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            0,
            "plain.yaml: ok, 1 job(s), offline (etcd not asked); it reads no etcd keys\n"
        )
    );

    // A rule about keys needs no value: a key used as a secret and as a
    // value is refused offline too.
    write(
        &dir.join("both.yaml"),
        "version: 1\netcd: { runner: { endpoints: [\"http://172.17.0.1:2379\"] } }\ndefaults: { image: r.example.com/u:1 }\njobs:\n  w:\n    schedule: daily\n    steps:\n      - rpc: { url: \"http://b:8332/\", method: m, user: { etcd: /k }, password: { etcd: /k } }\n",
    );
    let r = in_dir(dir, &["validate", "--offline", "-f", "both.yaml"]);
    assert_eq!(
        r.stderr,
        "error: both.yaml:8:56: jobs.w.steps[0].rpc.user: etcd key `/k` is also used as a secret in this spec, so its value is never written into a unit; use a separate key for this value\n"
    );
    assert_eq!(r.status, 2);

    let r = in_dir(dir, &["validate", "--offline", "--values", "v.yaml"]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr
            .starts_with("error: the argument '--offline' cannot be used with '--values <FILE>'"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unreachable_etcd_is_one_problem_among_the_specs_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    write(&dir.join("unitgen.yaml"), &two_mistakes(port));
    let unreachable = format!(
        "error: unitgen.yaml:3:14: etcd.endpoints: etcd at http://127.0.0.1:{port} is unreachable ("
    );
    for cmd in ["validate", "render"] {
        let r = in_dir(dir, &[cmd, "--etcd-timeout", "2s"]);
        assert_eq!(r.stdout, "");
        assert_eq!(r.status, 2, "{cmd}: {}", r.stderr);
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 3, "{cmd}: {}", r.stderr);
        assert_eq!(format!("{}\n", lines[0]), MISTAKES);
        assert!(lines[1].contains("empty retention policy"), "{}", r.stderr);
        assert!(lines[2].starts_with(&unreachable), "{cmd}: {}", r.stderr);
    }

    // The spec's own problems fixed: etcd alone, exit 1 as before.
    let fixed = two_mistakes(port)
        .replace("persistant", "persistent")
        .replace("keep_last: 0", "keep_last: 7");
    write(&dir.join("unitgen.yaml"), &fixed);
    let r = in_dir(dir, &["validate", "--etcd-timeout", "2s"]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "error: etcd at http://127.0.0.1:{port} is unreachable ("
        )),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

// `--format json`

#[test]
fn validate_format_json_prints_one_object_per_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(&dir.join("unitgen.yaml"), &two_mistakes(free_port()));
    let first = r#"{"file":"unitgen.yaml","line":10,"column":14,"path":"jobs.snap.timer.persistant","kind":"unknown_key","message":"unknown key `persistant` (did you mean `persistent`?)","hint":"persistent"}"#;
    for args in [
        &["validate", "--offline", "--format", "json"][..],
        &["validate", "--offline", "--json"],
    ] {
        let r = in_dir(dir, args);
        assert_eq!(r.stderr, "", "{args:?}");
        assert_eq!(r.status, 2, "{args:?}");
        let lines: Vec<&str> = r.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", r.stdout);
        assert_eq!(lines[0], first);
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["line"], 16);
        assert_eq!(second["column"], 22);
        assert_eq!(second["path"], "jobs.snap.steps[0].ebs_snapshot.retention");
        assert_eq!(second["kind"], "invalid");
        assert_eq!(second["hint"], serde_json::Value::Null);
    }

    // An unreachable etcd is an object too, at the spec's endpoints.
    let r = in_dir(dir, &["validate", "--json", "--etcd-timeout", "2s"]);
    assert_eq!((r.status, r.stderr.as_str()), (2, ""));
    let last: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["kind"], "etcd");
    assert_eq!(last["path"], "etcd.endpoints");
    assert_eq!(last["line"], 3);

    // An error about no place in the spec: `file` is null.
    let r = in_dir(dir, &["validate", "--json", "-f", "nope.yaml"]);
    assert_eq!((r.status, r.stderr.as_str()), (2, ""));
    assert_eq!(
        r.stdout,
        r#"{"file":null,"line":null,"column":null,"path":null,"kind":null,"message":"cannot read the spec nope.yaml: No such file or directory (os error 2)","hint":null}"#
            .to_owned()
            + "\n"
    );

    // A valid spec: nothing on stdout, the usual line on stderr.
    write(
        &dir.join("plain.yaml"),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(dir, &["validate", "--format", "json", "-f", "plain.yaml"]);
    assert_eq!(
        (r.status, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", "plain.yaml: ok, 1 job(s)\n")
    );

    let r = in_dir(dir, &["validate", "--format", "json", "--json"]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr
            .starts_with("error: the argument '--format <FORMAT>' cannot be used with '--json'"),
        "{}",
        r.stderr
    );
}

#[test]
fn render_check_format_json_names_each_file_that_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n  two:\n    schedule: weekly\n    command: [/usr/bin/true]\n";
    write(&dir.join("unitgen.yaml"), spec);
    let r = in_dir(dir, &["render", "--check", "--format", "json"]);
    assert_eq!(
        r.stdout,
        "{\"file\":\"units/one.service\",\"status\":\"missing\"}\n\
         {\"file\":\"units/one.timer\",\"status\":\"missing\"}\n\
         {\"file\":\"units/two.service\",\"status\":\"missing\"}\n\
         {\"file\":\"units/two.timer\",\"status\":\"missing\"}\n"
    );
    assert_eq!(
        r.stderr,
        "error: units is out of date with unitgen.yaml; run `unitgen render` and commit the result\n"
    );
    assert_eq!(r.status, 1);

    assert_eq!(in_dir(dir, &["render"]).status, 0);
    let r = in_dir(dir, &["render", "--check", "--json"]);
    assert_eq!(
        (r.status, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", "")
    );

    // One edited, one job gone from the spec.
    let timer = dir.join("units/one.timer");
    let text = std::fs::read_to_string(&timer).unwrap();
    write(&timer, &text.replace("daily", "hourly"));
    write(
        &dir.join("unitgen.yaml"),
        &spec.replace(
            "  two:\n    schedule: weekly\n    command: [/usr/bin/true]\n",
            "",
        ),
    );
    let r = in_dir(dir, &["render", "--check", "--json"]);
    assert_eq!(
        r.stdout,
        "{\"file\":\"units/one.timer\",\"status\":\"stale\"}\n\
         {\"file\":\"units/two.service\",\"status\":\"extra\"}\n\
         {\"file\":\"units/two.timer\",\"status\":\"extra\"}\n"
    );
    assert_eq!(r.status, 1);

    // Problems come as `validate --format json` prints them.
    write(
        &dir.join("unitgen.yaml"),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [true]\n",
    );
    let r = in_dir(dir, &["render", "--check", "--json"]);
    assert_eq!(
        r.stdout,
        "{\"file\":\"unitgen.yaml\",\"line\":5,\"column\":15,\"path\":\"jobs.one.command[0]\",\"kind\":\"invalid\",\"message\":\"`true` must be an absolute path (starting with `/`)\",\"hint\":null}\n"
    );
    assert_eq!((r.status, r.stderr.as_str()), (2, ""));

    // A render that writes prints paths: JSON problems go with --check.
    let r = in_dir(dir, &["render", "--format", "json"]);
    assert_eq!(
        r.stderr,
        "error: --format json is for `render --check` (and `validate`); a render that writes prints the paths it wrote: add --check, or drop --format json\n"
    );
    assert_eq!((r.status, r.stdout.as_str()), (2, ""));
}

// Documentation

#[test]
fn the_new_commands_are_documented_with_examples() {
    // Whole lines: clap wraps at 100 columns, which would cut them.
    for (cmd, example) in [
        (
            &["list", "--help"][..],
            "\n  unitgen list --json | jq -r 'select(.units != \"up_to_date\") | .job'\n",
        ),
        (
            &["list", "--help"],
            "\n  unitgen list --values ci-values.yaml    Also compare jobs that need etcd\n",
        ),
        (
            &["init", "--help"],
            "\n  unitgen init ops/backups                Into ops/backups (created if missing)\n",
        ),
        (
            &["validate", "--help"],
            "\n  unitgen validate --offline              No etcd; lists the keys it reads\n",
        ),
        (
            &["validate", "--help"],
            "\n  unitgen validate --format json          A JSON object per problem, for CI\n",
        ),
        (
            &["render", "--help"],
            "\n  unitgen render --check --format json    One JSON object per stale file\n",
        ),
        (
            &["--help"],
            "\n  unitgen list                            Each job, its next run, ./units state\n",
        ),
        (
            &["--help"],
            "\n  unitgen init                            Write a commented starter spec\n",
        ),
    ] {
        let r = run(unitgen().args(cmd));
        assert_eq!(r.status, 0);
        assert!(r.stdout.contains(example), "{cmd:?}:\n{}", r.stdout);
    }
    let r = run(unitgen().args(["list", "--help"]));
    for field in [
        "job",
        "target",
        "runs_on",
        "x_fleet",
        "on_calendar",
        "timers",
        "next_run",
        "units",
        "files",
        "steps",
    ] {
        assert!(
            r.stdout.contains(&format!("\n  {field} ")),
            "list --help documents `{field}`:\n{}",
            r.stdout
        );
    }
    let readme = include_str!("../README.md");
    for row in [
        "| `unitgen list ",
        "| `unitgen init ",
        "| `unitgen validate --offline",
        "--format json",
    ] {
        assert!(readme.contains(row), "README's command table lacks {row}");
    }
}
