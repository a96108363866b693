//! Messages and conventions (issue 14): errors on stderr with `error:`,
//! a closed pipe ends quietly, the runner's advice names its own flags,
//! no Rust debug text, help headings, man pages, `--values` against the
//! environment, the runner's log order, `-q`/`-v`, colour. Each pinned by
//! its exact output and exit status, through the real binaries.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const TWO_JOBS: &str = "version: 1
jobs:
  one:
    schedule: daily
    command: [/usr/bin/true]
  two:
    schedule: weekly
    command: [/usr/bin/true, --two]
";

/// Runs unitgen in `dir` (so paths in messages are relative), without
/// the test's own etcd variables.
fn in_dir(dir: &Path, args: &[&str]) -> Run {
    run(unitgen()
        .args(args)
        .current_dir(dir)
        .env_remove("UNITGEN_ETCD_ENDPOINTS")
        .env_remove("NO_COLOR"))
}

fn runner() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
    cmd.env_remove("JOURNAL_STREAM");
    cmd
}

/// A port nothing listens on: connections are refused at once.
fn dead_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

// 1. `unitgen schedule`: results on stdout, errors on stderr.

#[test]
fn schedule_errors_go_to_stderr_with_the_error_prefix() {
    let r = run(unitgen()
        .env("TZ", "UTC")
        .args(["schedule", "--base-time", "2024-01-15T00:00:00Z"])
        .args(["daily", "Mon..Fro 00:15"]));
    assert_eq!(r.status, 2);
    assert_eq!(
        r.stderr,
        "error: invalid calendar expression `Mon..Fro 00:15`: unknown weekday `Fro` (did you mean `Fri`?)\n"
    );
    assert_eq!(
        r.stdout,
        "  Original form: daily\nNormalized form: *-*-* 00:00:00\n    Next elapse: Tue 2024-01-16 00:00:00 UTC\n\n"
    );
    // Cron lines too; --json keeps the error in its object, for tools.
    let r = run(unitgen().args(["schedule", "--cron", "0 0 * * funday"]));
    assert_eq!(r.status, 2);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr
            .starts_with("error: invalid cron schedule `0 0 * * funday`: ")
            && r.stderr.lines().count() == 1,
        "{}",
        r.stderr
    );
    let r = run(unitgen().args(["schedule", "--json", "Mon..Fro"]));
    assert_eq!((r.status, r.stderr.as_str()), (2, ""));
    assert!(r.stdout.contains("\"valid\":false"), "{}", r.stdout);
}

// 2. A closed pipe ends the process quietly, as SIGPIPE ends other tools.

/// Runs unitgen with its stdout a pipe whose reader is already gone.
fn with_closed_stdout(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = unitgen()
        .args(args)
        .current_dir(dir)
        .env_remove("UNITGEN_ETCD_ENDPOINTS")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status, String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_closed_pipe_ends_quietly_as_sigpipe() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), TWO_JOBS);
    for args in [
        &["render", "--stdout"][..],
        &["render"],
        &["schedule", "-n", "1000", "hourly"],
        &["schedule", "--json", "-n", "1000", "hourly"],
        &["completions", "bash"],
        &["man"],
        &["man", "render"],
        &["schema"],
        &["list"],
        &["list", "--json"],
        &["render", "--check", "--format", "json", "-o", "elsewhere"],
        &["init", "starter"],
    ] {
        let (status, stderr) = with_closed_stdout(tmp.path(), args);
        assert_eq!(stderr, "", "{args:?}");
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{args:?}: {status:?}");
    }
    // The render itself happened: only its listing was cut short.
    assert!(tmp.path().join("units/two.timer").exists());
}

// 3. The runner's advice names the runner's flags and `etcd.runner`.

#[test]
fn the_runners_etcd_advice_names_its_own_flags_and_spec_key() {
    let endpoint = dead_endpoint();
    let out = runner()
        .args(["--job", "wallet", "--etcd-endpoint", &endpoint])
        .args(["--etcd-timeout", "2s", "--step"])
        .arg(r#"{"rpc":{"url":"http://bitcoind:8332/","method":"getwalletinfo","user":"u","password_etcd":"/btc/pw"}}"#)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: wallet: cannot read secrets: etcd at {endpoint} is unreachable (tcp connect \
             error: Connection refused (os error 111)); check that etcd runs there and that the \
             job's container can reach it; the unit's --etcd-endpoint comes from the spec's \
             `etcd.runner.endpoints`: correct it there and render the units again\n"
        )
    );
    for generator_only in [
        "--etcd-endpoints",
        "UNITGEN_ETCD_ENDPOINTS",
        "`etcd.endpoints`",
    ] {
        assert!(!stderr.contains(generator_only), "{stderr}");
    }
    // unitgen itself keeps naming its own.
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        &format!(
            "version: 1\netcd: {{ endpoints: [\"{endpoint}\"] }}\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/echo, {{ etcd: /v }}]\n"
        ),
    );
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        format!(
            "error: etcd at {endpoint} is unreachable (tcp connect error: Connection refused (os \
             error 111)); check that etcd runs there, or set the endpoints (--etcd-endpoints, \
             UNITGEN_ETCD_ENDPOINTS)\n"
        )
    );
}

