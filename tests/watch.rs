//! `unitgen watch` against a real etcd: changes, bursts, restarts,
//! compaction, deleted keys, spec edits and signals.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::{read_tree, unitgen, write};

fn spec(endpoint: &str, jobs: usize) -> String {
    let mut s = format!(
        "version: 1\netcd:\n  endpoints: [\"{endpoint}\"]\n  runner:\n    endpoints: [\"http://172.17.0.1:2379\"]\n\
         defaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\njobs:\n"
    );
    for i in 0..jobs {
        s += &format!(
            "  job{i}:\n    schedule: daily\n    steps:\n      - ebs_snapshot:\n          \
             volume_id: {{ etcd: /vol/{i} }}\n          region: us-east-1\n          \
             credentials: {{ etcd_prefix: /aws/ }}\n"
        );
    }
    s
}

fn seed(etcd: &Etcd, jobs: usize) {
    etcd.put("/aws/access-key-id", "AKID-canary-secret");
    etcd.put("/aws/secret-access-key", "SECRET-canary-secret");
    for i in 0..jobs {
        etcd.put(&format!("/vol/{i}"), &format!("vol-{i:017x}"));
    }
}

struct Watch {
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    exec_log: PathBuf,
}

impl Watch {
    fn start(dir: &Path, extra: &[&str]) -> Watch {
        let log = dir.join("exec.log");
        Watch::start_with_exec(dir, &format!("echo \"$@\" >> '{}'", log.display()), extra)
    }

    /// With `--exec HOOK`; the hook appends to `exec.log` in `dir`.
    fn start_with_exec(dir: &Path, hook: &str, extra: &[&str]) -> Watch {
        let exec_log = dir.join("exec.log");
        let mut child = unitgen()
            .args(["watch", "--debounce", "300ms", "-f"])
            .arg(dir.join("unitgen.yaml"))
            .arg("-o")
            .arg(dir.join("units"))
            .arg("--exec")
            .arg(hook)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start unitgen watch");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
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
        let w = Watch {
            child,
            lines,
            stderr,
            exec_log,
        };
        w.wait_stderr("watching ", Duration::from_secs(20));
        w
    }

    /// Lines printed within `quiet` of each other, waiting up to `wait`
    /// for the first.
    fn batch(&self, wait: Duration) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(first) = self.lines.recv_timeout(wait) else {
            return out;
        };
        out.push(first);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            out.push(line);
        }
        out.sort();
        out
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_stderr(&self, needle: &str, wait: Duration) {
        let deadline = Instant::now() + wait;
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                panic!("no `{needle}` on stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exec_runs(&self) -> Vec<String> {
        std::fs::read_to_string(&self.exec_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn stop(mut self) -> i32 {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().expect("exited, not killed");
            }
            assert!(Instant::now() < deadline, "watch ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(jobs: usize) -> (Etcd, tempfile::TempDir) {
    let etcd = Etcd::start();
    seed(&etcd, jobs);
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("unitgen.yaml"),
        &spec(&etcd.endpoint(), jobs),
    );
    (etcd, dir)
}

fn unit(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("units").join(name)).unwrap()
}

#[test]
fn a_change_rewrites_exactly_the_affected_units_and_runs_exec_once() {
    let (etcd, dir) = setup(3);
    let watch = Watch::start(dir.path(), &[]);
    // The first render wrote every unit and ran the hook once with them.
    let first = watch.batch(Duration::from_secs(5));
    assert_eq!(first.len(), 6, "{first:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watch.exec_runs().len(), 1);
    let before = read_tree(&dir.path().join("units"));

    etcd.put("/vol/1", "vol-0bbbbbbbbbbbbbbbb");
    let service = dir.path().join("units/job1.service");
    assert_eq!(
        watch.batch(Duration::from_secs(10)),
        vec![service.display().to_string()],
        "only the service that names the volume changes (the timer does not)"
    );
    assert!(unit(dir.path(), "job1.service").contains("vol-0bbbbbbbbbbbbbbbb"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watch.exec_runs(), {
        let mut runs = vec![watch.exec_runs()[0].clone()];
        runs.push(service.display().to_string());
        runs
    });
    let after = read_tree(&dir.path().join("units"));
    let changed: Vec<_> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(changed, vec![PathBuf::from("job1.service")]);

    // A secret changing changes no unit and runs nothing ...
    etcd.put("/aws/secret-access-key", "rotated-canary-secret");
    assert_eq!(watch.batch(Duration::from_secs(1)), Vec::<String>::new());
    // ... and the watch is alive: a change after it is still seen (a dead
    // watcher would pass the quiet second above).
    etcd.put("/vol/0", "vol-0aaaaaaaaaaaaaaaa");
    let job0 = dir.path().join("units/job0.service");
    assert_eq!(
        watch.batch(Duration::from_secs(10)),
        vec![job0.display().to_string()]
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(watch.exec_runs().len(), 3);
    assert!(!watch.stderr().contains("canary-secret"));
    assert_eq!(watch.stop(), 0);
}

#[test]
fn a_burst_of_puts_is_one_or_few_runs() {
    let (etcd, dir) = setup(5);
    let watch = Watch::start(dir.path(), &[]);
    watch.batch(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let endpoint = etcd.endpoint();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint], None)
            .await
            .unwrap();
        for n in 0..100 {
            client
                .put(format!("/vol/{}", n % 5), format!("vol-{n:017x}"), None)
                .await
                .unwrap();
        }
    });
    // Wait for the renders to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !unit(dir.path(), "job4.service").contains(&format!("vol-{:017x}", 99))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    for i in 0..5 {
        let last = 95 + i;
        assert!(
            unit(dir.path(), &format!("job{i}.service")).contains(&format!("vol-{last:017x}")),
            "job{i} has the last value"
        );
    }
    let runs = watch.exec_runs().len() - 1;
    assert!(
        (1..=3).contains(&runs),
        "{runs} runs for a burst of 100 puts"
    );
}

