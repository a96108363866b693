//! etcd faults under the real binaries: a 3-member cluster with a member
//! killed, hung (SIGSTOP), partitioned, or a quorum lost, under `unitgen
//! render`, `unitgen-runner` and `unitgen watch`. While a quorum is up,
//! every command must succeed, and a failed member may cost at most one
//! `--etcd-timeout`; when etcd cannot serve, the one error line must say
//! why (no leader, unreachable, timed out) and name each member tried.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd_cluster::Cluster;
use common::{run, unitgen, write};

/// The `--etcd-timeout` of these tests: short, so a test that waits on a
/// hung member stays fast, and long enough for a loaded 2-core machine.
const TIMEOUT: &str = "1s";
const TIMEOUT_D: Duration = Duration::from_secs(1);
/// "At most about one timeout": one timeout plus process start and the
/// reads themselves on a loaded machine.
const ONE_TIMEOUT: Duration = Duration::from_millis(1800);
const TRIES: usize = 40;

const CANARY: &str = "canary-3b9f0d7e-secret-value";
const VOLUME: &str = "vol-0123456789abcdef0";

fn spec(endpoints: &[String]) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        r#"version: 1
etcd:
  endpoints: [{}]
  runner:
    endpoints: ["http://172.17.0.1:2379"]
defaults:
  target: fleet
  image: {{ etcd: /unitgen/image }}
jobs:
  wallet:
    schedule: daily
    steps:
      - rpc:
          url: http://bitcoind:8332/
          method: backupwallet
          params: ["/backups/wallet.dat"]
          user: {{ etcd: /bitcoind/rpc/user }}
          password: {{ etcd: /bitcoind/rpc/password }}
      - ebs_snapshot:
          volume_id: {{ etcd: /aws/volume-id }}
          region: us-east-1
          credentials: {{ etcd_prefix: /aws/ }}
"#,
        endpoints.join(", ")
    )
}

struct Scene {
    cluster: Cluster,
    dir: tempfile::TempDir,
}

fn scene() -> Scene {
    let cluster = Cluster::start();
    cluster.put(
        "/unitgen/image",
        "registry.example.com/unitgen-runner:0.1.0",
    );
    cluster.put("/bitcoind/rpc/user", "bitcoinrpc");
    cluster.put("/bitcoind/rpc/password", CANARY);
    cluster.put("/aws/volume-id", VOLUME);
    cluster.put("/aws/access-key-id", &format!("AKID{CANARY}"));
    cluster.put("/aws/secret-access-key", &format!("SECRET{CANARY}"));
    let dir = tempfile::tempdir().unwrap();
    let s = Scene { cluster, dir };
    s.write_spec(&s.cluster.endpoints());
    s
}

/// One command's outcome and how long it took.
struct Try {
    run: common::Run,
    took: Duration,
}

impl Scene {
    fn spec_path(&self) -> PathBuf {
        self.dir.path().join("unitgen.yaml")
    }

    fn write_spec(&self, endpoints: &[String]) {
        write(&self.spec_path(), &spec(endpoints));
    }

    fn render(&self, out: &Path, timeout: &str) -> Try {
        render(&self.spec_path(), out, timeout)
    }

    /// `unitgen-runner --dry-run` with three RPC steps, each reading its
    /// password from etcd: three secret reads, then nothing else.
    fn runner(&self, endpoints: &[String], timeout: &str) -> Try {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
        cmd.env_remove("JOURNAL_STREAM")
            .env_remove("UNITGEN_ETCD_PASSWORD")
            .args(["--job", "wallet", "--dry-run", "--etcd-timeout", timeout]);
        for e in endpoints {
            cmd.args(["--etcd-endpoint", e]);
        }
        for key in [
            "/bitcoind/rpc/password",
            "/aws/access-key-id",
            "/aws/secret-access-key",
        ] {
            cmd.arg("--step").arg(format!(
                r#"{{"rpc":{{"url":"http://127.0.0.1:9/","method":"backupwallet","user":"u","password_etcd":"{key}"}}}}"#
            ));
        }
        let started = Instant::now();
        let run = run(&mut cmd);
        Try {
            run,
            took: started.elapsed(),
        }
    }

