//! The `copy` step: a dated snapshot folder of the source under the
//! destination, files unchanged since the previous snapshot hard-linked to
//! it (as `rsync --link-dest` and rsnapshot do), then retention.
//!
//! # Layout
//!
//! `DEST/JOB.2026-11-20T001500Z/` is one completed snapshot: the source's
//! tree, plus a [`MARKER`] file (JSON: unitgen, the job, the source, start
//! and end times) written last. A snapshot is written as
//! `DEST/JOB.<time>.partial/` and renamed to its final name only once
//! everything in it is on disk (`syncfs(2)`), so a folder with a final
//! name is always complete, and a run that dies leaves only a `.partial`
//! folder. Its writer holds `flock(2)` on the folder's [`PARTIAL_MARKER`]
//! while it writes; a later run deletes a partial folder of this job only
//! when that lock is free (its writer is gone), so even two runs without
//! a job lock never delete each other's work.
//!
//! # What is ours
//!
//! Retention and the previous-snapshot lookup consider only folders whose
//! marker says unitgen, this job and this source (the ownership a tag gives
//! an EBS snapshot), and never a `.partial` one. Deleting a snapshot first
//! renames it to `NAME.deleting` (a half-deleted snapshot must never look
//! complete), then removes its contents, the marker last; a later run
//! finishes what a killed one began.
//!
//! # Copying
//!
//! A regular file is hard-linked to the previous snapshot's file at the
//! same path when that one is a regular file with the same size,
//! modification time (to the nanosecond), permissions and (when running as
//! root, which copies owners) owner: a hard link shares all of those, so
//! anything that differs needs a copy. Other files are copied (the kernel's
//! `copy_file_range` where it can), then given the source's owner (as
//! root), permissions and modification time. Symlinks are copied as
//! symlinks; folders, empty ones too, get their permissions and times
//! after their contents; sockets, FIFOs and devices are skipped with a
//! warning. Not kept: hard links inside the source (each name is its own
//! file, as `rsync -a` without `-H`), ACLs, extended attributes, sparseness.
//!
//! A source file that disappears while being copied is a warning (live
//! data changes), any other read or write error fails the step: the
//! partial folder is removed and nothing is pruned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::contract::copy::{CopyJob, normal_path};
pub use crate::contract::copy::{MANAGED_BY, MARKER, PARTIAL_MARKER};
use crate::runner::log;
use crate::runner::retention::{self, Action, Candidate, Decision, SnapshotState};

const PARTIAL: &str = ".partial";
const DELETING: &str = ".deleting";
/// A big file is copied in chunks this large, so a cancelled run stops
/// within one chunk.
const CHUNK: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The job cannot run as given; nothing was touched. The runner exits 2.
    #[error("invalid copy job: {0}")]
    Config(String),
    /// The copy failed; the new snapshot was not made, nothing was pruned.
    #[error("{0}")]
    Failed(String),
    /// The run was stopped (its lock was lost, or a signal): a copy leaves
    /// its partial folder for the next run to remove, pruning stops
    /// between two deletions.
    #[error("stopped before the step was done")]
    Cancelled,
    /// The snapshot was made, but retention could not delete some of the
    /// folders it chose.
    #[error("retention could not delete {} of the {} snapshots it chose: {}", failed.len(), failed.len() + deleted.len(), failed.join(", "))]
    DeleteFailed {
        failed: Vec<String>,
        deleted: Vec<String>,
    },
}

impl CopyError {
    pub fn is_config(&self) -> bool {
        matches!(self, CopyError::Config(_))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Copy and delete nothing; say what would be copied, linked, removed.
    pub dry_run: bool,
    /// Set to stop the copy (checked between files and chunks).
    pub cancel: Arc<AtomicBool>,
    /// The snapshot's start time; now when `None` (tests set it to build
    /// a history of days).
    pub started: Option<Timestamp>,
}

/// What a completed snapshot's marker says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub managed_by: String,
    pub job: String,
    pub source: String,
    /// RFC 3339, UTC: retention's clock for this snapshot.
    pub started: String,
    pub finished: String,
    pub files: u64,
    pub bytes: u64,
}

/// What a partial folder's marker says: whose it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartialMarker {
    managed_by: String,
    job: String,
    source: String,
    started: String,
    pid: u32,
}

