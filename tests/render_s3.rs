//! What render refuses in the S3 steps, exactly as users see it (exit 2,
//! one line per problem at the spec key), and that the runner refuses the
//! same step: one contract for both.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const HEAD: &str = "version: 1\ndefaults: { image: r/unitgen-runner:1 }\njobs:\n";

fn assert_fails(dir: &Path, jobs: &str, stderr: &str) {
    write(&dir.join("unitgen.yaml"), &format!("{HEAD}{jobs}"));
    let r = run(unitgen().arg("validate").current_dir(dir));
    assert_eq!(r.stderr, stderr);
    assert_eq!(r.status, 2);
    let r = run(unitgen().arg("render").current_dir(dir));
    assert_eq!(r.status, 2, "render refuses it too: {}", r.stderr);
    assert!(!dir.join("units").exists(), "nothing written");
}

const SYNC_JOB: &str = "  up:
    schedule: daily
    container: { volumes: [\"/backups:/backups:ro\"] }
    steps:
";

#[test]
fn a_bad_bucket_name() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        &format!(
            "{SYNC_JOB}      - s3_sync: {{ source: /backups, bucket: My_Backups, prefix: host1/, region: us-east-1, credentials: default_chain }}\n"
        ),
        "error: unitgen.yaml:8:46: jobs.up.steps[0].s3_sync.bucket: `My_Backups` is not an S3 bucket name: use only lowercase letters, digits, `.` and `-`\n",
    );
}

#[test]
fn a_relative_source_and_a_prefix_that_is_no_folder() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        &format!(
            "{SYNC_JOB}      - s3_sync: {{ source: backups, bucket: my-backups, prefix: host1, region: us-east-1, credentials: default_chain }}\n"
        ),
        "error: unitgen.yaml:8:28: jobs.up.steps[0].s3_sync.source: `backups` must be an absolute path inside the runner's container (mount it with `container.volumes`)\n\
         error: unitgen.yaml:8:65: jobs.up.steps[0].s3_sync.prefix: `host1` must end with `/` (files go below it: `host1/a.txt`); leave `prefix` out for the bucket's top\n",
    );
}

#[test]
fn a_source_outside_every_mounted_folder() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "  up:
    schedule: daily
    container: { volumes: [\"/data:/data:ro\", \"/srv/backups:/backups2\"] }
    steps:
      - s3_sync: { source: /backups, bucket: my-backups, region: us-east-1, credentials: default_chain }
",
        "error: unitgen.yaml:8:28: jobs.up.steps[0].s3_sync.source: `/backups` is not inside a folder mounted into the runner's container (the job mounts only /data, /backups2), so the runner would find nothing to upload; add a volume such as `container.volumes: [\"/HOST/FOLDER:/backups:ro\"]`\n",
    );
}

#[test]
fn a_bad_storage_class_and_too_few_days() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "  life:
    schedule: daily
    steps:
      - s3_lifecycle:
          bucket: my-backups
          region: us-east-1
          credentials: default_chain
          rules:
            - { id: unitgen-archive, prefix: host1/, transition_days: 30, storage_class: GLACEIR }
            - { id: unitgen-ia, prefix: host2/, transition_days: 7, storage_class: STANDARD_IA }
            - { id: unitgen-cold, prefix: host3/, transition_days: 30, storage_class: glacier }
            - { id: archive, prefix: host4/, transition_days: 30, storage_class: GLACIER, expiration_days: 30 }
",
        "error: unitgen.yaml:12:90: jobs.life.steps[0].s3_lifecycle.rules[0].storage_class: `GLACEIR` is not a storage class a lifecycle rule can transition to; use one of GLACIER, DEEP_ARCHIVE, GLACIER_IR, INTELLIGENT_TIERING, STANDARD_IA, ONEZONE_IA\n\
         error: unitgen.yaml:13:66: jobs.life.steps[0].s3_lifecycle.rules[1].transition_days: S3 transitions objects to STANDARD_IA only after they have been stored at least 30 days; set `transition_days: 30` or more\n\
         error: unitgen.yaml:14:87: jobs.life.steps[0].s3_lifecycle.rules[2].storage_class: `glacier` is not a storage class a lifecycle rule can transition to (did you mean `GLACIER`?); use one of GLACIER, DEEP_ARCHIVE, GLACIER_IR, INTELLIGENT_TIERING, STANDARD_IA, ONEZONE_IA\n\
         error: unitgen.yaml:15:21: jobs.life.steps[0].s3_lifecycle.rules[3].id: `archive` must start with `unitgen-` and name the rule (e.g. `unitgen-archive`): unitgen only ever changes rules with that prefix, and keeps every other rule of the bucket as it is\n\
         error: unitgen.yaml:15:108: jobs.life.steps[0].s3_lifecycle.rules[3].expiration_days: S3 requires expiration after the transition: set more than `transition_days` (30)\n",
    );
}

