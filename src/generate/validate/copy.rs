//! The `copy` step: resolved into the contract's step (whose `check` holds
//! its rules), and the one rule only the generator can judge: the folders
//! are mounted into the container. A source that is not mounted reads the
//! image's own (missing or empty) folder; a destination that is not
//! mounted writes the snapshots into the container, which `--rm` deletes.

use std::path::{Path, PathBuf};

use super::Cx;
use crate::contract::copy::normal_path;
use crate::contract::{CopyJob, Maybe, Text};
use crate::diag::{KeyPath, shown};
use crate::generate::spec::{CopyStep, Job, Step, Str};

/// A `container.volumes` entry, as far as mounts matter here.
struct Mount {
    spec: String,
    target: PathBuf,
    read_only: bool,
}

impl Cx<'_> {
    pub(super) fn copy(&mut self, s: &CopyStep, p: &KeyPath) -> CopyJob<Maybe> {
        CopyJob {
            source: self.text(&s.source, &p.key("source")),
            destination: self.text(&s.destination, &p.key("destination")),
            retention: s.retention.clone(),
        }
    }

    /// Each copy step's source lies in a mounted volume, and its
    /// destination in a writable one. `volumes` are the job's
    /// `container.volumes`, already checked.
    pub(super) fn copy_mounts(&mut self, job: &Job, volumes: &[String], path: &KeyPath) {
        let mounts: Vec<Mount> = volumes
            .iter()
            .filter_map(|v| {
                let mut parts = v.split(':');
                let (_, target) = (parts.next()?, parts.next()?);
                Some(Mount {
                    spec: v.clone(),
                    target: normal_path(target)?,
                    read_only: parts
                        .next()
                        .is_some_and(|o| o.split(',').any(|o| o == "ro")),
                })
            })
            .collect();
        for (i, step) in job.steps.iter().enumerate() {
            let Step::Copy(copy) = step else { continue };
            let p = path.key("steps").index(i).key("copy");
            // Paths the step's own rules refuse are reported there.
            let judged = CopyJob {
                source: self.quiet_text(&copy.source),
                destination: self.quiet_text(&copy.destination),
                retention: None,
            };
            if !judged.check().is_empty() {
                continue;
            }
            if let Some(source) = self.quiet_path(&copy.source)
                && innermost(&mounts, &source).is_none()
            {
                self.err(
                    &p.key("source"),
                    format!(
                        "`{}` is not inside any of `container.volumes`, so the runner would copy \
                         its container's own folder; mount the host folder, e.g. `{0}:{0}:ro`",
                        shown(&source.display().to_string())
                    ),
                );
            }
            if let Some(dest) = self.quiet_path(&copy.destination) {
                let shown_dest = shown(&dest.display().to_string());
                match innermost(&mounts, &dest) {
                    None => self.err(
                        &p.key("destination"),
                        format!(
                            "`{shown_dest}` is not inside any of `container.volumes`, so the \
                             snapshots would be written into the container and deleted with it; \
                             mount the host folder, e.g. `{shown_dest}:{shown_dest}`",
                        ),
                    ),
                    Some(m) if m.read_only => self.err(
                        &p.key("destination"),
                        format!(
                            "`{shown_dest}` is on the read-only volume `{}`; snapshots cannot be \
                             written there",
                            shown(&m.spec)
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
    }

    /// A step's value as the runner will see it, without reporting
    /// anything (the step's own checks report its problems).
    fn quiet_text(&self, value: &Str) -> Maybe {
        match value {
            Str::Literal(t) => Maybe::Known(t.clone()),
            Str::Etcd(r) => match self.values.get(&r.etcd) {
                Ok(Some(v)) => Maybe::Known(v.to_owned()),
                _ => Maybe::Unknown,
            },
        }
    }

    /// A step path as the runner will see it, normalized.
    fn quiet_path(&self, value: &Str) -> Option<PathBuf> {
        normal_path(self.quiet_text(value).known()?)
    }
}

/// The mount that holds `path`: the one with the longest target, as the
/// innermost mount is the one that shows.
fn innermost<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.target))
        .max_by_key(|m| m.target.components().count())
}