/// Counts of one copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub files: u64,
    pub copied: u64,
    pub linked: u64,
    pub bytes_copied: u64,
    pub bytes_linked: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sockets, FIFOs, devices.
    pub skipped: u64,
    /// Source entries that disappeared while the copy ran.
    pub vanished: u64,
    /// Files that were to be linked but were copied (the link failed).
    pub link_fallbacks: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The new snapshot's folder name; `None` in a dry run.
    pub created: Option<String>,
    pub stats: Stats,
    /// Retention's decision on each of our snapshots, newest first.
    pub decisions: Vec<Decision>,
    /// The snapshot folders deleted.
    pub deleted: Vec<String>,
}

/// A completed snapshot of this job and source.
#[derive(Debug, Clone)]
struct Snapshot {
    name: String,
    path: PathBuf,
    started: Timestamp,
}

/// What the destination holds of this job and source.
#[derive(Debug, Default)]
struct Found {
    completed: Vec<Snapshot>,
    partial: Vec<PathBuf>,
    deleting: Vec<PathBuf>,
}

/// The job's paths and identity, checked.
struct Plan<'a> {
    job: &'a str,
    source: PathBuf,
    /// The source as recorded in markers (normalized).
    source_text: String,
    destination: PathBuf,
    job_spec: &'a CopyJob,
}

fn plan<'a>(job_name: &'a str, job: &'a CopyJob) -> Result<Plan<'a>, CopyError> {
    if let Some(v) = job.check().into_iter().next() {
        return Err(CopyError::Config(v.to_string()));
    }
    // The job name starts every snapshot folder's name.
    if job_name.is_empty()
        || job_name.starts_with('.')
        || job_name.contains(['/', '\0'])
        || job_name.len() > 200
    {
        return Err(CopyError::Config(format!(
            "the job name `{}` cannot start a folder name",
            crate::diag::shown(job_name)
        )));
    }
    let (Some(source), Some(destination)) =
        (normal_path(&job.source), normal_path(&job.destination))
    else {
        return Err(CopyError::Config("paths must be absolute".into()));
    };
    Ok(Plan {
        job: job_name,
        source_text: source.display().to_string(),
        source,
        destination,
        job_spec: job,
    })
}

/// `2026-11-20T001500Z`: sorts by time, and needs no quoting anywhere.
fn stamp(t: Timestamp) -> String {
    TimeZone::UTC
        .to_datetime(t)
        .strftime("%Y-%m-%dT%H%M%SZ")
        .to_string()
}

/// Whether `text` is a [`stamp`], with an optional `-N` for a second
/// snapshot in the same second.
fn is_stamp(text: &str) -> bool {
    let pattern = b"dddd-dd-ddTddddddZ";
    if text.len() < pattern.len() || !text.is_char_boundary(pattern.len()) {
        return false;
    }
    let (stamp, n) = text.split_at(pattern.len());
    let stamp_ok = stamp.len() == pattern.len()
        && stamp.bytes().zip(pattern).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == *p,
        });
    let n_ok = n.is_empty()
        || n.strip_prefix('-')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
    stamp_ok && n_ok
}

fn now() -> Timestamp {
    Timestamp::now()
}

