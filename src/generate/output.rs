//! Writing units: atomic per file (temp file + rename), all-or-nothing for
//! the whole set as far as the file system allows, stale-unit removal
//! through a manifest, and `--check`'s diff.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::generate::render::UnitFile;

/// Lists the files unitgen wrote in a folder, so that the units of removed
/// jobs can be deleted without ever touching a file unitgen did not write.
pub const MANIFEST: &str = ".unitgen-manifest";
const MANIFEST_HEADER: &str =
    "# Files written by `unitgen render`; it removes them when their job is gone.\n";
/// Present in every unit unitgen writes; a file without it is never removed.
const MARKER: &str = "\n[X-Unitgen]\n";

/// What a render changed, for printing and for `watch`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Every unit of the spec, in render order (service before timer).
    pub units: Vec<PathBuf>,
    /// The subset whose bytes changed.
    pub changed: Vec<PathBuf>,
    pub removed: Vec<PathBuf>,
}

/// Writes `files` into `dir`. Nothing is renamed into place until every
/// temp file is written and every destination is known to be replaceable,
/// so a failure leaves the previous units as they were.
pub fn write(dir: &Path, files: &[UnitFile]) -> Result<Written, Error> {
    fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let previous = read_manifest(dir)?;
    let mut written = Written::default();
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| {
        for file in files {
            let dest = dir.join(&file.name);
            written.units.push(dest.clone());
            match fs::symlink_metadata(&dest) {
                Ok(m) if !m.is_file() => {
                    return Err(Error::Output {
                        path: dest,
                        message: "exists and is not a regular file; move it away and render again"
                            .into(),
                    });
                }
                Ok(_) if fs::read(&dest).map_err(Error::io(&dest))? == file.contents.as_bytes() => {
                    continue;
                }
                _ => {}
            }
            let tmp = dir.join(format!(".{}.unitgen-tmp", file.name));
            write_synced(&tmp, file.contents.as_bytes())?;
            staged.push((tmp, dest));
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &staged {
            let _ = fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, dest) in staged {
        fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
        written.changed.push(dest);
    }

    let current: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
    for stale in previous.difference(&current) {
        let path = dir.join(stale);
        if is_ours(&path) {
            fs::remove_file(&path).map_err(Error::io(&path))?;
            written.removed.push(path);
        }
    }
    let mut manifest = String::from(MANIFEST_HEADER);
    for name in &current {
        manifest.push_str(name);
        manifest.push('\n');
    }
    let mpath = dir.join(MANIFEST);
    if fs::read_to_string(&mpath).ok().as_deref() != Some(manifest.as_str()) {
        let tmp = dir.join(format!("{MANIFEST}.unitgen-tmp"));
        write_synced(&tmp, manifest.as_bytes())?;
        fs::rename(&tmp, &mpath).map_err(Error::io(&mpath))?;
    }
    sync_dir(dir);
    Ok(written)
}

/// The differences between `dir` and `files`, as a unified diff; empty when
/// the folder is up to date. Reads only.
pub fn check(dir: &Path, files: &[UnitFile]) -> Result<String, Error> {
    let mut out = String::new();
    let mut names = BTreeSet::new();
    for file in files {
        names.insert(file.name.clone());
        let path = dir.join(&file.name);
        let old = match fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        out.push_str(&diff(&path, &old, &file.contents));
    }
    for stale in read_manifest(dir)?.difference(&names) {
        let path = dir.join(stale);
        if is_ours(&path) {
            let old = fs::read_to_string(&path).map_err(Error::io(&path))?;
            out.push_str(&diff(&path, &old, ""));
        }
    }
    Ok(out)
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

/// A file unitgen wrote: a regular file carrying the `[X-Unitgen]` section.
fn is_ours(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
        && fs::read_to_string(path).is_ok_and(|text| text.contains(MARKER))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut f = fs::File::create(path).map_err(Error::io(path))?;
    f.write_all(bytes).map_err(Error::io(path))?;
    f.sync_all().map_err(Error::io(path))
}

/// Makes the renames durable; best effort, as not every file system allows it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
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
}