    /// `TRIES` renders, `parallel` at a time (each into its own folder).
    fn renders(&self, parallel: usize) -> Vec<Try> {
        many(parallel, |n| {
            let out = self.dir.path().join(format!("units-{n}"));
            let t = self.render(&out, TIMEOUT);
            if t.run.status == 0 {
                let unit = std::fs::read_to_string(out.join("wallet.service")).unwrap();
                assert!(unit.contains(VOLUME), "{unit}");
            }
            t
        })
    }

    fn runners(&self, parallel: usize) -> Vec<Try> {
        let endpoints = self.cluster.endpoints();
        many(parallel, |_| {
            let t = self.runner(&endpoints, TIMEOUT);
            let all = format!("{}{}", t.run.stdout, t.run.stderr);
            assert!(!all.contains(CANARY), "a secret leaked: {all}");
            t
        })
    }
}

fn render(spec: &Path, out: &Path, timeout: &str) -> Try {
    let started = Instant::now();
    let run = run(unitgen()
        .env_remove("UNITGEN_ETCD_PASSWORD")
        .env_remove("UNITGEN_ETCD_ENDPOINTS")
        .args(["render", "--etcd-timeout", timeout, "-f"])
        .arg(spec)
        .arg("-o")
        .arg(out));
    Try {
        run,
        took: started.elapsed(),
    }
}

/// Runs `f(0..TRIES)`, `parallel` at a time.
fn many(parallel: usize, f: impl Fn(usize) -> Try + Sync) -> Vec<Try> {
    let next = Mutex::new(0..TRIES);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                loop {
                    let Some(n) = next.lock().unwrap().next() else {
                        return;
                    };
                    let t = f(n);
                    done.lock().unwrap().push(t);
                }
            });
        }
    });
    done.into_inner().unwrap()
}

/// Asserts that every try succeeded, quietly, within about one timeout;
/// prints the rate either way (the numbers the fix is measured by).
fn assert_all_ok(what: &str, tries: &[Try], within: Duration) {
    let ok = tries.iter().filter(|t| t.run.status == 0).count();
    let slowest = tries.iter().map(|t| t.took).max().unwrap_or_default();
    eprintln!(
        "{what}: {ok}/{} succeeded, slowest {:.2}s",
        tries.len(),
        slowest.as_secs_f64()
    );
    if let Some(failed) = tries.iter().find(|t| t.run.status != 0) {
        panic!(
            "{what}: {ok}/{} succeeded; a failure (exit {} after {:.2}s):\n{}",
            tries.len(),
            failed.run.status,
            failed.took.as_secs_f64(),
            failed.run.stderr
        );
    }
    assert!(
        slowest <= within,
        "{what}: the slowest took {:.2}s, more than {:.2}s",
        slowest.as_secs_f64(),
        within.as_secs_f64()
    );
}

// ---------------------------------------------------------------- render

#[test]
fn render_always_succeeds_with_a_member_killed() {
    let mut s = scene();
    // The first endpoint: every fresh process tries it first.
    s.cluster.kill(0);
    s.cluster.wait_quorum();
    let tries = s.renders(1);
    assert_all_ok("render, member 0 of 3 killed", &tries, ONE_TIMEOUT);
    for t in &tries {
        assert_eq!(t.run.stderr, "", "a success is quiet");
    }
    // Back up, and then the next member down: still every render.
    s.cluster.restart(0);
    s.cluster.kill(1);
    s.cluster.wait_quorum();
    let tries = s.renders(2);
    assert_all_ok("render, member 1 of 3 killed", &tries, ONE_TIMEOUT);
}

#[test]
fn render_always_succeeds_within_one_timeout_with_a_member_hung() {
    let mut s = scene();
    s.cluster.stop(0);
    s.cluster.wait_quorum();
    let tries = s.renders(4);
    assert_all_ok("render, member 0 of 3 hung", &tries, ONE_TIMEOUT);
    s.cluster.cont(0);
    s.cluster.stop(2);
    s.cluster.wait_quorum();
    let tries = s.renders(4);
    assert_all_ok("render, member 2 of 3 hung", &tries, ONE_TIMEOUT);
}