// 4. No Rust debug text: serde's types and tonic's or hyper's errors.

#[test]
fn wrong_types_are_said_in_yaml_words() {
    let tmp = tempfile::tempdir().unwrap();
    let r = {
        spec_in(
            tmp.path(),
            "version: 1
jobs:
  a:
    schedule: daily
    timer: 5
    service: { nice: lots }
    command: [/usr/bin/true]
  b:
    schedule: daily
    timer: { persistent: maybe }
    container: { image: r }
    steps:
      - s3_lifecycle:
          bucket: my-backups
          region: us-east-1
          credentials: default_chain
          rules: [{ id: unitgen-a, prefix: x/, transition_days: soon, storage_class: GLACIER }]
      - s3_lifecycle:
          bucket: other-backups
          region: us-east-1
          credentials: default_chain
          rules: [{ id: unitgen-b, prefix: x/, expiration_days: -1 }]
",
        );
        in_dir(tmp.path(), &["validate"])
    };
    assert_eq!(r.status, 2);
    assert_eq!(
        r.stderr,
        "error: unitgen.yaml:5:12: jobs.a.timer: invalid type: integer `5`, expected a map (`key: value` entries)
error: unitgen.yaml:6:22: jobs.a.service.nice: invalid type: string \"lots\", expected a whole number
error: unitgen.yaml:10:26: jobs.b.timer.persistent: invalid type: string \"maybe\", expected `true` or `false`
error: unitgen.yaml:17:65: jobs.b.steps[0].s3_lifecycle.rules[0].transition_days: invalid type: string \"soon\", expected a whole number 0 or more
error: unitgen.yaml:22:65: jobs.b.steps[1].s3_lifecycle.rules[0].expiration_days: invalid value: integer `-1`, expected a whole number from 0 to 4294967295
"
    );
    for rust in ["u32", "i64", "struct", "a boolean", "Value::"] {
        assert!(!r.stderr.contains(rust), "{}", r.stderr);
    }
    // The whole spec the wrong shape.
    spec_in(tmp.path(), "[version, jobs]\n");
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: unitgen.yaml:1:1: (top level): invalid type: a list, expected a map (`key: value` entries)\n"
        )
    );
}

#[test]
fn a_dead_rpc_server_is_said_in_words() {
    let port = free_port();
    let out = runner()
        .args(["--job", "wallet", "--step"])
        .arg(format!(
            r#"{{"rpc":{{"url":"http://127.0.0.1:{port}/","method":"getwalletinfo","timeout":"5s"}}}}"#
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: wallet: step 1/1 (rpc getwalletinfo) failed: connection to the RPC server at \
             127.0.0.1:{port} failed: Connection refused (os error 111); check that bitcoind is \
             running and the URL's host and port (rpcbind, rpcport)\n"
        )
    );
    for debug in ["Error(", "Error {", "Kind(", "kind:", "Os {"] {
        assert!(!stderr.contains(debug), "{stderr}");
    }
}

// 5. `--help`: each option under its own heading; examples never wrap.

/// Each option of `--help` output, by the heading it is listed under.
fn headings(help: &str) -> Vec<(String, String)> {
    let mut heading = String::new();
    let mut out = Vec::new();
    for line in help.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            heading = line.trim_end_matches(':').to_owned();
            continue;
        }
        let trimmed = line.trim_start();
        if !trimmed.starts_with('-') || line.len() - trimmed.len() > 6 {
            continue;
        }
        // `-o, --output <DIR>` is `--output`; `--stdout` is itself.
        let flag = trimmed
            .split([' ', ','])
            .find(|w| w.starts_with("--"))
            .unwrap_or_else(|| trimmed.split(' ').next().unwrap());
        out.push((flag.to_owned(), heading.clone()));
    }
    out
}

