//! `s3_lifecycle`: unitgen's lifecycle rules on a bucket.
//!
//! PutBucketLifecycleConfiguration replaces a bucket's whole configuration,
//! so the step reads the current one first and writes back every rule it
//! does not own exactly as S3 returned it (the SDK's own values, every
//! field included, in their order, and the bucket's
//! `TransitionDefaultMinimumObjectSize`, which a write would otherwise
//! reset). It owns the rules whose id starts with `unitgen-`: those the
//! step lists are added or replaced, the others removed. When nothing
//! would change, nothing is written.
//!
//! A read-modify-write is not atomic: S3 has no conditional write for this
//! configuration, so a change someone makes between the step's read and
//! its write is lost. The window is one round trip.

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter,
    Transition, TransitionStorageClass,
};

use super::S3Error;
use super::api::{ApiError, Lifecycle, LifecycleRule, S3Api};
use crate::contract::LifecycleJob;
use crate::contract::s3::{self as contract, MAX_LIFECYCLE_RULES, OWNED_RULE_PREFIX};
use crate::runner::log;

/// What a run changed (in a dry run: would change), by rule id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LifecycleOutcome {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Rules of others, written back as they were.
    pub kept: usize,
    /// Whether PutBucketLifecycleConfiguration was called.
    pub written: bool,
}

/// One of unitgen's rules, as a value: what the step writes, and what it
/// recognizes when reading the bucket's rules back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    id: String,
    prefix: String,
    transition: Option<(i32, String)>,
    expiration: Option<i32>,
    abort: Option<i32>,
}

fn days(d: u32) -> i32 {
    // The contract refuses more than i32::MAX days.
    i32::try_from(d).unwrap_or(i32::MAX)
}

impl Owned {
    fn from_spec(r: &contract::LifecycleRule) -> Owned {
        Owned {
            id: r.id.clone(),
            prefix: r.prefix.clone().unwrap_or_default(),
            transition: r
                .transition_days
                .zip(r.storage_class.clone())
                .map(|(d, c)| (days(d), c)),
            expiration: r.expiration_days.map(days),
            abort: r.abort_incomplete_uploads_days.map(days),
        }
    }

    /// The rule as unitgen writes it; `None` for a rule holding anything
    /// unitgen never writes (a tag filter, a date, noncurrent versions,
    /// `Disabled`): such a rule is replaced by the spec's.
    fn from_sdk(r: &LifecycleRule) -> Option<Owned> {
        if r.status != ExpirationStatus::Enabled
            || !r.noncurrent_version_transitions().is_empty()
            || r.noncurrent_version_expiration.is_some()
        {
            return None;
        }
        // The rule-level `Prefix` is S3's older spelling of a prefix
        // filter; a rule may still carry it.
        #[allow(deprecated)]
        let legacy_prefix = &r.prefix;
        let prefix = match (&r.filter, legacy_prefix) {
            (Some(f), None)
                if f.tag.is_none()
                    && f.and.is_none()
                    && f.object_size_greater_than.is_none()
                    && f.object_size_less_than.is_none() =>
            {
                f.prefix.clone().unwrap_or_default()
            }
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
            _ => return None,
        };
        let transition = match r.transitions() {
            [] => None,
            [t] if t.date.is_none() => {
                Some((t.days?, t.storage_class.as_ref()?.as_str().to_owned()))
            }
            _ => return None,
        };
        let expiration = match &r.expiration {
            None => None,
            Some(e) if e.date.is_none() && e.expired_object_delete_marker != Some(true) => {
                Some(e.days?)
            }
            Some(_) => return None,
        };
        Some(Owned {
            id: r.id.clone()?,
            prefix,
            transition,
            expiration,
            abort: match &r.abort_incomplete_multipart_upload {
                None => None,
                Some(a) => Some(a.days_after_initiation?),
            },
        })
    }

    fn to_sdk(&self) -> Result<LifecycleRule, ApiError> {
        LifecycleRule::builder()
            .id(&self.id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix(&self.prefix).build())
            .set_transitions(self.transition.as_ref().map(|(d, c)| {
                vec![
                    Transition::builder()
                        .days(*d)
                        .storage_class(TransitionStorageClass::from(c.as_str()))
                        .build(),
                ]
            }))
            .set_expiration(
                self.expiration
                    .map(|d| LifecycleExpiration::builder().days(d).build()),
            )
            .set_abort_incomplete_multipart_upload(self.abort.map(|d| {
                AbortIncompleteMultipartUpload::builder()
                    .days_after_initiation(d)
                    .build()
            }))
            .build()
            .map_err(|e| ApiError::other(crate::diag::chain(&e)))
    }

