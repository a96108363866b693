//! The copy step on real folders: snapshots hard-link what did not change
//! (same inode) and copy what did, a changed file never reaches an older
//! snapshot through a link, pruning keeps exactly what the policy says and
//! only this job's folders, a half-written snapshot never counts, and a
//! failed copy prunes nothing. Most tests call the step directly (to set
//! the clock of each run); the last ones run the `unitgen-runner` binary.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use unitgen::contract::CopyJob;
use unitgen::contract::retention::RetentionPolicy;
use unitgen::runner::copy::{self, CopyError, MARKER, Options, Outcome};

const JOB: &str = "backups";

struct Scene {
    _dir: tempfile::TempDir,
    source: PathBuf,
    dest: PathBuf,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("data");
    let dest = dir.path().join("backups");
    fs::create_dir_all(source.join("sub/deeper")).unwrap();
    fs::create_dir_all(source.join("empty")).unwrap();
    fs::create_dir_all(&dest).unwrap();
    fs::write(source.join("a.txt"), "alpha\n").unwrap();
    fs::write(source.join("sub/b.txt"), "bravo\n").unwrap();
    fs::write(source.join("sub/deeper/c.txt"), "charlie\n").unwrap();
    fs::write(source.join("mode.txt"), "mode\n").unwrap();
    fs::set_permissions(source.join("mode.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("sub/b.txt", source.join("link")).unwrap();
    Scene {
        _dir: dir,
        source,
        dest,
    }
}

fn at(time: &str) -> Timestamp {
    time.parse().unwrap()
}

impl Scene {
    fn job(&self, retention: Option<RetentionPolicy>) -> CopyJob {
        CopyJob {
            source: self.source.display().to_string(),
            destination: self.dest.display().to_string(),
            retention,
        }
    }

    fn copy_at(
        &self,
        when: &str,
        retention: Option<RetentionPolicy>,
    ) -> Result<Outcome, CopyError> {
        let opts = Options {
            started: Some(at(when)),
            ..Options::default()
        };
        copy::run(JOB, &self.job(retention), &opts)
    }

    /// Every name in the destination.
    fn names(&self) -> BTreeSet<String> {
        fs::read_dir(&self.dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    fn snapshot(&self, name: &str) -> PathBuf {
        self.dest.join(name)
    }
}

fn inode(path: &Path) -> u64 {
    fs::symlink_metadata(path).unwrap().ino()
}

fn keep(f: impl FnOnce(&mut RetentionPolicy)) -> Option<RetentionPolicy> {
    let mut p = RetentionPolicy::default();
    f(&mut p);
    Some(p)
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(fs::FileTimes::new().set_modified(t))
        .unwrap();
}

#[test]
fn unchanged_files_are_hard_links_and_changed_ones_new_copies() {
    let s = scene();
    // A modification time with nanoseconds, which the copy must keep.
    let old = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    set_mtime(&s.source.join("a.txt"), old);

    let first = s.copy_at("2026-11-19T00:15:00Z", None).unwrap();
    assert_eq!(first.created.as_deref(), Some("backups.2026-11-19T001500Z"));
    assert_eq!((first.stats.copied, first.stats.linked), (4, 0));
    let one = s.snapshot("backups.2026-11-19T001500Z");
    assert_eq!(
        fs::read_to_string(one.join("sub/deeper/c.txt")).unwrap(),
        "charlie\n"
    );
    assert!(one.join("empty").is_dir(), "empty folders are kept");
    assert_eq!(
        fs::read_link(one.join("link")).unwrap(),
        Path::new("sub/b.txt"),
        "a symlink is copied as a symlink"
    );
    let meta = fs::metadata(one.join("a.txt")).unwrap();
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (1_700_000_000, 123_456_789)
    );
    assert_eq!(
        fs::metadata(one.join("mode.txt")).unwrap().mode() & 0o7777,
        0o640
    );
    let marker: serde_json::Value =
        serde_json::from_slice(&fs::read(one.join(MARKER)).unwrap()).unwrap();
    assert_eq!(marker["job"], JOB);
    assert_eq!(marker["source"], s.source.display().to_string());
    assert_eq!(marker["started"], "2026-11-19T00:15:00Z");

    // Changes: new content (and time) in a.txt, only a new mode on
    // mode.txt, a new file.
    fs::write(s.source.join("a.txt"), "ALPHA\n").unwrap();
    fs::set_permissions(s.source.join("mode.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(s.source.join("sub/new.txt"), "new\n").unwrap();

    let second = s.copy_at("2026-11-20T00:15:00Z", None).unwrap();
    let two = s.snapshot("backups.2026-11-20T001500Z");
    assert_eq!(
        (second.stats.copied, second.stats.linked),
        (3, 2),
        "{:?}",
        second.stats
    );
    for same in ["sub/b.txt", "sub/deeper/c.txt"] {
        assert_eq!(
            inode(&one.join(same)),
            inode(&two.join(same)),
            "{same} is a hard link"
        );
    }
    for changed in ["a.txt", "mode.txt"] {
        assert_ne!(
            inode(&one.join(changed)),
            inode(&two.join(changed)),
            "{changed} is a copy"
        );
    }
    assert_eq!(fs::read_to_string(two.join("a.txt")).unwrap(), "ALPHA\n");
    // The older snapshot is untouched: nothing reached it through a link.
    assert_eq!(fs::read_to_string(one.join("a.txt")).unwrap(), "alpha\n");
    assert_eq!(
        fs::metadata(one.join("mode.txt")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        fs::metadata(two.join("mode.txt")).unwrap().mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs::read_to_string(two.join("sub/new.txt")).unwrap(),
        "new\n"
    );
    assert!(!one.join("sub/new.txt").exists());
    assert_eq!(
        s.names(),
        BTreeSet::from([
            "backups.2026-11-19T001500Z".to_owned(),
            "backups.2026-11-20T001500Z".to_owned()
        ])
    );
}

#[test]
fn a_file_bigger_than_one_chunk_is_copied_whole_then_linked() {
    let s = scene();
    // 8 MiB chunks: this takes two and a bit.
    let big: Vec<u8> = (0..(17u32 << 20) + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    fs::write(s.source.join("big.bin"), &big).unwrap();
    s.copy_at("2026-11-19T00:15:00Z", None).unwrap();
    s.copy_at("2026-11-20T00:15:00Z", None).unwrap();
    let (one, two) = (
        s.snapshot("backups.2026-11-19T001500Z/big.bin"),
        s.snapshot("backups.2026-11-20T001500Z/big.bin"),
    );
    assert!(fs::read(&one).unwrap() == big);
    assert_eq!(inode(&one), inode(&two));
}

/// A folder that is not this job's snapshot, in the same destination.
fn foreign(s: &Scene, name: &str, marker: Option<serde_json::Value>) {
    let dir = s.dest.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("keep.txt"), "not ours\n").unwrap();
    if let Some(m) = marker {
        fs::write(dir.join(MARKER), m.to_string()).unwrap();
    }
}

#[test]
fn pruning_keeps_exactly_what_the_policy_says_and_only_this_jobs_folders() {
    let s = scene();
    let marker = |job: &str, source: &str| {
        serde_json::json!({
            "managed_by": "unitgen", "job": job, "source": source,
            "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:00:01Z",
            "files": 1, "bytes": 1
        })
    };
    let source = s.source.display().to_string();
    // Another job's snapshot, this job's snapshot of another source, a
    // folder named like ours without a marker, one whose job merely starts
    // with ours, and a plain file: old enough that retention would delete
    // every one of them if it counted them.
    foreign(
        &s,
        "other.2026-01-01T000000Z",
        Some(marker("other", &source)),
    );
    foreign(
        &s,
        "backups.2026-01-02T000000Z",
        Some(marker(JOB, "/elsewhere")),
    );
    foreign(&s, "backups.2026-01-03T000000Z", None);
    foreign(
        &s,
        "backups.main.2026-01-04T000000Z",
        Some(marker("backups.main", &source)),
    );
    fs::write(s.dest.join("backups.2026-01-05T000000Z"), "a file\n").unwrap();
    let foreign_names = s.names();

    // One run a day at 00:15, Wednesday 2026-11-11 to Friday 2026-11-20.
    let policy = keep(|p| {
        p.keep_daily = Some(3);
        p.keep_weekly = Some(2);
    });
    let mut last = None;
    for day in 11..=20 {
        last = Some(
            s.copy_at(&format!("2026-11-{day}T00:15:00Z"), policy.clone())
                .unwrap(),
        );
    }
    // Daily: the 20th, 19th, 18th; weekly: the newest of ISO week 47 (the
    // 20th) and of week 46 (Sunday the 15th).
    let ours: BTreeSet<String> = ["20", "19", "18", "15"]
        .iter()
        .map(|d| format!("backups.2026-11-{d}T001500Z"))
        .collect();
    let got: BTreeSet<String> = s.names().difference(&foreign_names).cloned().collect();
    assert_eq!(got, ours);
    assert!(
        foreign_names.is_subset(&s.names()),
        "foreign folders survive"
    );
    let last = last.unwrap();
    assert_eq!(last.deleted, ["backups.2026-11-17T001500Z"]);
    let kept: Vec<&str> = last
        .decisions
        .iter()
        .filter(|d| !d.is_delete())
        .map(|d| d.snapshot.id.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            "backups.2026-11-20T001500Z",
            "backups.2026-11-19T001500Z",
            "backups.2026-11-18T001500Z",
            "backups.2026-11-15T001500Z"
        ]
    );
    // The unchanged files of the kept snapshots are still one inode.
    let a = |day: &str| inode(&s.snapshot(&format!("backups.2026-11-{day}T001500Z/sub/b.txt")));
    assert_eq!(a("15"), a("20"));
}

#[test]
fn keep_last_counts_runs_in_the_same_second_apart() {
    let s = scene();
    let policy = keep(|p| p.keep_last = Some(2));
    for tenth in 1..=4 {
        s.copy_at(&format!("2026-11-20T00:15:00.{tenth}Z"), policy.clone())
            .unwrap();
    }
    assert_eq!(
        s.names(),
        BTreeSet::from([
            "backups.2026-11-20T001500Z-2".to_owned(),
            "backups.2026-11-20T001500Z-3".to_owned()
        ])
    );
}

/// A source whose deepest file's copy would have a path longer than the
/// kernel allows (PATH_MAX): the copy fails even as root, for whom no
/// permission ever does.
fn too_long_a_path(s: &Scene) {
    let mut deep = s.source.join("deep");
    while deep.as_os_str().len() < 3900 {
        deep.push("d".repeat(100));
    }
    fs::create_dir_all(&deep).unwrap();
    // 4085 bytes in the source; the snapshot folder's name makes it longer
    // than the 4095 a path may have.
    let file = deep.join("f".repeat(4085 - deep.as_os_str().len() - 1));
    assert_eq!(file.as_os_str().len(), 4085);
    fs::write(file, "x").unwrap();
}

#[test]
fn a_failed_copy_prunes_nothing_and_leaves_no_partial_folder() {
    let s = scene();
    for day in 17..=19 {
        s.copy_at(&format!("2026-11-{day}T00:15:00Z"), None)
            .unwrap();
    }
    let before = s.names();
    too_long_a_path(&s);
    let e = s
        .copy_at("2026-11-20T00:15:00Z", keep(|p| p.keep_last = Some(1)))
        .unwrap_err();
    let CopyError::Failed(message) = &e else {
        panic!("{e:?}")
    };
    assert!(message.starts_with("cannot create "), "{message}");
    assert!(
        message.ends_with("File name too long (os error 36)"),
        "{message}"
    );
    assert_eq!(s.names(), before, "nothing pruned, nothing left behind");
}

#[test]
fn an_empty_or_missing_source_makes_no_snapshot() {
    let s = scene();
    s.copy_at("2026-11-19T00:15:00Z", None).unwrap();
    let before = s.names();
    fs::remove_dir_all(&s.source).unwrap();
    fs::create_dir(&s.source).unwrap();
    let e = s
        .copy_at("2026-11-20T00:15:00Z", keep(|p| p.keep_last = Some(1)))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("is empty, which usually means its volume is not mounted"),
        "{e}"
    );
    fs::remove_dir(&s.source).unwrap();
    let e = s.copy_at("2026-11-20T00:15:00Z", None).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("does not exist; is its volume mounted?"),
        "{e}"
    );
    assert_eq!(s.names(), before);
}

#[test]
fn a_half_written_snapshot_never_counts_and_the_next_run_removes_it() {
    let s = scene();
    s.copy_at("2026-11-19T00:15:00Z", None).unwrap();
    // A run stopped mid-copy (its lock lost, a signal): what a SIGKILLed
    // run leaves too, a `.partial` folder with its writer gone.
    let stopped = Options {
        started: Some(at("2026-11-20T00:15:00Z")),
        cancel: Arc::new(AtomicBool::new(true)),
        ..Options::default()
    };
    let e = copy::run(JOB, &s.job(None), &stopped).unwrap_err();
    assert!(matches!(e, CopyError::Cancelled), "{e:?}");
    let partial = s.dest.join("backups.2026-11-20T001500Z.partial");
    assert!(partial.is_dir());

    // While a writer holds its marker's lock, it is left alone, and it is
    // never the previous snapshot to link to nor a snapshot to count.
    let writer = fs::File::open(partial.join(".unitgen-partial")).unwrap();
    writer.try_lock().unwrap();
    let out = s
        .copy_at("2026-11-21T00:15:00Z", keep(|p| p.keep_last = Some(1)))
        .unwrap();
    assert!(
        partial.is_dir(),
        "another run's partial folder is left alone"
    );
    assert_eq!(out.deleted, ["backups.2026-11-19T001500Z"]);
    assert_eq!(
        out.decisions.len(),
        2,
        "the partial folder is not a snapshot"
    );
    assert_eq!(out.stats.linked, 4, "linked to the 19th, not the partial");
    drop(writer);

    // Its writer gone, the next run removes it.
    s.copy_at("2026-11-22T00:15:00Z", keep(|p| p.keep_last = Some(1)))
        .unwrap();
    assert_eq!(
        s.names(),
        BTreeSet::from(["backups.2026-11-22T001500Z".to_owned()])
    );
}

#[test]
fn a_deletion_a_killed_run_began_is_finished_and_never_counted() {
    let s = scene();
    s.copy_at("2026-11-18T00:15:00Z", None).unwrap();
    s.copy_at("2026-11-19T00:15:00Z", None).unwrap();
    // Retention renames before it deletes; a run killed in between leaves
    // a `.deleting` folder, marker and all.
    fs::rename(
        s.snapshot("backups.2026-11-18T001500Z"),
        s.snapshot("backups.2026-11-18T001500Z.deleting"),
    )
    .unwrap();
    let out = s
        .copy_at("2026-11-20T00:15:00Z", keep(|p| p.keep_last = Some(5)))
        .unwrap();
    assert_eq!(out.decisions.len(), 2);
    assert_eq!(
        s.names(),
        BTreeSet::from([
            "backups.2026-11-19T001500Z".to_owned(),
            "backups.2026-11-20T001500Z".to_owned()
        ])
    );
}

fn runner(s: &Scene, retention: &str, extra: &[&str]) -> common::Run {
    let step = format!(
        r#"{{"copy":{{"source":"{}","destination":"{}"{retention}}}}}"#,
        s.source.display(),
        s.dest.display()
    );
    common::run(
        Command::new(env!("CARGO_BIN_EXE_unitgen-runner"))
            .env("JOURNAL_STREAM", "8:1")
            .args(["--job", JOB, "--step", &step])
            .args(extra),
    )
}

#[test]
fn the_runner_copies_reports_and_fails_loudly() {
    let s = scene();
    let r = runner(&s, r#","retention":{"keep_last":1}"#, &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    let summary = r
        .stderr
        .lines()
        .find(|l| l.starts_with("<6>copied "))
        .unwrap_or_else(|| panic!("no summary line:\n{}", r.stderr));
    assert!(
        summary.contains(": 4 files (4 copied, 0 hard-linked), 3 folders, 1 symlinks; 25 B copied, 0 B linked; retention kept 1 and deleted 0 of 1 snapshots in "),
        "{summary}"
    );
    let first: Vec<String> = s.names().into_iter().collect();
    assert_eq!(first.len(), 1);

    // A dry run says what it would do and does nothing.
    fs::write(s.source.join("sub/new.txt"), "new\n").unwrap();
    let r = runner(&s, r#","retention":{"keep_last":1}"#, &["--dry-run"]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("dry run: would copy ")
            && r.stderr
                .contains("5 files (1 to copy, 4 to hard-link to backups."),
        "{}",
        r.stderr
    );
    assert_eq!(s.names().into_iter().collect::<Vec<_>>(), first);

    // A failure is one error line naming the step, exit 1, nothing pruned.
    too_long_a_path(&s);
    let r = runner(&s, r#","retention":{"keep_last":1}"#, &[]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    let error = r.stderr.lines().find(|l| l.starts_with("<3>")).unwrap();
    assert!(
        error.starts_with(&format!(
            "<3>backups: step 1/1 (copy {}) failed: cannot create ",
            s.source.display()
        )),
        "{error}"
    );
    assert_eq!(s.names().into_iter().collect::<Vec<_>>(), first);

    // What render refuses, the runner refuses: exit 2, nothing touched.
    let r = runner(&s, r#","retention":{}"#, &[]);
    assert_eq!(r.status, 2, "{}", r.stderr);
    assert!(r.stderr.contains("empty retention policy"), "{}", r.stderr);
}
