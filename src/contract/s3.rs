//! The S3 steps: `s3_sync` (upload a folder tree to `s3://bucket/prefix`,
//! rsync-style) and `s3_lifecycle` (ensure unitgen's lifecycle rules on a
//! bucket, keeping everyone else's). Their fields and their rules; the
//! runner's side is `runner/s3/`.
//!
//! Limits encoded here, from the S3 User Guide:
//! - bucket names: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>
//! - object keys (at most 1,024 bytes of UTF-8):
//!   <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html>
//! - lifecycle rules (at most 1,000 per bucket, ids of at most 255
//!   characters, transition and expiration days):
//!   <https://docs.aws.amazon.com/AmazonS3/latest/API/API_LifecycleRule.html>,
//!   <https://docs.aws.amazon.com/AmazonS3/latest/API/API_Transition.html>,
//!   <https://docs.aws.amazon.com/AmazonS3/latest/userguide/lifecycle-transition-general-considerations.html>

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::aws::{Credentials, check_region};
use super::{SecretKey, Text, Violation};
use crate::diag::{KeyPath, shown};

/// An object key is at most 1,024 bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 1024;
/// A lifecycle rule's id is at most 255 characters.
pub const MAX_RULE_ID_CHARS: usize = 255;
/// A bucket's lifecycle configuration holds at most 1,000 rules.
pub const MAX_LIFECYCLE_RULES: usize = 1000;
/// The id prefix of the lifecycle rules unitgen owns: `s3_lifecycle`
/// replaces or removes only rules whose id starts with it, and never
/// touches any other rule.
pub const OWNED_RULE_PREFIX: &str = "unitgen-";
/// The user metadata key (`x-amz-meta-unitgen-sha256`) holding the hex
/// SHA-256 of an object's content, which `compare: checksum` reads with a
/// HEAD instead of downloading the object.
pub const SHA256_METADATA: &str = "unitgen-sha256";

/// How `s3_sync` decides that a file is unchanged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compare {
    /// Same size means unchanged (what boto-rsync compares by default): no
    /// file is read unless it is uploaded. Misses an edit that keeps the
    /// size.
    #[default]
    Size,
    /// Same size and same SHA-256 (kept in the object's metadata): reads
    /// every file, and asks S3 for each object's metadata.
    Checksum,
}

impl Compare {
    pub fn as_str(self) -> &'static str {
        match self {
            Compare::Size => "size",
            Compare::Checksum => "checksum",
        }
    }
}

/// The `s3_sync` step: upload `source` to `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct SyncJob<S = String> {
    /// A folder inside the runner's container.
    pub source: S,
    pub bucket: S,
    /// Key prefix, ending in `/`; none means the bucket's top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<S>,
    // `compare` and `delete` are always written into the unit, so a
    // reviewer reads what the runner will do without knowing defaults.
    #[serde(default)]
    pub compare: Compare,
    /// Delete objects under the prefix that `source` no longer has.
    #[serde(default)]
    pub delete: bool,
    pub region: S,
    pub credentials: Credentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<S>,
}

/// The `s3_lifecycle` step: unitgen's lifecycle rules on a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct LifecycleJob<S = String> {
    pub bucket: S,
    pub region: S,
    pub credentials: Credentials,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<S>,
    /// Every rule unitgen owns on this bucket: rules with unitgen's id
    /// prefix that are not listed here are removed.
    pub rules: Vec<LifecycleRule<S>>,
}

/// One lifecycle rule, as the spec writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "S: Deserialize<'de>"))]
pub struct LifecycleRule<S = String> {
    /// Starts with `unitgen-`.
    pub id: S,
    /// The key prefix the rule applies to; none means the whole bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<S>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_incomplete_uploads_days: Option<u32>,
}