fn heading_of(help: &[(String, String)], flag: &str) -> String {
    help.iter()
        .find(|(f, _)| f == flag)
        .unwrap_or_else(|| panic!("no {flag} in {help:?}"))
        .1
        .clone()
}

#[test]
fn every_option_is_under_its_own_heading() {
    let render = headings(&run(unitgen().args(["render", "--help"])).stdout);
    let watch = headings(&run(unitgen().args(["watch", "--help"])).stdout);
    let plan = headings(&run(unitgen().args(["plan", "--help"])).stdout);
    for flag in [
        "--file",
        "--values",
        "--output",
        "--stdout",
        "--check",
        "--print0",
        "--quiet",
        "--verbose",
        "--color",
        "--help",
    ] {
        assert_eq!(heading_of(&render, flag), "Options", "render {flag}");
    }
    for flag in ["--file", "--values", "--output", "--exec", "--debounce"] {
        assert_eq!(heading_of(&watch, flag), "Options", "watch {flag}");
    }
    for flag in ["--apply", "--target", "--fleetctl", "--root", "--wait"] {
        assert_eq!(heading_of(&watch, flag), "Deploying", "watch {flag}");
    }
    for flag in ["--output", "--json"] {
        assert_eq!(heading_of(&plan, flag), "Options", "plan {flag}");
    }
    for help in [&render, &watch, &plan] {
        for flag in [
            "--etcd-endpoints",
            "--etcd-ca-file",
            "--etcd-user",
            "--etcd-timeout",
        ] {
            assert_eq!(heading_of(help, flag), "etcd", "{flag}");
        }
    }
}

#[test]
fn example_lines_never_wrap_at_80_columns() {
    use clap::CommandFactory;
    let check = |mut cmd: clap::Command| {
        cmd.build();
        let mut all = vec![cmd.clone()];
        all.extend(cmd.get_subcommands().cloned());
        for mut c in all {
            let Some(raw) = c.get_after_help().map(|h| h.to_string()) else {
                continue;
            };
            let shown = c.render_long_help().to_string();
            let shown: Vec<&str> = shown.lines().collect();
            for line in raw.lines().filter(|l| l.starts_with("  ")) {
                assert!(
                    line.chars().count() < 80 && shown.contains(&line),
                    "{}: `{line}` is wrapped at 80 columns",
                    c.get_name()
                );
            }
        }
    };
    check(unitgen::cmd::cli::Cli::command().term_width(80));
    check(unitgen::runner::Args::command().term_width(80));
    check(unitgen::runner::notify::Args::command().term_width(80));
}

// 6. `unitgen man`: every page exists, renders, and refers to pages that exist.

#[test]
fn every_man_page_renders_and_refers_only_to_pages_that_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let r = run(unitgen().arg("man").arg("--all").arg(&dir));
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    let pages: Vec<String> = r
        .stdout
        .lines()
        .map(|l| {
            Path::new(l)
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for want in [
        "unitgen",
        "unitgen-render",
        "unitgen-validate",
        "unitgen-schedule",
        "unitgen-watch",
        "unitgen-plan",
        "unitgen-apply",
        "unitgen-completions",
        "unitgen-man",
        "unitgen-schema",
        "unitgen-runner",
        "unitgen-runner-notify",
    ] {
        assert!(pages.contains(&want.to_owned()), "{want}: {pages:?}");
    }
    for page in &pages {
        let file = dir.join(format!("{page}.1"));
        let roff = std::fs::read_to_string(&file).unwrap();
        // `unitgen man PAGE` prints the same text, with or without `unitgen-`.
        let short = page.strip_prefix("unitgen-").unwrap_or(page);
        assert_eq!(run(unitgen().args(["man", short])).stdout, roff, "{page}");
        assert_eq!(roff.matches(".TH ").count(), 1, "{page}");
        assert!(roff.contains(&format!("\n.TH {page} 1 ")), "{page}");
        // groff renders it without a warning.
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&file)
            .output()
            .expect("run groff (package groff)");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{page}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in page_refs(&roff) {
            assert!(pages.contains(&name), "{page} refers to {name}(1)");
        }
        if page != "unitgen" {
            assert!(roff.contains(".SH \"SEE ALSO\""), "{page}");
        }
    }
    let main = std::fs::read_to_string(dir.join("unitgen.1")).unwrap();
    for needle in [
        ".SH \"ENVIRONMENT\"",
        "UNITGEN_ETCD_ENDPOINTS",
        "UNITGEN_ETCD_CA_FILE",
        "UNITGEN_ETCD_PASSWORD",
        "NO_COLOR",
        ".SH \"FILES\"",
        "unitgen.yaml",
        "units/.unitgen\\-manifest",
        "units/.unitgen\\-deployed",
        ".SH \"EXIT STATUS\"",
        "unitgen\\-runner(1)",
    ] {
        assert!(main.contains(needle), "{needle}");
    }
    let r = run(unitgen().args(["man", "rendr"]));
    assert_eq!(r.status, 2);
    assert!(
        r.stderr
            .starts_with("error: no man page `rendr`; the pages are: unitgen, unitgen-render, "),
        "{}",
        r.stderr
    );
}