/// Runs the step, blocking (file system work): call it from a blocking
/// thread ([`run_async`]).
pub fn run(job_name: &str, job: &CopyJob, opts: &Options) -> Result<Outcome, CopyError> {
    let plan = plan(job_name, job)?;
    let started_at = std::time::Instant::now();
    check_folders(&plan)?;
    let found = find(&plan)?;
    let previous = found
        .completed
        .iter()
        .max_by(|a, b| a.started.cmp(&b.started).then_with(|| a.name.cmp(&b.name)))
        .cloned();
    let previous = previous.as_ref();

    if opts.dry_run {
        return dry_run(&plan, &found, previous, opts);
    }

    clean_up(&found);
    let started = opts.started.unwrap_or_else(now);
    let (name, partial) = new_partial(&plan, started)?;
    // Held until the snapshot has its final name: a later run sees it is
    // being written.
    let claim = claim_partial(&plan, &partial, started);
    let claim = match claim {
        Ok(c) => c,
        Err(e) => {
            let _ = remove_tree(&partial);
            return Err(e);
        }
    };
    let mut stats = Stats::default();
    let copied = Copier {
        opts,
        stats: &mut stats,
        root: true,
    }
    .tree(&plan.source, &partial, previous.map(|p| p.path.as_path()));
    if let Err(e) = copied.and_then(|()| finish(&plan, &partial, &name, started, &stats, opts)) {
        if !matches!(e, CopyError::Cancelled) {
            // A failed copy leaves nothing behind: the next run starts
            // from the last complete snapshot anyway.
            if let Err(r) = remove_tree(&partial) {
                log::warn(format!(
                    "could not remove the partial snapshot {}: {r}; the next run will",
                    partial.display()
                ));
            }
        }
        return Err(e);
    }
    drop(claim);

    let snapshot = Snapshot {
        name: name.clone(),
        path: plan.destination.join(&name),
        started,
    };
    let mut completed = found.completed.clone();
    completed.push(snapshot);
    let (decisions, deleted, failed) = match &job.retention {
        Some(policy) => prune(&completed, &name, policy, false, &opts.cancel)?,
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    log::info(summary(
        &plan,
        &name,
        previous,
        &stats,
        job.retention.as_ref().map(|_| (&decisions, deleted.len())),
        started_at.elapsed(),
    ));
    if !failed.is_empty() {
        return Err(CopyError::DeleteFailed { failed, deleted });
    }
    Ok(Outcome {
        created: Some(name),
        stats,
        decisions,
        deleted,
    })
}

/// [`run`] on a blocking thread. Dropping the returned future (the run
/// lost its lock, or got a signal) tells the copy to stop.
pub async fn run_async(
    job_name: &str,
    job: &CopyJob,
    mut opts: Options,
) -> Result<Outcome, CopyError> {
    struct CancelOnDrop(Arc<AtomicBool>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let cancel = Arc::new(AtomicBool::new(false));
    opts.cancel = cancel.clone();
    let _guard = CancelOnDrop(cancel);
    let (job_name, job) = (job_name.to_owned(), job.clone());
    tokio::task::spawn_blocking(move || run(&job_name, &job, &opts))
        .await
        .unwrap_or_else(|e| Err(CopyError::Failed(format!("the copy thread failed: {e}"))))
}

/// The source must be a folder with something in it, the destination a
/// folder: a missing or empty one is almost always a volume that is not
/// mounted, and a snapshot of nothing would let retention prune the real
/// ones away, one day at a time.
fn check_folders(plan: &Plan) -> Result<(), CopyError> {
    let source = &plan.source;
    match fs::metadata(source) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CopyError::Failed(format!(
                "the source {} is not a folder",
                source.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CopyError::Failed(format!(
                "the source {} does not exist; is its volume mounted?",
                source.display()
            )));
        }
        Err(e) => {
            return Err(CopyError::Failed(format!(
                "cannot read the source {}: {e}",
                source.display()
            )));
        }
    }
    let mut entries = fs::read_dir(source).map_err(|e| {
        CopyError::Failed(format!("cannot read the source {}: {e}", source.display()))
    })?;
    if entries.next().is_none() {
        return Err(CopyError::Failed(format!(
            "the source {} is empty, which usually means its volume is not mounted; a snapshot \
             of nothing would count towards retention, so none was made",
            source.display()
        )));
    }
    let destination = &plan.destination;
    match fs::metadata(destination) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CopyError::Failed(format!(
            "the destination {} is not a folder",
            destination.display()
        ))),
        // Created here, it would be in the container, and gone with it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(CopyError::Failed(format!(
            "the destination {} does not exist; is its volume mounted?",
            destination.display()
        ))),
        Err(e) => Err(CopyError::Failed(format!(
            "cannot read the destination {}: {e}",
            destination.display()
        ))),
    }
}

/// Reads a marker of ours: a regular file (not a symlink) holding JSON
/// that names unitgen, the job and the source.
fn read_marker<T: for<'de> Deserialize<'de>>(path: &Path, ours: impl Fn(&T) -> bool) -> Option<T> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 {
        return None;
    }
    let value: T = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    ours(&value).then_some(value)
}