/// The storage classes a lifecycle rule may transition objects to, with
/// the least `Days` S3 accepts for each (API_Transition: 0 for the Glacier
/// classes and Intelligent-Tiering; the infrequent-access classes need
/// objects to have been stored 30 days first).
pub const STORAGE_CLASSES: &[(&str, u32)] = &[
    ("GLACIER", 0),
    ("DEEP_ARCHIVE", 0),
    ("GLACIER_IR", 0),
    ("INTELLIGENT_TIERING", 0),
    ("STANDARD_IA", 30),
    ("ONEZONE_IA", 30),
];

fn storage_class_names() -> String {
    STORAGE_CLASSES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A bucket name by S3's rules for general purpose buckets.
pub fn check_bucket(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("`{}` is not an S3 bucket name: {why}", shown(name)));
    if !(3..=63).contains(&name.len()) {
        return bad("it must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return bad("use only lowercase letters, digits, `.` and `-`");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return bad("it must begin and end with a letter or a digit");
    }
    if name.contains("..") {
        return bad("it must not have two dots in a row");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return bad("it must not look like an IP address");
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(p) {
            return bad(&format!("the prefix `{p}` is reserved by AWS"));
        }
    }
    for s in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(s) {
            return bad(&format!("the suffix `{s}` is reserved by AWS"));
        }
    }
    Ok(())
}

/// `s3_sync`'s key prefix: a folder, so `host1/` + `a.txt` is `host1/a.txt`.
pub fn check_sync_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    if !prefix.ends_with('/') {
        return Err(format!(
            "`{}` must end with `/` (files go below it: `{}/a.txt`); leave `prefix` out for the \
             bucket's top",
            shown(prefix),
            shown(prefix)
        ));
    }
    check_key_prefix(prefix)?;
    let folders = &prefix[..prefix.len() - 1];
    if folders
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "`{}` has an empty, `.` or `..` folder; write folders as `a/b/`",
            shown(prefix)
        ));
    }
    Ok(())
}

/// Any key prefix: no leading `/` (keys written as `host1/...` never start
/// with one, so it would match nothing), no control characters, and room for
/// a name below it.
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    if prefix.starts_with('/') {
        return Err(format!(
            "`{}` starts with `/`; S3 keys do not (write `{}`)",
            shown(prefix),
            shown(prefix.trim_start_matches('/'))
        ));
    }
    if prefix.chars().any(char::is_control) {
        return Err(format!(
            "`{}` has a control character, which an S3 key cannot carry safely",
            shown(prefix)
        ));
    }
    if prefix.len() >= MAX_KEY_BYTES {
        return Err(format!(
            "a key prefix of {} bytes leaves no room for a name; S3 keys are at most {MAX_KEY_BYTES} bytes",
            prefix.len()
        ));
    }
    Ok(())
}

/// `s3_sync`'s source: an absolute folder inside the container.
pub fn check_source(source: &str) -> Result<(), String> {
    if !source.starts_with('/') {
        return Err(format!(
            "`{}` must be an absolute path inside the runner's container (mount it with \
             `container.volumes`)",
            shown(source)
        ));
    }
    if source.chars().any(char::is_control) {
        return Err(format!("`{}` has a control character", shown(source)));
    }
    if source.split('/').any(|seg| seg == "..") {
        return Err(format!(
            "`{}` has a `..` folder; name the folder itself",
            shown(source)
        ));
    }
    if source.trim_end_matches('/').is_empty() {
        return Err(
            "`/` is the container's whole file system; mount the folder to upload with \
             `container.volumes` and name it here"
                .into(),
        );
    }
    Ok(())
}

/// Checks shared by both steps: bucket, region, credentials, endpoint.
fn check_target<S: Text>(
    out: &mut Vec<Violation>,
    bucket: &S,
    region: &S,
    credentials: &Credentials,
    endpoint: Option<&S>,
) {
    if let Some(b) = bucket.known()
        && let Err(e) = check_bucket(b)
    {
        out.push(Violation::at("bucket", e));
    }
    if let Some(r) = region.known()
        && let Err(e) = check_region(r)
    {
        out.push(Violation::at("region", e));
    }
    if let Err(e) = credentials.check() {
        out.push(Violation::at_path(
            KeyPath::root().key("credentials").key("etcd_prefix"),
            e,
        ));
    }
    if let Some(e) = endpoint.and_then(Text::known)
        && let Err(message) = super::url::check_http(e)
    {
        out.push(Violation::at("endpoint", message));
    }
}

