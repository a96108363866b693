//! The JSON Schema (`unitgen schema`) accepts what unitgen accepts and
//! refuses what it refuses, wherever JSON Schema can say it, checked by a
//! real validator: Python's `jsonschema` (the reference implementation of
//! Draft 2020-12, the draft schemars writes; `.ci/test` installs it, and
//! moto's server already depends on it). An implementation written apart
//! from unitgen, in another language, is the better judge of what editors
//! will make of the schema than a crate sharing unitgen's regex engine.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Checks the schema itself, then prints one JSON list of error messages
/// per instance (empty: valid).
const VALIDATE: &str = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema)
for instance in json.load(open(sys.argv[2])):
    print(json.dumps(sorted(e.message for e in validator.iter_errors(instance))))
"#;

/// Each spec's schema errors (empty when the schema accepts it).
fn schema_errors(specs: &[String]) -> Vec<Vec<String>> {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(unitgen().arg("schema"));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let schema = tmp.path().join("unitgen.schema.json");
    write(&schema, &r.stdout);
    let instances: Vec<serde_json::Value> = specs
        .iter()
        .map(|text| {
            let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("YAML");
            serde_json::to_value(yaml).expect("a spec as JSON")
        })
        .collect();
    let path = tmp.path().join("instances.json");
    write(&path, &serde_json::to_string(&instances).unwrap());
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(&schema)
        .arg(&path)
        .output()
        .expect(
            "python3 runs the schema tests; install Python 3 and `pip install jsonschema` \
             (.ci/test does)",
        );
    assert!(
        out.status.success(),
        "the validator failed (is Python's jsonschema installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<String>> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), specs.len());
    lines
}

/// `unitgen validate` of a spec, offline: its exit status and stderr.
fn unitgen_validate(spec: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("unitgen.yaml"), spec);
    let r = run(unitgen().arg("validate").current_dir(tmp.path()));
    (r.status, r.stderr)
}

/// The valid specs under `dir` (the error catalogue's cases, with an
/// `expected.stderr`, are invalid on purpose).
fn specs_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|case| !case.join("expected.stderr").exists())
        .map(|case| case.join("unitgen.yaml"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
}

#[test]
fn the_bundled_examples_and_golden_specs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = specs_in(&root.join("examples"));
    paths.extend(specs_in(&root.join("tests/cases")));
    assert!(paths.len() >= 10, "{paths:?}");
    let texts: Vec<String> = paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    for (path, errors) in paths.iter().zip(schema_errors(&texts)) {
        assert!(
            errors.is_empty(),
            "{}: the schema refuses it: {errors:?}",
            path.display()
        );
    }
}

const JOB: &str = "    schedule: daily\n    command: [/usr/bin/true]\n";

#[test]
fn what_unitgen_refuses_the_schema_refuses() {
    let job = |name: &str| format!("version: 1\njobs:\n  {name}:\n{JOB}");
    let cases: Vec<(&str, String)> = vec![
        // The issue's cases.
        ("version 2", format!("version: 2\njobs:\n  a:\n{JOB}")),
        ("no jobs", "version: 1\njobs: {}\n".into()),
        ("a space in a name", job("\"my job\"")),
        ("a slash in a name", job("\"a/b\"")),
        (
            "no schedule",
            "version: 1\njobs:\n  a:\n    command: [/usr/bin/true]\n".into(),
        ),
        // More of the same kind.
        ("a template name", job("\"a@\"")),
        ("two @", job("\"a@b@c\"")),
        ("a hidden name", job(".a")),
        ("an option-like name", job("\"-a\"")),
        ("a reserved name", job("\"Unitgen-Notify@x\"")),
        ("a name too long", job(&"j".repeat(248))),
        (
            "schedule and cron",
            "version: 1\njobs:\n  a:\n    schedule: daily\n    cron: \"0 0 * * *\"\n    command: [/usr/bin/true]\n".into(),
        ),
        (
            "a start that needs a first run",
            "version: 1\njobs:\n  a:\n    timer: { on_unit_active: 1d }\n    command: [/usr/bin/true]\n".into(),
        ),
        (
            "an unknown target",
            format!("version: 1\njobs:\n  a:\n    target: k8s\n{JOB}"),
        ),
        (
            "an empty command",
            "version: 1\njobs:\n  a:\n    schedule: daily\n    command: []\n".into(),
        ),
        (
            "nice out of range",
            format!("version: 1\njobs:\n  a:\n{JOB}    service: {{ nice: 20 }}\n"),
        ),
        (
            "an unknown sandbox mode",
            format!("version: 1\njobs:\n  a:\n{JOB}    service: {{ protect_system: maybe }}\n"),
        ),
        (
            "an empty retention",
            "version: 1\ndefaults: { image: r }\njobs:\n  a:\n    schedule: daily\n    container: { volumes: [\"/d:/d:ro\", \"/b:/b\"] }\n    steps:\n      - copy: { source: /d, destination: /b, retention: { keep_daily: 0 } }\n".into(),
        ),
        (
            "an unknown key",
            format!("version: 1\njobs:\n  a:\n{JOB}    bogus: 1\n"),
        ),
    ];
    let texts: Vec<String> = cases.iter().map(|(_, t)| t.clone()).collect();
    for ((what, text), errors) in cases.iter().zip(schema_errors(&texts)) {
        let (status, stderr) = unitgen_validate(text);
        assert_eq!(status, 2, "{what}: unitgen accepts it\n{text}");
        assert!(
            !errors.is_empty(),
            "{what}: unitgen refuses it ({}), the schema does not\n{text}",
            stderr.trim_end()
        );
    }
}

