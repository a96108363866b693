//! The S3 steps against a real moto server, through the real aws-sdk-s3
//! client as the runner builds it (path-style, checksums only when
//! required): what is uploaded, skipped, deleted; multipart uploads and
//! what a failed one leaves behind; lifecycle rules next to other people's;
//! and the runner binary end to end with its AWS keys in a real etcd.
//! What moto cannot show (throttling that outlasts the SDK's retries,
//! pages, request bounds) is tested with a fake in src/runner/s3/.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleAndOperator, LifecycleRuleFilter, NoncurrentVersionExpiration, Tag, Transition,
    TransitionStorageClass,
};
use common::etcd::Etcd;
use common::moto::Moto;
use unitgen::contract::aws::Credentials;
use unitgen::contract::s3::{Compare, LifecycleRule as SpecRule};
use unitgen::contract::secret::SecretString;
use unitgen::contract::{LifecycleJob, RunnerStep, SyncJob};
use unitgen::runner::s3::{
    self, ApiError, AwsKeys, AwsS3, Body, Head, Lifecycle, Page, S3Api, SyncOptions, SyncOutcome,
    lifecycle, sync,
};

const BUCKET: &str = "backups";
const REGION: &str = "us-east-1";
const MIB: usize = 1024 * 1024;

fn keys() -> AwsKeys {
    AwsKeys {
        access_key_id: SecretString::new("AKIDTEST"),
        secret_access_key: SecretString::new("secret"),
    }
}

async fn step_api(moto: &Moto) -> AwsS3 {
    s3::aws_s3(BUCKET, REGION, Some(&moto.endpoint()), Some(keys())).await
}

/// A moto with an empty bucket, and a client to look at it.
async fn bucket() -> (Moto, aws_sdk_s3::Client) {
    let moto = Moto::start();
    let client = moto.s3().await;
    client
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("CreateBucket");
    (moto, client)
}

fn job(source: &Path, compare: Compare, delete: bool) -> SyncJob {
    SyncJob {
        source: source.display().to_string(),
        bucket: BUCKET.into(),
        prefix: Some("host1/".into()),
        compare,
        delete,
        region: REGION.into(),
        credentials: Credentials::EtcdPrefix("/aws/".into()),
        endpoint: None,
    }
}

fn write(dir: &Path, rel: &str, body: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// Bytes that differ from one offset to the next (no two parts alike).
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[2] ^ seed)
        .collect()
}

async fn run_sync(moto: &Moto, job: &SyncJob) -> SyncOutcome {
    sync::run(Arc::new(step_api(moto).await), job, &SyncOptions::default())
        .await
        .expect("s3_sync")
}

/// Every object in the bucket with its content.
async fn objects(client: &aws_sdk_s3::Client) -> BTreeMap<String, Vec<u8>> {
    let listed = client
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListObjectsV2");
    let mut out = BTreeMap::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_owned();
        let body = client
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("GetObject")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
            .to_vec();
        out.insert(key, body);
    }
    out
}

async fn incomplete_uploads(client: &aws_sdk_s3::Client) -> usize {
    client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads")
        .uploads()
        .len()
}

#[tokio::test]
async fn a_first_run_uploads_everything_a_second_nothing_and_a_change_again() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", b"alpha");
    write(src.path(), "deep/er/b.bin", &pattern(300 * 1024, 1));
    write(src.path(), "empty", b"");
    let j = job(src.path(), Compare::Size, false);

    let first = run_sync(&moto, &j).await;
    assert_eq!(
        first.uploaded,
        ["host1/a.txt", "host1/deep/er/b.bin", "host1/empty"]
    );
    assert_eq!(first.uploaded_bytes, 5 + 300 * 1024);
    let stored = objects(&client).await;
    assert_eq!(stored["host1/a.txt"], b"alpha");
    assert_eq!(stored["host1/deep/er/b.bin"], pattern(300 * 1024, 1));
    assert_eq!(stored["host1/empty"], b"");

    let second = run_sync(&moto, &j).await;
    assert!(second.uploaded.is_empty(), "{second:?}");
    assert_eq!(second.unchanged, 3);

    write(src.path(), "a.txt", b"alpha, longer");
    let third = run_sync(&moto, &j).await;
    assert_eq!(third.uploaded, ["host1/a.txt"]);
    assert_eq!(third.unchanged, 2);
    assert_eq!(objects(&client).await["host1/a.txt"], b"alpha, longer");
}