impl<S: Text> SyncJob<S> {
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if let Some(s) = self.source.known()
            && let Err(e) = check_source(s)
        {
            out.push(Violation::at("source", e));
        }
        if let Some(p) = self.prefix.as_ref().and_then(Text::known)
            && let Err(e) = check_sync_prefix(p)
        {
            out.push(Violation::at("prefix", e));
        }
        check_target(
            &mut out,
            &self.bucket,
            &self.region,
            &self.credentials,
            self.endpoint.as_ref(),
        );
        out
    }

    pub fn secrets(&self) -> Vec<SecretKey> {
        self.credentials.secrets()
    }
}

impl SyncJob<String> {
    /// The key prefix ("" for the bucket's top).
    pub fn key_prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or("")
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key_prefix())
    }
}

impl SyncJob<super::Maybe> {
    pub fn into_known(self) -> Option<SyncJob> {
        Some(SyncJob {
            source: self.source.into_known()?,
            bucket: self.bucket.into_known()?,
            prefix: opt(self.prefix)?,
            compare: self.compare,
            delete: self.delete,
            region: self.region.into_known()?,
            credentials: self.credentials,
            endpoint: opt(self.endpoint)?,
        })
    }
}

/// `Some(None)` for no value, `None` for a value not known.
fn opt(v: Option<super::Maybe>) -> Option<Option<String>> {
    match v {
        None => Some(None),
        Some(m) => m.into_known().map(Some),
    }
}

/// The least `Days` S3 accepts for a transition to `class`, or `None` if
/// lifecycle rules cannot transition to it.
pub fn transition_minimum(class: &str) -> Option<u32> {
    STORAGE_CLASSES
        .iter()
        .find(|(n, _)| *n == class)
        .map(|(_, d)| *d)
}

