//! The CLI contract: exact error messages and exit statuses, `--check`,
//! atomic and all-or-nothing writes, stale-unit removal that never touches
//! foreign files, and the user-facing extras (help, completions, man, schema).

mod common;

use std::path::Path;

use common::*;

const GOOD: &str = "version: 1
jobs:
  one:
    schedule: daily
    command: [/usr/bin/true]
  two:
    schedule: weekly
    command: [/usr/bin/true, --two]
";

fn assert_fails(dir: &Path, spec: &str, stderr: &str) {
    spec_in(dir, spec);
    let r = in_dir(dir, &["validate"]);
    assert_eq!(r.stderr, stderr);
    assert_eq!(r.status, 2);
    assert_eq!(r.stdout, "");
}

#[test]
fn unknown_key_names_line_column_and_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  backup:\n    schedule: daily\n    timer: { persistant: true }\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:5:14: jobs.backup.timer.persistant: unknown key `persistant` (did you mean `persistent`?)\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\nbogus: 1\njobs: {}\n",
        "error: unitgen.yaml:2:1: bogus: unknown key `bogus`; expected one of: version, etcd, defaults, jobs\n\
         error: unitgen.yaml:3:7: jobs: no jobs; add at least one under `jobs:`\n",
    );
}

#[test]
fn wrong_type() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  b:\n    schedule: daily\n    timer: { persistent: maybe }\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:5:26: jobs.b.timer.persistent: invalid type: string \"maybe\", expected `true` or `false`\n",
    );
}

#[test]
fn duplicate_unit_names() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n  Backup:\n    schedule: daily\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:3:3: jobs.backup: job `backup` and job `Backup` would write the same unit files on a case-insensitive file system; rename one\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  \"my job\":\n    schedule: daily\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:3:3: jobs.my job: job name `my job` cannot be a unit name: it contains ` `; unit names may use only ASCII letters, digits and `:_.@-`; try `my-job`\n",
    );
}

#[test]
fn bad_metadata_and_forbidden_fleet_combinations() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  m:\n    target: fleet\n    schedule: daily\n    fleet:\n      machine_metadata: { region: \"us east\" }\n      global: true\n      machine_of: db.service\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:7:35: jobs.m.fleet.machine_metadata.region: metadata value `us east` would be silently ignored by fleet; use at most 255 letters, digits and `_.:/-`\n\
         error: unitgen.yaml:8:15: jobs.m.fleet.global: fleet rejects `global: true` with anything but `machine_metadata`\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  m:\n    target: fleet\n    schedule: daily\n    fleet: { machine_id: 0123456789abcdef0123456789abcdef, conflicts: [x.service] }\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:6:26: jobs.m.fleet.machine_id: fleet rejects `machine_id` together with `machine_of`, `conflicts` or `global`\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  m:\n    target: fleet\n    schedule: daily\n    fleet: { machine_of: db.service, conflicts: [\"db*\"] }\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:6:50: jobs.m.fleet.conflicts[0]: conflicts with `db.service`, the unit named in `machine_of`: fleet can never place this unit\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  m:\n    schedule: daily\n    fleet: { global: true }\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:5:12: jobs.m.fleet: fleet placement needs `target: fleet`\n",
    );
}

#[test]
fn missing_spec_and_not_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let r = in_dir(tmp.path(), &["validate", "-f", "nope.yaml"]);
    assert_eq!(
        r.stderr,
        "error: cannot read the spec nope.yaml: No such file or directory (os error 2)\n"
    );
    assert_eq!(r.status, 2);
    assert_fails(
        tmp.path(),
        "version: 1\njobs: [unclosed\n",
        "error: unitgen.yaml:3:1: not valid YAML: did not find expected ',' or ']'\n",
    );
    assert_fails(
        tmp.path(),
        "",
        "error: unitgen.yaml: (top level): the spec is empty; start with `version: 1` and a `jobs:` map\n",
    );
}