/// The leader dies while renders run: the members that are left hold an
/// election (one to two election timeouts), and a render waits for it
/// instead of failing.
#[test]
fn render_rides_out_the_loss_of_the_leader() {
    let mut s = scene();
    let leader = s.cluster.leader();
    let (spec, dir) = (s.spec_path(), s.dir.path().to_owned());
    let stop = AtomicBool::new(false);
    let tries = std::thread::scope(|scope| {
        let renders = scope.spawn(|| {
            let mut tries = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let out = dir.join(format!("u{}", tries.len()));
                // The default timeout: an election must fit in it.
                tries.push(render(&spec, &out, "5s"));
            }
            tries
        });
        std::thread::sleep(Duration::from_millis(500));
        s.cluster.kill(leader);
        std::thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        renders.join().unwrap()
    });
    assert!(tries.len() >= 5, "only {} renders ran", tries.len());
    assert_all_ok(
        "render while the leader is killed",
        &tries,
        Duration::from_secs(6),
    );
}

// ---------------------------------------------------------------- runner

#[test]
fn the_runner_reads_its_secrets_with_a_member_killed() {
    let mut s = scene();
    s.cluster.kill(0);
    s.cluster.wait_quorum();
    let tries = s.runners(2);
    assert_all_ok("runner (3 secrets), member 0 killed", &tries, ONE_TIMEOUT);
    for t in &tries {
        assert!(
            t.run.stderr.contains("read the job's secrets from etcd"),
            "{}",
            t.run.stderr
        );
    }
}

#[test]
fn the_runner_reads_its_secrets_within_one_timeout_with_a_member_hung() {
    let mut s = scene();
    s.cluster.stop(0);
    s.cluster.wait_quorum();
    let tries = s.runners(4);
    assert_all_ok("runner (3 secrets), member 0 hung", &tries, ONE_TIMEOUT);
}

/// With a user, each member hands out its own token on first use: a
/// member that is down cannot, and the runner authenticates with the next.
#[test]
fn the_runner_authenticates_with_the_members_that_are_up() {
    let mut s = scene();
    s.cluster.enable_auth("unitgen", "right-password");
    let run = |s: &Scene| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
        cmd.env_remove("JOURNAL_STREAM")
            .env("UNITGEN_ETCD_PASSWORD", "right-password")
            .args(["--job", "wallet", "--dry-run", "--etcd-timeout", TIMEOUT])
            .args(["--etcd-user", "unitgen"]);
        for e in s.cluster.endpoints() {
            cmd.args(["--etcd-endpoint", &e]);
        }
        cmd.arg("--step").arg(
            r#"{"rpc":{"url":"http://127.0.0.1:9/","method":"backupwallet","user":"u","password_etcd":"/bitcoind/rpc/password"}}"#,
        );
        let started = Instant::now();
        let run = common::run(&mut cmd);
        Try {
            run,
            took: started.elapsed(),
        }
    };
    s.cluster.kill(0);
    s.cluster.wait_quorum();
    let tries: Vec<Try> = (0..10).map(|_| run(&s)).collect();
    assert_all_ok("runner with a user, member 0 killed", &tries, ONE_TIMEOUT);
    s.cluster.restart(0);
    s.cluster.stop(0);
    s.cluster.wait_quorum();
    let tries: Vec<Try> = (0..10).map(|_| run(&s)).collect();
    assert_all_ok("runner with a user, member 0 hung", &tries, ONE_TIMEOUT);
}

// ---------------------------------------------------------------- messages