/// Everything of this job and source in the destination.
fn find(plan: &Plan) -> Result<Found, CopyError> {
    let prefix = format!("{}.", plan.job);
    let entries = fs::read_dir(&plan.destination).map_err(|e| {
        CopyError::Failed(format!(
            "cannot list the destination {}: {e}",
            plan.destination.display()
        ))
    })?;
    let mut found = Found::default();
    for entry in entries {
        let entry = entry.map_err(|e| {
            CopyError::Failed(format!(
                "cannot list the destination {}: {e}",
                plan.destination.display()
            ))
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // `JOB.<stamp>[-N]` and its suffixes, exactly: job `db` must not
        // take job `db.main`'s folders for its own.
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let stem = rest
            .strip_suffix(PARTIAL)
            .or_else(|| rest.strip_suffix(DELETING))
            .unwrap_or(rest);
        if !is_stamp(stem) {
            continue;
        }
        let path = entry.path();
        // A symlink to a folder is not a folder we made.
        match entry.file_type() {
            Ok(t) if t.is_dir() => {}
            _ => continue,
        }
        let is_ours = |m: &Marker| {
            m.managed_by == MANAGED_BY && m.job == plan.job && m.source == plan.source_text
        };
        if name.ends_with(PARTIAL) {
            let ours = read_marker(&path.join(PARTIAL_MARKER), |m: &PartialMarker| {
                m.managed_by == MANAGED_BY && m.job == plan.job && m.source == plan.source_text
            })
            .is_some();
            // A run killed between making the folder and writing its
            // marker leaves it empty; one made a moment ago may be another
            // run's, about to get its marker.
            let empty_and_old = fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none())
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > Duration::from_secs(60)));
            if ours || empty_and_old {
                found.partial.push(path);
            }
        } else if name.ends_with(DELETING) {
            if read_marker(&path.join(MARKER), is_ours).is_some() {
                found.deleting.push(path);
            }
        } else if let Some(m) = read_marker(&path.join(MARKER), is_ours) {
            match m.started.parse::<Timestamp>() {
                Ok(started) => found.completed.push(Snapshot {
                    name,
                    path,
                    started,
                }),
                Err(_) => log::warn(format!(
                    "left {} alone: its marker's start time is not a time",
                    path.display()
                )),
            }
        }
    }
    Ok(found)
}

/// Removes partial folders whose writer is gone, and finishes deletions a
/// killed run began.
fn clean_up(found: &Found) {
    for path in &found.partial {
        let marker = path.join(PARTIAL_MARKER);
        // A writer holds the marker's lock while it writes; a missing
        // marker means an empty folder (see `find`).
        let lock = File::open(&marker).ok();
        let free = match &lock {
            Some(f) => f.try_lock().is_ok(),
            None => true,
        };
        if !free {
            log::info(format!(
                "left {} alone: another run is writing it",
                path.display()
            ));
            continue;
        }
        match remove_tree(path) {
            Ok(()) => log::info(format!(
                "removed {}, left by a run that did not finish",
                path.display()
            )),
            Err(e) => log::warn(format!("could not remove {}: {e}", path.display())),
        }
        drop(lock);
    }
    for path in &found.deleting {
        match remove_snapshot_contents(path) {
            Ok(()) => log::info(format!(
                "finished deleting {}, which a run that did not finish had begun",
                path.display()
            )),
            Err(e) => log::warn(format!("could not remove {}: {e}", path.display())),
        }
    }
}

/// Makes `DEST/JOB.<time>[-N].partial`, unused both as a partial and as
/// a final name. `N` comes after every one used in that second, even if
/// an earlier one was pruned since: names keep sorting in time order.
fn new_partial(plan: &Plan, started: Timestamp) -> Result<(String, PathBuf), CopyError> {
    let base = format!("{}.{}", plan.job, stamp(started));
    let first = fs::read_dir(&plan.destination)
        .map_err(|e| io_failed("list", &plan.destination, &e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix(&base)?;
            let rest = [PARTIAL, DELETING]
                .iter()
                .find_map(|s| rest.strip_suffix(s))
                .unwrap_or(rest);
            match rest {
                "" => Some(1),
                r => r.strip_prefix('-')?.parse::<u32>().ok().map(|n| n + 1),
            }
        })
        .max()
        .unwrap_or(0);
    for n in first..first + 1000 {
        let name = match n {
            0 => base.clone(),
            n => format!("{base}-{n}"),
        };
        if fs::symlink_metadata(plan.destination.join(&name)).is_ok() {
            continue;
        }
        let partial = plan.destination.join(format!("{name}{PARTIAL}"));
        match fs::DirBuilder::new().mode(0o700).create(&partial) {
            Ok(()) => return Ok((name, partial)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(CopyError::Failed(format!(
                    "cannot create {}: {e}",
                    partial.display()
                )));
            }
        }
    }
    Err(CopyError::Failed(format!(
        "no free snapshot name for {base} in {}",
        plan.destination.display()
    )))
}