/// Every `unitgen...(1)` a page names.
fn page_refs(roff: &str) -> Vec<String> {
    let text = roff
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "");
    let mut out = Vec::new();
    for (i, _) in text.match_indices("(1)") {
        let head = &text[..i];
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .map_or(0, |j| j + 1);
        let name = &head[start..];
        if name.starts_with("unitgen") {
            out.push(name.to_owned());
        }
    }
    out
}

// 7. `--values` wins over an exported UNITGEN_ETCD_ENDPOINTS, quietly.

#[test]
fn values_win_over_the_endpoints_variable() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/echo, { etcd: /v }]\n",
    );
    write(&tmp.path().join("values.yaml"), "/v: hello\n");
    let dead = dead_endpoint();
    let with_env = |args: &[&str]| {
        run(unitgen()
            .args(args)
            .current_dir(tmp.path())
            .env("UNITGEN_ETCD_ENDPOINTS", &dead)
            .env("UNITGEN_ETCD_TIMEOUT", "2s"))
    };
    let r = with_env(&["validate", "--values", "values.yaml"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "unitgen.yaml: ok, 1 job(s)\n")
    );
    // Without --values, the variable is the endpoint.
    let r = with_env(&["validate"]);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .starts_with(&format!("error: etcd at {dead} is unreachable")),
        "{}",
        r.stderr
    );
    // Both on the command line: a usage error, as before.
    let r = with_env(&[
        "validate",
        "--values",
        "values.yaml",
        "--etcd-endpoints",
        &dead,
    ]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.starts_with(
            "error: the argument '--values <FILE>' cannot be used with '--etcd-endpoints <URLS>'"
        ),
        "{}",
        r.stderr
    );
}

// 9. The runner logs a failure before the steps it skips.

#[test]
fn a_failed_step_is_logged_before_the_steps_it_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("not-mounted");
    let data = tmp.path().join("data");
    write(&data.join("file"), "x");
    let dest = tmp.path().join("backups");
    std::fs::create_dir(&dest).unwrap();
    let copy = |source: &Path| {
        format!(
            r#"{{"copy":{{"source":"{}","destination":"{}"}}}}"#,
            source.display(),
            dest.display()
        )
    };
    let out = runner()
        .env("JOURNAL_STREAM", "8:1")
        .args(["--job", "j", "--step", &copy(&missing), "--step"])
        .arg(copy(&data))
        .arg("--step")
        .arg(copy(&data))
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "<3>j: step 1/3 (copy {}) failed: ",
            missing.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        lines[1..],
        [
            format!(
                "<4>step 2/3 (copy {}) skipped: step 1 failed",
                data.display()
            ),
            format!(
                "<4>step 3/3 (copy {}) skipped: step 1 failed",
                data.display()
            ),
        ]
    );
}

// 10. -q and -v.

