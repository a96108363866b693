//! `unitgen-runner`: runs one job's steps inside its container.
//!
//! The unit is the only thing fleet ships, so the runner takes its whole
//! job from its command line (one JSON object per `--step`, see
//! [`crate::contract`]); each step is judged by the contract's own rules
//! before anything runs. Secrets are read from etcd at run time and live
//! only in [`SecretString`](crate::contract::secret::SecretString)s. Steps
//! run in order; the first that fails stops the run, so a failed wallet
//! backup never leads to a snapshot, and a failed snapshot never to pruning.

pub mod ebs;
pub mod log;
pub mod retention;
pub mod rpc;
pub mod s3;
mod secrets;

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

use crate::contract::RunnerStep;
use crate::contract::invocation as flag;

/// Exit status when a step failed (or etcd could not be read).
pub const EXIT_STEP_FAILED: i32 = 1;
/// Exit status when the job itself is wrong: arguments, a step's JSON, a
/// retention policy, a secret key that does not exist.
pub const EXIT_CONFIG: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "unitgen-runner",
    version,
    about = "Run a unitgen backup job's steps (inside its container)",
    long_about = "Runs the steps of one backup job in order, as rendered into its unit by \
`unitgen render`: each --step is one JSON object. Secrets (RPC passwords, AWS keys) are read \
from etcd at run time; only their keys are on this command line.\n\nExit status: 0 ok, \
1 a step failed (later steps did not run), 2 the job is misconfigured (nothing ran).",
    after_help = "\
Examples:
  unitgen-runner --job wallet --etcd-endpoint http://172.17.0.1:2379 \\
    --step '{\"rpc\":{\"url\":\"http://bitcoind:8332/\",\"method\":\"backupwallet\",\"params\":[\"/backups/w.dat\"],\"user\":\"rpc\",\"password_etcd\":\"/bitcoind/rpc/password\"}}'
  unitgen-runner --dry-run --job wallet --step '{\"ebs_snapshot\":{...}}'   List what retention would delete

Log lines go to stderr, one per event; with JOURNAL_STREAM set (systemd passes it through
`docker run --env JOURNAL_STREAM`) each carries a syslog priority for journald."
)]
pub struct Args {
    /// The job's name (its unit's name), used in logs and snapshot tags
    #[arg(long = flag::JOB, value_name = "NAME")]
    pub job: String,
    /// One step as JSON; repeat for each step, in order
    #[arg(long = flag::STEP, value_name = "JSON", required = true)]
    pub steps: Vec<String>,
    /// Change nothing: skip RPC calls, create and delete no snapshot,
    /// upload, delete and configure nothing in S3; list what would change
    #[arg(long = flag::DRY_RUN)]
    pub dry_run: bool,
    /// etcd endpoint for secrets; repeat for several
    #[arg(long = flag::ETCD_ENDPOINT, value_name = "URL")]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate (PEM) for https:// etcd endpoints
    #[arg(long = flag::ETCD_CA_FILE, value_name = "FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// etcd client certificate (PEM)
    #[arg(long = flag::ETCD_CERT_FILE, value_name = "FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// etcd client key (PEM)
    #[arg(long = flag::ETCD_KEY_FILE, value_name = "FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user; the password comes from UNITGEN_ETCD_PASSWORD or --etcd-password-file
    #[arg(long = flag::ETCD_USER, value_name = "USER")]
    pub etcd_user: Option<String>,
    /// File holding the etcd password (mounted into the container)
    #[arg(long = flag::ETCD_PASSWORD_FILE, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// etcd connect and request timeout
    #[arg(long = flag::ETCD_TIMEOUT, value_name = "SPAN", default_value = "10s")]
    pub etcd_timeout: String,
}

/// Why a run stopped.
#[derive(Debug)]
pub enum Failure {
    /// The job is wrong; nothing ran.
    Config(String),
    /// A step (or reading its secrets) failed.
    Step(String),
}

/// Entry point of the `unitgen-runner` binary; returns the exit status.
pub fn main() -> i32 {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error(format!("{}: cannot start: {e}", args.job));
            return EXIT_STEP_FAILED;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(()) => 0,
        Err(Failure::Config(message)) => {
            log::error(format!("{}: {message}", args.job));
            EXIT_CONFIG
        }
        Err(Failure::Step(message)) => {
            log::error(format!("{}: {message}", args.job));
            EXIT_STEP_FAILED
        }
    }
}

/// Parses every step and judges it by the contract, before anything runs.
pub fn parse_steps(raw: &[String]) -> Result<Vec<RunnerStep>, Failure> {
    let mut steps = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let step: RunnerStep = serde_json::from_str(text).map_err(|e| {
            Failure::Config(format!(
                "step {} of {}: not a valid step ({e}); the unit must be rendered by a unitgen \
                 that matches this runner",
                i + 1,
                raw.len()
            ))
        })?;
        if let Some(v) = step.check().into_iter().next() {
            return Err(Failure::Config(format!(
                "step {} of {} ({}): {v}; refused",
                i + 1,
                raw.len(),
                step.kind()
            )));
        }
        steps.push(step);
    }
    Ok(steps)
}