#[test]
fn it_survives_an_etcd_restart_and_compaction() {
    let (mut etcd, dir) = setup(2);
    let watch = Watch::start(dir.path(), &[]);
    watch.batch(Duration::from_secs(5));

    etcd.restart();
    watch.wait_stderr("lost the etcd watch", Duration::from_secs(10));
    watch.wait_stderr("etcd is back", Duration::from_secs(20));
    etcd.put("/vol/0", "vol-0cccccccccccccccc");
    let service = dir.path().join("units/job0.service").display().to_string();
    assert_eq!(watch.batch(Duration::from_secs(10)), vec![service.clone()]);
    assert!(unit(dir.path(), "job0.service").contains("vol-0cccccccccccccccc"));

    // Freeze the watch and restart etcd so its stream breaks; then change
    // and compact while it cannot see: it must resume from a compacted
    // revision and read everything again.
    watch.signal("STOP");
    etcd.restart();
    etcd.put("/vol/1", "vol-0dddddddddddddddd");
    etcd.put("/unrelated", "x");
    etcd.compact(etcd.revision());
    watch.signal("CONT");
    watch.wait_stderr("compacted", Duration::from_secs(20));
    let job1 = dir.path().join("units/job1.service").display().to_string();
    assert_eq!(watch.batch(Duration::from_secs(10)), vec![job1]);
    assert!(unit(dir.path(), "job1.service").contains("vol-0dddddddddddddddd"));
    assert_eq!(watch.stop(), 0);
}

#[test]
fn a_deleted_key_is_an_error_and_the_last_good_units_stay() {
    let (etcd, dir) = setup(2);
    let watch = Watch::start(dir.path(), &[]);
    watch.batch(Duration::from_secs(5));
    // It says what it watches (issue 14): 2 volumes and the AWS keys.
    watch.wait_stderr(
        &format!(
            "unitgen watch: watching {} and 4 etcd key(s) under /aws/, /vol/ at {}\n",
            dir.path().join("unitgen.yaml").display(),
            etcd.endpoint()
        ),
        Duration::from_secs(5),
    );
    let before = read_tree(&dir.path().join("units"));

    etcd.del("/vol/1");
    watch.wait_stderr(
        "jobs.job1.steps[0].ebs_snapshot.volume_id: etcd key `/vol/1` does not exist in etcd",
        Duration::from_secs(10),
    );
    watch.wait_stderr("keeping the last good units", Duration::from_secs(5));
    assert_eq!(read_tree(&dir.path().join("units")), before);

    // Put back, with a new value: rendering resumes.
    etcd.put("/vol/1", "vol-0eeeeeeeeeeeeeeee");
    let job1 = dir.path().join("units/job1.service").display().to_string();
    assert_eq!(watch.batch(Duration::from_secs(10)), vec![job1]);
    // ... and says so.
    watch.wait_stderr(
        &format!(
            "unitgen watch: ok again, 4 unit(s) in {}\n",
            dir.path().join("units").display()
        ),
        Duration::from_secs(5),
    );
    assert_eq!(watch.stop(), 0);
}

#[test]
fn a_spec_edit_renders_again_and_watches_its_new_keys() {
    let (etcd, dir) = setup(2);
    let watch = Watch::start(dir.path(), &[]);
    watch.batch(Duration::from_secs(5));

    etcd.put("/vol/2", "vol-0ffffffffffffffff");
    write(&dir.path().join("unitgen.yaml"), &spec(&etcd.endpoint(), 3));
    let expected: Vec<String> = ["job2.service", "job2.timer"]
        .iter()
        .map(|n| dir.path().join("units").join(n).display().to_string())
        .collect();
    assert_eq!(watch.batch(Duration::from_secs(10)), expected);
    watch.wait_stderr("watching 5 etcd key(s)", Duration::from_secs(5));
    etcd.put("/vol/2", "vol-01111111111111111");
    assert_eq!(
        watch.batch(Duration::from_secs(10)),
        vec![expected[0].clone()]
    );
    assert_eq!(watch.stop(), 0);
}

