//! Writing units into the output folder, and `--check`'s diff.
//!
//! What holds, however a render ends (the README's guarantees section says
//! the same):
//! - every unit file is whole: it is written to a temp file and renamed
//!   over the old one, so a reader sees the old bytes or the new, never a
//!   mix; the bytes are on disk before any rename (one `syncfs(2)` for all
//!   temp files, then the renames, then one fsync of the folder);
//! - a render that fails before its renames (a problem, a full disk, a
//!   foreign file in the way) leaves the folder exactly as it was, and
//!   removes its temp files;
//! - a render killed during its renames leaves each unit old or new, and a
//!   manifest that already lists both sets: the next render (of any spec)
//!   cleans up after it, and `--check` reports it meanwhile;
//! - files unitgen did not write (not in the manifest and without the
//!   `[X-Unitgen]` section) are never overwritten or removed;
//! - one render at a time per folder: a second waits for the first.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::generate::render::UnitFile;

/// Lists the files unitgen wrote in a folder, so that the units of removed
/// jobs can be deleted without ever touching a file unitgen did not write.
pub const MANIFEST: &str = ".unitgen-manifest";
const MANIFEST_HEADER: &str =
    "# Files written by `unitgen render`; it removes them when their job is gone.\n";
/// Present in every unit unitgen writes.
const MARKER: &str = "\n[X-Unitgen]\n";
/// Temp files are `.unitgen-tmp.PID.N`: short, so that a unit name of the
/// longest length systemd allows still has a temp name the file system
/// takes, and recognizable, so any render can remove what a killed one left.
const TEMP_PREFIX: &str = ".unitgen-tmp.";
/// How long a render waits for another one writing the same folder.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// What a render changed, for printing and for `watch`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Every unit of the spec, in render order.
    pub units: Vec<PathBuf>,
    /// The subset whose bytes changed.
    pub changed: Vec<PathBuf>,
    /// Units of jobs the spec no longer has, removed.
    pub removed: Vec<PathBuf>,
}

/// Holds the output folder for one render: `flock(2)` on the folder itself,
/// so no lock file is left in a folder that is committed to git. The kernel
/// releases it when the process ends, however it ends.
struct FolderLock(fs::File);

