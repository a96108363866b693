//! Golden trees: each `tests/cases/NN-name/` holds a `unitgen.yaml` (and
//! optionally `values.yaml`) and the whole expected output folder in
//! `expected/`. `UNITGEN_BLESS=1 cargo test --test golden` rewrites them.
//! Every expected unit must also pass systemd's own verifier, and fleet
//! units must be exactly what fleet stores.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("unitgen.yaml").exists() && !p.join("expected.stderr").exists())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 5,
        "expected the golden cases under {}",
        root.display()
    );
    cases
}

fn render_case(case: &Path, out: &Path) -> Run {
    let mut cmd = unitgen();
    cmd.arg("render")
        .arg("-f")
        .arg(case.join("unitgen.yaml"))
        .arg("-o")
        .arg(out);
    if case.join("values.yaml").exists() {
        cmd.arg("--values").arg(case.join("values.yaml"));
    }
    run(&mut cmd)
}

/// The error catalogue: cases with `expected.stderr` instead of an output
/// tree hold a spec that must be refused, and exactly what `unitgen
/// validate` says about it (run in the case's folder, so paths are short).
fn error_cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.stderr").exists())
        .collect();
    cases.sort();
    cases
}

#[test]
fn error_catalogue_matches() {
    let bless = std::env::var_os("UNITGEN_BLESS").is_some();
    let cases = error_cases();
    assert!(
        cases.len() >= 5,
        "expected the error cases under tests/cases"
    );
    let mut failures = Vec::new();
    for case in cases {
        let mut cmd = unitgen();
        cmd.args(["validate", "-f", "unitgen.yaml"])
            .current_dir(&case);
        if case.join("values.yaml").exists() {
            cmd.args(["--values", "values.yaml"]);
        }
        let r = run(&mut cmd);
        assert_eq!(r.status, 2, "{}: {}", case.display(), r.stderr);
        let path = case.join("expected.stderr");
        if bless {
            write(&path, &r.stderr);
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap();
        if r.stderr != want {
            let diff = similar::TextDiff::from_lines(&want, &r.stderr)
                .unified_diff()
                .header("expected.stderr", "stderr")
                .to_string();
            failures.push(format!("{}:\n{diff}", case.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "error messages differ (UNITGEN_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}

#[test]
fn golden_trees_match() {
    let bless = std::env::var_os("UNITGEN_BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let tmp = world_readable_tempdir();
        let out = tmp.path().join("units");
        let r = render_case(&case, &out);
        assert_eq!(
            r.status,
            0,
            "{}: render failed:\n{}",
            case.display(),
            r.stderr
        );
        let expected_dir = case.join("expected");
        if bless {
            let _ = std::fs::remove_dir_all(&expected_dir);
            for (rel, text) in read_tree(&out) {
                write(&expected_dir.join(rel), &text);
            }
            continue;
        }
        let (got, want) = (read_tree(&out), read_tree(&expected_dir));
        if got != want {
            let diff = std::process::Command::new("diff")
                .args(["-u", "--recursive"])
                .arg(&expected_dir)
                .arg(&out)
                .output()
                .unwrap();
            failures.push(format!(
                "{}:\n{}",
                case.display(),
                String::from_utf8_lossy(&diff.stdout)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden output differs (UNITGEN_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}

#[test]
fn golden_units_pass_systemd_verify() {
    for case in cases() {
        let dir = world_readable_tempdir();
        for (rel, text) in read_tree(&case.join("expected")) {
            write(&dir.path().join(rel), &text);
        }
        let (ok, stderr) = systemd_verify(dir.path());
        // The only acceptable complaint: the container CLI not being
        // installed on the test machine.
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|l| !(l.contains("/usr/bin/docker") && l.contains("not executable")))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: systemd-analyze verify complained:\n{}",
            case.display(),
            stderr
        );
        assert!(
            ok || !stderr.is_empty(),
            "{}: verify failed silently",
            case.display()
        );
    }
}

/// fleet stores a unit as go-systemd's Serialize() of its parsed options
/// and hashes that; a file equal to it gets the same hash as fleet's copy,
/// so `fleetctl submit` never reports a difference.
fn fleet_normalized(text: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if !sections.iter().any(|(s, _)| s == name) {
                sections.push((name.to_owned(), Vec::new()));
            }
            continue;
        }
        let (k, v) = line.split_once('=').expect("an option line");
        sections
            .last_mut()
            .unwrap()
            .1
            .push(format!("{}={}", k.trim(), v.trim()));
    }
    sections
        .iter()
        .map(|(name, opts)| {
            format!(
                "[{name}]\n{}",
                opts.iter().map(|o| format!("{o}\n")).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fleet_units_are_what_fleet_stores() {
    let mut fleet_units = 0;
    for case in cases() {
        for (rel, text) in read_tree(&case.join("expected")) {
            if !text.contains("\n[X-Fleet]\n") {
                continue;
            }
            fleet_units += 1;
            let name = rel.display();
            assert_eq!(
                fleet_normalized(&text),
                text,
                "{name}: not in fleet's stored form"
            );
            assert!(
                !text.contains("[Install]"),
                "{name}: fleet units have no [Install]"
            );
            for line in text.lines() {
                assert!(line.len() < 2048, "{name}: a line of {} bytes", line.len());
                assert!(
                    !line.ends_with('\\'),
                    "{name}: continuation lines in a fleet unit"
                );
            }
            // A notify unit must be on its job's machine: `OnFailure=`
            // starts only units the failing unit's machine has.
            if let Some(job) = rel
                .to_str()
                .and_then(|n| n.strip_prefix("unitgen-notify@"))
                .and_then(|n| n.strip_suffix(".service"))
            {
                let global = text.contains("\nGlobal=true\n");
                assert!(
                    global || text.contains(&format!("\nMachineOf={job}.service\n")),
                    "{name}: a fleet notify unit must run where its job runs"
                );
            }
            if rel.extension().is_some_and(|e| e == "timer") {
                let service = rel.file_stem().unwrap().to_str().unwrap().to_owned() + ".service";
                let global = text.contains("\nGlobal=true\n");
                assert!(
                    global || text.contains(&format!("\nMachineOf={service}\n")),
                    "{name}: a fleet timer must run where its service runs"
                );
            }
        }
    }
    assert!(
        fleet_units >= 4,
        "the golden cases should include fleet units"
    );
}

#[test]
fn bundled_examples_match_units_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["bitcoind-wallet", "rsync-backups", "s3-archive"] {
        let example = root.join("examples").join(name);
        let mut cmd = unitgen();
        cmd.arg("render")
            .arg("--check")
            .arg("-f")
            .arg(example.join("unitgen.yaml"))
            .arg("-o")
            .arg(root.join("units").join(name));
        if example.join("values.yaml").exists() {
            cmd.arg("--values").arg(example.join("values.yaml"));
        }
        let r = run(&mut cmd);
        assert_eq!(
            r.status, 0,
            "units/{name} is stale; run `unitgen render -f examples/{name}/unitgen.yaml -o units/{name}`:\n{}{}",
            r.stdout, r.stderr
        );
    }
}

#[test]
fn render_is_byte_deterministic() {
    for case in cases() {
        let (a, b) = (world_readable_tempdir(), world_readable_tempdir());
        assert_eq!(render_case(&case, a.path()).status, 0);
        assert_eq!(render_case(&case, b.path()).status, 0);
        assert_eq!(
            read_tree(a.path()),
            read_tree(b.path()),
            "{}",
            case.display()
        );
    }
}