#[test]
fn no_quorum_says_so_and_names_every_member() {
    let mut s = scene();
    s.cluster.kill(1);
    s.cluster.kill(2);
    s.cluster.wait_no_leader(0);
    let [e0, e1, e2] = [0, 1, 2].map(|i| s.cluster.endpoint(i));

    let t = s.render(&s.dir.path().join("units"), TIMEOUT);
    assert_eq!(t.run.status, 1, "{}", t.run.stderr);
    let line = t.run.stderr.clone();
    eprint!("2 of 3 killed: {line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!(
            "error: etcd at {e0},{e1},{e2} has no leader, so no quorum of its members is up \
             and connected (tried every member: {e0}: no leader; {e1}: unreachable ("
        )),
        "{line}"
    );
    assert!(line.contains(&format!("; {e2}: unreachable (")), "{line}");
    assert!(line.contains("onnection refused"), "{line}");
    assert!(
        line.ends_with("); start the members that are down, or reconnect them to the others\n"),
        "{line}"
    );
    assert!(t.took <= ONE_TIMEOUT, "{:?}", t.took);
    assert!(!s.dir.path().join("units").exists());

    // The runner says the same.
    let t = s.runner(&s.cluster.endpoints(), TIMEOUT);
    assert_eq!(t.run.status, 1, "{}", t.run.stderr);
    assert!(
        t.run.stderr.starts_with(&format!(
            "error: wallet: cannot read secrets: etcd at {e0},{e1},{e2} has no leader"
        )),
        "{}",
        t.run.stderr
    );

    // Hung instead of dead: still no quorum, and the hung ones are named
    // as not answering.
    s.cluster.restart(1);
    s.cluster.restart(2);
    s.cluster.wait_quorum();
    s.cluster.stop(1);
    s.cluster.stop(2);
    s.cluster.wait_no_leader(0);
    let t = s.render(&s.dir.path().join("units"), TIMEOUT);
    assert_eq!(t.run.status, 1, "{}", t.run.stderr);
    eprint!("2 of 3 hung: {}", t.run.stderr);
    assert!(
        t.run.stderr.starts_with(&format!(
            "error: etcd at {e0},{e1},{e2} has no leader, so no quorum of its members is up \
             and connected (tried every member: {e0}: no leader; {e1}: did not answer within 1s; \
             {e2}: did not answer within 1s); "
        )),
        "{}",
        t.run.stderr
    );
    assert!(t.took <= ONE_TIMEOUT, "{:?}", t.took);
}

#[test]
fn every_member_down_is_unreachable_and_each_is_named() {
    let mut s = scene();
    for i in 0..3 {
        s.cluster.kill(i);
    }
    let [e0, e1, e2] = [0, 1, 2].map(|i| s.cluster.endpoint(i));
    let t = s.render(&s.dir.path().join("units"), TIMEOUT);
    assert_eq!(t.run.status, 1, "{}", t.run.stderr);
    let line = &t.run.stderr;
    eprint!("3 of 3 killed: {line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with(&format!(
            "error: etcd at {e0},{e1},{e2} is unreachable (tried every member: {e0}: "
        )),
        "{line}"
    );
    for e in [&e1, &e2] {
        assert!(line.contains(&format!("; {e}: ")), "{line}");
    }
    assert_eq!(line.matches("onnection refused").count(), 3, "{line}");
    assert!(
        line.ends_with(
            "); check that etcd runs there, or set the endpoints (--etcd-endpoints, UNITGEN_ETCD_ENDPOINTS)\n"
        ),
        "{line}"
    );
    // Refused connections fail fast: nothing waits for a timeout.
    assert!(t.took < TIMEOUT_D, "{:?}", t.took);
}

// ---------------------------------------------------------------- partition