impl FolderLock {
    fn acquire(dir: &Path) -> Result<FolderLock, Error> {
        let file = fs::File::open(dir).map_err(Error::io(dir))?;
        let deadline = Instant::now() + LOCK_WAIT;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FolderLock(file)),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    if !said {
                        eprintln!(
                            "unitgen: another unitgen is writing {}; waiting for it",
                            dir.display()
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Output {
                        path: dir.to_owned(),
                        message: format!(
                            "another unitgen has been writing here for {}s (a `watch`, or a \
                             render that hangs); stop it, or render into another folder",
                            LOCK_WAIT.as_secs()
                        ),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(dir)(e)),
            }
        }
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Writes `files` into `dir` (see the module's guarantees).
pub fn write(dir: &Path, files: &[UnitFile]) -> Result<Written, Error> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let _lock = FolderLock::acquire(dir)?;
    // One listing instead of a stat per unit: a first render of 10,000
    // jobs would otherwise spend a third of its system calls asking about
    // files that do not exist.
    let listing = list(dir)?;
    remove_leftovers(dir, &listing)?;
    let previous = read_manifest(dir)?;
    let mut written = Written::default();

    // Decide everything before writing anything: a foreign file in the way
    // stops the render with the folder untouched.
    let mut todo: Vec<(&UnitFile, PathBuf)> = Vec::new();
    for file in files {
        let dest = dir.join(&file.name);
        written.units.push(dest.clone());
        let existing = match listing.get(&file.name) {
            None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            Some(_) => fs::symlink_metadata(&dest),
        };
        match existing {
            Ok(m) if !m.is_file() => {
                return Err(Error::Output {
                    path: dest,
                    message: "exists and is not a regular file; move it away and render again"
                        .into(),
                });
            }
            Ok(_) => {
                let old = fs::read(&dest).map_err(Error::io(&dest))?;
                if old == file.contents.as_bytes() {
                    continue;
                }
                if !previous.contains(&file.name) && !has_marker(&old) {
                    return Err(Error::Output {
                        path: dest,
                        message: format!(
                            "exists and was not written by unitgen; job `{}` would replace it. \
                             Move it away (or rename the job), then render again",
                            file.job
                        ),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dest)(e)),
        }
        todo.push((file, dest));
    }

    let current: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
    let stale: Vec<PathBuf> = previous
        .difference(&current)
        .map(|name| dir.join(name))
        .filter(|path| is_ours(path))
        .collect();
    if todo.is_empty() && stale.is_empty() && previous == current {
        return Ok(written);
    }

    // Stage every changed unit, then make them durable in one pass.
    let mut staged = Staged::new(dir);
    for (file, dest) in &todo {
        let tmp = staged.write(file.contents.as_bytes())?;
        staged.pairs.push((tmp, dest.clone()));
    }
    sync_filesystem(dir)?;
    // Record the union before renaming: a render killed among the renames
    // leaves every file it may have placed recorded, for the next render.
    if !todo.is_empty() {
        let union: BTreeSet<String> = previous.union(&current).cloned().collect();
        write_manifest(dir, &mut staged, &union)?;
    }
    for (tmp, dest) in std::mem::take(&mut staged.pairs) {
        fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        written.changed.push(dest);
    }
    for path in stale {
        fs::remove_file(&path).map_err(Error::io(&path))?;
        written.removed.push(path);
    }
    write_manifest(dir, &mut staged, &current)?;
    // Every temp file was renamed: none is left for Drop to remove.
    staged.temps.clear();
    sync_dir(dir)?;
    Ok(written)
}

/// Temp files of this render; whatever is left when it ends (a failure) is
/// removed.
struct Staged<'a> {
    dir: &'a Path,
    pid: u32,
    /// Written and not yet renamed: (temp, destination).
    pairs: Vec<(PathBuf, PathBuf)>,
    /// Every temp file created, renamed or not.
    temps: Vec<PathBuf>,
}

impl<'a> Staged<'a> {
    fn new(dir: &'a Path) -> Self {
        Staged {
            dir,
            pid: std::process::id(),
            pairs: Vec::new(),
            temps: Vec::new(),
        }
    }

    /// A new temp file holding `bytes` (not yet fsynced).
    fn write(&mut self, bytes: &[u8]) -> Result<PathBuf, Error> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{TEMP_PREFIX}{}.{n}", self.pid));
        // Recorded before it exists: a write that fails half-way is removed too.
        self.temps.push(tmp.clone());
        let mut f = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        f.write_all(bytes).map_err(Error::io(&tmp))?;
        Ok(tmp)
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        for tmp in &self.temps {
            // Renamed ones are gone already; this only removes leftovers.
            let _ = fs::remove_file(tmp);
        }
    }
}

fn write_manifest(dir: &Path, staged: &mut Staged, names: &BTreeSet<String>) -> Result<(), Error> {
    let mut manifest = String::from(MANIFEST_HEADER);
    for name in names {
        manifest.push_str(name);
        manifest.push('\n');
    }
    let mpath = dir.join(MANIFEST);
    if fs::read_to_string(&mpath).ok().as_deref() == Some(manifest.as_str()) {
        return Ok(());
    }
    let tmp = staged.write(manifest.as_bytes())?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(Error::io(&tmp))?;
    fs::rename(&tmp, &mpath).map_err(Error::io(&mpath))?;
    sync_dir(dir)
}

/// The folder's entries by name, with their types (`None` for a folder
/// that does not exist yet).
fn list(dir: &Path) -> Result<std::collections::HashMap<String, fs::FileType>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(Error::io(dir)(e)),
    };
    let mut out = std::collections::HashMap::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let kind = entry.file_type().map_err(Error::io(entry.path()))?;
        out.insert(entry.file_name().to_string_lossy().into_owned(), kind);
    }
    Ok(out)
}

/// Temp files a killed or failed render left behind (any spec's: they all
/// share the prefix), removed under the folder lock.
fn remove_leftovers(
    dir: &Path,
    listing: &std::collections::HashMap<String, fs::FileType>,
) -> Result<(), Error> {
    for (name, kind) in listing {
        if name.starts_with(TEMP_PREFIX) && kind.is_file() {
            let path = dir.join(name);
            fs::remove_file(&path).map_err(Error::io(&path))?;
        }
    }
    Ok(())
}