#[tokio::test]
async fn size_mode_misses_a_same_size_edit_and_checksum_mode_catches_it() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "wallet.dat", b"version-1");
    write(src.path(), "other", b"x");
    let checksum = job(src.path(), Compare::Checksum, false);
    let size = job(src.path(), Compare::Size, false);

    assert_eq!(run_sync(&moto, &checksum).await.uploaded.len(), 2);
    // The hash is in the object's metadata, read back by a HEAD.
    let head = client
        .head_object()
        .bucket(BUCKET)
        .key("host1/wallet.dat")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap()["unitgen-sha256"],
        sha256_hex(b"version-1")
    );
    assert!(run_sync(&moto, &checksum).await.uploaded.is_empty());

    write(src.path(), "wallet.dat", b"version-2");
    let by_size = run_sync(&moto, &size).await;
    assert!(by_size.uploaded.is_empty(), "size mode sees no change");
    assert_eq!(objects(&client).await["host1/wallet.dat"], b"version-1");

    let by_checksum = run_sync(&moto, &checksum).await;
    assert_eq!(by_checksum.uploaded, ["host1/wallet.dat"]);
    assert_eq!(by_checksum.unchanged, 1);
    assert_eq!(objects(&client).await["host1/wallet.dat"], b"version-2");
}

fn sha256_hex(data: &[u8]) -> String {
    // The one hash the test needs, from the shell's own tool, so the test
    // does not share code with what it checks.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, data).unwrap();
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[tokio::test]
async fn nothing_is_deleted_without_delete_true_and_never_outside_the_prefix() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "kept", b"k");
    for key in ["host1/gone.txt", "host1/sub/gone", "host10/near", "other/x"] {
        client
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(b"old".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let out = run_sync(&moto, &job(src.path(), Compare::Size, false)).await;
    assert!(out.deleted.is_empty());
    assert_eq!(
        objects(&client).await.keys().collect::<Vec<_>>(),
        [
            "host1/gone.txt",
            "host1/kept",
            "host1/sub/gone",
            "host10/near",
            "other/x"
        ]
    );

    let out = run_sync(&moto, &job(src.path(), Compare::Size, true)).await;
    assert_eq!(out.deleted, ["host1/gone.txt", "host1/sub/gone"]);
    assert_eq!(
        objects(&client).await.keys().collect::<Vec<_>>(),
        ["host1/kept", "host10/near", "other/x"]
    );
}

#[tokio::test]
async fn a_20_mib_file_goes_up_in_parts() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    let body = pattern(20 * MIB, 7);
    write(src.path(), "big.bin", &body);
    let out = run_sync(&moto, &job(src.path(), Compare::Checksum, false)).await;
    assert_eq!(out.multipart, ["host1/big.bin"]);
    let head = client
        .head_object()
        .bucket(BUCKET)
        .key("host1/big.bin")
        .send()
        .await
        .unwrap();
    // A multipart object's ETag ends in `-PARTS`: 8 + 8 + 4 MiB.
    assert!(
        head.e_tag().unwrap().ends_with("-3\""),
        "{:?}",
        head.e_tag()
    );
    assert_eq!(head.content_length(), Some(20 * MIB as i64));
    assert_eq!(
        head.metadata().unwrap()["unitgen-sha256"],
        sha256_hex(&body),
        "metadata set at CreateMultipartUpload"
    );
    assert!(objects(&client).await["host1/big.bin"] == body);
    assert_eq!(incomplete_uploads(&client).await, 0);
    // Unchanged by checksum: a HEAD, no upload.
    let again = run_sync(&moto, &job(src.path(), Compare::Checksum, false)).await;
    assert!(again.uploaded.is_empty());
}