#[test]
fn sigint_exits_cleanly() {
    let (_etcd, dir) = setup(1);
    let watch = Watch::start(dir.path(), &[]);
    watch.signal("INT");
    let mut watch = watch;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = watch.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch ignored SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_hook_tells_removed_units_from_rewritten_ones() {
    let (etcd, dir) = setup(3);
    let log = dir.path().join("exec.log");
    let hook = format!(
        "printf 'args=%s|removed=%s\\n' \"$*\" \"$(echo $UNITGEN_REMOVED)\" >> '{}'",
        log.display()
    );
    let watch = Watch::start_with_exec(dir.path(), &hook, &[]);
    watch.batch(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));

    // One job removed, one changed, in one edit.
    let edited = spec(&etcd.endpoint(), 2).replace(
        "  job0:\n    schedule: daily\n",
        "  job0:\n    description: changed\n    schedule: daily\n",
    );
    write(&dir.path().join("unitgen.yaml"), &edited);
    let units = |names: &[&str]| {
        names
            .iter()
            .map(|n| dir.path().join("units").join(n).display().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        watch.batch(Duration::from_secs(10)),
        units(&["job0.service", "job0.timer"]),
        "stdout lists only units that exist"
    );
    assert!(!dir.path().join("units/job2.service").exists());
    for removed in units(&["job2.service", "job2.timer"]) {
        watch.wait_stderr(
            &format!("unitgen watch: removed {removed}"),
            Duration::from_secs(5),
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let runs = watch.exec_runs();
    assert_eq!(
        runs.last().unwrap(),
        &format!(
            "args={}|removed={}",
            units(&["job0.service", "job0.timer"]).join(" "),
            units(&["job2.service", "job2.timer"]).join(" ")
        )
    );
    assert_eq!(watch.stop(), 0);
}

// What the watch says (issue 14): what it watches, which input changed,
// and when an error has cleared. No etcd needed.

#[test]
fn it_says_what_it_watches_and_when_an_error_clears() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("unitgen.yaml");
    let one = "version: 1\njobs:\n  a:\n    schedule: daily\n    command: [/usr/bin/true]\n";
    write(&spec, one);
    let watch = Watch::start(dir.path(), &[]);
    watch.wait_stderr(
        &format!(
            "unitgen watch: no etcd references: watching the spec only ({})\n",
            spec.display()
        ),
        Duration::from_secs(5),
    );
    write(
        &spec,
        &one.replace("    command", "    bogus: 1\n    command"),
    );
    watch.wait_stderr("unknown key `bogus`", Duration::from_secs(10));
    assert!(!watch.stderr().contains("ok again"), "{}", watch.stderr());
    write(
        &spec,
        &format!("{one}  b:\n    schedule: weekly\n    command: [/usr/bin/true]\n"),
    );
    watch.wait_stderr(
        &format!(
            "unitgen watch: ok again, 4 unit(s) in {}\n",
            dir.path().join("units").display()
        ),
        Duration::from_secs(10),
    );
    assert!(dir.path().join("units/b.timer").exists());
    assert_eq!(watch.stop(), 0);
}

#[test]
fn it_says_the_values_file_changed_not_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("unitgen.yaml");
    let values = dir.path().join("values.yaml");
    write(
        &spec,
        "version: 1\njobs:\n  a:\n    schedule: daily\n    command: [/usr/bin/echo, { etcd: /app/greeting }]\n",
    );
    write(&values, "/app/greeting: hello\n");
    let watch = Watch::start(dir.path(), &["--values", values.to_str().unwrap()]);
    watch.wait_stderr(
        &format!(
            "unitgen watch: watching {} and the values file {}, which stands in for 1 etcd key(s) under /app/\n",
            spec.display(),
            values.display()
        ),
        Duration::from_secs(5),
    );
    assert_eq!(watch.batch(Duration::from_secs(5)).len(), 2);
    write(&values, "/app/greeting: bonjour\n");
    watch.wait_stderr(
        &format!(
            "unitgen watch: the values file {} changed; rendering again\n",
            values.display()
        ),
        Duration::from_secs(10),
    );
    assert_eq!(
        watch.batch(Duration::from_secs(10)),
        vec![dir.path().join("units/a.service").display().to_string()]
    );
    assert!(unit(dir.path(), "a.service").contains("bonjour"));
    assert!(
        !watch.stderr().contains("unitgen.yaml changed"),
        "{}",
        watch.stderr()
    );
    assert_eq!(watch.stop(), 0);
}