#[test]
fn every_problem_at_once_in_file_order() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
jobs:
  a:
    schedule: daily
    timeout: 10 parsecs
    command: [true]
  b:
    schedule: daily
    timer: { persistent: maybe }
    command: [/usr/bin/true]
  c:
    schedule: daily
    container: { image: registry.example.com/r:1 }
    steps:
      - rpc: { url: http://x/, method: m, user: u, password: hunter2 }
",
        "error: unitgen.yaml:5:14: jobs.a.timeout: `10 parsecs` is not a time span: unknown unit at `parsecs` (use us, ms, s, min, h, d, w, M, y)
error: unitgen.yaml:6:15: jobs.a.command[0]: `true` must be an absolute path (starting with `/`)
error: unitgen.yaml:9:26: jobs.b.timer.persistent: invalid type: string \"maybe\", expected `true` or `false`
error: unitgen.yaml:15:62: jobs.c.steps[0].rpc.password: a secret cannot be written in the spec; store it in etcd (`etcdctl put /some/key VALUE`) and write `{ etcd: /some/key }`
",
    );
}

#[test]
fn literal_secret_is_never_echoed() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  c:\n    schedule: daily\n    container: { image: r }\n    steps:\n      - rpc: { url: http://x/, method: m, user: u, password: hunter2-canary }\n",
    );
    for args in [
        &["validate"][..],
        &["render"],
        &["render", "--stdout"],
        &["render", "--check"],
    ] {
        let r = in_dir(tmp.path(), args);
        assert_eq!(r.status, 2);
        assert!(
            !r.stderr.contains("hunter2") && !r.stdout.contains("hunter2"),
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(
        !tmp.path().join("units").exists(),
        "nothing is written for an invalid spec"
    );
}

#[test]
fn render_prints_service_before_timer_and_check_detects_edits() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), GOOD);
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "units/one.service\nunits/one.timer\nunits/two.service\nunits/two.timer\n"
    );
    let r = in_dir(tmp.path(), &["render", "--print0"]);
    assert_eq!(
        r.stdout,
        "units/one.service\0units/one.timer\0units/two.service\0units/two.timer\0"
    );

    let r = in_dir(tmp.path(), &["render", "--check"]);
    assert_eq!(
        (r.status, r.stdout.as_str(), r.stderr.as_str()),
        (0, "", "")
    );

    let unit = tmp.path().join("units/one.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("Type=oneshot", "Type=simple")).unwrap();
    let r = in_dir(tmp.path(), &["render", "--check"]);
    assert_eq!(r.status, 1);
    assert!(
        r.stdout
            .starts_with("--- a/units/one.service\n+++ b/units/one.service\n@@"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("\n-Type=simple\n+Type=oneshot\n"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stderr,
        "error: units is out of date with unitgen.yaml; run `unitgen render` and commit the result\n"
    );
    // --check wrote nothing.
    assert!(
        std::fs::read_to_string(&unit)
            .unwrap()
            .contains("Type=simple")
    );
}

#[test]
fn stdout_prints_units_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), GOOD);
    let r = in_dir(tmp.path(), &["render", "--stdout"]);
    assert_eq!(r.status, 0);
    assert!(
        r.stdout.starts_with("# one.service\n[Unit]\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\n# two.timer\n[Unit]\n"));
    assert!(!tmp.path().join("units").exists());
}

#[test]
fn failed_render_leaves_previous_units_intact() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), GOOD);
    assert_eq!(in_dir(tmp.path(), &["render"]).status, 0);
    let before = read_tree(&tmp.path().join("units"));

    // An invalid spec: nothing is touched.
    spec_in(
        tmp.path(),
        &GOOD.replace("schedule: weekly", "schedule: weekly\n    bogus: 1"),
    );
    assert_eq!(in_dir(tmp.path(), &["render"]).status, 2);
    assert_eq!(read_tree(&tmp.path().join("units")), before);

    // A valid spec whose second unit cannot be written: the first is not
    // replaced either, and no temp file is left behind.
    spec_in(
        tmp.path(),
        &GOOD.replace("daily", "hourly").replace("weekly", "monthly"),
    );
    std::fs::remove_file(tmp.path().join("units/two.timer")).unwrap();
    std::fs::create_dir(tmp.path().join("units/two.timer")).unwrap();
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: units/two.timer: exists and is not a regular file; move it away and render again\n"
    );
    let after = read_tree(&tmp.path().join("units"));
    let mut expected = before.clone();
    expected.remove(Path::new("two.timer"));
    assert_eq!(after, expected);
}

