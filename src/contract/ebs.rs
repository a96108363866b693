//! The `ebs_snapshot` step: snapshot an EBS volume, wait for it, prune old
//! snapshots by a retention policy. Its fields, its rules, and the tags
//! that make a snapshot this job's (the only ones retention may touch).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::aws::Credentials;
pub use super::aws::check_region;
use super::retention::RetentionPolicy;
use super::{SecretKey, Text, Violation, timespan};
use crate::diag::{KeyPath, shown};

/// Ownership tag: unitgen created this snapshot. Value [`MANAGED_BY`].
pub const TAG_MANAGED_BY: &str = "unitgen:managed-by";
pub const MANAGED_BY: &str = "unitgen";
/// The job's name (the spec's key under `jobs:`).
pub const TAG_JOB: &str = "unitgen:job";
/// The volume the snapshot was taken of.
pub const TAG_VOLUME: &str = "unitgen:volume";
/// The run that created the snapshot: CreateSnapshot takes no idempotency
/// token, so after a request whose answer was lost the runner looks its
/// snapshot up by this tag instead of creating another.
pub const TAG_RUN: &str = "unitgen:run";
/// Used when the step gives no `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Tag key prefixes a spec may not use: AWS reserves `aws:`, and ours
/// decide what retention may delete.
pub const RESERVED_TAG_PREFIXES: &[&str] = &["aws:", "unitgen:"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct SnapshotJob<S = String> {
    pub volume_id: S,
    pub region: S,
    pub credentials: Credentials,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<S>,
    /// How long one EC2 request may take (a time span, default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<S>,
}

/// The three tags that make a snapshot this job's, for this volume.
pub fn ownership_tags(job_name: &str, volume_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_JOB.to_owned(), job_name.to_owned()),
        (TAG_VOLUME.to_owned(), volume_id.to_owned()),
    ])
}

fn is_volume_id(v: &str) -> bool {
    v.strip_prefix("vol-").is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl<S: Text> SnapshotJob<S> {
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(v) = self.volume_id.known()
            && !is_volume_id(v)
        {
            out.push(Violation::at(
                "volume_id",
                format!(
                    "`{}` is not an EBS volume id such as `vol-0123456789abcdef0`",
                    shown(v)
                ),
            ));
        }
        if let Some(r) = self.region.known()
            && let Err(e) = check_region(r)
        {
            out.push(Violation::at("region", e));
        }
        if let Err(e) = self.credentials.check() {
            out.push(Violation::at_path(
                KeyPath::root().key("credentials").key("etcd_prefix"),
                e,
            ));
        }
        for key in self.tags.keys() {
            if key.is_empty() || RESERVED_TAG_PREFIXES.iter().any(|p| key.starts_with(p)) {
                out.push(Violation::at_key(
                    KeyPath::root().key("tags").key(key),
                    format!(
                        "tag key `{}` is reserved (`aws:` and `unitgen:` prefixes)",
                        shown(key)
                    ),
                ));
            }
        }
        if let Some(w) = self.wait.as_ref().and_then(Text::known)
            && let Err(e) = timespan::parse(w)
        {
            out.push(Violation::at("wait", e));
        }
        if let Some(policy) = &self.retention {
            if let Err(e) = policy.check() {
                out.push(Violation::at("retention", e.to_string()));
            } else if self.wait.is_none() {
                out.push(Violation::at_key(
                    KeyPath::root().key("retention"),
                    "retention prunes only after the new snapshot has completed, so it needs \
                     `wait` (e.g. `wait: 30min`)",
                ));
            }
        }
        if let Some(e) = self.endpoint.as_ref().and_then(Text::known)
            && let Err(message) = super::url::check_http(e)
        {
            out.push(Violation::at("endpoint", message));
        }
        if let Some(t) = self.request_timeout.as_ref().and_then(Text::known) {
            match timespan::parse(t) {
                Err(e) => out.push(Violation::at("request_timeout", e)),
                Ok(Some(d)) if d >= Duration::from_secs(1) => {}
                Ok(_) => out.push(Violation::at(
                    "request_timeout",
                    "must be a finite time span of at least 1s: a lost answer must be noticed",
                )),
            }
        }
        out
    }

    pub fn secrets(&self) -> Vec<SecretKey> {
        self.credentials.secrets()
    }
}

impl SnapshotJob<String> {
    /// How long to wait for the snapshot: `None` not at all, `Some(None)`
    /// without limit (`infinity`). [`SnapshotJob::check`] has refused a
    /// `wait` that does not parse.
    pub fn wait_limit(&self) -> Result<Option<Option<Duration>>, String> {
        self.wait.as_deref().map(timespan::parse).transpose()
    }

    /// How long one EC2 request may take.
    pub fn request_limit(&self) -> Duration {
        self.request_timeout
            .as_deref()
            .and_then(|t| timespan::parse(t).ok().flatten())
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl SnapshotJob<super::Maybe> {
    pub fn into_known(self) -> Option<SnapshotJob> {
        let opt = |v: Option<super::Maybe>| match v {
            None => Some(None),
            Some(m) => m.into_known().map(Some),
        };
        let mut tags = BTreeMap::new();
        for (k, v) in self.tags {
            tags.insert(k, v.into_known()?);
        }
        Some(SnapshotJob {
            volume_id: self.volume_id.into_known()?,
            region: self.region.into_known()?,
            credentials: self.credentials,
            tags,
            wait: opt(self.wait)?,
            retention: self.retention,
            endpoint: opt(self.endpoint)?,
            request_timeout: opt(self.request_timeout)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SnapshotJob {
        SnapshotJob {
            volume_id: "vol-0123456789abcdef0".into(),
            region: "us-east-1".into(),
            credentials: Credentials::DefaultChain,
            tags: BTreeMap::new(),
            wait: Some("1h".into()),
            retention: Some(RetentionPolicy {
                keep_last: Some(2),
                ..Default::default()
            }),
            endpoint: None,
            request_timeout: None,
        }
    }

    #[test]
    fn rules() {
        assert!(job().check().is_empty());
        let fields = |j: SnapshotJob| {
            j.check()
                .into_iter()
                .map(|v| v.field.to_string())
                .collect::<Vec<_>>()
        };
        let mut j = job();
        j.wait = None;
        assert_eq!(fields(j), ["retention"]);
        let mut j = job();
        j.retention = Some(RetentionPolicy::default());
        assert_eq!(fields(j), ["retention"]);
        let mut j = job();
        j.volume_id = "vol-xyz".into();
        j.region = "US East".into();
        j.tags.insert("unitgen:job".into(), "x".into());
        j.endpoint = Some("ftp://x".into());
        j.credentials = Credentials::EtcdPrefix("aws/".into());
        assert_eq!(
            fields(j),
            [
                "volume_id",
                "region",
                "credentials.etcd_prefix",
                "tags.unitgen:job",
                "endpoint"
            ]
        );
        assert!(is_volume_id("vol-0123456789abcdef0"));
        assert!(!is_volume_id("vol-xyz"));
    }
}