/// The real client, with one part failing as a connection would: the
/// create, the other parts and the abort all reach moto.
struct FailingPart {
    inner: AwsS3,
    part: i32,
    /// Incomplete uploads moto had when the part failed.
    seen_open: Arc<AtomicUsize>,
    moto_client: aws_sdk_s3::Client,
}

impl S3Api for FailingPart {
    async fn list_objects(&self, prefix: &str, token: Option<&str>) -> Result<Page, ApiError> {
        self.inner.list_objects(prefix, token).await
    }
    async fn head_object(&self, key: &str) -> Result<Option<Head>, ApiError> {
        self.inner.head_object(key).await
    }
    async fn put_object(
        &self,
        key: &str,
        body: Body,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.inner.put_object(key, body, metadata).await
    }
    async fn create_multipart(
        &self,
        key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, ApiError> {
        self.inner.create_multipart(key, metadata).await
    }
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
    ) -> Result<String, ApiError> {
        if part_number == self.part {
            let open = incomplete_uploads(&self.moto_client).await;
            self.seen_open.store(open, Ordering::SeqCst);
            return Err(ApiError::other(
                "cannot reach the endpoint: connection reset",
            ));
        }
        self.inner
            .upload_part(key, upload_id, part_number, body)
            .await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ApiError> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ApiError> {
        self.inner.abort_multipart(key, upload_id).await
    }
    async fn upload_open(&self, key: &str, upload_id: &str) -> Result<bool, ApiError> {
        self.inner.upload_open(key, upload_id).await
    }
    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, ApiError)>, ApiError> {
        self.inner.delete_objects(keys).await
    }
    async fn get_lifecycle(&self) -> Result<Option<Lifecycle>, ApiError> {
        self.inner.get_lifecycle().await
    }
    async fn put_lifecycle(&self, config: &Lifecycle) -> Result<(), ApiError> {
        self.inner.put_lifecycle(config).await
    }
}

#[tokio::test]
async fn a_failure_mid_upload_leaves_no_incomplete_multipart_upload() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "big.bin", &pattern(40 * MIB, 3));
    client
        .put_object()
        .bucket(BUCKET)
        .key("host1/stale")
        .body(b"s".to_vec().into())
        .send()
        .await
        .unwrap();
    let seen_open = Arc::new(AtomicUsize::new(0));
    let api = FailingPart {
        inner: step_api(&moto).await,
        part: 3,
        seen_open: seen_open.clone(),
        moto_client: client.clone(),
    };
    let err = sync::run(
        Arc::new(api),
        &job(src.path(), Compare::Size, true),
        &SyncOptions {
            concurrency: 2,
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "1 problem(s), 0 file(s) uploaded: host1/big.bin: UploadPart 3 of 5: cannot reach the \
         endpoint: connection reset (the multipart upload was aborted); nothing was deleted"
    );
    assert_eq!(
        seen_open.load(Ordering::SeqCst),
        1,
        "the upload was open on moto when the part failed"
    );
    assert_eq!(incomplete_uploads(&client).await, 0, "and aborted after");
    assert_eq!(
        objects(&client).await.keys().collect::<Vec<_>>(),
        ["host1/stale"]
    );
}