#[test]
fn two_lifecycle_steps_on_one_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        "  a:
    schedule: daily
    steps:
      - s3_lifecycle: { bucket: my-backups, region: us-east-1, credentials: default_chain, rules: [{ id: unitgen-a, expiration_days: 5 }] }
  b:
    schedule: daily
    steps:
      - s3_lifecycle: { bucket: my-backups, region: us-east-1, credentials: default_chain, rules: [{ id: unitgen-b, expiration_days: 5 }] }
",
        "error: unitgen.yaml:11:33: jobs.b.steps[0].s3_lifecycle.bucket: `jobs.a.steps[0].s3_lifecycle` already manages the lifecycle rules of bucket `my-backups`; each `s3_lifecycle` step owns all of a bucket's `unitgen-` rules (it removes those it does not list), so two would undo each other on every run: list all the rules in one step\n",
    );
}

#[test]
fn unknown_keys_and_values_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        tmp.path(),
        &format!(
            "{SYNC_JOB}      - s3_sync: {{ source: /backups, bucket: my-backups, region: us-east-1, credentials: default_chain, compare: md5, delet: true }}\n"
        ),
        "error: unitgen.yaml:8:105: jobs.up.steps[0].s3_sync.compare: unknown value `md5`; expected one of: size, checksum\n\
         error: unitgen.yaml:8:119: jobs.up.steps[0].s3_sync.delet: unknown key `delet` (did you mean `delete`?)\n",
    );
}

/// What render refuses, the runner refuses, before anything runs.
#[test]
fn the_runner_refuses_what_render_refuses() {
    let cases = [
        (
            r#"{"s3_sync":{"source":"/b","bucket":"My_Backups","region":"us-east-1","credentials":"default_chain"}}"#,
            "`bucket`: `My_Backups` is not an S3 bucket name",
        ),
        (
            r#"{"s3_sync":{"source":"b","bucket":"bkt","region":"us-east-1","credentials":"default_chain"}}"#,
            "`source`: `b` must be an absolute path",
        ),
        (
            r#"{"s3_lifecycle":{"bucket":"bkt","region":"us-east-1","credentials":"default_chain","rules":[{"id":"unitgen-a","transition_days":7,"storage_class":"ONEZONE_IA"}]}}"#,
            "`rules[0].transition_days`: S3 transitions objects to ONEZONE_IA only after",
        ),
        (
            r#"{"s3_lifecycle":{"bucket":"bkt","region":"us-east-1","credentials":"default_chain","rules":[{"id":"unitgen-a","transition_days":7,"storage_class":"TAPE"}]}}"#,
            "`rules[0].storage_class`: `TAPE` is not a storage class",
        ),
    ];
    for (step, want) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"))
            .args(["--job", "j", "--step", step])
            .env_remove("JOURNAL_STREAM")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with("error: j: step 1 of 1 ("), "{stderr}");
        assert!(stderr.contains(want), "{stderr} lacks {want}");
        assert!(stderr.trim_end().ends_with("; refused"), "{stderr}");
    }
}

#[test]
fn a_good_spec_renders_keys_not_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("unitgen.yaml"),
        &format!(
            "{HEAD}{SYNC_JOB}      - s3_sync: {{ source: /backups/, bucket: my-backups, prefix: host1/, compare: checksum, region: us-east-1, credentials: {{ etcd_prefix: /aws/ }} }}\n"
        ),
    );
    write(
        &tmp.path().join("values.yaml"),
        "/aws/access-key-id: null\n/aws/secret-access-key: null\n",
    );
    // No runner etcd in the spec: the keys are refused until there is one.
    let r = run(unitgen()
        .args(["render", "--stdout", "--values", "values.yaml"])
        .current_dir(tmp.path()));
    assert_eq!(r.status, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("steps read secrets from etcd at run time, but `etcd.endpoints` is empty"),
        "{}",
        r.stderr
    );
    let spec = std::fs::read_to_string(tmp.path().join("unitgen.yaml")).unwrap();
    write(
        &tmp.path().join("unitgen.yaml"),
        &spec.replace(
            "version: 1\n",
            "version: 1\netcd: { endpoints: [\"http://172.17.0.1:2379\"] }\n",
        ),
    );
    let r = run(unitgen()
        .args(["render", "--stdout", "--values", "values.yaml"])
        .current_dir(tmp.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains(
            r#"--step '{"s3_sync":{"source":"/backups/","bucket":"my-backups","prefix":"host1/","compare":"checksum","delete":false,"region":"us-east-1","credentials":{"etcd_prefix":"/aws/"}}}'"#
        ),
        "{}",
        r.stdout
    );
}
