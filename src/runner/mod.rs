//! `unitgen-runner`: runs one job's steps inside its container.
//!
//! The unit is the only thing fleet ships, so the runner takes its whole
//! job from its command line (one JSON object per `--step`, see
//! [`crate::contract`]); each step is judged by the contract's own rules
//! before anything runs. Secrets are read from etcd at run time and live
//! only in [`SecretString`](crate::contract::secret::SecretString)s. Steps
//! run in order; the first that fails stops the run, so a failed wallet
//! backup never leads to a snapshot, and a failed snapshot never to pruning.
//!
//! A job's lock (`--lock`, see `lock.rs`) is taken before the first step
//! and released after the last, however the run ends: the kernel drops a
//! host lock when the process dies, and an etcd lock lives only as long as
//! its lease. The steps run alongside a watch on that lease and on SIGTERM
//! (systemd's stop) and SIGINT: if either fires, the running step is
//! stopped (its future dropped; a copy stops at its next file or chunk),
//! the lock released, and the run fails with one line saying why. The
//! runner is PID 1 in its container, where signals without a handler are
//! ignored, so handling them is also what makes `systemctl stop` work.

pub mod aws;
pub mod copy;
pub mod ebs;
pub mod lock;
pub mod log;
pub mod notify;
pub mod retention;
pub mod rpc;
pub mod s3;
pub mod secrets;

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::contract::RunnerStep;
use crate::contract::invocation as flag;
use crate::contract::lock::{HOST_LOCK_DIR, JobLock, OnBusy};

/// How long a stopped step may take to undo what it started (abort an S3
/// multipart upload); systemd's default stop timeout is 90 s.
const STOP_GRACE: Duration = Duration::from_secs(20);

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
    --step '{\"rpc\":{\"url\":\"http://bitcoind:8332/\",\"method\":\"getwalletinfo\"}}'
  unitgen-runner --dry-run --job wallet --step '{\"ebs_snapshot\":{...}}'
                                          List what retention would delete

`unitgen-runner notify --help`: the failure mail, webhook and healthchecks pings.

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
    #[command(flatten)]
    pub etcd: secrets::EtcdFlags,
    /// The job's lock as JSON, held around all steps: `{"name":"backups","wait":"10s"}`
    /// (a host lock) or `{"etcd":"/locks/backups","wait":"10s","on_busy":"skip"}`
    #[arg(long = flag::LOCK, value_name = "JSON")]
    pub lock: Option<String>,
    /// Folder of host lock files (the unit mounts the host's here)
    #[arg(long = flag::LOCK_DIR, value_name = "DIR", default_value = HOST_LOCK_DIR)]
    pub lock_dir: PathBuf,
}

/// Why a run stopped.
#[derive(Debug)]
pub enum Failure {
    /// The job is wrong; nothing ran.
    Config(String),
    /// A step (or reading its secrets) failed.
    Step(String),
    /// Already logged, with this exit status: a failed step is logged
    /// when it fails, before the lines of the steps it skips, so the
    /// journal reads in order.
    Logged(i32),
}

impl Failure {
    /// Logs the run's error line (unless done already); returns the exit
    /// status.
    pub fn log(&self, job: &str) -> i32 {
        match self {
            Failure::Config(message) => {
                log::error(format!("{job}: {message}"));
                EXIT_CONFIG
            }
            Failure::Step(message) => {
                log::error(format!("{job}: {message}"));
                EXIT_STEP_FAILED
            }
            Failure::Logged(code) => *code,
        }
    }
}

/// Entry point of the `unitgen-runner` binary; returns the exit status.
pub fn main() -> i32 {
    // `unitgen-runner notify ...` has a command line of its own (see
    // `notify/`); the job's form stays as it is, so units rendered before
    // run unchanged.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv
        .get(1)
        .is_some_and(|a| a == crate::contract::notify::SUBCOMMAND)
    {
        return notify::main(argv.split_off(1));
    }
    let args = Args::parse_from(argv);
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
    let result = runtime.block_on(run(&args));
    // A copy stopped mid-run notices at its next file or chunk; do not
    // wait long for a thread stuck in a system call.
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => 0,
        Err(failure) => failure.log(&args.job),
    }
}