#[tokio::test]
async fn a_dry_run_uploads_and_deletes_nothing() {
    let (moto, client) = bucket().await;
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "new", b"n");
    client
        .put_object()
        .bucket(BUCKET)
        .key("host1/old")
        .body(b"o".to_vec().into())
        .send()
        .await
        .unwrap();
    let out = sync::run(
        Arc::new(step_api(&moto).await),
        &job(src.path(), Compare::Checksum, true),
        &SyncOptions {
            dry_run: true,
            ..SyncOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(out.uploaded, ["host1/new"]);
    assert_eq!(out.deleted, ["host1/old"]);
    assert_eq!(
        objects(&client).await.keys().collect::<Vec<_>>(),
        ["host1/old"]
    );
}

#[tokio::test]
async fn a_missing_bucket_and_refused_keys_say_so_without_the_secret() {
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a", b"a");
    let api = s3::aws_s3(
        BUCKET,
        REGION,
        Some(&moto.endpoint()),
        Some(AwsKeys {
            access_key_id: SecretString::new("AKIDNOTKNOWN"),
            secret_access_key: SecretString::new("s3cr3t-never-shown"),
        }),
    )
    .await;
    let err = sync::run(
        Arc::new(api),
        &job(src.path(), Compare::Size, false),
        &SyncOptions::default(),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "ListObjectsV2 of s3://backups/host1/ failed: InvalidAccessKeyId: The AWS Access Key \
             Id you provided does not exist in our records. (check the AWS credentials"
        ),
        "{text}"
    );
    assert!(!format!("{text} {err:?}").contains("s3cr3t"), "{text}");

    let (moto, _client) = bucket().await;
    let api = s3::aws_s3(
        "no-such-bucket",
        REGION,
        Some(&moto.endpoint()),
        Some(keys()),
    )
    .await;
    let mut j = job(src.path(), Compare::Size, false);
    j.bucket = "no-such-bucket".into();
    let err = sync::run(Arc::new(api), &j, &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ListObjectsV2 of s3://no-such-bucket/host1/ failed: NoSuchBucket: ")
            && err
                .to_string()
                .ends_with("(create the bucket first; unitgen never creates buckets)"),
        "{err}"
    );
}

/// One request as a plain server received it: request line and headers.
fn capture_one_put() -> (String, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        head
    });
    (endpoint, handle)
}

#[tokio::test]
async fn custom_endpoints_get_path_style_and_no_default_checksums() {
    let (endpoint, server) = capture_one_put();
    let api = s3::aws_s3(BUCKET, REGION, Some(&endpoint), Some(keys())).await;
    api.put_object(
        "host1/a.txt",
        Body::Bytes(b"hello".to_vec()),
        &BTreeMap::new(),
    )
    .await
    .expect("PutObject to the capturing server");
    let head = server.join().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("put /backups/host1/a.txt"),
        "path-style: {head}"
    );
    for header in [
        "x-amz-checksum-",
        "x-amz-sdk-checksum-algorithm",
        "aws-chunked",
        "x-amz-trailer",
    ] {
        assert!(!head.contains(header), "{header} sent: {head}");
    }
}

// Lifecycle.

fn spec_rule(days: u32) -> SpecRule {
    SpecRule {
        id: "unitgen-archive".into(),
        prefix: Some("host1/".into()),
        transition_days: Some(days),
        storage_class: Some("GLACIER".into()),
        expiration_days: Some(365),
        abort_incomplete_uploads_days: Some(7),
    }
}

fn lifecycle_job(rules: Vec<SpecRule>) -> LifecycleJob {
    LifecycleJob {
        bucket: BUCKET.into(),
        region: REGION.into(),
        credentials: Credentials::EtcdPrefix("/aws/".into()),
        endpoint: None,
        rules,
    }
}