/// Writes the partial folder's marker and locks it for as long as the
/// returned file is open.
fn claim_partial(plan: &Plan, partial: &Path, started: Timestamp) -> Result<File, CopyError> {
    let path = partial.join(PARTIAL_MARKER);
    let marker = PartialMarker {
        managed_by: MANAGED_BY.into(),
        job: plan.job.into(),
        source: plan.source_text.clone(),
        started: started.to_string(),
        pid: std::process::id(),
    };
    let fail = |e: io::Error| CopyError::Failed(format!("cannot write {}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(fail)?;
    file.try_lock()
        .map_err(|e| CopyError::Failed(format!("cannot lock {}: {e}", path.display())))?;
    file.write_all(&serde_json::to_vec(&marker).expect("a marker serializes"))
        .map_err(fail)?;
    Ok(file)
}

/// Completes the snapshot: folder times, the marker, everything on disk,
/// then the final name.
fn finish(
    plan: &Plan,
    partial: &Path,
    name: &str,
    started: Timestamp,
    stats: &Stats,
    opts: &Options,
) -> Result<(), CopyError> {
    let marker = Marker {
        managed_by: MANAGED_BY.into(),
        job: plan.job.into(),
        source: plan.source_text.clone(),
        started: started.to_string(),
        finished: now().to_string(),
        files: stats.files,
        bytes: stats.bytes_copied + stats.bytes_linked,
    };
    let path = partial.join(MARKER);
    let fail = |what: &str, p: &Path, e: io::Error| {
        CopyError::Failed(format!("cannot {what} {}: {e}", p.display()))
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| fail("write", &path, e))?;
    file.write_all(&serde_json::to_vec_pretty(&marker).expect("a marker serializes"))
        .map_err(|e| fail("write", &path, e))?;
    drop(file);
    let partial_marker = partial.join(PARTIAL_MARKER);
    fs::remove_file(&partial_marker).map_err(|e| fail("remove", &partial_marker, e))?;
    // The marker and removing the partial one changed the root folder's
    // time; give it the source's again.
    let meta = fs::metadata(&plan.source).map_err(|e| fail("read", &plan.source, e))?;
    set_dir_attributes(partial, &meta).map_err(|e| fail("set the attributes of", partial, e))?;
    // Everything written so far, on disk before the name says complete.
    sync_filesystem(&plan.destination).map_err(|e| fail("sync", &plan.destination, e))?;
    // Syncing may take a while; a run stopped meanwhile (its lock lost)
    // changes nothing more.
    if opts.cancel.load(Ordering::SeqCst) {
        return Err(CopyError::Cancelled);
    }
    let target = plan.destination.join(name);
    fs::rename(partial, &target).map_err(|e| fail("rename into place", partial, e))?;
    sync_dir(&plan.destination).map_err(|e| fail("sync", &plan.destination, e))?;
    Ok(())
}

fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir)?;
    // SAFETY: syncfs takes a descriptor we own for the duration of the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// A failed step about one path, in one line.
fn io_failed(what: &str, path: &Path, e: &io::Error) -> CopyError {
    CopyError::Failed(format!("cannot {what} {}: {e}", path.display()))
}

struct Copier<'a> {
    opts: &'a Options,
    stats: &'a mut Stats,
    /// Whether the folder being copied is the source itself (where the
    /// marker names are reserved).
    root: bool,
}