/// Temp files left behind, for `--check`.
fn leftovers(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out: Vec<PathBuf> = list(dir)?
        .into_iter()
        .filter(|(name, kind)| name.starts_with(TEMP_PREFIX) && kind.is_file())
        .map(|(name, _)| dir.join(name))
        .collect();
    out.sort();
    Ok(out)
}

/// How a file in the output folder differs from what the spec renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// The folder holds it with other bytes.
    Stale,
    /// The spec renders it; the folder does not hold it.
    Missing,
    /// unitgen wrote it for a job the spec no longer has.
    Extra,
    /// A temp file an interrupted render left.
    Leftover,
}

/// One file of the output folder that is not as the spec renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub path: PathBuf,
    pub status: FileStatus,
    /// The unified diff that fixes it (a note for a leftover temp file).
    pub diff: String,
}

/// Whether `dir` holds `file` as rendered (`None`), or how it differs.
/// Reads only.
pub fn status(dir: &Path, file: &UnitFile) -> Result<Option<Drift>, Error> {
    let path = dir.join(&file.name);
    let (old, status) = match fs::read_to_string(&path) {
        Ok(s) => (s, FileStatus::Stale),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), FileStatus::Missing),
        Err(e) => return Err(Error::io(&path)(e)),
    };
    if old == file.contents {
        return Ok(None);
    }
    let diff = diff(&path, &old, &file.contents);
    Ok(Some(Drift { path, status, diff }))
}

/// Every difference between `dir` and `files`, in render order, then the
/// units of removed jobs, then the temp files an interrupted render left;
/// empty when the folder is up to date. Reads only.
pub fn compare(dir: &Path, files: &[UnitFile]) -> Result<Vec<Drift>, Error> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for file in files {
        names.insert(file.name.clone());
        out.extend(status(dir, file)?);
    }
    for stale in read_manifest(dir)?.difference(&names) {
        let path = dir.join(stale);
        if is_ours(&path) {
            let old = fs::read_to_string(&path).map_err(Error::io(&path))?;
            let diff = diff(&path, &old, "");
            out.push(Drift {
                path,
                status: FileStatus::Extra,
                diff,
            });
        }
    }
    for tmp in leftovers(dir)? {
        let diff = format!(
            "# {}: left by an interrupted render; `unitgen render` removes it\n",
            tmp.display()
        );
        out.push(Drift {
            path: tmp,
            status: FileStatus::Leftover,
            diff,
        });
    }
    Ok(out)
}

/// The differences between `dir` and `files`, as a unified diff, plus a
/// note per temp file an interrupted render left; empty when the folder is
/// up to date. Reads only.
pub fn check(dir: &Path, files: &[UnitFile]) -> Result<String, Error> {
    Ok(compare(dir, files)?.into_iter().map(|d| d.diff).collect())
}

fn diff(path: &Path, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let shown = path.display().to_string();
    let old_name = if old.is_empty() {
        "/dev/null".to_owned()
    } else {
        format!("a/{shown}")
    };
    let new_name = if new.is_empty() {
        "/dev/null".to_owned()
    } else {
        format!("b/{shown}")
    };
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .missing_newline_hint(true)
        .to_string()
}

fn read_manifest(dir: &Path) -> Result<BTreeSet<String>, Error> {
    let path = dir.join(MANIFEST);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            // Only plain file names: a manifest edited to say `../x` must not
            // let unitgen delete outside its folder.
            .filter(|l| !l.contains('/') && !l.starts_with('.'))
            .map(str::to_owned)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(Error::io(path)(e)),
    }
}

fn has_marker(bytes: &[u8]) -> bool {
    bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
}

/// A file unitgen wrote: a regular file carrying the `[X-Unitgen]` section.
fn is_ours(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && fs::read(path).is_ok_and(|bytes| has_marker(&bytes))
}