#[test]
fn stale_units_are_removed_and_foreign_files_survive() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), GOOD);
    assert_eq!(in_dir(tmp.path(), &["render"]).status, 0);
    write(
        &tmp.path().join("units/foreign.service"),
        "[Service]\nExecStart=/bin/true\n",
    );
    write(&tmp.path().join("units/README"), "hand-written notes\n");

    // A unit that unitgen wrote but that has lost its marker is someone's
    // hand edit: kept.
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render", "--check"]);
    assert_eq!(r.status, 1);
    assert!(
        r.stdout
            .contains("--- a/units/two.service\n+++ /dev/null\n"),
        "{}",
        r.stdout
    );
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "removed units/two.service\nremoved units/two.timer\n"
    );
    let names: Vec<_> = read_tree(&tmp.path().join("units")).into_keys().collect();
    let names: Vec<_> = names.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            ".unitgen-manifest",
            "README",
            "foreign.service",
            "one.service",
            "one.timer"
        ]
    );
    assert_eq!(in_dir(tmp.path(), &["render", "--check"]).status, 0);
}

#[test]
fn help_has_examples_for_every_command() {
    for cmd in ["render", "validate", "completions", "man", "schema"] {
        let r = run(unitgen().args([cmd, "--help"]));
        assert_eq!(r.status, 0);
        assert!(
            r.stdout.contains("Examples:\n  unitgen"),
            "{cmd} --help:\n{}",
            r.stdout
        );
    }
    let r = run(unitgen().arg("--help"));
    assert!(r.stdout.contains("unitgen render | xargs fleetctl submit"));
    let r = run(&mut unitgen());
    assert_eq!(r.status, 2, "no subcommand is a usage error");
}

#[test]
fn completions_man_and_schema() {
    let r = run(unitgen().args(["completions", "bash"]));
    assert_eq!(r.status, 0);
    assert!(r.stdout.contains("_unitgen()") && r.stdout.contains("--print0"));
    let r = run(unitgen().args(["completions", "zsh"]));
    assert!(r.stdout.starts_with("#compdef unitgen"));
    let r = run(unitgen().arg("man"));
    assert_eq!(r.status, 0);
    assert!(r.stdout.contains(".TH unitgen 1") && r.stdout.contains("render"));
    let r = run(unitgen().arg("schema"));
    assert_eq!(r.status, 0);
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(schema["title"], "UnitgenSpec");
    assert_eq!(schema["additionalProperties"], false);
    let job = &schema["$defs"]["Job"];
    assert_eq!(job["additionalProperties"], false);
    assert!(job["properties"]["schedule"].is_object());
}

#[test]
fn schema_accepts_the_bundled_examples_keys() {
    // The schema and the parser come from the same types: every top-level
    // and job key used by the examples is a property in the schema.
    let r = run(unitgen().arg("schema"));
    let schema: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in ["bitcoind-wallet", "rsync-backups"] {
        let text =
            std::fs::read_to_string(root.join("examples").join(example).join("unitgen.yaml"))
                .unwrap();
        let spec: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        for key in spec.as_mapping().unwrap().keys() {
            assert!(
                schema["properties"][key.as_str().unwrap()].is_object(),
                "{key:?}"
            );
        }
        for job in spec["jobs"].as_mapping().unwrap().values() {
            for key in job.as_mapping().unwrap().keys() {
                assert!(
                    schema["$defs"]["Job"]["properties"][key.as_str().unwrap()].is_object(),
                    "{key:?}"
                );
            }
        }
    }
}