impl Copier<'_> {
    fn cancelled(&self) -> Result<(), CopyError> {
        if self.opts.cancel.load(Ordering::Relaxed) {
            Err(CopyError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Copies the contents of folder `src` into the existing folder `dst`,
    /// linking to `prev` (the same folder in the previous snapshot).
    fn tree(&mut self, src: &Path, dst: &Path, prev: Option<&Path>) -> Result<(), CopyError> {
        let root = std::mem::replace(&mut self.root, false);
        let mut names = Vec::new();
        let entries = match fs::read_dir(src) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !root => {
                self.vanished(src);
                return Ok(());
            }
            Err(e) => return Err(io_failed("read", src, &e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_failed("read", src, &e))?;
            names.push(entry.file_name());
        }
        // The same order every time: logs and counts repeat.
        names.sort();
        for name in names {
            self.cancelled()?;
            if root && (name == MARKER || name == PARTIAL_MARKER) {
                log::warn(format!(
                    "skipped {}: the name is reserved for unitgen's snapshot markers",
                    src.join(&name).display()
                ));
                self.stats.skipped += 1;
                continue;
            }
            let (s, d) = (src.join(&name), dst.join(&name));
            let p = prev.map(|p| p.join(&name));
            let meta = match fs::symlink_metadata(&s) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.vanished(&s);
                    continue;
                }
                Err(e) => return Err(io_failed("read", &s, &e)),
            };
            let t = meta.file_type();
            if t.is_dir() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&d)
                    .map_err(|e| io_failed("create", &d, &e))?;
                self.tree(&s, &d, p.as_deref())?;
                set_dir_attributes(&d, &meta)
                    .map_err(|e| io_failed("set the attributes of", &d, &e))?;
                self.stats.dirs += 1;
            } else if t.is_symlink() {
                self.symlink(&s, &d, &meta)?;
            } else if t.is_file() {
                self.file(&s, &d, p.as_deref(), &meta)?;
            } else {
                log::warn(format!(
                    "skipped {}: not a file, folder or symlink (a socket, FIFO or device)",
                    s.display()
                ));
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }

    fn vanished(&mut self, path: &Path) {
        log::warn(format!(
            "{} disappeared while it was being copied; not in this snapshot",
            path.display()
        ));
        self.stats.vanished += 1;
    }

    fn symlink(&mut self, s: &Path, d: &Path, meta: &fs::Metadata) -> Result<(), CopyError> {
        let target = match fs::read_link(s) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.vanished(s);
                return Ok(());
            }
            Err(e) => return Err(io_failed("read", s, &e)),
        };
        std::os::unix::fs::symlink(&target, d).map_err(|e| io_failed("create", d, &e))?;
        if is_root() {
            std::os::unix::fs::lchown(d, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| io_failed("set the owner of", d, &e))?;
        }
        self.stats.symlinks += 1;
        Ok(())
    }

    fn file(
        &mut self,
        s: &Path,
        d: &Path,
        prev: Option<&Path>,
        meta: &fs::Metadata,
    ) -> Result<(), CopyError> {
        if let Some(p) = prev
            && unchanged(meta, p)
        {
            match fs::hard_link(p, d) {
                Ok(()) => {
                    self.stats.files += 1;
                    self.stats.linked += 1;
                    self.stats.bytes_linked += meta.len();
                    return Ok(());
                }
                // Gone (pruned by a concurrent run), too many links, ...:
                // a copy is always right.
                Err(_) => self.stats.link_fallbacks += 1,
            }
        }
        // O_NOFOLLOW: the entry was a file when listed; if it has become
        // a symlink since, it is not followed out of the source.
        let mut from = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(s)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.vanished(s);
                return Ok(());
            }
            Err(e) => return Err(io_failed("read", s, &e)),
        };
        // The attributes of what is actually read.
        let meta = from.metadata().map_err(|e| io_failed("read", s, &e))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d)
            .map_err(|e| io_failed("create", d, &e))?;
        let mut bytes = 0;
        loop {
            self.cancelled()?;
            let n = io::copy(&mut (&mut from).take(CHUNK), &mut to)
                .map_err(|e| io_failed("copy", s, &e))?;
            if n == 0 {
                break;
            }
            bytes += n;
        }
        to.flush().map_err(|e| io_failed("write", d, &e))?;
        if is_root() {
            // Before the mode: chown clears setuid and setgid bits.
            std::os::unix::fs::fchown(&to, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| io_failed("set the owner of", d, &e))?;
        }
        to.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io_failed("set the permissions of", d, &e))?;
        to.set_times(fs::FileTimes::new().set_modified(modified(&meta)))
            .map_err(|e| io_failed("set the time of", d, &e))?;
        self.stats.files += 1;
        self.stats.copied += 1;
        self.stats.bytes_copied += bytes;
        Ok(())
    }
}

/// The modification time, to the nanosecond.
fn modified(meta: &fs::Metadata) -> SystemTime {
    let (secs, nanos) = (meta.mtime(), meta.mtime_nsec() as u32);
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::new(secs as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::new(0, nanos)
    }
}

/// Whether the previous snapshot's `prev` can stand for the source file
/// with metadata `meta`: a hard link shares every attribute.
fn unchanged(meta: &fs::Metadata, prev: &Path) -> bool {
    let Ok(p) = fs::symlink_metadata(prev) else {
        return false;
    };
    p.is_file()
        && p.len() == meta.len()
        && p.mtime() == meta.mtime()
        && p.mtime_nsec() == meta.mtime_nsec()
        && p.mode() & 0o7777 == meta.mode() & 0o7777
        && (!is_root() || (p.uid() == meta.uid() && p.gid() == meta.gid()))
}

