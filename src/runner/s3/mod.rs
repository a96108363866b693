//! The S3 steps: `s3_sync` ([`sync`]) and `s3_lifecycle` ([`lifecycle`]).
//!
//! Both talk to S3 through [`S3Api`]: [`AwsS3`] in production, moto in the
//! integration tests (`tests/runner_s3.rs`), and a fake in the unit tests
//! below for what moto cannot show (a part failing in the middle of a
//! multipart upload, throttling that outlasts the SDK's retries, listings
//! in pages).

mod api;
mod aws;
pub mod lifecycle;
pub mod sync;

use std::sync::Arc;

use crate::contract::{LifecycleJob, SyncJob};
pub use crate::runner::secrets::AwsKeys;
pub use api::{ApiError, Body, Head, Lifecycle, LifecycleRule, Object, Page, S3Api};
pub use aws::{AwsS3, aws_s3};
pub use lifecycle::LifecycleOutcome;
pub use sync::{SyncOptions, SyncOutcome};

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The step cannot run as given; nothing was called. The runner exits 2.
    #[error("{0}")]
    Config(String),
    /// `source` is missing or unreadable; nothing was uploaded.
    #[error("{0}")]
    Source(String),
    /// An S3 call failed; `what` names the operation and its subject.
    #[error("{what} failed: {error}")]
    Api { what: String, error: ApiError },
    /// `delete: true` with an empty `source`: a folder that is not mounted
    /// looks exactly like that, so nothing is deleted.
    #[error(
        "source `{folder}` has no files, yet {objects} objects are under {url}: refusing to \
         delete them all (is the folder mounted into the container?)"
    )]
    EmptySource {
        folder: String,
        objects: usize,
        url: String,
    },
    /// Some files could not be uploaded (or objects deleted); the others were.
    #[error("{}", files_message(failed, *uploaded, *deletes_skipped))]
    Files {
        /// (key, why); the key is empty for a folder that could not be read.
        failed: Vec<(String, String)>,
        uploaded: usize,
        deletes_skipped: bool,
    },
}

impl S3Error {
    /// A problem with the step itself (exit 2), not with a run of it (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, S3Error::Config(_))
    }
}

/// At most this many failures are named in the one error line.
const NAMED: usize = 3;

fn files_message(failed: &[(String, String)], uploaded: usize, deletes_skipped: bool) -> String {
    let named: Vec<String> = failed
        .iter()
        .take(NAMED)
        .map(|(key, why)| {
            if key.is_empty() {
                why.clone()
            } else {
                format!("{key}: {why}")
            }
        })
        .collect();
    let mut text = format!(
        "{} problem(s), {uploaded} file(s) uploaded: {}",
        failed.len(),
        named.join("; ")
    );
    if failed.len() > NAMED {
        text.push_str(&format!("; and {} more", failed.len() - NAMED));
    }
    if deletes_skipped {
        text.push_str("; nothing was deleted");
    }
    text
}

/// `4.0 KiB`, `12.3 MiB`: sizes for log lines.
pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Runs an `s3_sync` step with a client built from its settings.
/// `cancel` stops it from outside: nothing new starts and open multipart
/// uploads are aborted before it returns.
pub async fn run_sync(
    job: &SyncJob,
    keys: Option<AwsKeys>,
    dry_run: bool,
    cancel: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), S3Error> {
    let api = aws_s3(&job.bucket, &job.region, job.endpoint.as_deref(), keys).await;
    let opts = SyncOptions {
        dry_run,
        cancel: Some(cancel),
        ..SyncOptions::default()
    };
    sync::run(Arc::new(api), job, &opts).await.map(|_| ())
}

/// Runs an `s3_lifecycle` step with a client built from its settings.
pub async fn run_lifecycle(
    job: &LifecycleJob,
    keys: Option<AwsKeys>,
    dry_run: bool,
) -> Result<(), S3Error> {
    let api = aws_s3(&job.bucket, &job.region, job.endpoint.as_deref(), keys).await;
    lifecycle::run(&api, job, dry_run).await.map(|_| ())
}