#[test]
fn schedules_are_validated_offline() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  a:\n    schedule: \"Mon..Fro 00:15\"\n    command: [/usr/bin/true]\n  b:\n    cron: \"@reboot\"\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:4:15: jobs.a.schedule: invalid calendar expression `Mon..Fro 00:15`: unknown weekday `Fro` (did you mean `Fri`?)\n\
         error: unitgen.yaml:7:11: jobs.b.cron: invalid cron schedule `@reboot`: `@reboot` runs once at boot, which is not a calendar event; drop `cron` and start the job from the timer instead: `timer: { on_boot: 1min }` (systemd's OnBootSec=)\n",
    );
}

#[test]
fn schedule_command_exit_status() {
    let r = run(unitgen().args([
        "schedule",
        "--json",
        "--base-time",
        "2024-01-15T00:00:00Z",
        "daily",
    ]));
    assert_eq!(r.status, 0);
    assert_eq!(
        r.stdout,
        "{\"input\":\"daily\",\"valid\":true,\"on_calendar\":[\"daily\"],\"normalized\":[\"*-*-* 00:00:00\"],\"next\":[\"2024-01-16T00:00:00Z\"]}\n"
    );
    let r = run(unitgen().args(["schedule", "daily", "Mon..Fro"]));
    assert_eq!(r.status, 2, "an invalid expression is invalid input");
    let r = run(unitgen().args(["schedule", "--base-time", "garbage", "daily"]));
    assert_eq!(r.status, 2);
    assert_eq!(
        r.stderr,
        "error: invalid base time `garbage` (expected e.g. `2024-01-15T00:00:00Z` or `2024-01-15 00:00:00 [ZONE]`)\n"
    );
    let r = run(unitgen().args(["schedule", "--help"]));
    assert!(r.stdout.contains("Examples:\n  unitgen schedule"));
}

#[test]
fn empty_retention_policy_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for retention in ["{}", "{ keep_daily: 0, keep_last: 0 }"] {
        assert_fails(
            tmp.path(),
            &format!(
                "version: 1\njobs:\n  s:\n    schedule: daily\n    container: {{ image: r }}\n    steps:\n      - ebs_snapshot: {{ volume_id: vol-0123456789abcdef0, region: us-east-1, credentials: default_chain, retention: {retention} }}\n"
            ),
            "error: unitgen.yaml:7:117: jobs.s.steps[0].ebs_snapshot.retention: an empty retention policy would delete every snapshot; set at least one `keep_*` above 0, or remove `retention`\n",
        );
    }
}

#[test]
fn bad_defaults_are_reported_once_at_their_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1
defaults:
  target: fleet
  timeout: 10 parsecs
  timer: { accuracy: soon }
  fleet: { machine_metadata: { region: \"us east\" } }
jobs:
  a:
    schedule: daily
    command: [/usr/bin/true]
  b:
    schedule: daily
    command: [/usr/bin/true]
",
        "error: unitgen.yaml:4:12: defaults.timeout: `10 parsecs` is not a time span: unknown unit at `parsecs` (use us, ms, s, min, h, d, w, M, y)
error: unitgen.yaml:5:22: defaults.timer.accuracy: `soon` is not a time span: expected a number at `soon`
error: unitgen.yaml:6:40: defaults.fleet.machine_metadata.region: metadata value `us east` would be silently ignored by fleet; use at most 255 letters, digits and `_.:/-`
",
    );
}

#[test]
fn two_jobs_never_share_a_container_name() {
    let tmp = tempfile::tempdir().unwrap();
    // `a@b` and `a:b` both become container `a_b` by default.
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults: { image: r }\njobs:\n  a:b:\n    schedule: daily\n    container: { command: [/x] }\n  a@b:\n    schedule: daily\n    container: { command: [/x] }\n",
        "error: unitgen.yaml:7:3: jobs.a@b: container name `a_b` is also used by job `a:b`; set `container.name` on one of them\n",
    );
}

