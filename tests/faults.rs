//! The faults operators meet, reproduced with real parts: EC2 (moto) that
//! does the work but answers late, renders killed at random moments, a full
//! disk (a small tmpfs), and two renders into one folder at once. etcd
//! members down, hung or cut off are in tests/etcd_cluster.rs.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::moto::{Moto, new_volume};
use common::{read_tree, run, unitgen, write};

// ---------------------------------------------------------------------------
// EC2 that does the work but answers late.

/// An HTTP proxy in front of moto that passes every request on, and for
/// the first `drop` CreateSnapshot requests forwards them (so moto creates
/// the snapshot) but never answers: the client hears nothing until its own
/// timeout.
struct LateEc2 {
    port: u16,
    creates: Arc<AtomicUsize>,
}

impl LateEc2 {
    fn start(upstream: u16, drop: usize) -> LateEc2 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let creates = Arc::new(AtomicUsize::new(0));
        let seen = creates.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve(client, upstream, drop, &seen));
            }
        });
        LateEc2 { port, creates }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One HTTP/1.1 message: the head and a Content-Length body.
fn read_message(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        head.extend_from_slice(line.as_bytes());
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    head.extend(body);
    Some(head)
}

fn serve(client: TcpStream, upstream: u16, drop: usize, creates: &AtomicUsize) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    while let Some(request) = read_message(&mut reader) {
        let is_create = String::from_utf8_lossy(&request).contains("Action=CreateSnapshot");
        let mut moto = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        moto.write_all(&request).unwrap();
        let mut from_moto = BufReader::new(moto);
        let Some(response) = read_message(&mut from_moto) else {
            return;
        };
        if is_create && creates.fetch_add(1, Ordering::SeqCst) < drop {
            // Done upstream, never answered: hold the line, then hang up.
            std::thread::sleep(Duration::from_secs(10));
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

#[test]
fn ec2_that_answers_late_never_gets_a_second_snapshot_of_one_run() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ec2 = rt.block_on(moto.sdk());
    let volume = rt.block_on(new_volume(&ec2));
    let port: u16 = moto.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = LateEc2::start(port, 2);
    let step = format!(
        r#"{{"ebs_snapshot":{{"volume_id":"{volume}","region":"us-east-1","credentials":"default_chain","wait":"1min","retention":{{"keep_last":7}},"endpoint":"{}","request_timeout":"2s"}}}}"#,
        proxy.endpoint()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"))
        .args(["--job", "late", "--step", &step])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env_remove("JOURNAL_STREAM")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains("CreateSnapshot of ") && log.contains("got no answer"),
        "{log}"
    );
    assert!(log.contains("was carried out: found snap-"), "{log}");
    assert_eq!(
        proxy.creates.load(Ordering::SeqCst),
        1,
        "the request whose answer was lost was looked up, not sent again"
    );
    let snapshots = rt.block_on(async {
        ec2.describe_snapshots()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("volume-id")
                    .values(&volume)
                    .build(),
            )
            .send()
            .await
            .unwrap()
            .snapshots()
            .to_vec()
    });
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let tags: BTreeMap<&str, &str> = snapshots[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(tags.contains_key("unitgen:run"), "{tags:?}");
    assert!(log.contains("retention kept 1 and deleted 0 of 1"), "{log}");
}

// ---------------------------------------------------------------------------
// Renders killed, starved, or run twice at once.

/// `jobs` host-command jobs; `tag` goes into every description, so two
/// specs differ in every unit; `extra` jobs exist only in one of them, and
/// sort (and so are written) before the others.
fn big_spec(jobs: usize, tag: &str, extra: usize) -> String {
    let mut s = String::from("version: 1\njobs:\n");
    let names = (0..extra)
        .map(|i| format!("extra{i:05}"))
        .chain((0..jobs).map(|i| format!("job{i:05}")));
    for (i, name) in names.enumerate() {
        s.push_str(&format!(
            "  {name}:\n    description: {tag} {i}\n    schedule: daily\n    command: [/usr/bin/true, \"{i}\"]\n"
        ));
    }
    s
}

/// What `spec` renders, by file name, into a scratch folder.
fn reference(spec: &str) -> BTreeMap<PathBuf, String> {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("unitgen.yaml"), spec);
    let r = run(unitgen()
        .args(["render", "-o", "units"])
        .current_dir(dir.path()));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let mut tree = read_tree(&dir.path().join("units"));
    tree.remove(Path::new(".unitgen-manifest"));
    tree
}

