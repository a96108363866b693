//! The record of what `unitgen apply` deployed from an output folder:
//! `DIR/.unitgen-deployed`, one line per unit, `TARGET<TAB>WHERE<TAB>UNIT<TAB>JOB`
//! (WHERE: fleet's endpoint, or the host's unit folder).
//!
//! Why a file next to the units, and not in etcd or in fleet: it is the
//! memory of *this* spec's deployments. A cluster or host may run units of
//! other specs, all carrying `[X-Unitgen]`; only the record says which are
//! this folder's to remove when their job leaves the spec. It needs no
//! write access to anything but the folder apply already writes, works for
//! both targets and offline images, and is keyed by where it deployed, so
//! one spec applied to a staging and a production cluster keeps two lists.
//! When it is missing or stale (another checkout applied), the failure is
//! safe: a removed job's units stay (an orphan), nothing is wrongly destroyed.
//!
//! One apply at a time per folder: `flock(2)` on the record itself, held
//! for the whole apply. The file is therefore rewritten in place (a rename
//! would swap the locked inode); a crash mid-write can only lose lines,
//! which again means orphans, never a wrong removal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Target;
use crate::error::Error;

pub const RECORD: &str = ".unitgen-deployed";
const HEADER: &str = "# Units `unitgen apply` deployed from this folder; only these are ever removed.\n\
# TARGET<TAB>WHERE<TAB>UNIT<TAB>JOB\n";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    target: Target,
    location: String,
    unit: String,
    job: String,
}

#[derive(Debug)]
pub struct Record {
    path: PathBuf,
    entries: BTreeSet<Entry>,
    /// Held (locked) for an apply; `None` for a read-only plan.
    file: Option<fs::File>,
}

fn parse(text: &str) -> BTreeSet<Entry> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let mut f = line.split('\t');
            let target = match f.next()? {
                "fleet" => Target::Fleet,
                "systemd" => Target::Systemd,
                _ => return None,
            };
            let (location, unit, job) = (f.next()?, f.next()?, f.next()?);
            // A unit name, never a path or a flag: an edited record
            // cannot point unitgen at another file or slip fleetctl an
            // option.
            if f.next().is_some()
                || unit.is_empty()
                || unit.contains('/')
                || unit.starts_with(['.', '-'])
            {
                return None;
            }
            Some(Entry {
                target,
                location: location.to_owned(),
                unit: unit.to_owned(),
                job: job.to_owned(),
            })
        })
        .collect()
}

impl Record {
    /// The record as it is, without taking the lock (for `plan`).
    pub fn read(dir: &Path) -> Result<Record, Error> {
        let path = dir.join(RECORD);
        let entries = match fs::read_to_string(&path) {
            Ok(text) => parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        Ok(Record {
            path,
            entries,
            file: None,
        })
    }

    /// The record, locked until dropped (for `apply`); waits up to `wait`
    /// for another apply from the same folder.
    pub fn lock(dir: &Path, wait: Duration) -> Result<Record, Error> {
        let path = dir.join(RECORD);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        let deadline = Instant::now() + wait;
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(fs::TryLockError::WouldBlock)
                    if Instant::now() < deadline && !super::stop_requested() =>
                {
                    if !said {
                        eprintln!(
                            "unitgen: another unitgen apply is deploying from {}; waiting for it",
                            dir.display()
                        );
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Output {
                        path,
                        message: format!(
                            "another unitgen apply has been deploying from this folder for {}s; \
                             let it finish, then apply again",
                            wait.as_secs()
                        ),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
            }
        }
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(Error::io(&path))?;
        let mut record = Record {
            path,
            entries: parse(&text),
            file: Some(file),
        };
        if text.is_empty() {
            // Just created: say what it is, even if nothing gets deployed.
            record.save()?;
        }
        Ok(record)
    }

    /// Units recorded for this target and location, with their jobs.
    pub fn owned(&self, target: Target, location: &str) -> BTreeMap<String, String> {
        self.entries
            .iter()
            .filter(|e| e.target == target && e.location == location)
            .map(|e| (e.unit.clone(), e.job.clone()))
            .collect()
    }

    /// Records `unit`; returns whether that changed anything.
    pub fn add(&mut self, target: Target, location: &str, unit: &str, job: &str) -> bool {
        let had = self
            .entries
            .iter()
            .find(|e| e.target == target && e.location == location && e.unit == unit);
        if had.is_some_and(|e| e.job == job) {
            return false;
        }
        self.remove(target, location, unit);
        self.entries.insert(Entry {
            target,
            location: location.to_owned(),
            unit: unit.to_owned(),
            job: job.to_owned(),
        })
    }

    pub fn remove(&mut self, target: Target, location: &str, unit: &str) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.target == target && e.location == location && e.unit == unit));
        self.entries.len() != before
    }

    /// Rewrites the locked file in place and makes it durable.
    pub fn save(&mut self) -> Result<(), Error> {
        let mut text = String::from(HEADER);
        for e in &self.entries {
            let fields = [e.target.name(), &e.location, &e.unit, &e.job];
            if fields.iter().any(|f| f.contains(['\t', '\n', '\r'])) {
                return Err(Error::Output {
                    path: self.path.clone(),
                    message: format!(
                        "cannot record {:?}: a tab or line break in it would break the record",
                        e.location
                    ),
                });
            }
            text.push_str(&fields.join("\t"));
            text.push('\n');
        }
        let path = &self.path;
        let Some(file) = self.file.as_mut() else {
            return Err(Error::Output {
                path: path.clone(),
                message: "written without its lock; this is a bug in unitgen".into(),
            });
        };
        file.set_len(0).map_err(Error::io(path))?;
        file.rewind().map_err(Error::io(path))?;
        file.write_all(text.as_bytes()).map_err(Error::io(path))?;
        file.sync_all().map_err(Error::io(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_per_target_and_location() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Record::lock(dir.path(), Duration::ZERO).unwrap();
        assert!(r.add(Target::Fleet, "http://a", "x.service", "x"));
        assert!(!r.add(Target::Fleet, "http://a", "x.service", "x"));
        assert!(r.add(Target::Fleet, "http://b", "y.service", "y"));
        assert!(r.add(Target::Systemd, "/etc/systemd/system", "x.service", "x"));
        r.save().unwrap();
        drop(r);
        let r = Record::read(dir.path()).unwrap();
        assert_eq!(
            r.owned(Target::Fleet, "http://a"),
            BTreeMap::from([("x.service".to_owned(), "x".to_owned())])
        );
        let text = fs::read_to_string(dir.path().join(RECORD)).unwrap();
        assert_eq!(
            text,
            format!(
                "{HEADER}fleet\thttp://a\tx.service\tx\nfleet\thttp://b\ty.service\ty\n\
                 systemd\t/etc/systemd/system\tx.service\tx\n"
            )
        );
    }

    #[test]
    fn an_edited_record_cannot_name_a_path() {
        let entries = parse(
            "fleet\t-\t../../etc/passwd\tj\nfleet\t-\t.hidden\tj\nfleet\t-\t--all\tj\nbogus\n",
        );
        assert!(entries.is_empty(), "{entries:?}");
    }

    #[test]
    fn a_second_apply_waits_for_the_first_then_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Record::lock(dir.path(), Duration::ZERO).unwrap();
        let err = Record::lock(dir.path(), Duration::from_millis(200)).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("another unitgen apply has been deploying from this folder for 0s; let it finish, then apply again"),
            "{err}"
        );
    }
}