/// Makes every file written so far durable in one call: `syncfs(2)` on the
/// folder's file system, instead of one fsync per file (20,000 fsyncs made
/// a first render of 10,000 jobs take 10 s).
fn sync_filesystem(dir: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let d = fs::File::open(dir).map_err(Error::io(dir))?;
    // SAFETY: syncfs only reads the descriptor, which `d` keeps open.
    if unsafe { libc::syncfs(d.as_raw_fd()) } != 0 {
        return Err(Error::io(dir)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Makes the renames durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    let d = fs::File::open(dir).map_err(Error::io(dir))?;
    match d.sync_all() {
        Ok(()) => Ok(()),
        // Some file systems cannot fsync a folder; the renames still happened.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(Error::io(dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, body: &str) -> UnitFile {
        UnitFile {
            name: name.into(),
            job: "j".into(),
            contents: format!("[Unit]\nDescription={body}\n\n[X-Unitgen]\nJob=j\n"),
        }
    }

    #[test]
    fn only_changed_units_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let first = [unit("j.service", "one"), unit("j.timer", "one")];
        let w = write(dir.path(), &first).unwrap();
        assert_eq!(w.changed, w.units);
        let mtime = |n: &str| {
            fs::metadata(dir.path().join(n))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = mtime("j.timer");

        let w = write(dir.path(), &first).unwrap();
        assert!(w.changed.is_empty() && w.removed.is_empty(), "{w:?}");

        let second = [unit("j.service", "two"), unit("j.timer", "one")];
        let w = write(dir.path(), &second).unwrap();
        assert_eq!(w.changed, [dir.path().join("j.service")]);
        assert_eq!(
            mtime("j.timer"),
            before,
            "an unchanged unit is not rewritten"
        );
        assert_eq!(check(dir.path(), &second).unwrap(), "");
    }

    #[test]
    fn a_foreign_file_is_never_overwritten_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = "[Unit]\nDescription=hand-written\n";
        fs::write(dir.path().join("b.service"), foreign).unwrap();
        let files = [unit("a.service", "x"), unit("b.service", "x")];
        let err = write(dir.path(), &files).unwrap_err().to_string();
        assert!(
            err.contains("b.service: exists and was not written by unitgen; job `j`"),
            "{err}"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("b.service")).unwrap(),
            foreign
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["b.service"], "nothing else was written");
    }

    #[test]
    fn leftovers_of_a_killed_render_are_cleaned_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let files = [unit("a.service", "x")];
        write(dir.path(), &files).unwrap();
        let tmp = dir.path().join(format!("{TEMP_PREFIX}999.0"));
        fs::write(&tmp, "half").unwrap();
        let report = check(dir.path(), &files).unwrap();
        assert!(report.contains("left by an interrupted render"), "{report}");
        write(dir.path(), &files).unwrap();
        assert!(!tmp.exists());
        assert_eq!(check(dir.path(), &files).unwrap(), "");
    }

    #[test]
    fn compare_names_each_file_and_how_it_differs() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[unit("a.service", "x"), unit("gone.service", "x")],
        )
        .unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}1.0")), "half").unwrap();
        let files = [unit("a.service", "y"), unit("b.service", "x")];
        let drift = compare(dir.path(), &files).unwrap();
        let got: Vec<(String, FileStatus)> = drift
            .iter()
            .map(|d| {
                let name = d.path.file_name().unwrap().to_string_lossy().into_owned();
                (name, d.status)
            })
            .collect();
        let want = [
            ("a.service", FileStatus::Stale),
            ("b.service", FileStatus::Missing),
            ("gone.service", FileStatus::Extra),
            (".unitgen-tmp.1.0", FileStatus::Leftover),
        ];
        assert_eq!(got, want.map(|(n, s)| (n.to_owned(), s)));
        assert!(drift[0].diff.contains("-Description=x\n+Description=y"));
        assert!(drift[1].diff.starts_with("--- /dev/null\n"));
        assert_eq!(
            status(dir.path(), &unit("gone.service", "x")).unwrap(),
            None
        );
    }

    #[test]
    fn the_longest_unit_name_still_renders() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{}.service", "x".repeat(247));
        assert_eq!(name.len(), 255);
        write(dir.path(), &[unit(&name, "long")]).unwrap();
        assert!(dir.path().join(&name).exists());
    }
}
