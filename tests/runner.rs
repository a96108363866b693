//! The `unitgen-runner` binary with real servers: secrets from etcd, the
//! wallet backup on litecoind, the snapshot on moto; order, exit codes,
//! journald lines, and no secret anywhere in what it prints.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::etcd::Etcd;
use common::litecoind::Litecoind;
use common::moto::{Moto, new_volume};
use unitgen::contract::aws::Credentials as RunnerCredentials;
use unitgen::contract::retention::RetentionPolicy;
use unitgen::contract::{RpcCall, RunnerStep, SnapshotJob};

const JOB: &str = "wallet-backup";
const CANARY: &str = "canary-7d1e0b2a-aws-secret";

struct Scene {
    etcd: Etcd,
    node: Litecoind,
    moto: Moto,
    volume: String,
    backups: tempfile::TempDir,
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn scene() -> Scene {
    let etcd = Etcd::start();
    etcd.put("/btc/password", common::litecoind::PASSWORD);
    etcd.put("/aws/access-key-id", "AKIDTEST");
    etcd.put("/aws/secret-access-key", CANARY);
    let node = Litecoind::start();
    node.create_wallet("hot");
    let moto = Moto::start();
    let volume = rt().block_on(async { new_volume(&moto.sdk().await).await });
    Scene {
        etcd,
        node,
        moto,
        volume,
        backups: tempfile::tempdir().unwrap(),
    }
}

impl Scene {
    fn backup_file(&self) -> std::path::PathBuf {
        self.backups.path().join("wallet.dat")
    }

    fn steps(&self) -> Vec<RunnerStep> {
        vec![
            RunnerStep::Rpc(RpcCall {
                url: self.node.url(),
                wallet: Some("hot".into()),
                method: "backupwallet".into(),
                params: vec![self.backup_file().display().to_string().into()],
                user: Some(common::litecoind::USER.into()),
                password_etcd: Some("/btc/password".into()),
                cookie_file: None,
                timeout: Some("30s".into()),
            }),
            RunnerStep::EbsSnapshot(SnapshotJob {
                volume_id: self.volume.clone(),
                region: "us-east-1".into(),
                credentials: RunnerCredentials::EtcdPrefix("/aws/".into()),
                tags: BTreeMap::from([("app".into(), "bitcoind".into())]),
                wait: Some("1min".into()),
                retention: Some(RetentionPolicy {
                    keep_last: Some(3),
                    ..RetentionPolicy::default()
                }),
                endpoint: Some(self.moto.endpoint()),
                request_timeout: None,
            }),
        ]
    }

    fn runner(&self, steps: &[RunnerStep], extra: &[&str]) -> common::Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
        cmd.env("JOURNAL_STREAM", "8:12345")
            .args(["--job", JOB, "--etcd-endpoint", &self.etcd.endpoint()])
            .args(extra);
        for step in steps {
            cmd.arg("--step").arg(serde_json::to_string(step).unwrap());
        }
        // The command line carries keys, never values.
        let argv = format!("{cmd:?}");
        assert!(!argv.contains(CANARY) && argv.contains("/btc/password"));
        common::run(&mut cmd)
    }

    fn our_snapshots(&self) -> Vec<String> {
        rt().block_on(async {
            let ec2 = self.moto.sdk().await;
            let out = ec2
                .describe_snapshots()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("tag:unitgen:job")
                        .values(JOB)
                        .build(),
                )
                .send()
                .await
                .unwrap();
            out.snapshots()
                .iter()
                .filter(|s| s.volume_id() == Some(self.volume.as_str()))
                .map(|s| s.snapshot_id().unwrap().to_owned())
                .collect()
        })
    }
}

fn assert_journal_lines(stderr: &str) {
    for line in stderr.lines() {
        let prio = line.get(..3).unwrap_or("");
        assert!(
            ["<3>", "<4>", "<6>"].contains(&prio),
            "not a journald line: {line:?}"
        );
    }
}

#[test]
fn a_full_run_backs_up_the_wallet_then_snapshots_the_volume() {
    let s = scene();
    let r = s.runner(&s.steps(), &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(std::fs::metadata(s.backup_file()).unwrap().len() > 0);
    assert_eq!(s.our_snapshots().len(), 1);
    assert_journal_lines(&r.stderr);
    assert!(
        r.stderr.contains("<6>step 1/2 (rpc backupwallet): ok in "),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("<6>wallet-backup: all 2 step(s) done in "),
        "{}",
        r.stderr
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(CANARY));

    // Runs 2..5: retention keeps the last 3.
    for _ in 0..4 {
        // moto's start times have one-second resolution.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let r = s.runner(&s.steps(), &[]);
        assert_eq!(r.status, 0, "{}", r.stderr);
    }
    assert_eq!(s.our_snapshots().len(), 3);
}

#[test]
fn a_failed_backup_means_no_snapshot() {
    let s = scene();
    s.etcd.put("/btc/password", CANARY);
    let r = s.runner(&s.steps(), &[]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert_journal_lines(&r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(
            "<3>wallet-backup: step 1/2 (rpc backupwallet) failed: RPC authentication failed at 127.0.0.1:"
        )),
        "{}",
        r.stderr
    );
    assert!(
        lines.contains(
            &format!(
                "<4>step 2/2 (ebs_snapshot {}) skipped: step 1 failed",
                s.volume
            )
            .as_str()
        ),
        "{}",
        r.stderr
    );
    assert!(s.our_snapshots().is_empty());
    assert!(!Path::new(&s.backup_file()).exists());
    assert!(!r.stderr.contains(CANARY));
}

#[test]
fn a_missing_secret_is_a_config_error_and_nothing_runs() {
    let s = scene();
    s.etcd.del("/aws/secret-access-key");
    let r = s.runner(&s.steps(), &[]);
    assert_eq!(r.status, 2, "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "<3>wallet-backup: cannot read secrets: etcd key `/aws/secret-access-key` does not exist; store it with `etcdctl put /aws/secret-access-key VALUE`\n"
    );
    assert!(!s.backup_file().exists(), "the wallet step did not run");
    assert!(s.our_snapshots().is_empty());
}

#[test]
fn etcd_down_fails_the_run_before_any_step() {
    let mut s = scene();
    s.etcd.stop();
    let r = s.runner(&s.steps(), &["--etcd-timeout", "2s"]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(&format!(
            "<3>wallet-backup: cannot read secrets: etcd at {} is unreachable",
            s.etcd.endpoint()
        )),
        "{}",
        r.stderr
    );
    assert!(!s.backup_file().exists());
}

#[test]
fn a_dry_run_changes_nothing() {
    let s = scene();
    let r = s.runner(&s.steps(), &["--dry-run"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("dry run, would call `backupwallet`"),
        "{}",
        r.stderr
    );
    assert!(!s.backup_file().exists());
    assert!(s.our_snapshots().is_empty());
}

#[test]
fn a_malformed_step_is_a_config_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"))
        .args(["--job", JOB, "--step", r#"{"rpc":{"url":"http://x/"}}"#])
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(
            "error: wallet-backup: step 1 of 1: not a valid step (missing field `method`"
        ),
        "{stderr}"
    );
}
