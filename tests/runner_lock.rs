//! The job lock with the real `unitgen-runner` binary, two (or more)
//! runners contending: a host lock (flock(2) in a temp lock folder) and an
//! etcd lock (a real etcd). A holder is a runner whose step hangs: an RPC
//! to a port that accepts connections and never answers.
//!
//! Proven here: a second run waits, then fails or skips as configured; the
//! lock is free again after a SIGKILLed holder (at once for a host lock,
//! when the lease expires for an etcd one) and a waiter takes it; SIGTERM
//! stops a run and releases its lock; two runners with different names
//! exclude each other through etcd, and `etcdctl lock` takes part; a
//! holder whose lease is revoked, or that cannot reach etcd for as long
//! as the lease lives, stops its step and fails loudly.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::Etcd;

/// A running runner, its stderr collected as it comes.
struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unitgen-runner");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until stderr has a line containing `needle`.
    fn wait_for(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                // It ended: the reader may still be draining the pipe.
                std::thread::sleep(Duration::from_millis(100));
                assert!(
                    self.stderr().contains(needle),
                    "exited ({status}) without `{needle}`:\n{}",
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` within {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, sig) }, 0);
    }

    /// Waits (at most `within`) for the exit: its status (None: killed by
    /// a signal) and all of stderr.
    fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.reader.take().unwrap().join().unwrap();
        (status.code(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that accepts connections (into the listen backlog) and never
/// answers: an RPC step to it runs until its timeout.
fn hung_server() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn hanging_step(server: &TcpListener) -> String {
    format!(
        r#"{{"rpc":{{"url":"http://{}/","method":"backupwallet","timeout":"5min"}}}}"#,
        server.local_addr().unwrap()
    )
}

/// Folders for a copy step that really runs once the lock is taken.
struct Copy {
    _dir: tempfile::TempDir,
    source: PathBuf,
    dest: PathBuf,
}

impl Copy {
    fn new() -> Copy {
        let dir = tempfile::tempdir().unwrap();
        let (source, dest) = (dir.path().join("data"), dir.path().join("backups"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(source.join("f.txt"), "data\n").unwrap();
        Copy {
            _dir: dir,
            source,
            dest,
        }
    }

    fn step(&self) -> String {
        format!(
            r#"{{"copy":{{"source":"{}","destination":"{}"}}}}"#,
            self.source.display(),
            self.dest.display()
        )
    }

    fn snapshots(&self) -> usize {
        std::fs::read_dir(&self.dest).unwrap().count()
    }
}

fn runner(job: &str, lock: &str, step: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
    cmd.env("JOURNAL_STREAM", "8:1")
        .args(["--job", job, "--lock", lock, "--step", step])
        .args(extra);
    cmd
}

fn host_runner(locks: &Path, job: &str, lock: &str, step: &str) -> Command {
    runner(job, lock, step, &["--lock-dir", locks.to_str().unwrap()])
}

/// Whether util-linux's flock(1) could take the lock file right now: the
/// seed's own tool, on the same file.
fn flock_free(file: &Path) -> bool {
    let out = Command::new("flock")
        .args(["-n", file.to_str().unwrap(), "true"])
        .output()
        .expect("run flock(1) (util-linux)");
    out.status.success()
}

const SECOND: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn a_second_run_waits_for_the_host_lock_then_fails_or_skips() {
    let locks = tempfile::tempdir().unwrap();
    let server = hung_server();
    let mut holder = Running::spawn(&mut host_runner(
        locks.path(),
        "holder",
        r#"{"name":"backups"}"#,
        &hanging_step(&server),
    ));
    holder.wait_for("<6>took the host lock backups (", PATIENCE);
    let file = locks.path().join("backups.lock");
    assert!(!flock_free(&file), "flock(1) sees the runner's lock");

    let copy = Copy::new();
    let started = Instant::now();
    let r = common::run(&mut host_runner(
        locks.path(),
        "second",
        r#"{"name":"backups","wait":"1s","on_busy":"fail"}"#,
        &copy.step(),
    ));
    assert!(started.elapsed() >= SECOND, "it waited the full second");
    assert_eq!(r.status, 1, "{}", r.stderr);
    let prefix = format!(
        "<3>second: the host lock backups ({}) is held by job holder (pid {} on host ",
        file.display(),
        holder.pid()
    );
    assert!(r.stderr.starts_with(&prefix), "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("); gave up after waiting 1s (on_busy: fail)\n"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert_eq!(copy.snapshots(), 0, "the step did not run");

    let r = common::run(&mut host_runner(
        locks.path(),
        "third",
        r#"{"name":"backups","on_busy":"skip"}"#,
        &copy.step(),
    ));
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line:\n{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("<6>third: skipped: the host lock backups (")
            && r.stderr
                .ends_with("); gave up without waiting (no `wait`) (on_busy: skip)\n"),
        "{}",
        r.stderr
    );
    assert_eq!(copy.snapshots(), 0, "the step did not run");
    assert!(holder.is_running());
}

#[test]
fn the_host_lock_is_free_again_after_a_sigkilled_run_and_a_waiter_takes_it() {
    let locks = tempfile::tempdir().unwrap();
    let file = locks.path().join("backups.lock");
    let server = hung_server();
    let mut holder = Running::spawn(&mut host_runner(
        locks.path(),
        "holder",
        r#"{"name":"backups"}"#,
        &hanging_step(&server),
    ));
    holder.wait_for("took the host lock", PATIENCE);

    let copy = Copy::new();
    let mut waiter = Running::spawn(&mut host_runner(
        locks.path(),
        "waiter",
        r#"{"name":"backups","wait":"1min"}"#,
        &copy.step(),
    ));
    std::thread::sleep(SECOND);
    assert!(waiter.is_running(), "waits while the lock is held");
    assert!(!waiter.stderr().contains("took the host lock"));

    holder.signal(libc::SIGKILL);
    let (status, _) = holder.finish(PATIENCE);
    assert_eq!(status, None, "killed");
    let (status, stderr) = waiter.finish(PATIENCE);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("<6>took the host lock backups ("),
        "{stderr}"
    );
    assert_eq!(copy.snapshots(), 1);
    assert!(flock_free(&file), "released after the run");
}

#[test]
fn sigterm_stops_a_run_and_releases_its_host_lock() {
    let locks = tempfile::tempdir().unwrap();
    let server = hung_server();
    let mut holder = Running::spawn(&mut host_runner(
        locks.path(),
        "holder",
        r#"{"name":"backups"}"#,
        &hanging_step(&server),
    ));
    holder.wait_for("took the host lock", PATIENCE);
    holder.signal(libc::SIGTERM);
    let (status, stderr) = holder.finish(PATIENCE);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.ends_with(
            "<3>holder: stopped by SIGTERM during step 1/1 (rpc backupwallet); later steps did \
             not run\n"
        ),
        "{stderr}"
    );
    let file = locks.path().join("backups.lock");
    assert!(flock_free(&file));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "",
        "the holder's line is cleared"
    );
}

fn etcd_runner(etcd: &Etcd, job: &str, lock: &str, step: &str) -> Command {
    runner(
        job,
        lock,
        step,
        &["--etcd-endpoint", &etcd.endpoint(), "--etcd-timeout", "1s"],
    )
}

/// The contenders' keys under `name/`.
fn contenders(etcd: &Etcd, name: &str) -> Vec<String> {
    etcd.ctl(&["get", "--prefix", "--keys-only", &format!("{name}/")])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_etcd_lock_excludes_a_runner_on_another_host_until_the_holders_lease_expires() {
    let etcd = Etcd::start();
    let server = hung_server();
    let lock = |rest: &str| format!(r#"{{"etcd":"/locks/backups","ttl":"2s"{rest}}}"#);
    let mut holder = Running::spawn(&mut etcd_runner(
        &etcd,
        "fleet-a",
        &lock(""),
        &hanging_step(&server),
    ));
    holder.wait_for(
        "<6>took the etcd lock /locks/backups (as /locks/backups/",
        PATIENCE,
    );
    assert_eq!(contenders(&etcd, "/locks/backups").len(), 1);

    let copy = Copy::new();
    let r = common::run(&mut etcd_runner(
        &etcd,
        "fleet-b",
        &lock(r#","wait":"1s""#),
        &copy.step(),
    ));
    assert_eq!(r.status, 1, "{}", r.stderr);
    let prefix = format!(
        "<3>fleet-b: the etcd lock /locks/backups is held by job fleet-a (pid {} on host ",
        holder.pid()
    );
    assert!(r.stderr.starts_with(&prefix), "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("); gave up after waiting 1s (on_busy: fail)\n"),
        "{}",
        r.stderr
    );
    let r = common::run(&mut etcd_runner(
        &etcd,
        "fleet-c",
        &lock(r#","on_busy":"skip""#),
        &copy.step(),
    ));
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "<6>fleet-c: skipped: the etcd lock /locks/backups is held by job fleet-a"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(copy.snapshots(), 0);
    assert_eq!(
        contenders(&etcd, "/locks/backups").len(),
        1,
        "the runners that gave up withdrew their keys"
    );

    // A waiter gets the lock once the SIGKILLed holder's lease expires.
    let mut waiter = Running::spawn(&mut etcd_runner(
        &etcd,
        "fleet-d",
        &lock(r#","wait":"1min""#),
        &copy.step(),
    ));
    std::thread::sleep(SECOND);
    assert!(waiter.is_running(), "waits while the lock is held");
    holder.signal(libc::SIGKILL);
    let (status, _) = holder.finish(PATIENCE);
    assert_eq!(status, None);
    let (status, stderr) = waiter.finish(PATIENCE);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(
        stderr.contains("<6>took the etcd lock /locks/backups"),
        "{stderr}"
    );
    assert_eq!(copy.snapshots(), 1);
    // Released on the way out: no key, no lease left.
    assert!(contenders(&etcd, "/locks/backups").is_empty());
    assert_eq!(etcd.ctl(&["lease", "list"]).trim(), "found 0 leases");
}

#[test]
fn etcdctl_lock_and_the_runner_exclude_each_other() {
    let etcd = Etcd::start();
    let mut etcdctl = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", etcd.endpoint()))
        .args(["lock", "/locks/shared", "sleep", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run etcdctl lock");
    let deadline = Instant::now() + PATIENCE;
    while contenders(&etcd, "/locks/shared").is_empty() {
        assert!(Instant::now() < deadline, "etcdctl took no lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let copy = Copy::new();
    let r = common::run(&mut etcd_runner(
        &etcd,
        "backups",
        r#"{"etcd":"/locks/shared","wait":"1s"}"#,
        &copy.step(),
    ));
    let _ = etcdctl.kill();
    let _ = etcdctl.wait();
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr.starts_with(
            "<3>backups: the etcd lock /locks/shared is held by another run (which did not say \
             who it is); gave up after waiting 1s"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(copy.snapshots(), 0);
}

#[test]
fn a_revoked_lease_stops_the_run_and_fails_it_loudly() {
    let etcd = Etcd::start();
    let server = hung_server();
    let mut holder = Running::spawn(&mut etcd_runner(
        &etcd,
        "holder",
        r#"{"etcd":"/locks/lost","ttl":"5s"}"#,
        &hanging_step(&server),
    ));
    holder.wait_for("took the etcd lock /locks/lost", PATIENCE);
    let keys = contenders(&etcd, "/locks/lost");
    let lease = keys[0].rsplit('/').next().unwrap().to_owned();
    etcd.ctl(&["lease", "revoke", &lease]);
    let (status, stderr) = holder.finish(PATIENCE);
    assert_eq!(status, Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("<3>")).collect();
    assert_eq!(
        error,
        [format!(
            "<3>holder: lost the etcd lock /locks/lost during step 1/1 (rpc backupwallet): etcd \
             says its lease {lease} no longer exists (revoked, or expired); stopped the step so \
             that no two runs hold the lock at once; later steps did not run"
        )],
        "{stderr}"
    );
}

#[test]
fn a_holder_that_cannot_reach_etcd_stops_before_its_lease_can_expire() {
    let mut etcd = Etcd::start();
    let server = hung_server();
    let mut holder = Running::spawn(&mut etcd_runner(
        &etcd,
        "holder",
        r#"{"etcd":"/locks/cut","ttl":"2s"}"#,
        &hanging_step(&server),
    ));
    holder.wait_for("took the etcd lock /locks/cut", PATIENCE);
    let lease = contenders(&etcd, "/locks/cut")[0]
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    etcd.stop();
    let (status, stderr) = holder.finish(PATIENCE);
    assert_eq!(status, Some(1), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("<3>"))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    let head = format!(
        "<3>holder: lost the etcd lock /locks/cut during step 1/1 (rpc backupwallet): etcd \
         answered no keep-alive of its lease {lease} for "
    );
    assert!(error.starts_with(&head), "{error}");
    // The runner's own count of the silence: stopped inside the TTL.
    let silent: f64 = error[head.len()..]
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(silent < 2.0, "{error}");
    assert!(
        error.ends_with(
            "s, so the lease may have expired; stopped the step so that no two runs hold the \
             lock at once; later steps did not run"
        ),
        "{error}"
    );
}