    /// `prefix host1/: GLACIER after 30 days, expire after 365 days`.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((d, c)) = &self.transition {
            parts.push(format!("{c} after {d} days"));
        }
        if let Some(d) = self.expiration {
            parts.push(format!("expire after {d} days"));
        }
        if let Some(d) = self.abort {
            parts.push(format!("abort incomplete uploads after {d} days"));
        }
        let scope = if self.prefix.is_empty() {
            "whole bucket".to_owned()
        } else {
            format!("prefix {}", self.prefix)
        };
        format!("{scope}: {}", parts.join(", "))
    }
}

fn is_ours(r: &LifecycleRule) -> bool {
    r.id.as_deref()
        .is_some_and(|id| id.starts_with(OWNED_RULE_PREFIX))
}

/// Runs the step.
pub async fn run<A: S3Api>(
    api: &A,
    job: &LifecycleJob,
    dry_run: bool,
) -> Result<LifecycleOutcome, S3Error> {
    if let Some(v) = job.check().into_iter().next() {
        return Err(S3Error::Config(format!("invalid s3_lifecycle step: {v}")));
    }
    let bucket = format!("s3://{}", job.bucket);
    let current = api
        .get_lifecycle()
        .await
        .map_err(|error| S3Error::Api {
            what: format!("GetBucketLifecycleConfiguration of {bucket}"),
            error,
        })?
        .unwrap_or_default();
    let desired: Vec<Owned> = job.rules.iter().map(Owned::from_spec).collect();
    let foreign: Vec<LifecycleRule> = current
        .rules
        .iter()
        .filter(|r| !is_ours(r))
        .cloned()
        .collect();
    let ours: Vec<&LifecycleRule> = current.rules.iter().filter(|r| is_ours(r)).collect();

    let mut out = LifecycleOutcome {
        kept: foreign.len(),
        ..LifecycleOutcome::default()
    };
    let would = if dry_run { "dry run: would " } else { "" };
    let mut lines = Vec::new();
    for d in &desired {
        match ours.iter().find(|r| r.id.as_deref() == Some(d.id.as_str())) {
            None => {
                lines.push(format!("{would}add rule {} ({})", d.id, d.describe()));
                out.added.push(d.id.clone());
            }
            Some(r) => match Owned::from_sdk(r) {
                Some(now) if now == *d => out.unchanged.push(d.id.clone()),
                now => {
                    let was = now.map_or_else(
                        || "a rule with settings unitgen does not write".to_owned(),
                        |n| n.describe(),
                    );
                    lines.push(format!(
                        "{would}change rule {} (was {was}; now {})",
                        d.id,
                        d.describe()
                    ));
                    out.changed.push(d.id.clone());
                }
            },
        }
    }
    for r in &ours {
        let id = r.id.clone().unwrap_or_default();
        if !desired.iter().any(|d| d.id == id) {
            lines.push(format!("{would}remove rule {id} (no longer in the step)"));
            out.removed.push(id);
        }
    }
    let total = foreign.len() + desired.len();
    if total > MAX_LIFECYCLE_RULES {
        return Err(S3Error::Config(format!(
            "{bucket} has {} lifecycle rules of others; with this step's {} that is over S3's \
             limit of {MAX_LIFECYCLE_RULES}",
            foreign.len(),
            desired.len()
        )));
    }
    if out.added.is_empty() && out.changed.is_empty() && out.removed.is_empty() {
        log::info(format_args!(
            "lifecycle of {bucket}: {} unitgen rules up to date, {} other rules left alone; \
             nothing to write",
            out.unchanged.len(),
            out.kept
        ));
        return Ok(out);
    }
    for line in &lines {
        log::info(format_args!("lifecycle of {bucket}: {line}"));
    }
    if dry_run {
        log::info(format_args!(
            "dry run: lifecycle of {bucket} unchanged; {} other rules would be kept as they are",
            out.kept
        ));
        return Ok(out);
    }
    let mut rules = foreign;
    for d in &desired {
        rules.push(d.to_sdk().map_err(|error| S3Error::Api {
            what: format!("building rule {}", d.id),
            error,
        })?);
    }
    api.put_lifecycle(&Lifecycle {
        rules,
        min_object_size: current.min_object_size.clone(),
    })
    .await
    .map_err(|error| S3Error::Api {
        what: format!("PutBucketLifecycleConfiguration of {bucket}"),
        error,
    })?;
    out.written = true;
    log::info(format_args!(
        "lifecycle of {bucket}: added {}, changed {}, removed {} unitgen rules; kept {} other \
         rules as they were",
        out.added.len(),
        out.changed.len(),
        out.removed.len(),
        out.kept
    ));
    Ok(out)
}