// Promises that broke (issue 9): each test below failed before its fix.

#[test]
fn a_file_unitgen_did_not_write_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  rsync-backups:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let hand =
        "[Unit]\nDescription=hand-written\n[Service]\nExecStart=/usr/local/bin/rsync-backups.sh\n";
    write(&tmp.path().join("units/rsync-backups.service"), hand);
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        "error: units/rsync-backups.service: exists and was not written by unitgen; job \
         `rsync-backups` would replace it. Move it away (or rename the job), then render again\n"
    );
    assert_eq!(r.stdout, "");
    let tree = read_tree(&tmp.path().join("units"));
    assert_eq!(tree.len(), 1, "nothing was written: {:?}", tree.keys());
    assert_eq!(tree[Path::new("rsync-backups.service")], hand);
}

#[test]
fn credentials_in_an_rpc_url_are_refused_at_render_without_echo() {
    let tmp = tempfile::tempdir().unwrap();
    for (url, col, says) in [
        (
            "http://rpcuser:hunter2@bitcoind:8332/",
            16,
            "credentials do not belong in the URL (it is not shown here); use the step's `user` and `password` (from etcd) or `cookie_file`",
        ),
        (
            "https://rpcuser:hunter2@bitcoind:8332/",
            16,
            "credentials do not belong in the URL (it is not shown here); use the step's `user` and `password` (from etcd) or `cookie_file`",
        ),
        (
            "https://bitcoind:8332/",
            16,
            "`https://bitcoind:8332/` uses https, but bitcoind's RPC server has no TLS: use http:// through an SSH or stunnel tunnel, or over a private network",
        ),
    ] {
        spec_in(
            tmp.path(),
            &format!(
                "version: 1\ndefaults: {{ image: r }}\njobs:\n  w:\n    schedule: daily\n    steps:\n      - rpc:\n          url: {url}\n          method: backupwallet\n"
            ),
        );
        for cmd in ["validate", "render"] {
            let r = in_dir(tmp.path(), &[cmd]);
            assert_eq!(r.status, 2, "{url}");
            assert_eq!(
                r.stderr,
                format!("error: unitgen.yaml:8:{col}: jobs.w.steps[0].rpc.url: {says}\n")
            );
            assert!(!tmp.path().join("units").exists(), "nothing written");
        }
    }
}