fn manifest(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(".unitgen-manifest"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a child this test spawned and has not reaped.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Checks what a killed render left, then renders `back` and checks that
/// it finished the job.
fn check_after_kill(
    units: &Path,
    want_old: &BTreeMap<PathBuf, String>,
    want_new: &BTreeMap<PathBuf, String>,
    back: (&Path, &BTreeMap<PathBuf, String>),
    what: &str,
) {
    // Every unit is whole: exactly the old or the new bytes, and recorded.
    let recorded = manifest(units);
    for (name, text) in read_tree(units) {
        let n = name.to_str().unwrap();
        if n == ".unitgen-manifest" || n.starts_with(".unitgen-tmp.") {
            continue;
        }
        assert!(
            want_old.get(&name) == Some(&text) || want_new.get(&name) == Some(&text),
            "{what}: {n} is neither old nor new:\n{text}"
        );
        assert!(
            recorded.contains(&n.to_owned()),
            "{what}: {n} is unrecorded"
        );
    }
    // The next render, of either spec, finishes the job.
    let r = run(unitgen()
        .arg("render")
        .arg("-f")
        .arg(back.0)
        .arg("-o")
        .arg(units));
    assert_eq!(r.status, 0, "{what}: {}", r.stderr);
    let mut tree = read_tree(units);
    tree.remove(Path::new(".unitgen-manifest"));
    assert_eq!(&tree, back.1, "{what}: leftovers after the next render");
    let r = run(unitgen()
        .arg("render")
        .arg("--check")
        .arg("-f")
        .arg(back.0)
        .arg("-o")
        .arg(units));
    assert_eq!(r.status, 0, "{what}: {}", r.stdout);
}

#[test]
fn a_render_killed_at_any_moment_leaves_whole_units_and_the_next_render_finishes_the_job() {
    let (jobs, extra) = (600, 150);
    let old = big_spec(jobs, "old", 0);
    let new = big_spec(jobs, "new", extra);
    let (want_old, want_new) = (reference(&old), reference(&new));
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let (old_path, new_path) = (tmp.path().join("old.yaml"), tmp.path().join("new.yaml"));
    write(&old_path, &old);
    write(&new_path, &new);
    let render = |spec: &Path| {
        let mut cmd = unitgen();
        cmd.arg("render").arg("-f").arg(spec).arg("-o").arg(&units);
        cmd
    };

    // Killed at moments spread over a whole render.
    assert_eq!(run(&mut render(&old_path)).status, 0);
    let t = Instant::now();
    assert_eq!(run(&mut render(&new_path)).status, 0);
    let whole = t.elapsed();
    for (round, fraction) in [0.2, 0.5, 0.8, 0.95, 1.1].into_iter().enumerate() {
        assert_eq!(run(&mut render(&old_path)).status, 0);
        let mut child = render(&new_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(whole.mul_f64(fraction));
        let _ = child.kill();
        let _ = child.wait();
        let back = if round % 2 == 0 {
            (&*old_path, &want_old)
        } else {
            (&*new_path, &want_new)
        };
        check_after_kill(
            &units,
            &want_old,
            &want_new,
            back,
            &format!("killed at {fraction} of a render"),
        );
    }

    // Killed among its renames, for certain: the render is stopped again and
    // again until the first old job's unit is new while the last is still
    // old (the new jobs' units, renamed first, are all in place), then
    // killed there.
    let first = PathBuf::from("job00000.service");
    let last = PathBuf::from(format!("job{:05}.service", jobs - 1));
    let mut caught = 0;
    for attempt in 0..20 {
        assert_eq!(run(&mut render(&old_path)).status, 0);
        let mut child = render(&new_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            signal(pid, libc::SIGSTOP);
            let read = |p: &Path| std::fs::read_to_string(units.join(p)).ok();
            let mixed = read(&first) == want_new.get(&first).cloned()
                && read(&last) == want_old.get(&last).cloned();
            if mixed {
                signal(pid, libc::SIGKILL);
                let _ = child.wait();
                caught += 1;
                break;
            }
            signal(pid, libc::SIGCONT);
            std::thread::sleep(Duration::from_micros(300));
        }
        let back = if attempt % 2 == 0 {
            (&*old_path, &want_old)
        } else {
            (&*new_path, &want_new)
        };
        check_after_kill(
            &units,
            &want_old,
            &want_new,
            back,
            &format!("attempt {attempt}"),
        );
        if caught >= 2 {
            break;
        }
    }
    assert!(
        caught >= 2,
        "the renames never got caught half-way ({caught} times)"
    );
}

/// A tmpfs of `size` bytes at a temp folder, unmounted on drop. Needs
/// root (the tests run as root here and in CI); without it the test fails.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs (this test runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk but for `pages` pages of 4 KiB.
    fn leave(&self, pages: u64) {
        let filler = self.path().join("filler");
        let _ = std::fs::remove_file(&filler);
        let free = {
            let out = Command::new("stat")
                .args(["-f", "-c", "%a %S"])
                .arg(self.path())
                .output()
                .unwrap();
            let text = String::from_utf8(out.stdout).unwrap();
            let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
            it.next().unwrap() * it.next().unwrap()
        };
        let bytes = free.saturating_sub(pages * 4096);
        std::fs::write(&filler, vec![0u8; bytes as usize]).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_the_render_and_leaves_the_previous_units_as_they_were() {
    let disk = SmallDisk::mount(2 * 1024 * 1024);
    let units = disk.path().join("units");
    let spec_dir = tempfile::tempdir().unwrap();
    let spec = spec_dir.path().join("unitgen.yaml");
    write(&spec, &big_spec(40, "old", 0));
    let render = || {
        run(unitgen()
            .arg("render")
            .arg("-f")
            .arg(&spec)
            .arg("-o")
            .arg(&units))
    };
    assert_eq!(render().status, 0);
    let before = read_tree(&units);

    // Space for the new units' temp files but not for the manifest that
    // records them: the render must fail before renaming anything.
    write(&spec, &big_spec(40, "new", 20));
    for pages in [0, 10, 60, 120] {
        disk.leave(pages);
        let r = render();
        assert_eq!(r.status, 1, "{pages} pages left: {}", r.stderr);
        assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
        assert_eq!(
            read_tree(&units),
            before,
            "{pages} pages left: the folder changed"
        );
    }
    // With room again, the render completes, and removes nothing of its own
    // that a failed one left behind (there is nothing: checked above).
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    assert_eq!(render().status, 0);
    let mut after = read_tree(&units);
    after.remove(Path::new(".unitgen-manifest"));
    let want = reference(&big_spec(40, "new", 20));
    assert_eq!(after, want);
}

#[test]
fn two_renders_into_one_folder_take_turns() {
    let a = big_spec(2000, "a", 0);
    let b = big_spec(2000, "b", 0);
    let (want_a, want_b) = (reference(&a), reference(&b));
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    write(&tmp.path().join("a.yaml"), &a);
    write(&tmp.path().join("b.yaml"), &b);
    for round in 0..4 {
        let spawn = |spec: &str| {
            unitgen()
                .arg("render")
                .arg("-f")
                .arg(tmp.path().join(spec))
                .arg("-o")
                .arg(&units)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let first = spawn("a.yaml");
        let second = spawn("b.yaml");
        let (one, two) = (
            first.wait_with_output().unwrap(),
            second.wait_with_output().unwrap(),
        );
        assert!(
            one.status.success(),
            "{}",
            String::from_utf8_lossy(&one.stderr)
        );
        assert!(
            two.status.success(),
            "{}",
            String::from_utf8_lossy(&two.stderr)
        );
        let mut tree = read_tree(&units);
        tree.remove(Path::new(".unitgen-manifest"));
        assert!(
            tree == want_a || tree == want_b,
            "round {round}: the folder mixes both renders"
        );
        assert!(
            !tree
                .keys()
                .any(|k| k.to_str().unwrap().starts_with(".unitgen-tmp.")),
            "round {round}: temp files left"
        );
    }
}
