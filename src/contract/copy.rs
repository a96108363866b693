//! The `copy` step: copy a folder into a new dated snapshot folder under a
//! destination, hard-linking files unchanged since the previous snapshot
//! (as `rsync --link-dest` and rsnapshot do), then prune old snapshots by
//! a retention policy. Its fields, its rules, and what makes a snapshot
//! folder this job's (the only ones retention may touch).

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::retention::RetentionPolicy;
use super::{Text, Violation};
use crate::diag::shown;

/// The file inside each completed snapshot folder that says whose it is
/// (unitgen, the job, the source) and when it was taken. Written last,
/// just before the folder gets its final name: a folder without it is not
/// a snapshot, and retention never touches it.
pub const MARKER: &str = ".unitgen-snapshot";
/// The file inside a snapshot folder still being written, locked by its
/// writer (`flock(2)`) for as long as it writes: a later run removes a
/// leftover partial folder only when nobody holds that lock.
pub const PARTIAL_MARKER: &str = ".unitgen-partial";
/// The marker's `managed_by` value.
pub const MANAGED_BY: &str = "unitgen";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct CopyJob<S = String> {
    /// The folder to copy, inside the runner's container.
    pub source: S,
    /// The folder that holds the snapshot folders, inside the container.
    pub destination: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
}

/// `path` with `//`, `/./` and a trailing `/` removed, if it is absolute
/// and has no `..` (which could climb out of a mounted folder).
pub fn normal_path(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
        return None;
    }
    Some(p.components().collect())
}

impl<S: Text> CopyJob<S> {
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut path = |field: &str, value: &S| {
            let text = value.known()?;
            let normal = normal_path(text).filter(|_| !text.contains('\0'));
            if normal.is_none() {
                out.push(Violation::at(
                    field,
                    format!(
                        "`{}` must be an absolute path inside the runner's container, without \
                         `..` (mount the host folder with `container.volumes`)",
                        shown(text)
                    ),
                ));
            }
            normal
        };
        let source = path("source", &self.source);
        let destination = path("destination", &self.destination);
        if let Some(d) = &destination
            && d.parent().is_none()
        {
            out.push(Violation::at(
                "destination",
                "the snapshots need a folder of their own, not `/`",
            ));
        } else if let (Some(s), Some(d)) = (&source, &destination) {
            // Snapshots inside the source would be copied into the next
            // snapshot, and so on; a source inside the destination would
            // copy the snapshots themselves.
            if d.starts_with(s) || s.starts_with(d) {
                out.push(Violation::at(
                    "destination",
                    format!(
                        "`{}` and the source `{}` must not be inside one another",
                        d.display(),
                        s.display()
                    ),
                ));
            }
        }
        if let Some(policy) = &self.retention
            && let Err(e) = policy.check()
        {
            out.push(Violation::at("retention", e.to_string()));
        }
        out
    }
}

impl CopyJob<super::Maybe> {
    pub fn into_known(self) -> Option<CopyJob> {
        Some(CopyJob {
            source: self.source.into_known()?,
            destination: self.destination.into_known()?,
            retention: self.retention,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(source: &str, destination: &str) -> CopyJob {
        CopyJob {
            source: source.into(),
            destination: destination.into(),
            retention: Some(RetentionPolicy {
                keep_daily: Some(7),
                ..Default::default()
            }),
        }
    }

    fn fields(j: &CopyJob) -> Vec<String> {
        j.check().into_iter().map(|v| v.field.to_string()).collect()
    }

    #[test]
    fn rules() {
        assert!(job("/data", "/backups").check().is_empty());
        assert!(job("/data/", "/backups//daily/").check().is_empty());
        assert!(job("/data", "/database-backups").check().is_empty());
        assert_eq!(fields(&job("data", "/backups")), ["source"]);
        assert_eq!(fields(&job("/data", "/backups/../etc")), ["destination"]);
        assert_eq!(fields(&job("/data", "/")), ["destination"]);
        assert_eq!(fields(&job("/data", "/data/backups")), ["destination"]);
        assert_eq!(fields(&job("/backups/data", "/backups/")), ["destination"]);
        assert_eq!(fields(&job("/data", "/data")), ["destination"]);
        let mut j = job("/data", "/backups");
        j.retention = Some(RetentionPolicy::default());
        assert_eq!(fields(&j), ["retention"]);
        assert_eq!(normal_path("/a//b/./c/"), Some(PathBuf::from("/a/b/c")));
    }
}