/// A copied folder's owner, permissions and time, once its contents are
/// in (adding them changes its time; read-only permissions would forbid it).
fn set_dir_attributes(d: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let f = File::open(d)?;
    if is_root() {
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
    }
    f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    f.set_times(fs::FileTimes::new().set_modified(modified(meta)))
}

/// Removes a folder tree we made. Read-only folders copied from the source
/// are made writable first (root needs no such help; anyone else does).
fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        remove_tree(&entry?.path())?;
    }
    fs::remove_dir(path)
}

/// Removes a `.deleting` snapshot: its contents, then its marker (so a
/// run killed midway leaves a folder that is still recognisably ours),
/// then the folder.
fn remove_snapshot_contents(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
    }
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_name() != MARKER {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_file(path.join(MARKER)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::remove_dir(path)
}

/// Deletes one snapshot: renamed first, so that it never looks complete
/// while half deleted.
fn delete_snapshot(s: &Snapshot) -> io::Result<()> {
    let doomed = s.path.with_file_name(format!("{}{DELETING}", s.name));
    fs::rename(&s.path, &doomed)?;
    remove_snapshot_contents(&doomed)
}

type Pruned = (Vec<Decision>, Vec<String>, Vec<String>);

/// Retention over `completed` (this run's snapshot `created` among them):
/// the decisions, the names deleted, and the deletions that failed.
fn prune(
    completed: &[Snapshot],
    created: &str,
    policy: &crate::contract::retention::RetentionPolicy,
    dry_run: bool,
    cancel: &AtomicBool,
) -> Result<Pruned, CopyError> {
    let candidates: Vec<Candidate> = completed
        .iter()
        .map(|s| Candidate {
            id: s.name.clone(),
            start_time: s.started,
            state: SnapshotState::Completed,
        })
        .collect();
    let mut decisions =
        retention::decide(&candidates, policy).map_err(|e| CopyError::Config(e.to_string()))?;
    // Never delete what this run just made, even if a clock put an older
    // snapshot after it.
    for d in decisions.iter_mut().filter(|d| d.snapshot.id == created) {
        if d.is_delete() {
            d.action = Action::Keep(vec!["created by this run".into()]);
        }
    }
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for d in decisions.iter().filter(|d| d.is_delete()) {
        // A run stopped from outside (its lock lost) deletes nothing more.
        if cancel.load(Ordering::SeqCst) {
            return Err(CopyError::Cancelled);
        }
        let Some(s) = completed.iter().find(|s| s.name == d.snapshot.id) else {
            continue;
        };
        if dry_run {
            log::info(format!(
                "dry run: would delete snapshot {} (taken {})",
                s.path.display(),
                s.started
            ));
            continue;
        }
        match delete_snapshot(s) {
            Ok(()) => {
                log::info(format!(
                    "deleted snapshot {} (taken {})",
                    s.path.display(),
                    s.started
                ));
                deleted.push(s.name.clone());
            }
            Err(e) => {
                log::warn(format!(
                    "could not delete snapshot {}: {e}",
                    s.path.display()
                ));
                failed.push(format!("{} ({e})", s.name));
            }
        }
    }
    Ok((decisions, deleted, failed))
}

/// `1.5 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The step's one summary line.
fn summary(
    plan: &Plan,
    name: &str,
    previous: Option<&Snapshot>,
    stats: &Stats,
    retention: Option<(&Vec<Decision>, usize)>,
    took: Duration,
) -> String {
    let mut line = format!(
        "copied {} to {}: {} files ({} copied, {} hard-linked{}), {} folders, {} symlinks; {} copied, {} linked",
        plan.source.display(),
        plan.destination.join(name).display(),
        stats.files,
        stats.copied,
        stats.linked,
        match previous {
            Some(p) => format!(" to {}", p.name),
            None => String::new(),
        },
        stats.dirs,
        stats.symlinks,
        size(stats.bytes_copied),
        size(stats.bytes_linked),
    );
    for (count, what) in [
        (stats.skipped, "skipped"),
        (stats.vanished, "vanished while copying"),
        (stats.link_fallbacks, "copied because linking failed"),
    ] {
        if count > 0 {
            line.push_str(&format!("; {count} {what}"));
        }
    }
    match retention {
        Some((decisions, deleted)) => line.push_str(&format!(
            "; retention kept {} and deleted {deleted} of {} snapshots",
            decisions.iter().filter(|d| !d.is_delete()).count(),
            decisions.len()
        )),
        None => line.push_str("; no retention"),
    }
    line.push_str(&format!(" in {:.2}s", took.as_secs_f64()));
    line
}

/// Walks the source as a copy would, changing nothing.
fn dry_run(
    plan: &Plan,
    found: &Found,
    previous: Option<&Snapshot>,
    opts: &Options,
) -> Result<Outcome, CopyError> {
    for p in &found.partial {
        log::info(format!(
            "dry run: would remove {} if no run is writing it",
            p.display()
        ));
    }
    for p in &found.deleting {
        log::info(format!("dry run: would finish deleting {}", p.display()));
    }
    let mut stats = Stats::default();
    survey(
        &plan.source,
        previous.map(|p| p.path.clone()),
        true,
        &mut stats,
        opts,
    )?;
    let name = format!("{}.{}", plan.job, stamp(opts.started.unwrap_or_else(now)));
    let (decisions, _, _) = match &plan.job_spec.retention {
        Some(policy) => prune(&found.completed, "", policy, true, &opts.cancel)?,
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let kept = decisions.iter().filter(|d| !d.is_delete()).count();
    log::info(format!(
        "dry run: would copy {} to {}: {} files ({} to copy, {} to hard-link{}), {} to copy; \
         retention would keep {kept} and delete {} of the {} existing snapshots; changed nothing",
        plan.source.display(),
        plan.destination.join(name).display(),
        stats.files,
        stats.copied,
        stats.linked,
        match previous {
            Some(p) => format!(" to {}", p.name),
            None => String::new(),
        },
        size(stats.bytes_copied),
        decisions.len() - kept,
        decisions.len(),
    ));
    Ok(Outcome {
        created: None,
        stats,
        decisions,
        deleted: Vec::new(),
    })
}

fn survey(
    src: &Path,
    prev: Option<PathBuf>,
    root: bool,
    stats: &mut Stats,
    opts: &Options,
) -> Result<(), CopyError> {
    let entries = fs::read_dir(src).map_err(|e| io_failed("read", src, &e))?;
    for entry in entries {
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(CopyError::Cancelled);
        }
        let entry = entry.map_err(|e| io_failed("read", src, &e))?;
        let name = entry.file_name();
        if root && (name == MARKER || name == PARTIAL_MARKER) {
            continue;
        }
        let s = entry.path();
        let p = prev.as_ref().map(|p| p.join(&name));
        let Ok(meta) = fs::symlink_metadata(&s) else {
            continue;
        };
        if meta.is_dir() {
            stats.dirs += 1;
            survey(&s, p, false, stats, opts)?;
        } else if meta.is_file() {
            stats.files += 1;
            if p.as_deref().is_some_and(|p| unchanged(&meta, p)) {
                stats.linked += 1;
                stats.bytes_linked += meta.len();
            } else {
                stats.copied += 1;
                stats.bytes_copied += meta.len();
            }
        } else if meta.file_type().is_symlink() {
            stats.symlinks += 1;
        } else {
            stats.skipped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_sizes_read_well() {
        let t: Timestamp = "2026-11-20T00:15:00Z".parse().unwrap();
        assert_eq!(stamp(t), "2026-11-20T001500Z");
        let later: Timestamp = "2026-11-20T10:00:00+09:00".parse().unwrap();
        assert_eq!(stamp(later), "2026-11-20T010000Z");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
        assert!(is_stamp("2026-11-20T001500Z"));
        assert!(is_stamp("2026-11-20T001500Z-12"));
        for bad in [
            "2026-11-20T001500",
            "2026-11-20T001500Z-",
            "main.2026-11-20T001500Z",
            "2026-11-20T001500Z.1",
        ] {
            assert!(!is_stamp(bad), "{bad}");
        }
    }

    #[test]
    fn a_job_name_must_start_a_folder_name() {
        let job = CopyJob {
            source: "/data".into(),
            destination: "/backups".into(),
            retention: None,
        };
        for bad in ["", ".hidden", "a/b"] {
            assert!(
                matches!(plan(bad, &job), Err(CopyError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(plan("wallet@hot", &job).is_ok());
    }
}