/// A member cut off from the majority still answers clients, from a store
/// that no longer changes. A read must never be served from it.
#[test]
fn a_partitioned_member_is_never_trusted() {
    let mut s = scene();
    let out = s.dir.path().join("units");
    assert_eq!(s.render(&out, TIMEOUT).run.status, 0);

    s.cluster.partition(0);
    s.cluster.put("/aws/volume-id", "vol-0ffffffffffffffff");
    // At once, before member 0 may even know it lost the leader: the
    // render must see the new value, not member 0's.
    let t = s.render(&out, TIMEOUT);
    assert_eq!(t.run.status, 0, "{}", t.run.stderr);
    let unit = std::fs::read_to_string(out.join("wallet.service")).unwrap();
    assert!(unit.contains("vol-0ffffffffffffffff"), "stale: {unit}");
    assert!(t.took <= ONE_TIMEOUT, "{:?}", t.took);
    // The partition is real: member 0 still holds the old value and
    // would hand it to a client that asked it alone, without a leader.
    assert_eq!(
        s.cluster.local_value(0, "/aws/volume-id").as_deref(),
        Some(VOLUME)
    );

    // Asked alone, once it knows it has no leader, it says so.
    s.cluster.wait_no_leader(0);
    s.write_spec(&[s.cluster.endpoint(0)]);
    let t = s.render(&s.dir.path().join("alone"), TIMEOUT);
    assert_eq!(t.run.status, 1, "{}", t.run.stderr);
    eprint!("the partitioned member alone: {}", t.run.stderr);
    assert!(
        t.run.stderr.starts_with(&format!(
            "error: etcd at {} has no leader, so no quorum of its members is up and connected (",
            s.cluster.endpoint(0)
        )),
        "{}",
        t.run.stderr
    );

    // Healed, it catches up.
    s.cluster.heal(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.cluster.local_value(0, "/aws/volume-id").as_deref() != Some("vol-0ffffffffffffffff") {
        assert!(Instant::now() < deadline, "member 0 never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- watch

struct Watch {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    fn start(dir: &Path, spec: &Path) -> Watch {
        let mut child = unitgen()
            .env_remove("UNITGEN_ETCD_PASSWORD")
            .args([
                "watch",
                "--debounce",
                "100ms",
                "--etcd-timeout",
                TIMEOUT,
                "-f",
            ])
            .arg(spec)
            .arg("-o")
            .arg(dir.join("units"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unitgen watch");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watch { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for `needle` on stderr; false if the watch exited first or
    /// `wait` passed.
    fn saw(&mut self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                // Let the reader thread catch the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return self.stderr().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` contains `text`; returns how long that took.
fn wait_for_unit(path: &Path, text: &str, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < wait {
        if std::fs::read_to_string(path).is_ok_and(|u| u.contains(text)) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn watch_starts_every_time_with_a_member_killed() {
    let mut s = scene();
    s.cluster.kill(0);
    s.cluster.wait_quorum();
    let mut started = 0;
    let tries = 20;
    for n in 0..tries {
        let dir = s.dir.path().join(format!("w{n}"));
        let mut w = Watch::start(&dir, &s.spec_path());
        if w.saw("watching ", Duration::from_secs(5)) && w.running() {
            started += 1;
        } else {
            eprintln!("watch {n} did not start:\n{}", w.stderr());
        }
    }
    eprintln!("watch, member 0 of 3 killed: {started}/{tries} started");
    assert_eq!(started, tries);
}

/// The members `pid` holds an established TCP connection to (read from
/// /proc: which of its sockets connect to which member's client port).
fn members_connected(pid: u32, cluster: &Cluster) -> Vec<usize> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let ports: Vec<String> = cluster
        .endpoints()
        .iter()
        .map(|e| {
            format!(
                "{:04X}",
                e.rsplit(':').next().unwrap().parse::<u16>().unwrap()
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut members: Vec<usize> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // rem_address, st (01: established), inode
            let (remote, state, inode) = (f.get(2)?, f.get(3)?, f.get(9)?);
            if *state != "01" || !inodes.contains(*inode) {
                return None;
            }
            let port = remote.rsplit(':').next()?;
            ports.iter().position(|p| p == port)
        })
        .collect();
    members.sort();
    members.dedup();
    members
}

/// A watch connected to member 0 only, so that a fault of member 0 is
/// certainly a fault of the member its stream is on. (A fresh process
/// asks the first endpoint first; only a member slow enough to be hedged
/// during the first render can add a second connection: then start over.)
fn watch_on_member_0(s: &Scene) -> Watch {
    for _ in 0..3 {
        let mut w = Watch::start(s.dir.path(), &s.spec_path());
        assert!(
            w.saw("watching ", Duration::from_secs(10)),
            "{}",
            w.stderr()
        );
        let connected = members_connected(w.child.id(), &s.cluster);
        if connected == [0] {
            return w;
        }
        eprintln!("the watch is connected to members {connected:?}; starting it again");
    }
    panic!("the watch never connected to member 0 alone");
}

/// The watch follows a change through each fault of the member its stream
/// is on.
fn watch_through(fault: &str, within: Duration) {
    let mut s = scene();
    let mut w = watch_on_member_0(&s);
    let unit = s.dir.path().join("units/wallet.service");
    assert!(wait_for_unit(&unit, VOLUME, Duration::from_secs(5)).is_some());
    match fault {
        "kill" => s.cluster.kill(0),
        "stop" => s.cluster.stop(0),
        "partition" => s.cluster.partition(0),
        _ => unreachable!(),
    }
    s.cluster.put("/aws/volume-id", "vol-0aaaaaaaaaaaaaaaa");
    let took = wait_for_unit(&unit, "vol-0aaaaaaaaaaaaaaaa", within);
    eprintln!("watch, member 0 {fault}: change seen after {took:?}");
    assert!(
        took.is_some(),
        "the change never arrived after `{fault}`:\n{}",
        w.stderr()
    );
    assert!(w.running());
    assert!(
        w.stderr().contains("lost the etcd watch"),
        "the fault did reach the watch's stream:\n{}",
        w.stderr()
    );
    // A second change goes through the member the watch moved to.
    s.cluster.put("/aws/volume-id", "vol-0bbbbbbbbbbbbbbbb");
    assert!(
        wait_for_unit(&unit, "vol-0bbbbbbbbbbbbbbbb", Duration::from_secs(5)).is_some(),
        "{}",
        w.stderr()
    );
    assert!(!w.stderr().contains(CANARY));
}

#[test]
fn watch_follows_changes_when_its_member_is_killed() {
    watch_through("kill", Duration::from_secs(5));
}

/// A hung member keeps the TCP connection open: the watch notices through
/// HTTP/2 keep-alive pings (every 10s, each allowed one timeout).
#[test]
fn watch_follows_changes_when_its_member_hangs() {
    watch_through("stop", Duration::from_secs(20));
}

/// Cut off, the member would deliver no event again. With require-leader
/// it ends the watch once it has had no leader for a few election
/// timeouts, and the watch moves to a member of the majority.
#[test]
fn watch_follows_changes_when_its_member_is_partitioned() {
    watch_through("partition", Duration::from_secs(20));
}

/// A boot-time service starts before etcd: `watch` must wait for it.
#[test]
fn watch_started_while_etcd_is_down_waits_for_it() {
    let mut s = scene();
    for i in 0..3 {
        s.cluster.kill(i);
    }
    let mut w = Watch::start(s.dir.path(), &s.spec_path());
    std::thread::sleep(Duration::from_secs(3));
    assert!(w.running(), "watch exited:\n{}", w.stderr());
    let said = w.stderr();
    assert_eq!(said.matches("retrying").count(), 1, "says so once:\n{said}");
    s.cluster.restart_all();
    let unit = s.dir.path().join("units/wallet.service");
    assert!(
        wait_for_unit(&unit, VOLUME, Duration::from_secs(15)).is_some(),
        "{}",
        w.stderr()
    );
}

/// What `unitgen watch` receives from etcd, byte for byte: a TCP proxy in
/// front of one member records the server's side. gRPC sends protobuf
/// uncompressed, so a secret value in a watch event would be in there
/// verbatim.
#[test]
fn watch_never_receives_a_secret_value() {
    let s = scene();
    let recorder = Recorder::start(s.cluster.endpoint(1));
    s.write_spec(&[recorder.endpoint()]);
    let mut w = Watch::start(s.dir.path(), &s.spec_path());
    assert!(
        w.saw("watching ", Duration::from_secs(10)),
        "{}",
        w.stderr()
    );
    // A secret rotates, then a value changes (so we know the watch runs).
    s.cluster
        .put("/aws/secret-access-key", &format!("ROTATED{CANARY}"));
    s.cluster.put("/aws/volume-id", "vol-0cccccccccccccccc");
    let unit = s.dir.path().join("units/wallet.service");
    assert!(wait_for_unit(&unit, "vol-0cccccccccccccccc", Duration::from_secs(10)).is_some());
    let seen = recorder.received();
    assert!(
        contains(&seen, b"vol-0cccccccccccccccc"),
        "the recorder sees the watch's traffic"
    );
    assert!(
        !contains(&seen, CANARY.as_bytes()),
        "a secret value crossed the wire to unitgen watch"
    );
    // A deleted secret is still noticed...
    s.cluster.del("/aws/secret-access-key");
    assert!(
        w.saw(
            "/aws/secret-access-key` does not exist",
            Duration::from_secs(10)
        ),
        "{}",
        w.stderr()
    );
    // ...and so is its return, though no put event says so: the next
    // change renders again.
    s.cluster
        .put("/aws/secret-access-key", &format!("BACK{CANARY}"));
    s.cluster.put("/aws/volume-id", "vol-0eeeeeeeeeeeeeeee");
    assert!(
        wait_for_unit(&unit, "vol-0eeeeeeeeeeeeeeee", Duration::from_secs(10)).is_some(),
        "{}",
        w.stderr()
    );
    assert!(!contains(&recorder.received(), CANARY.as_bytes()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A TCP proxy to one etcd endpoint that records what the server sends.
struct Recorder {
    port: u16,
    received: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: String) -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let upstream = upstream.trim_start_matches("http://").to_owned();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_in, mut c_out) = (client.try_clone().unwrap(), client);
                let (mut s_in, mut s_out) = (server.try_clone().unwrap(), server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(std::net::Shutdown::Write);
                });
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Recorder { port, received }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- the client

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn connect(endpoints: Vec<String>) -> unitgen::etcd::Etcd {
    unitgen::etcd::Etcd::connect(&unitgen::etcd::Settings {
        endpoints,
        timeout: Some(TIMEOUT_D),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The next watch response, or `None` after `wait`.
async fn next_response(
    stream: &mut etcd_client::WatchStream,
    wait: Duration,
) -> Option<Result<etcd_client::WatchResponse, etcd_client::Error>> {
    tokio::time::timeout(wait, stream.message())
        .await
        .ok()
        .map(|r| r.transpose())?
}

/// A secret key watched with `Need::Exists` gets its deletion and never a
/// put: etcd drops put events on its side, so the value does not cross
/// the wire. An unfiltered watch on the same history does receive it,
/// which is what makes the canary worth looking for.
#[test]
fn a_secret_key_is_watched_for_deletion_only_and_its_value_never_arrives() {
    use unitgen::etcd::Need;
    let s = scene();
    let secret = "/aws/secret-access-key";
    let rotated = format!("ROTATED{CANARY}");
    block_on(async {
        let etcd = connect(s.cluster.endpoints()).await;
        let (_, revision) = etcd.lookup(secret, Need::Exists).await.unwrap();
        let mut filtered = etcd
            .watch(
                &[(secret, Need::Exists), ("/aws/volume-id", Need::Value)],
                revision + 1,
            )
            .await
            .unwrap();
        s.cluster.put(secret, &rotated);
        s.cluster.put("/aws/volume-id", "vol-0dddddddddddddddd");
        s.cluster.del(secret);

        let mut events = Vec::new();
        while !events
            .iter()
            .any(|(k, t, _): &(String, etcd_client::EventType, Vec<u8>)| {
                k == secret && *t == etcd_client::EventType::Delete
            })
        {
            let response = next_response(&mut filtered, Duration::from_secs(10))
                .await
                .expect("the deletion arrives")
                .unwrap();
            for e in response.events() {
                let kv = e.kv().unwrap();
                events.push((
                    String::from_utf8(kv.key().to_vec()).unwrap(),
                    e.event_type(),
                    kv.value().to_vec(),
                ));
            }
        }
        assert!(
            events
                .iter()
                .all(|(k, t, _)| k != secret || *t != etcd_client::EventType::Put),
            "a put of the secret arrived: {:?}",
            events.iter().map(|(k, t, _)| (k, t)).collect::<Vec<_>>()
        );
        assert!(
            events
                .iter()
                .all(|(_, _, v)| !contains(v, CANARY.as_bytes())),
            "the canary arrived"
        );
        assert!(
            events
                .iter()
                .any(|(k, _, v)| k == "/aws/volume-id" && v == b"vol-0dddddddddddddddd"),
            "a value key still gets its puts"
        );

        // The control: the same history, unfiltered, carries the canary.
        let mut unfiltered = etcd.watch(&[secret], revision + 1).await.unwrap();
        let response = loop {
            let r = next_response(&mut unfiltered, Duration::from_secs(10))
                .await
                .expect("the history arrives")
                .unwrap();
            // The first response only confirms the watch was created.
            if !r.events().is_empty() {
                break r;
            }
        };
        let first = &response.events()[0];
        assert_eq!(first.event_type(), etcd_client::EventType::Put);
        assert_eq!(first.kv().unwrap().value(), rotated.as_bytes());
    });
}

/// A member cut off from the majority ends the watch it serves (etcd's
/// require-leader) instead of keeping it open with no event ever coming,
/// refuses a new one, and a watch over every member opens elsewhere.
#[test]
fn a_watch_on_a_partitioned_member_ends_and_reopens_elsewhere() {
    let mut s = scene();
    block_on(async {
        let alone = connect(vec![s.cluster.endpoint(0)]).await;
        let mut stream = alone.watch(&["/aws/volume-id"], 0).await.unwrap();
        s.cluster.partition(0);
        let started = Instant::now();
        let ended = loop {
            match next_response(&mut stream, Duration::from_secs(20)).await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        };
        let err = match ended {
            Some(Err(e)) => e.to_string(),
            None => panic!("the watch stayed open on a member without a leader"),
            Some(Ok(_)) => unreachable!(),
        };
        assert!(err.contains("no leader"), "{err}");
        eprintln!(
            "the partitioned member ended the watch after {:.1}s",
            started.elapsed().as_secs_f64()
        );

        s.cluster.wait_no_leader(0);
        let e = alone.watch(&["/aws/volume-id"], 0).await.unwrap_err();
        assert!(
            matches!(e, unitgen::etcd::EtcdError::NoQuorum { .. }),
            "{e}"
        );

        let all = connect(s.cluster.endpoints()).await;
        let mut stream = all.watch(&["/aws/volume-id"], 0).await.unwrap();
        assert_ne!(all.current_endpoint(), s.cluster.endpoint(0));
        s.cluster.put("/aws/volume-id", "vol-0eeeeeeeeeeeeeeee");
        let mut seen = false;
        while !seen {
            let response = next_response(&mut stream, Duration::from_secs(10))
                .await
                .expect("the change arrives")
                .unwrap();
            seen = response
                .events()
                .iter()
                .any(|e| e.kv().unwrap().value() == b"vol-0eeeeeeeeeeeeeeee");
        }
    });
}

/// The member that answered is remembered: with the first member hung,
/// the first read waits for the hedge, and the next go straight to the
/// member that answered.
#[test]
fn the_member_that_answered_is_asked_first_next_time() {
    use unitgen::etcd::Need;
    let mut s = scene();
    s.cluster.stop(0);
    s.cluster.wait_quorum();
    block_on(async {
        let etcd = connect(s.cluster.endpoints()).await;
        let started = Instant::now();
        let (found, _) = etcd.lookup("/aws/volume-id", Need::Value).await.unwrap();
        let first = started.elapsed();
        assert_eq!(found, unitgen::etcd::Lookup::Value(VOLUME.into()));
        assert!(first >= Duration::from_millis(200), "{first:?}");
        assert_ne!(etcd.current_endpoint(), s.cluster.endpoint(0));
        for _ in 0..5 {
            let started = Instant::now();
            etcd.secret("/bitcoind/rpc/password").await.unwrap();
            let took = started.elapsed();
            assert!(took < Duration::from_millis(150), "{took:?}");
        }
    });
}