pub async fn run(args: &Args) -> Result<(), Failure> {
    let steps = parse_steps(&args.steps)?;
    let secrets = secrets::read(args, &steps).await?;
    let total = steps.len();
    let started = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        let label = format!("step {}/{total} ({})", i + 1, step.label());
        let t = Instant::now();
        let result = match step {
            RunnerStep::Rpc(call) if args.dry_run => {
                log::info(format!(
                    "{label}: dry run, would call `{}` at {}",
                    call.method, call.url
                ));
                Ok(())
            }
            RunnerStep::Rpc(call) => rpc::call(
                call,
                call.password_etcd.as_deref().and_then(|k| secrets.get(k)),
            )
            .await
            .map(|_| ())
            .map_err(|e| Failure::Step(format!("{label} failed: {e}"))),
            RunnerStep::EbsSnapshot(job) => {
                let api = ebs::aws_ec2(
                    &job.region,
                    job.endpoint.as_deref(),
                    secrets.aws(&job.credentials),
                )
                .await;
                let options = ebs::Options {
                    dry_run: args.dry_run,
                    ..ebs::Options::default()
                };
                match ebs::run(&api, &args.job, job, &options).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_config() => Err(Failure::Config(format!("{label}: {e}"))),
                    Err(e) => Err(Failure::Step(format!("{label} failed: {e}"))),
                }
            }
            RunnerStep::S3Sync(job) => s3_result(
                &label,
                s3::run_sync(job, secrets.aws(&job.credentials), args.dry_run).await,
            ),
            RunnerStep::S3Lifecycle(job) => s3_result(
                &label,
                s3::run_lifecycle(job, secrets.aws(&job.credentials), args.dry_run).await,
            ),
        };
        if let Err(failure) = result {
            for (j, later) in steps.iter().enumerate().skip(i + 1) {
                log::warn(format!(
                    "step {}/{total} ({}) skipped: step {} failed",
                    j + 1,
                    later.label(),
                    i + 1
                ));
            }
            return Err(failure);
        }
        log::info(format!("{label}: ok in {:.2}s", t.elapsed().as_secs_f64()));
    }
    log::info(format!(
        "{}: all {total} step(s) done in {:.2}s",
        args.job,
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn s3_result(label: &str, result: Result<(), s3::S3Error>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.is_config() => Err(Failure::Config(format!("{label}: {e}"))),
        Err(e) => Err(Failure::Step(format!("{label} failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn bad_steps_are_config_errors_before_anything_runs() {
        let bad = |json: &str| match parse_steps(&[json.to_owned()]) {
            Err(Failure::Config(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(bad("{").starts_with("step 1 of 1: not a valid step"));
        assert!(bad(r#"{"shell":{}}"#).contains("unknown variant"));
        let snap = |retention: &str, wait: &str| {
            format!(
                r#"{{"ebs_snapshot":{{"volume_id":"vol-01234567","region":"us-east-1","credentials":"default_chain"{wait},"retention":{retention}}}}}"#
            )
        };
        assert!(bad(&snap("{}", r#","wait":"1h""#)).contains("empty retention policy"));
        assert!(
            bad(&snap(r#"{"keep_last":0}"#, r#","wait":"1h""#)).contains("empty retention policy")
        );
        assert!(bad(&snap(r#"{"keep_last":2}"#, "")).contains("needs `wait`"));
        assert!(parse_steps(&[snap(r#"{"keep_last":2}"#, r#","wait":"1h""#)]).is_ok());
        // What render refuses, the runner refuses: credentials in the URL.
        let rpc =
            r#"{"rpc":{"url":"http://rpcuser:hunter2@bitcoind:8332/","method":"backupwallet"}}"#;
        let m = bad(rpc);
        assert!(
            m.contains("credentials do not belong") && !m.contains("hunter2"),
            "{m}"
        );
    }

    #[test]
    fn the_runner_accepts_every_flag_the_generator_writes() {
        use crate::contract::invocation::{Invocation, RunnerEtcd};
        let step: RunnerStep = serde_json::from_str(
            r#"{"rpc":{"url":"http://b:8332/","method":"backupwallet","user":"u","password_etcd":"/p"}}"#,
        )
        .unwrap();
        let invocation = Invocation {
            job: "j".into(),
            etcd: Some(RunnerEtcd {
                endpoints: vec![
                    "http://172.17.0.1:2379".into(),
                    "http://10.0.0.2:2379".into(),
                ],
                ca_file: Some("/ca.pem".into()),
                cert_file: Some("/c.pem".into()),
                key_file: Some("/k.pem".into()),
                username: Some("runner".into()),
                password_file: Some("/pw".into()),
            }),
            steps: vec![step.clone()],
        };
        let mut argv = vec!["unitgen-runner".to_owned()];
        argv.extend(invocation.arg_groups().into_iter().flatten());
        let args = Args::try_parse_from(argv).expect("the runner parses what the generator writes");
        assert_eq!(args.job, "j");
        assert_eq!(args.etcd_endpoints.len(), 2);
        assert_eq!(args.etcd_user.as_deref(), Some("runner"));
        assert_eq!(args.etcd_password_file, Some(PathBuf::from("/pw")));
        assert_eq!(parse_steps(&args.steps).unwrap(), vec![step]);
    }
}