/// Someone else's rules, with settings unitgen never writes.
fn foreign_rules() -> Vec<LifecycleRule> {
    vec![
        LifecycleRule::builder()
            .id("logs-expire")
            .status(ExpirationStatus::Enabled)
            .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
            .expiration(LifecycleExpiration::builder().days(14).build())
            .noncurrent_version_expiration(
                NoncurrentVersionExpiration::builder()
                    .noncurrent_days(3)
                    .build(),
            )
            .build()
            .unwrap(),
        LifecycleRule::builder()
            .id("tagged-ia")
            .status(ExpirationStatus::Disabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .and(
                        LifecycleRuleAndOperator::builder()
                            .prefix("media/")
                            .tags(Tag::builder().key("tier").value("cold").build().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .transitions(
                Transition::builder()
                    .days(45)
                    .storage_class(TransitionStorageClass::StandardIa)
                    .build(),
            )
            .build()
            .unwrap(),
    ]
}

/// Each `<Rule>` element of the bucket's lifecycle XML as moto serves it,
/// by its `<ID>`.
fn raw_rules(moto: &Moto) -> BTreeMap<String, String> {
    let (status, xml) = moto.get_raw(&format!("/{BUCKET}?lifecycle"));
    assert_eq!(status, 200, "{xml}");
    let mut out = BTreeMap::new();
    for chunk in xml.split("<Rule>").skip(1) {
        let rule = chunk.split("</Rule>").next().unwrap();
        let id = rule
            .split("<ID>")
            .nth(1)
            .and_then(|r| r.split("</ID>").next())
            .unwrap()
            .to_owned();
        out.insert(id, rule.to_owned());
    }
    out
}

fn lifecycle_puts(moto: &Moto) -> usize {
    moto.output()
        .lines()
        .filter(|l| l.contains("\"PUT /backups") && l.contains("?lifecycle"))
        .count()
}

#[tokio::test]
async fn lifecycle_rules_are_added_once_and_other_rules_survive_byte_for_byte() {
    let (moto, client) = bucket().await;
    client
        .put_bucket_lifecycle_configuration()
        .bucket(BUCKET)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .set_rules(Some(foreign_rules()))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("PutBucketLifecycleConfiguration");
    let before = raw_rules(&moto);
    assert_eq!(before.len(), 2);
    let puts = lifecycle_puts(&moto);
    assert_eq!(puts, 1, "moto logs each write:\n{}", moto.output());

    let api = step_api(&moto).await;
    let job = lifecycle_job(vec![spec_rule(30)]);
    let first = lifecycle::run(&api, &job, false).await.unwrap();
    assert_eq!(first.added, ["unitgen-archive"]);
    assert!(first.written);
    let after = raw_rules(&moto);
    assert_eq!(after.len(), 3);
    for (id, xml) in &before {
        assert_eq!(&after[id], xml, "rule {id} changed");
    }
    let ours = &after["unitgen-archive"];
    for part in [
        "<Prefix>host1/</Prefix>",
        "<Days>30</Days>",
        "<StorageClass>GLACIER</StorageClass>",
        "<Days>365</Days>",
        "<DaysAfterInitiation>7</DaysAfterInitiation>",
        "<Status>Enabled</Status>",
    ] {
        assert!(ours.contains(part), "{part} not in {ours}");
    }
    assert_eq!(lifecycle_puts(&moto), 2);

    // Again: read, nothing to change, nothing written.
    let second = lifecycle::run(&api, &job, false).await.unwrap();
    assert!(!second.written);
    assert_eq!(second.unchanged, ["unitgen-archive"]);
    assert_eq!(lifecycle_puts(&moto), 2, "the second run wrote");

    // A change of ours rewrites it, and still only it.
    let changed = lifecycle::run(&api, &lifecycle_job(vec![spec_rule(60)]), false)
        .await
        .unwrap();
    assert_eq!(changed.changed, ["unitgen-archive"]);
    let last = raw_rules(&moto);
    for (id, xml) in &before {
        assert_eq!(&last[id], xml, "rule {id} changed");
    }
    assert!(last["unitgen-archive"].contains("<Days>60</Days>"));

    // A dry run of yet another change writes nothing.
    let dry = lifecycle::run(&api, &lifecycle_job(vec![spec_rule(90)]), true)
        .await
        .unwrap();
    assert_eq!((dry.changed.len(), dry.written), (1, false));
    assert!(raw_rules(&moto)["unitgen-archive"].contains("<Days>60</Days>"));
}

#[tokio::test]
async fn a_bucket_without_lifecycle_gets_the_rules() {
    let (moto, _client) = bucket().await;
    let (status, _) = moto.get_raw(&format!("/{BUCKET}?lifecycle"));
    assert_eq!(status, 404, "no configuration yet");
    let out = lifecycle::run(
        &step_api(&moto).await,
        &lifecycle_job(vec![spec_rule(0)]),
        false,
    )
    .await
    .unwrap();
    assert_eq!(out.added, ["unitgen-archive"]);
    assert_eq!(raw_rules(&moto).len(), 1);
}

// The runner binary, with the keys in etcd.

const CANARY: &str = "canary-5f3c-s3-secret";

fn runner(etcd: &Etcd, job: &str, steps: &[RunnerStep], extra: &[&str]) -> common::Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unitgen-runner"));
    cmd.env("JOURNAL_STREAM", "8:1")
        .args(["--job", job, "--etcd-endpoint", &etcd.endpoint()])
        .args(extra);
    for step in steps {
        cmd.arg("--step").arg(serde_json::to_string(step).unwrap());
    }
    let argv = format!("{cmd:?}");
    assert!(!argv.contains(CANARY));
    common::run(&mut cmd)
}

#[tokio::test]
async fn the_runner_syncs_then_sets_the_lifecycle_with_keys_from_etcd() {
    let (moto, client) = bucket().await;
    let etcd = Etcd::start();
    etcd.put("/aws/access-key-id", "AKIDTEST");
    etcd.put("/aws/secret-access-key", CANARY);
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a", b"aaa");
    write(src.path(), "b/c", b"cc");
    let mut sync_job = job(src.path(), Compare::Checksum, true);
    sync_job.endpoint = Some(moto.endpoint());
    let mut life = lifecycle_job(vec![spec_rule(30)]);
    life.endpoint = Some(moto.endpoint());
    let steps = [RunnerStep::S3Sync(sync_job), RunnerStep::S3Lifecycle(life)];

    let dry = runner(&etcd, "s3-backup", &steps, &["--dry-run"]);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(
        dry.stderr
            .contains("<6>dry run: would upload host1/a (3 B, new)\n"),
        "{}",
        dry.stderr
    );
    assert!(
        dry.stderr.contains(
            "<6>dry run: would upload 2 files (5 B), skip 0 unchanged, delete 0; changed nothing\n"
        ),
        "{}",
        dry.stderr
    );
    assert!(objects(&client).await.is_empty());

    let r = runner(&etcd, "s3-backup", &steps, &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("<6>uploaded 2 files (5 B), skipped 0 unchanged, deleted 0\n"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "<6>step 1/2 (s3_sync s3://{BUCKET}/host1/): ok in "
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains(
            "<6>lifecycle of s3://backups: add rule unitgen-archive (prefix host1/: GLACIER after \
             30 days, expire after 365 days, abort incomplete uploads after 7 days)\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("would"),
        "no per-file lines: {}",
        r.stderr
    );
    assert!(!format!("{}{}", r.stdout, r.stderr).contains(CANARY));
    assert_eq!(objects(&client).await.len(), 2);

    let again = runner(&etcd, "s3-backup", &steps, &[]);
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("<6>uploaded 0 files (0 B), skipped 2 unchanged, deleted 0\n"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("nothing to write"),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn a_failed_sync_names_step_and_cause_and_skips_the_lifecycle() {
    let (moto, _client) = bucket().await;
    let etcd = Etcd::start();
    etcd.put("/aws/access-key-id", "AKIDTEST");
    etcd.put("/aws/secret-access-key", CANARY);
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a", b"a");
    let mut sync_job = job(src.path(), Compare::Size, false);
    sync_job.bucket = "not-there".into();
    sync_job.endpoint = Some(moto.endpoint());
    let mut life = lifecycle_job(vec![spec_rule(30)]);
    life.endpoint = Some(moto.endpoint());
    let r = runner(
        &etcd,
        "s3-backup",
        &[RunnerStep::S3Sync(sync_job), RunnerStep::S3Lifecycle(life)],
        &[],
    );
    assert_eq!(r.status, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with(
            "<3>s3-backup: step 1/2 (s3_sync s3://not-there/host1/) failed: ListObjectsV2 of \
             s3://not-there/host1/ failed: NoSuchBucket: "
        )),
        "{}",
        r.stderr
    );
    assert!(
        lines.contains(&"<4>step 2/2 (s3_lifecycle s3://backups) skipped: step 1 failed"),
        "{}",
        r.stderr
    );
    assert_eq!(moto.get_raw(&format!("/{BUCKET}?lifecycle")).0, 404);

    // A source that is not mounted: nothing is listed or uploaded.
    let mut missing = job(&src.path().join("not-mounted"), Compare::Size, true);
    missing.endpoint = Some(moto.endpoint());
    let r = runner(&etcd, "s3-backup", &[RunnerStep::S3Sync(missing)], &[]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("does not exist in the container; mount it with `container.volumes`\n"),
        "{}",
        r.stderr
    );
}