/// Parses every step and judges it by the contract, before anything runs.
pub fn parse_steps(raw: &[String]) -> Result<Vec<RunnerStep>, Failure> {
    let mut steps = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        let step: RunnerStep = serde_json::from_str(text).map_err(|e| {
            Failure::Config(format!(
                "step {} of {}: not a valid step ({}); the unit must be rendered by a unitgen \
                 that matches this runner",
                i + 1,
                raw.len(),
                crate::diag::plain_serde(&e.to_string())
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

/// Parses `--lock` and judges it by the contract, before anything runs.
pub fn parse_lock(args: &Args) -> Result<Option<JobLock>, Failure> {
    let Some(text) = &args.lock else {
        return Ok(None);
    };
    let lock: JobLock = serde_json::from_str(text).map_err(|e| {
        Failure::Config(format!(
            "--lock: not a valid lock ({}); the unit must be rendered by a unitgen that \
             matches this runner",
            crate::diag::plain_serde(&e.to_string())
        ))
    })?;
    if let Some(v) = lock.check().into_iter().next() {
        return Err(Failure::Config(format!("--lock: {v}; refused")));
    }
    if lock.is_etcd() && args.etcd.endpoints.is_empty() {
        return Err(Failure::Config(
            "--lock: an etcd lock needs --etcd-endpoint (rendered from the spec's \
             `etcd.runner.endpoints`)"
                .into(),
        ));
    }
    Ok(Some(lock))
}

/// SIGTERM (systemd's stop, forwarded by `docker run`) and SIGINT.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Signals, Failure> {
        let install =
            |kind| signal(kind).map_err(|e| Failure::Step(format!("cannot handle signals: {e}")));
        Ok(Signals {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

pub async fn run(args: &Args) -> Result<(), Failure> {
    let steps = parse_steps(&args.steps)?;
    let lock = parse_lock(args)?;
    let mut signals = Signals::install()?;
    let secrets = tokio::select! {
        s = secrets::read(&args.etcd, &steps) => s?,
        sig = signals.recv() => return Err(Failure::Step(format!("stopped by {sig} before the first step"))),
    };
    let mut held = match &lock {
        None => None,
        Some(l) if args.dry_run => {
            log::info(format!(
                "dry run: would take the {} (wait {}, then {})",
                l.describe(),
                l.wait.as_deref().unwrap_or("0"),
                l.on_busy().as_str()
            ));
            None
        }
        Some(l) => match lock::take(args, l, &mut signals).await? {
            lock::Taken::Held(held) => Some(held),
            lock::Taken::Busy(why) if l.on_busy() == OnBusy::Skip => {
                log::info(format!("{}: skipped: {why} (on_busy: skip)", args.job));
                return Ok(());
            }
            lock::Taken::Busy(why) => return Err(Failure::Step(format!("{why} (on_busy: fail)"))),
        },
    };
    let current = Cell::new(0);
    // A stop from outside is passed to the steps that have something to
    // undo before they end (an S3 multipart upload to abort): they get a
    // short grace period; every other step is simply dropped.
    let cancel = Arc::new(AtomicBool::new(false));
    let label = |i: usize| {
        steps
            .get(i)
            .map(|s| format!("step {}/{} ({})", i + 1, steps.len(), s.label()))
            .unwrap_or_default()
    };
    let result = {
        let lost = async {
            match held.as_mut() {
                Some(h) => h.lost().await,
                None => std::future::pending().await,
            }
        };
        let steps_run = run_steps(args, &steps, &secrets, &current, &cancel);
        tokio::pin!(steps_run);
        tokio::select! {
            r = &mut steps_run => r,
            lost = lost => Err(Failure::Step(format!(
                "lost the {} during {}: {lost}; stopped the step so that no two runs hold the \
                 lock at once; later steps did not run",
                lock.as_ref().map(JobLock::describe).unwrap_or_default(),
                label(current.get())
            ))),
            sig = signals.recv() => {
                cancel.store(true, Ordering::SeqCst);
                let _ = tokio::time::timeout(STOP_GRACE, &mut steps_run).await;
                Err(Failure::Step(format!(
                    "stopped by {sig} during {}; later steps did not run",
                    label(current.get())
                )))
            }
        }
    };
    if let Some(held) = held {
        held.release().await;
    }
    result
}

/// The steps in order; `current` says which one runs (for messages when
/// the run is stopped from outside).
async fn run_steps(
    args: &Args,
    steps: &[RunnerStep],
    secrets: &secrets::Secrets,
    current: &Cell<usize>,
    cancel: &Arc<AtomicBool>,
) -> Result<(), Failure> {
    let total = steps.len();
    let started = Instant::now();
    for (i, step) in steps.iter().enumerate() {
        current.set(i);
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
                    job.request_limit(),
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
            RunnerStep::Copy(job) => {
                let options = copy::Options {
                    dry_run: args.dry_run,
                    ..copy::Options::default()
                };
                match copy::run_async(&args.job, job, options).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_config() => Err(Failure::Config(format!("{label}: {e}"))),
                    Err(e) => Err(Failure::Step(format!("{label} failed: {e}"))),
                }
            }
            RunnerStep::S3Sync(job) => s3_result(
                &label,
                s3::run_sync(
                    job,
                    secrets.aws(&job.credentials),
                    args.dry_run,
                    cancel.clone(),
                )
                .await,
            ),
            RunnerStep::S3Lifecycle(job) => s3_result(
                &label,
                s3::run_lifecycle(job, secrets.aws(&job.credentials), args.dry_run).await,
            ),
        };
        if let Err(failure) = result {
            // The failure first, then what it skipped: the journal reads
            // in the order things happened.
            let code = failure.log(&args.job);
            for (j, later) in steps.iter().enumerate().skip(i + 1) {
                log::warn(format!(
                    "step {}/{total} ({}) skipped: step {} failed",
                    j + 1,
                    later.label(),
                    i + 1
                ));
            }
            return Err(Failure::Logged(code));
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
            lock: Some(JobLock {
                name: None,
                etcd: Some("/locks/j".into()),
                wait: Some("10s".into()),
                on_busy: Some(OnBusy::Skip),
                ttl: Some("5s".into()),
            }),
            steps: vec![step.clone()],
        };
        let mut argv = vec!["unitgen-runner".to_owned()];
        argv.extend(invocation.arg_groups().into_iter().flatten());
        let args = Args::try_parse_from(argv).expect("the runner parses what the generator writes");
        assert_eq!(args.job, "j");
        assert_eq!(args.etcd.endpoints.len(), 2);
        assert_eq!(args.etcd.user.as_deref(), Some("runner"));
        assert_eq!(args.etcd.password_file, Some(PathBuf::from("/pw")));
        assert_eq!(parse_steps(&args.steps).unwrap(), vec![step]);
        assert_eq!(parse_lock(&args).unwrap(), invocation.lock);
        assert_eq!(args.lock_dir, PathBuf::from(HOST_LOCK_DIR));
    }
}