#[test]
fn quiet_keeps_only_errors_and_verbose_says_what_happened() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), TWO_JOBS);
    let r = in_dir(tmp.path(), &["validate"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (0, "unitgen.yaml: ok, 2 job(s)\n")
    );
    let r = in_dir(tmp.path(), &["-q", "validate"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    assert_eq!(in_dir(tmp.path(), &["render"]).status, 0);
    // A removal is said, unless -q.
    spec_in(
        tmp.path(),
        "version: 1\njobs:\n  one:\n    schedule: daily\n    command: [/usr/bin/true]\n",
    );
    let r = in_dir(tmp.path(), &["render", "--quiet"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    assert_eq!(r.stdout, "units/one.service\nunits/one.timer\n");
    assert!(!tmp.path().join("units/two.timer").exists());
    // validate --offline's report and init's next steps are informational too.
    let r = in_dir(tmp.path(), &["-q", "validate", "--offline"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    let r = in_dir(tmp.path(), &["-q", "init", "starter"]);
    assert_eq!((r.status, r.stderr.as_str()), (0, ""));
    assert!(r.stdout.contains("starter/unitgen.yaml\n"), "{}", r.stdout);
    // Errors always print.
    let r = in_dir(tmp.path(), &["-q", "validate", "-f", "nope.yaml"]);
    assert_eq!(
        (r.status, r.stderr.as_str()),
        (
            2,
            "error: cannot read the spec nope.yaml: No such file or directory (os error 2)\n"
        )
    );
    // -v: what was read, rendered and written, never a secret's value.
    spec_in(
        tmp.path(),
        "version: 1
etcd: { endpoints: [\"http://10.0.0.1:2379\"] }
jobs:
  one:
    schedule: daily
    command: [/usr/bin/echo, { etcd: /v }]
  two:
    schedule: daily
    container: { image: r }
    steps:
      - rpc: { url: \"http://b:8332/\", method: getinfo, user: u, password: { etcd: /pw } }
",
    );
    write(
        &tmp.path().join("values.yaml"),
        "/v: hello\n/pw: hunter2-canary\n",
    );
    let r = in_dir(tmp.path(), &["render", "-v", "--values", "values.yaml"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines[0],
        "values: looking up 2 key(s), 1 of them secret(s) checked for existence only: /pw (secret: exists?), /v in values.yaml"
    );
    assert!(lines[1].starts_with("warning: values.yaml: `/pw` holds a value"));
    assert!(
        lines[2].starts_with("rendered 4 unit(s) from unitgen.yaml in "),
        "{}",
        r.stderr
    );
    assert!(lines.contains(&"wrote units/one.service"), "{}", r.stderr);
    assert!(lines.contains(&"wrote units/two.timer"), "{}", r.stderr);
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    // Both at once is a usage error.
    let r = in_dir(tmp.path(), &["-q", "-v", "validate"]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr
            .starts_with("error: the argument '--quiet' cannot be used with '--verbose'"),
        "{}",
        r.stderr
    );
}

// 11. Colour in the `--check` diff.

#[test]
fn the_check_diff_is_coloured_only_when_asked_or_on_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    spec_in(tmp.path(), TWO_JOBS);
    assert_eq!(in_dir(tmp.path(), &["render"]).status, 0);
    let unit = tmp.path().join("units/one.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("Type=oneshot", "Type=simple")).unwrap();
    let red = "\n\x1b[31m-Type=simple\x1b[0m\n\x1b[32m+Type=oneshot\x1b[0m\n";
    let r = in_dir(tmp.path(), &["render", "--check", "--color", "always"]);
    assert_eq!(r.status, 1);
    assert!(
        r.stdout
            .starts_with("\x1b[1m--- a/units/one.service\x1b[0m\n\x1b[1m+++ b/units/one.service\x1b[0m\n\x1b[36m@@"),
        "{:?}",
        r.stdout
    );
    assert!(r.stdout.contains(red), "{:?}", r.stdout);
    // Not a terminal, or told not to: plain.
    for args in [
        &["render", "--check"][..],
        &["render", "--check", "--color=never"],
    ] {
        let r = in_dir(tmp.path(), args);
        assert_eq!(r.status, 1);
        assert!(!r.stdout.contains('\x1b'), "{args:?}");
        assert!(r.stdout.contains("\n-Type=simple\n+Type=oneshot\n"));
    }
    // On a terminal (script(1) gives it one): coloured, unless NO_COLOR.
    let on_a_terminal = |no_color: Option<&str>| {
        let mut cmd = Command::new("script");
        cmd.args(["-qec"])
            .arg(format!("{} render --check", env!("CARGO_BIN_EXE_unitgen")))
            .arg("/dev/null")
            .current_dir(tmp.path())
            .env("TERM", "xterm")
            .env_remove("NO_COLOR");
        if let Some(v) = no_color {
            cmd.env("NO_COLOR", v);
        }
        let out = cmd.output().expect("run script(1) (package bsdutils)");
        String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
    };
    assert!(on_a_terminal(None).contains(red));
    assert!(
        on_a_terminal(Some("")).contains(red),
        "an empty NO_COLOR is unset"
    );
    let plain = on_a_terminal(Some("1"));
    assert!(!plain.contains('\x1b'), "{plain:?}");
    assert!(
        plain.contains("\n-Type=simple\n+Type=oneshot\n"),
        "{plain:?}"
    );
}