#[test]
fn a_secret_field_never_shows_its_value_whatever_its_type() {
    let tmp = tempfile::tempdir().unwrap();
    let rpc = |password: &str| {
        format!(
            "version: 1\ndefaults: {{ image: r }}\njobs:\n  w:\n    schedule: daily\n    steps:\n      - rpc: {{ url: http://b:8332/, method: getinfo, user: u, password: {password} }}\n"
        )
    };
    let ebs = |credentials: &str| {
        format!(
            "version: 1\ndefaults: {{ image: r }}\njobs:\n  w:\n    schedule: daily\n    steps:\n      - ebs_snapshot: {{ volume_id: vol-0123456789abcdef0, region: us-east-1, credentials: {credentials} }}\n"
        )
    };
    let cases = [
        rpc("1234.5678"),
        rpc("98765"),
        rpc("true"),
        rpc("hunter2secret"),
        rpc("[hunter2secret]"),
        rpc("{ hunter2secret: x }"),
        rpc("{ etcd: /k, value: hunter2secret }"),
        ebs("AKIAIOSFODNN7EXAMPLE"),
        ebs("12345678"),
        ebs("4.25"),
        ebs("[AKIAIOSFODNN7EXAMPLE]"),
        ebs("{ AKIAIOSFODNN7EXAMPLE: x }"),
    ];
    for spec in cases {
        spec_in(tmp.path(), &spec);
        let r = in_dir(tmp.path(), &["validate"]);
        assert_eq!(r.status, 2, "{spec}");
        for secret in [
            "1234.5678",
            "98765",
            "hunter2secret",
            "AKIAIOSFODNN7EXAMPLE",
            "12345678",
            "4.25",
        ] {
            assert!(!r.stderr.contains(secret), "{spec}\n{}", r.stderr);
        }
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("secret cannot be written in the spec")
                || r.stderr.contains("AWS keys never go in the spec"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn every_name_that_validates_renders() {
    let tmp = tempfile::tempdir().unwrap();
    // `NAME.service` may be 255 bytes: a 247-byte job name is the longest.
    let longest = "j".repeat(247);
    spec_in(
        tmp.path(),
        &format!(
            "version: 1\njobs:\n  {longest}:\n    schedule: daily\n    command: [/usr/bin/true]\n"
        ),
    );
    assert_eq!(in_dir(tmp.path(), &["validate"]).status, 0);
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(tmp.path().join(format!("units/{longest}.service")).exists());
    assert!(tmp.path().join(format!("units/{longest}.timer")).exists());
    let too_long = "j".repeat(248);
    spec_in(
        tmp.path(),
        &format!(
            "version: 1\njobs:\n  {too_long}:\n    schedule: daily\n    command: [/usr/bin/true]\n"
        ),
    );
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr
            .contains("is 256 bytes with its suffix; systemd allows at most 255"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_job_cannot_depend_on_itself() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults: { image: r }\njobs:\n  docker:\n    schedule: daily\n    container: { command: [/x] }\n",
        "error: unitgen.yaml:4:3: jobs.docker: job `docker` would depend on its own unit `docker.service` (container jobs run after and require docker.service); rename the job\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  x:\n    schedule: daily\n    after: [x.service]\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:3:3: jobs.x: job `x` would depend on its own unit `x.service` (its `after` or `requires` names it); rename the job\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  x:\n    schedule: daily\n    on_failure: x.service\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:5:17: jobs.x.on_failure: a job cannot be its own `on_failure` unit: its failure would start it again\n",
    );
}

#[test]
fn a_line_break_in_a_name_never_breaks_the_one_line_format() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  \"a\\nb\":\n    schedule: daily\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:3:3: jobs.a\\nb: job name `a\\nb` cannot be a unit name: it contains `\\n`; unit names may use only ASCII letters, digits and `:_.@-`; try `a-b`\n",
    );
}

#[test]
fn host_networking_with_links_is_refused_as_docker_would() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults: { image: r }\njobs:\n  w:\n    schedule: daily\n    container: { network: host, links: [\"bitcoind:bitcoind\"], command: [/x] }\n",
        "error: unitgen.yaml:6:40: jobs.w.container.links: docker refuses `links` with `network: host` (the container shares the host's network, so reach the linked container by its published port instead); remove one\n",
    );
}

#[test]
fn thousands_of_problems_are_all_reported_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = String::from("version: 1\njobs:\n");
    for i in 0..2000 {
        spec.push_str(&format!(
            "  j{i}:\n    schedule: daily\n    bogus: 1\n    command: [/usr/bin/true]\n"
        ));
    }
    spec_in(tmp.path(), &spec);
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(r.status, 2);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 2001, "every problem, then the count");
    assert!(
        lines[0].starts_with("error: unitgen.yaml:5:5: jobs.j0.bogus: unknown key `bogus`"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[2000], "error: 2000 problems in unitgen.yaml");
}