impl<S: Text> LifecycleRule<S> {
    /// The rule's own rules; `at` is its path (`rules[N]`).
    fn check(&self, at: &KeyPath, out: &mut Vec<Violation>) {
        if let Some(id) = self.id.known() {
            if !id.starts_with(OWNED_RULE_PREFIX) || id.len() == OWNED_RULE_PREFIX.len() {
                out.push(Violation::at_path(
                    at.key("id"),
                    format!(
                        "`{}` must start with `{OWNED_RULE_PREFIX}` and name the rule (e.g. \
                         `{OWNED_RULE_PREFIX}archive`): unitgen only ever changes rules with \
                         that prefix, and keeps every other rule of the bucket as it is",
                        shown(id)
                    ),
                ));
            } else if id.chars().count() > MAX_RULE_ID_CHARS {
                out.push(Violation::at_path(
                    at.key("id"),
                    format!("a lifecycle rule id is at most {MAX_RULE_ID_CHARS} characters"),
                ));
            } else if id.chars().any(char::is_control) {
                out.push(Violation::at_path(
                    at.key("id"),
                    format!("`{}` has a control character", shown(id)),
                ));
            }
        }
        if let Some(p) = self.prefix.as_ref().and_then(Text::known)
            && let Err(e) = check_key_prefix(p)
        {
            out.push(Violation::at_path(at.key("prefix"), e));
        }
        let class = self.storage_class.as_ref().map(|c| c.known());
        match (self.transition_days, &class) {
            (Some(_), None) => out.push(Violation::at_key(
                at.key("transition_days"),
                format!(
                    "a transition needs `storage_class` ({})",
                    storage_class_names()
                ),
            )),
            (None, Some(_)) => out.push(Violation::at_key(
                at.key("storage_class"),
                "a `storage_class` needs `transition_days` (days after an object's creation)",
            )),
            _ => {}
        }
        if let Some(Some(c)) = class {
            match transition_minimum(c) {
                None => {
                    let hint = STORAGE_CLASSES
                        .iter()
                        .find(|(n, _)| n.eq_ignore_ascii_case(c.trim()))
                        .map(|(n, _)| format!(" (did you mean `{n}`?)"))
                        .unwrap_or_default();
                    out.push(Violation::at_path(
                        at.key("storage_class"),
                        format!(
                            "`{}` is not a storage class a lifecycle rule can transition to{hint}; \
                             use one of {}",
                            shown(c),
                            storage_class_names()
                        ),
                    ));
                }
                Some(min) => {
                    if let Some(days) = self.transition_days
                        && days < min
                    {
                        out.push(Violation::at_path(
                            at.key("transition_days"),
                            format!(
                                "S3 transitions objects to {c} only after they have been stored \
                                 at least {min} days; set `transition_days: {min}` or more"
                            ),
                        ));
                    }
                }
            }
        }
        if let Some(days) = self.expiration_days {
            if days == 0 {
                out.push(Violation::at_path(
                    at.key("expiration_days"),
                    "S3 expires objects at the earliest 1 day after their creation; set 1 or more",
                ));
            } else if let Some(t) = self.transition_days
                && days <= t
            {
                out.push(Violation::at_path(
                    at.key("expiration_days"),
                    format!(
                        "S3 requires expiration after the transition: set more than \
                         `transition_days` ({t})"
                    ),
                ));
            }
        }
        if self.abort_incomplete_uploads_days == Some(0) {
            out.push(Violation::at_path(
                at.key("abort_incomplete_uploads_days"),
                "set 1 or more (days after an upload was started)",
            ));
        }
        // S3 reads days as a 32-bit signed integer.
        for (field, value) in [
            ("transition_days", self.transition_days),
            ("expiration_days", self.expiration_days),
            (
                "abort_incomplete_uploads_days",
                self.abort_incomplete_uploads_days,
            ),
        ] {
            if value.is_some_and(|d| i32::try_from(d).is_err()) {
                out.push(Violation::at_path(
                    at.key(field),
                    format!("at most {} days", i32::MAX),
                ));
            }
        }
        if self.transition_days.is_none()
            && self.storage_class.is_none()
            && self.expiration_days.is_none()
            && self.abort_incomplete_uploads_days.is_none()
        {
            out.push(Violation::at_key(
                at.clone(),
                "the rule does nothing: give `transition_days` and `storage_class`, \
                 `expiration_days`, or `abort_incomplete_uploads_days`",
            ));
        }
    }
}