#[test]
fn the_schema_accepts_what_unitgen_accepts() {
    let cases = [
        // A timer start in defaults starts every job.
        "version: 1\ndefaults: { timer: { on_boot: 15min } }\njobs:\n  a:\n    command: [/usr/bin/true]\n",
        "version: 1\njobs:\n  a:\n    timer: { on_boot: 15min, on_unit_active: 1d }\n    command: [/usr/bin/true]\n",
        "version: 1\njobs:\n  a:\n    cron: \"@daily\"\n    command: [/usr/bin/true]\n",
        // Numbers and booleans where a string is expected mean their text.
        "version: 1\njobs:\n  a:\n    schedule: daily\n    timeout: 30\n    command: [/usr/bin/env, 10, true]\n",
        "version: 1\njobs:\n  a:\n    schedule: daily\n    command: [/usr/bin/true]\n    service: { protect_system: strict, protect_home: true, nice: -5 }\n",
    ];
    let texts: Vec<String> = cases.iter().map(|t| t.to_string()).collect();
    for (text, errors) in texts.iter().zip(schema_errors(&texts)) {
        assert_eq!(unitgen_validate(text).0, 0, "unitgen refuses:\n{text}");
        assert!(errors.is_empty(), "the schema refuses {errors:?}:\n{text}");
    }
}

/// The job-name pattern (`escape::JOB_NAME_PATTERN`) and the name check
/// (`UnitName::job_base`) agree, name by name.
#[test]
fn job_names_agree_with_unitgen() {
    let names = [
        "backup",
        "a:b_c.d-e",
        "wallet@hot",
        "wallet@hot.2",
        "_x",
        "0day",
        "a@-",
        "a@",
        "@b",
        "a@b@c",
        ".hidden",
        "-opt",
        "a b",
        "a/b",
        "a\\\\b",
        "100%",
        "ünï",
        "unitgen-notify@x",
        "UNITGEN-NOTIFY@x",
        "unitgen-notify",
        &"j".repeat(247),
        &"j".repeat(248),
    ];
    let texts: Vec<String> = names
        .iter()
        .map(|n| {
            let quoted = serde_json::to_string(n).unwrap();
            format!("version: 1\njobs:\n  {quoted}:\n{JOB}")
        })
        .collect();
    let mut accepted = 0;
    for ((name, text), errors) in names.iter().zip(&texts).zip(schema_errors(&texts)) {
        let (status, stderr) = unitgen_validate(text);
        assert_eq!(
            status == 0,
            errors.is_empty(),
            "`{name}`: unitgen says {status} ({}), the schema {errors:?}",
            stderr.trim_end()
        );
        accepted += usize::from(status == 0);
    }
    assert_eq!(accepted, 9, "the valid names above");
}