#[cfg(test)]
mod fake;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use aws_sdk_s3::types::{
        ExpirationStatus, LifecycleExpiration, LifecycleRuleFilter, Tag, Transition,
        TransitionStorageClass,
    };

    use super::fake::{Fake, Stored};
    use super::*;
    use crate::contract::aws::Credentials;
    use crate::contract::s3::{self as contract, Compare, SHA256_METADATA};

    const KIB: usize = 1024;

    fn job(source: &Path) -> SyncJob {
        SyncJob {
            source: source.display().to_string(),
            bucket: "bkt".into(),
            prefix: Some("host1/".into()),
            compare: Compare::Size,
            delete: false,
            region: "us-east-1".into(),
            credentials: Credentials::DefaultChain,
            endpoint: None,
        }
    }

    /// Small thresholds so that tests stay small: parts of 5 MiB (S3's
    /// minimum) from 6 MiB on.
    fn opts() -> SyncOptions {
        SyncOptions {
            concurrency: 4,
            multipart_threshold: 6 * 1024 * KIB as u64,
            part_size: 5 * 1024 * KIB as u64,
            in_memory_max: 64 * KIB as u64,
            dry_run: false,
            cancel: None,
        }
    }

    fn tree(files: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, size) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let body: Vec<u8> = (0..*size).map(|i| (i % 251) as u8).collect();
            std::fs::write(path, body).unwrap();
        }
        dir
    }

    fn remote(fake: &Fake, key: &str, size: usize) {
        fake.state().objects.insert(
            key.to_owned(),
            Stored {
                body: vec![b'r'; size],
                metadata: BTreeMap::new(),
            },
        );
    }

    async fn sync(
        fake: &Arc<Fake>,
        job: &SyncJob,
        opts: &SyncOptions,
    ) -> Result<SyncOutcome, S3Error> {
        sync::run(fake.clone(), job, opts).await
    }

    #[tokio::test]
    async fn uploads_new_and_changed_files_and_skips_the_rest() {
        let dir = tree(&[("a.txt", 10), ("sub/b.bin", 100 * KIB), ("same.txt", 5)]);
        let fake = Arc::new(Fake::default());
        remote(&fake, "host1/same.txt", 5);
        remote(&fake, "host1/sub/b.bin", 3);
        remote(&fake, "other/x", 1);
        let out = sync(&fake, &job(dir.path()), &opts()).await.unwrap();
        assert_eq!(out.uploaded, ["host1/a.txt", "host1/sub/b.bin"]);
        assert_eq!(out.uploaded_bytes, 10 + 100 * KIB as u64);
        assert_eq!(out.unchanged, 1);
        let st = fake.state();
        assert_eq!(st.objects["host1/sub/b.bin"].body.len(), 100 * KIB);
        assert_eq!(st.objects["host1/same.txt"].body, b"rrrrr", "untouched");
        assert!(st.objects.contains_key("other/x"));
        // Size mode reads no metadata and writes none.
        assert!(st.calls.iter().all(|c| !c.starts_with("head")));
        assert!(st.objects["host1/a.txt"].metadata.is_empty());
    }

    #[tokio::test]
    async fn a_stop_from_outside_aborts_the_multipart_upload_in_progress() {
        let dir = tree(&[("big.bin", 23 * 1024 * KIB), ("later.txt", 3)]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fake = Arc::new(Fake::with(|s| s.stop_at_part = Some((2, stop.clone()))));
        let o = SyncOptions {
            concurrency: 1,
            cancel: Some(stop),
            ..opts()
        };
        let err = sync(&fake, &job(dir.path()), &o).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 problem(s), 0 file(s) uploaded: host1/big.bin: stopped: the run was stopped (the \
             multipart upload was aborted); 1 more: not started: the run was stopped"
        );
        assert!(fake.state().uploads.is_empty(), "no incomplete upload left");
        assert_eq!(fake.count("abort host1/big.bin"), 1);
        assert_eq!(
            fake.count("part host1/big.bin 3"),
            0,
            "no part after the stop"
        );
        assert_eq!(fake.count("complete"), 0);
    }

    #[tokio::test]
    async fn a_part_failing_mid_upload_aborts_it_and_stops_the_run() {
        // 23 MiB in 5 MiB parts: 5 parts; the third is throttled past the
        // SDK's retries.
        let dir = tree(&[("big.bin", 23 * 1024 * KIB), ("later.txt", 3)]);
        let fake = Arc::new(Fake::with(|s| {
            s.fail_part = Some((
                "host1/big.bin".into(),
                3,
                ApiError::new("SlowDown", "Please reduce your request rate."),
            ));
        }));
        remote(&fake, "host1/gone.txt", 1);
        let mut j = job(dir.path());
        j.delete = true;
        let o = SyncOptions {
            concurrency: 1,
            ..opts()
        };
        let err = sync(&fake, &j, &o).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 problem(s), 0 file(s) uploaded: host1/big.bin: UploadPart 3 of 5: SlowDown: Please \
             reduce your request rate. (the multipart upload was aborted); 1 more: not started \
             after the failure above; nothing was deleted"
        );
        assert!(fake.state().uploads.is_empty(), "no incomplete upload left");
        assert_eq!(fake.count("abort host1/big.bin"), 1);
        assert_eq!(fake.count("complete"), 0);
        assert_eq!(
            fake.count("part host1/big.bin 4"),
            0,
            "no part after the failure"
        );
        assert_eq!(
            fake.count("put host1/later.txt"),
            0,
            "no file after the failure"
        );
        assert_eq!(fake.count("delete"), 0);
        assert!(fake.keys().contains(&"host1/gone.txt".to_owned()));
    }

    #[tokio::test]
    async fn a_failed_abort_says_what_is_left_behind() {
        let dir = tree(&[("big.bin", 7 * 1024 * KIB)]);
        let fake = Arc::new(Fake::with(|s| {
            s.fail_part = Some(("host1/big.bin".into(), 2, ApiError::other("cannot reach x")));
            s.fail_abort = Some(ApiError::new("AccessDenied", "no s3:AbortMultipartUpload"));
        }));
        let err = sync(&fake, &job(dir.path()), &opts()).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("aborting multipart upload upload-1 failed too (AccessDenied: no s3:AbortMultipartUpload"),
            "{text}"
        );
        assert!(text.contains("abort_incomplete_uploads_days"), "{text}");
    }

    #[tokio::test]
    async fn a_complete_whose_answer_was_lost_counts_as_uploaded() {
        let dir = tree(&[("big.bin", 7 * 1024 * KIB)]);
        let fake = Arc::new(Fake::with(|s| s.complete_answer_lost = true));
        let out = sync(&fake, &job(dir.path()), &opts()).await.unwrap();
        assert_eq!(out.uploaded, ["host1/big.bin"]);
        assert_eq!(fake.count("abort"), 0);
        assert_eq!(fake.count("list-parts upload-1"), 1);
        // A complete that did nothing is a failure, and the upload aborted.
        let fake = Arc::new(Fake::with(|s| s.complete_fails_before = true));
        let err = sync(&fake, &job(dir.path()), &opts()).await.unwrap_err();
        assert!(
            err.to_string().contains(
                "CompleteMultipartUpload: no answer in time from the fake (the multipart upload \
                 was aborted)"
            ),
            "{err}"
        );
        assert!(fake.state().uploads.is_empty());
        assert!(fake.keys().is_empty());
    }

    #[tokio::test]
    async fn multipart_parts_are_exact_and_requests_bounded() {
        // 26 MiB + 1 byte: five parts of 5 MiB and one of 1 MiB + 1.
        let size = 26 * 1024 * KIB + 1;
        let dir = tree(&[("big.bin", size), ("s1", 10), ("s2", 70 * KIB), ("s3", 10)]);
        let fake = Arc::new(Fake::with(|s| s.latency = Duration::from_millis(20)));
        let o = SyncOptions {
            concurrency: 3,
            ..opts()
        };
        let out = sync(&fake, &job(dir.path()), &o).await.unwrap();
        assert_eq!(out.multipart, ["host1/big.bin"]);
        assert_eq!(fake.count("part host1/big.bin"), 6);
        let local = std::fs::read(dir.path().join("big.bin")).unwrap();
        assert!(fake.state().objects["host1/big.bin"].body == local);
        let max = fake.max_in_flight.load(Ordering::SeqCst);
        assert!((2..=3).contains(&max), "{max} requests in flight");
    }

    #[tokio::test]
    async fn throttled_puts_fail_the_step_and_name_the_key() {
        let dir = tree(&[("a", 1), ("b", 2), ("c", 3)]);
        let fake = Arc::new(Fake::with(|s| {
            s.fail_put.insert(
                "host1/b".into(),
                ApiError::new("SlowDown", "Please reduce your request rate."),
            );
        }));
        let o = SyncOptions {
            concurrency: 1,
            ..opts()
        };
        let err = sync(&fake, &job(dir.path()), &o).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 problem(s), 1 file(s) uploaded: host1/b: PutObject: SlowDown: Please reduce your \
             request rate.; 1 more: not started after the failure above"
        );
        assert_eq!(fake.keys(), ["host1/a"]);
    }

    #[tokio::test]
    async fn every_page_is_listed_and_deletes_go_in_batches_of_1000() {
        let dir = tree(&[("keep", 4)]);
        let fake = Arc::new(Fake::with(|s| s.page_size = 700));
        remote(&fake, "host1/keep", 4);
        for i in 0..2500 {
            remote(&fake, &format!("host1/old/{i:04}"), 1);
        }
        remote(&fake, "host1/folder/", 0);
        remote(&fake, "host2/not-ours", 1);
        let mut j = job(dir.path());
        j.delete = true;
        let out = sync(&fake, &j, &opts()).await.unwrap();
        assert_eq!(out.unchanged, 1);
        assert_eq!(out.deleted.len(), 2500);
        assert_eq!(fake.count("list"), 4, "2502 objects in pages of 700");
        let deletes: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("delete"))
            .collect();
        assert_eq!(deletes, ["delete 1000", "delete 1000", "delete 500"]);
        assert_eq!(
            fake.keys(),
            ["host1/folder/", "host1/keep", "host2/not-ours"]
        );
    }

    #[tokio::test]
    async fn a_repeated_token_stops_the_listing() {
        let dir = tree(&[("a", 1)]);
        let fake = Arc::new(Fake::with(|s| s.stuck_token = Some("again".into())));
        let err = sync(&fake, &job(dir.path()), &opts()).await.unwrap_err();
        assert!(
            err.to_string().contains("same continuation token twice"),
            "{err}"
        );
        assert_eq!(fake.count("put"), 0);
    }

    #[tokio::test]
    async fn an_empty_or_missing_source_never_deletes_everything() {
        let dir = tree(&[]);
        let fake = Arc::new(Fake::default());
        remote(&fake, "host1/a", 1);
        let mut j = job(dir.path());
        j.delete = true;
        let err = sync(&fake, &j, &opts()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("has no files, yet 1 objects are under s3://bkt/host1/: refusing"),
            "{err}"
        );
        j.source = dir.path().join("nope").display().to_string();
        let err = sync(&fake, &j, &opts()).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("does not exist in the container; mount it with `container.volumes`"),
            "{err}"
        );
        assert_eq!(fake.count("delete"), 0);
        assert_eq!(fake.keys(), ["host1/a"]);
    }

    #[tokio::test]
    async fn symlinks_are_neither_followed_nor_deleted_remotely() {
        let dir = tree(&[("real", 3)]);
        let outside = tree(&[("secret", 9)]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).unwrap();
        let fake = Arc::new(Fake::default());
        remote(&fake, "host1/link", 3);
        let mut j = job(dir.path());
        j.delete = true;
        let out = sync(&fake, &j, &opts()).await.unwrap();
        assert_eq!(out.uploaded, ["host1/real"]);
        assert!(out.deleted.is_empty(), "{:?}", out.deleted);
        assert_eq!(
            out.skipped
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["escape", "link"]
        );
        assert_eq!(fake.keys(), ["host1/link", "host1/real"]);
    }

    #[tokio::test]
    async fn checksum_mode_heads_same_size_objects_and_stores_the_hash() {
        let dir = tree(&[("same", 3), ("new", 3)]);
        let fake = Arc::new(Fake::default());
        remote(&fake, "host1/same", 3);
        let mut j = job(dir.path());
        j.compare = Compare::Checksum;
        let out = sync(&fake, &j, &opts()).await.unwrap();
        assert_eq!(out.uploaded, ["host1/new", "host1/same"]);
        // The hash of [0, 1, 2].
        let want = "ae4b3280e56e2faf83f414a6e3dabe9d5fbe18976544c05fed121accb85b53fc";
        assert_eq!(
            fake.state().objects["host1/same"].metadata[SHA256_METADATA],
            want
        );
        assert_eq!(fake.count("head"), 1, "only the same-size object is asked");
        // Nothing changed: HEADs only.
        let again = sync(&fake, &j, &opts()).await.unwrap();
        assert!(again.uploaded.is_empty());
        assert_eq!(again.unchanged, 2);
    }

    #[tokio::test]
    async fn a_dry_run_calls_nothing_that_writes() {
        let dir = tree(&[("a", 1), ("big", 7 * 1024 * KIB)]);
        let fake = Arc::new(Fake::default());
        remote(&fake, "host1/gone", 1);
        let mut j = job(dir.path());
        j.delete = true;
        let o = SyncOptions {
            dry_run: true,
            ..opts()
        };
        let out = sync(&fake, &j, &o).await.unwrap();
        assert_eq!(out.uploaded, ["host1/a", "host1/big"]);
        assert_eq!(out.multipart, ["host1/big"]);
        assert_eq!(out.deleted, ["host1/gone"]);
        assert_eq!(fake.calls(), ["list -"]);
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(4096), "4.0 KiB");
        assert_eq!(human_bytes(20 * 1024 * 1024 + 512 * 1024), "20.5 MiB");
        assert_eq!(human_bytes(1 << 30), "1.0 GiB");
    }

    fn spec_rule(id: &str, prefix: &str, days: u32) -> contract::LifecycleRule {
        contract::LifecycleRule {
            id: id.into(),
            prefix: Some(prefix.into()),
            transition_days: Some(days),
            storage_class: Some("GLACIER".into()),
            expiration_days: None,
            abort_incomplete_uploads_days: None,
        }
    }

    fn lifecycle_job(rules: Vec<contract::LifecycleRule>) -> LifecycleJob {
        LifecycleJob {
            bucket: "bkt".into(),
            region: "us-east-1".into(),
            credentials: Credentials::DefaultChain,
            endpoint: None,
            rules,
        }
    }

    /// A rule of someone else's, with fields unitgen never writes.
    fn foreign(id: &str) -> LifecycleRule {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Disabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .tag(Tag::builder().key("k").value("v").build().unwrap())
                    .build(),
            )
            .transitions(
                Transition::builder()
                    .days(7)
                    .storage_class(TransitionStorageClass::StandardIa)
                    .build(),
            )
            .expiration(
                LifecycleExpiration::builder()
                    .expired_object_delete_marker(true)
                    .build(),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn lifecycle_changes_only_unitgen_rules_and_keeps_the_rest_exactly() {
        use aws_sdk_s3::types::TransitionDefaultMinimumObjectSize as Min;
        let fake = Fake::with(|s| {
            s.lifecycle = Some(Lifecycle {
                rules: vec![
                    foreign("theirs-1"),
                    spec_rule_sdk("unitgen-old"),
                    foreign("theirs-2"),
                    spec_rule_sdk("unitgen-archive"),
                ],
                min_object_size: Some(Min::VariesByStorageClass),
            });
        });
        let job = lifecycle_job(vec![
            spec_rule("unitgen-archive", "host1/", 30),
            spec_rule("unitgen-new", "host2/", 60),
        ]);
        let out = lifecycle::run(&fake, &job, false).await.unwrap();
        assert_eq!(out.added, ["unitgen-new"]);
        assert_eq!(out.removed, ["unitgen-old"]);
        assert_eq!(out.unchanged, ["unitgen-archive"]);
        assert!(out.changed.is_empty() && out.written);
        let written = fake.state().lifecycle.clone().unwrap();
        assert_eq!(written.rules[0], foreign("theirs-1"));
        assert_eq!(written.rules[1], foreign("theirs-2"));
        assert_eq!(written.rules.len(), 4);
        assert_eq!(written.min_object_size, Some(Min::VariesByStorageClass));

        // The same step again: read, compare, nothing written.
        let again = lifecycle::run(&fake, &job, false).await.unwrap();
        assert!(!again.written);
        assert_eq!(fake.count("put-lifecycle"), 1);

        // A changed day count replaces the rule; a dry run writes nothing.
        let changed = lifecycle_job(vec![
            spec_rule("unitgen-archive", "host1/", 90),
            spec_rule("unitgen-new", "host2/", 60),
        ]);
        let dry = lifecycle::run(&fake, &changed, true).await.unwrap();
        assert_eq!(
            (dry.changed.clone(), dry.written),
            (vec!["unitgen-archive".to_owned()], false)
        );
        assert_eq!(fake.count("put-lifecycle"), 1);
        lifecycle::run(&fake, &changed, false).await.unwrap();
        let rules = fake.state().lifecycle.clone().unwrap().rules;
        assert_eq!(rules[2].transitions()[0].days, Some(90));
    }

    /// What S3 returns for a rule unitgen wrote for `spec_rule(id, "host1/", 30)`.
    fn spec_rule_sdk(id: &str) -> LifecycleRule {
        LifecycleRule::builder()
            .id(id)
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("host1/").build())
            .transitions(
                Transition::builder()
                    .days(30)
                    .storage_class(TransitionStorageClass::Glacier)
                    .build(),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_bucket_without_lifecycle_gets_the_rules() {
        let fake = Fake::default();
        let job = lifecycle_job(vec![spec_rule("unitgen-archive", "", 0)]);
        let out = lifecycle::run(&fake, &job, false).await.unwrap();
        assert_eq!(out.added, ["unitgen-archive"]);
        let written = fake.state().lifecycle.clone().unwrap();
        assert_eq!(written.min_object_size, None);
        assert_eq!(
            written.rules[0].filter.as_ref().unwrap().prefix.as_deref(),
            Some("")
        );
    }

    #[tokio::test]
    async fn too_many_rules_in_all_is_refused_before_writing() {
        let fake = Fake::with(|s| {
            s.lifecycle = Some(Lifecycle {
                rules: (0..1000).map(|i| foreign(&format!("theirs-{i}"))).collect(),
                min_object_size: None,
            })
        });
        let err = lifecycle::run(
            &fake,
            &lifecycle_job(vec![spec_rule("unitgen-a", "x/", 1)]),
            false,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("over S3's limit of 1000"), "{err}");
        assert_eq!(fake.count("put-lifecycle"), 0);
    }
}