#[test]
fn bad_notify_settings_name_their_key() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "version: 1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify: { mail: [me@me.biz] }\n",
        "error: unitgen.yaml:6:5: jobs.backup.notify: the notifier runs unitgen-runner in a container: set `defaults.image` (or `container.image`) to an image that holds it\n\
         error: unitgen.yaml:6:15: jobs.backup.notify.mail: no SMTP server: set `smtp: smtp://HOST[:PORT]` here or in `defaults.notify.mail`\n",
    );
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify:\n      mail: { to: [\"me at me.biz\", ok@example.com], smtp: \"smtps://mail.example.com\" }\n      webhook: ftp://hooks.example.com/x\n      healthchecks: \"https://hc-ping.com/x?create=1\"\n",
        "error: unitgen.yaml:9:20: jobs.backup.notify.mail.to[0]: `me at me.biz` is not a mail address such as `ops@example.com`\n\
         error: unitgen.yaml:10:16: jobs.backup.notify.webhook: `ftp://hooks.example.com/x` is not an http:// or https:// URL\n\
         error: unitgen.yaml:11:21: jobs.backup.notify.healthchecks: `https://hc-ping.com/x?create=1` has a query; a ping URL gets `/start` or `/fail` appended, so give it without one\n",
    );
    // A password never crosses the network in clear text, and never sits
    // in the spec.
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify:\n      mail: { to: [me@me.biz], smtp: \"smtp://172.17.0.1\", user: u, password: hunter2 }\n",
        "error: unitgen.yaml:9:78: jobs.backup.notify.mail.password: a secret cannot be written in the spec; store it in etcd (`etcdctl put /some/key VALUE`) and write `{ etcd: /some/key }`\n",
    );
    spec_in(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify:\n      mail: { to: [me@me.biz], smtp: \"smtp://172.17.0.1\", user: u, password: { etcd: /smtp/pw } }\n",
    );
    write(&tmp.path().join("values.yaml"), "/smtp/pw: null\n");
    let r = in_dir(tmp.path(), &["validate", "--values", "values.yaml"]);
    assert_eq!(
        r.stderr,
        "error: unitgen.yaml:8:5: jobs.backup.notify: the notifier reads secrets from etcd at run time, but `etcd.endpoints` is empty\n\
         error: unitgen.yaml:9:78: jobs.backup.notify.mail.password: the password would cross the network in clear text; use `smtps://` or `starttls: true`\n"
    );
    assert_eq!(r.status, 2);
    // Inside the notifier's container the loopback is the container.
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\njobs:\n  backup:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify: { webhook: \"http://127.0.0.1:8080/hook\" }\n",
        "error: unitgen.yaml:8:24: jobs.backup.notify.webhook: `http://127.0.0.1:8080/hook` is the loopback, which inside the notifier's container is the container itself; use an address the container can reach (the docker0 address, e.g. 172.17.0.1), or `notify.network: host`\n",
    );
    // The notify unit's name is the job's: no second `@`, no job taking it.
    assert_fails(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\njobs:\n  wallet@hot:\n    schedule: daily\n    command: [/usr/bin/true]\n    notify: { webhook: \"http://10.0.0.1/x\" }\n  unitgen-notify@x:\n    schedule: daily\n    command: [/usr/bin/true]\n",
        "error: unitgen.yaml:8:5: jobs.wallet@hot.notify: mail and webhook notification need a job name without `@`: the job's notify unit `unitgen-notify@wallet@hot.service` would have a second one; rename the job, e.g. `wallet-hot`\n\
         error: unitgen.yaml:9:3: jobs.unitgen-notify@x: job names starting with `unitgen-notify@` are reserved for the notify units of other jobs; rename the job\n",
    );
}

#[test]
fn render_prints_each_service_then_its_timer_then_its_notify_unit() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1\ndefaults:\n  image: r.example.com/runner:1\n  notify: { webhook: \"http://10.0.0.1/x\" }\njobs:\n  a:\n    schedule: daily\n    command: [/usr/bin/true]\n  b:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render", "--print0"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "units/a.service\0units/a.timer\0units/unitgen-notify@a.service\0\
         units/b.service\0units/b.timer\0units/unitgen-notify@b.service\0"
    );
    let manifest = std::fs::read_to_string(tmp.path().join("units/.unitgen-manifest")).unwrap();
    assert!(
        manifest.contains("\nunitgen-notify@a.service\n"),
        "{manifest}"
    );
    // Dropping notify removes the notify units unitgen wrote.
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  a:\n    schedule: daily\n    command: [/usr/bin/true]\n  b:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(!tmp.path().join("units/unitgen-notify@a.service").exists());
}