impl<S: Text> LifecycleJob<S> {
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        check_target(
            &mut out,
            &self.bucket,
            &self.region,
            &self.credentials,
            self.endpoint.as_ref(),
        );
        if self.rules.is_empty() {
            out.push(Violation::at(
                "rules",
                "no rules; give at least one (to remove unitgen's rules, remove them from the \
                 bucket with `aws s3api put-bucket-lifecycle-configuration`)",
            ));
        }
        if self.rules.len() > MAX_LIFECYCLE_RULES {
            out.push(Violation::at(
                "rules",
                format!("a bucket holds at most {MAX_LIFECYCLE_RULES} lifecycle rules"),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = KeyPath::root().key("rules").index(i);
            rule.check(&at, &mut out);
            if let Some(id) = rule.id.known()
                && !ids.insert(id)
            {
                out.push(Violation::at_path(
                    at.key("id"),
                    format!("rule id `{}` is used twice", shown(id)),
                ));
            }
        }
        out
    }

    pub fn secrets(&self) -> Vec<SecretKey> {
        self.credentials.secrets()
    }
}

impl LifecycleJob<super::Maybe> {
    pub fn into_known(self) -> Option<LifecycleJob> {
        let mut rules = Vec::new();
        for r in self.rules {
            rules.push(LifecycleRule {
                id: r.id.into_known()?,
                prefix: opt(r.prefix)?,
                transition_days: r.transition_days,
                storage_class: opt(r.storage_class)?,
                expiration_days: r.expiration_days,
                abort_incomplete_uploads_days: r.abort_incomplete_uploads_days,
            });
        }
        Some(LifecycleJob {
            bucket: self.bucket.into_known()?,
            region: self.region.into_known()?,
            credentials: self.credentials,
            endpoint: opt(self.endpoint)?,
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync() -> SyncJob {
        SyncJob {
            source: "/backups".into(),
            bucket: "my-backups".into(),
            prefix: Some("host1/".into()),
            compare: Compare::Size,
            delete: false,
            region: "us-east-1".into(),
            credentials: Credentials::EtcdPrefix("/aws/".into()),
            endpoint: None,
        }
    }

    fn rule(id: &str) -> LifecycleRule {
        LifecycleRule {
            id: id.into(),
            prefix: Some("host1/".into()),
            transition_days: Some(30),
            storage_class: Some("GLACIER".into()),
            expiration_days: None,
            abort_incomplete_uploads_days: None,
        }
    }

    fn lifecycle(rules: Vec<LifecycleRule>) -> LifecycleJob {
        LifecycleJob {
            bucket: "my-backups".into(),
            region: "us-east-1".into(),
            credentials: Credentials::DefaultChain,
            endpoint: None,
            rules,
        }
    }

    fn fields(v: Vec<Violation>) -> Vec<String> {
        v.into_iter().map(|v| v.field.to_string()).collect()
    }

    #[test]
    fn bucket_names_follow_aws_rules() {
        for good in ["my-backups", "a.b.c", "abc", "0ab", &"a".repeat(63)] {
            assert_eq!(check_bucket(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("My-Backups", "lowercase"),
            ("my_backups", "lowercase"),
            ("-abc", "begin and end"),
            ("abc.", "begin and end"),
            ("a..b", "two dots"),
            ("192.168.5.4", "IP address"),
            ("xn--abc", "`xn--`"),
            ("sthree-abc", "`sthree-`"),
            ("amzn-s3-demo-x", "`amzn-s3-demo-`"),
            ("abc-s3alias", "`-s3alias`"),
            ("abc--ol-s3", "`--ol-s3`"),
            ("abc.mrap", "`.mrap`"),
            ("abc--x-s3", "`--x-s3`"),
            ("abc--table-s3", "`--table-s3`"),
        ] {
            let e = check_bucket(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // An IP-like name with a part over 255 is just a name.
        assert_eq!(check_bucket("1.2.3.456"), Ok(()));
    }

    #[test]
    fn sync_rules_name_their_fields() {
        assert!(sync().check().is_empty());
        let mut j = sync();
        j.prefix = None;
        assert!(j.check().is_empty());
        let mut j = sync();
        j.source = "backups".into();
        j.bucket = "My_Bucket".into();
        j.prefix = Some("host1".into());
        j.region = "US East".into();
        j.credentials = Credentials::EtcdPrefix("aws/".into());
        j.endpoint = Some("ftp://x".into());
        assert_eq!(
            fields(j.check()),
            [
                "source",
                "prefix",
                "bucket",
                "region",
                "credentials.etcd_prefix",
                "endpoint"
            ]
        );
        assert_eq!(
            sync().secrets().iter().map(|s| &s.key).collect::<Vec<_>>(),
            ["/aws/access-key-id", "/aws/secret-access-key"]
        );
    }

    #[test]
    fn prefixes_and_sources() {
        assert!(check_sync_prefix("host1/").is_ok());
        assert!(check_sync_prefix("a/b c/").is_ok());
        assert!(check_sync_prefix("").is_ok());
        assert!(
            check_sync_prefix("host1")
                .unwrap_err()
                .contains("end with `/`")
        );
        assert!(
            check_sync_prefix("/host1/")
                .unwrap_err()
                .contains("starts with `/`")
        );
        assert!(check_sync_prefix("a//").unwrap_err().contains("empty"));
        assert!(check_sync_prefix("a/../").unwrap_err().contains("`..`"));
        assert!(check_sync_prefix(&format!("{}/", "a".repeat(1023))).is_err());
        assert!(check_source("/backups").is_ok());
        assert!(check_source("/backups/").is_ok());
        assert!(check_source("backups").unwrap_err().contains("absolute"));
        assert!(check_source("/").unwrap_err().contains("whole file system"));
        assert!(check_source("/a/../etc").unwrap_err().contains("`..`"));
    }

    #[test]
    fn lifecycle_rules_follow_s3s_minimums() {
        assert!(lifecycle(vec![rule("unitgen-archive")]).check().is_empty());
        let check = |r: LifecycleRule| {
            lifecycle(vec![r])
                .check()
                .into_iter()
                .map(|v| (v.field.to_string(), v.message))
                .collect::<Vec<_>>()
        };
        let mut r = rule("archive");
        r.storage_class = Some("GLACEIR".into());
        let got = check(r);
        assert_eq!(got[0].0, "rules[0].id");
        assert!(got[0].1.contains("must start with `unitgen-`"), "{got:?}");
        assert_eq!(got[1].0, "rules[0].storage_class");
        assert!(
            got[1].1.contains("use one of GLACIER, DEEP_ARCHIVE"),
            "{got:?}"
        );
        let mut r = rule("unitgen-a");
        r.storage_class = Some("glacier".into());
        assert!(check(r)[0].1.contains("did you mean `GLACIER`?"));
        for class in ["STANDARD_IA", "ONEZONE_IA"] {
            let mut r = rule("unitgen-a");
            r.storage_class = Some(class.into());
            r.transition_days = Some(29);
            let got = check(r.clone());
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].0, "rules[0].transition_days");
            assert!(got[0].1.contains("at least 30 days"), "{got:?}");
            r.transition_days = Some(30);
            assert!(check(r).is_empty());
        }
        let mut r = rule("unitgen-a");
        r.transition_days = Some(0);
        assert!(check(r).is_empty(), "GLACIER accepts 0 days");
        let mut r = rule("unitgen-a");
        r.expiration_days = Some(30);
        assert_eq!(check(r.clone())[0].0, "rules[0].expiration_days");
        r.expiration_days = Some(31);
        assert!(check(r).is_empty());
        let mut r = rule("unitgen-a");
        r.transition_days = None;
        r.storage_class = None;
        r.expiration_days = Some(0);
        assert_eq!(check(r.clone())[0].0, "rules[0].expiration_days");
        r.expiration_days = None;
        assert!(check(r.clone())[0].1.contains("does nothing"));
        r.abort_incomplete_uploads_days = Some(7);
        assert!(check(r).is_empty());
        let mut r = rule("unitgen-a");
        r.storage_class = None;
        assert_eq!(check(r)[0].0, "rules[0].transition_days");
        let mut r = rule("unitgen-a");
        r.prefix = Some("/host1/".into());
        assert_eq!(check(r)[0].0, "rules[0].prefix");
        let twice = lifecycle(vec![rule("unitgen-a"), rule("unitgen-a")]);
        assert_eq!(fields(twice.check()), ["rules[1].id"]);
        assert_eq!(fields(lifecycle(vec![]).check()), ["rules"]);
        assert_eq!(
            fields(lifecycle(vec![rule("unitgen-")]).check()),
            ["rules[0].id"]
        );
    }

    #[test]
    fn steps_serialize_defaults_for_review() {
        let json = serde_json::to_string(&sync()).unwrap();
        assert_eq!(
            json,
            r#"{"source":"/backups","bucket":"my-backups","prefix":"host1/","compare":"size","delete":false,"region":"us-east-1","credentials":{"etcd_prefix":"/aws/"}}"#
        );
        let back: SyncJob = serde_json::from_str(
            r#"{"source":"/b","bucket":"bbb","region":"us-east-1","credentials":"default_chain"}"#,
        )
        .unwrap();
        assert_eq!((back.compare, back.delete), (Compare::Size, false));
    }
}
