//! The runner's `ebs_snapshot` step against a real moto server, through
//! the real aws-sdk-ec2 client: tags on the wire, tag filters, deletes,
//! a snapshot held by an AMI, and errors as EC2 sends them. What moto
//! cannot show (pending snapshots, pages) is tested with a fake in
//! src/runner/ebs.rs.
//!
//! moto stamps snapshots with whole seconds, so a test that needs one
//! snapshot to be newer than another waits for the next second
//! ([`next_second`]); retention breaks ties by id, which moto makes random.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{BlockDeviceMapping, EbsBlockDevice, ResourceType, Tag, TagSpecification};
use common::moto::{Moto, new_volume};
use unitgen::contract::SnapshotJob;
use unitgen::contract::aws::Credentials as RunnerCredentials;
use unitgen::contract::retention::RetentionPolicy;
use unitgen::contract::secret::SecretString;
use unitgen::runner::ebs::{
    self, AwsEc2, AwsKeys, EbsError, MANAGED_BY, Options, TAG_JOB, TAG_MANAGED_BY, TAG_VOLUME,
};

const JOB: &str = "bitcoind-wallet";
const REGION: &str = "us-east-1";
/// Each EC2 request against moto on loopback.
const TIMEOUT: Duration = Duration::from_secs(60);

fn keys() -> AwsKeys {
    AwsKeys {
        access_key_id: SecretString::new("AKIDTEST"),
        secret_access_key: SecretString::new("secret"),
    }
}

async fn step_api(moto: &Moto) -> AwsEc2 {
    ebs::aws_ec2(REGION, Some(&moto.endpoint()), Some(keys()), TIMEOUT).await
}

fn ours(volume: &str) -> Vec<(&'static str, String)> {
    vec![
        (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
        (TAG_JOB, JOB.to_owned()),
        (TAG_VOLUME, volume.to_owned()),
    ]
}

/// A snapshot of `volume` with exactly `tags`, made directly (as an earlier
/// run, or someone else, would have).
async fn snapshot(ec2: &aws_sdk_ec2::Client, volume: &str, tags: &[(&str, String)]) -> String {
    let mut create = ec2.create_snapshot().volume_id(volume);
    if !tags.is_empty() {
        let mut spec = TagSpecification::builder().resource_type(ResourceType::Snapshot);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(*k).value(v).build());
        }
        create = create.tag_specifications(spec.build());
    }
    let out = create.send().await.expect("CreateSnapshot");
    out.snapshot_id().unwrap().to_owned()
}

/// Every snapshot moto holds, with its tags.
async fn all_snapshots(ec2: &aws_sdk_ec2::Client) -> BTreeMap<String, BTreeMap<String, String>> {
    let out = ec2
        .describe_snapshots()
        .send()
        .await
        .expect("DescribeSnapshots");
    out.snapshots()
        .iter()
        .map(|s| {
            let tags = s
                .tags()
                .iter()
                .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
                .collect();
            (s.snapshot_id().unwrap().to_owned(), tags)
        })
        .collect()
}

/// Sleeps into the next wall-clock second, so that moto's second-resolution
/// start times order what comes after after what came before.
fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_millis(
        1000 - u64::from(now.subsec_millis()) + 20,
    ));
}

fn job(volume: &str, retention: Option<RetentionPolicy>) -> SnapshotJob {
    SnapshotJob {
        volume_id: volume.to_owned(),
        region: REGION.to_owned(),
        credentials: RunnerCredentials::EtcdPrefix("/aws/".into()),
        tags: BTreeMap::from([
            ("app".to_owned(), "bitcoind".to_owned()),
            ("team".to_owned(), "ops".to_owned()),
        ]),
        wait: Some("5min".into()),
        retention,
        endpoint: None,
        request_timeout: None,
    }
}

fn keep_last(n: u32) -> Option<RetentionPolicy> {
    Some(RetentionPolicy {
        keep_last: Some(n),
        ..RetentionPolicy::default()
    })
}

const RUN: &str = "test-run-1";

fn opts() -> Options {
    Options {
        poll_interval: Duration::from_millis(100),
        run_id: RUN.into(),
        ..Options::default()
    }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn the_snapshot_carries_every_tag_and_the_description() {
    let moto = Moto::start();
    let ec2 = moto.sdk().await;
    let volume = new_volume(&ec2).await;

    let out = ebs::run(&step_api(&moto).await, JOB, &job(&volume, None), &opts())
        .await
        .unwrap();

    let id = out.created.expect("a snapshot");
    let described = ec2
        .describe_snapshots()
        .snapshot_ids(&id)
        .send()
        .await
        .unwrap();
    let s = &described.snapshots()[0];
    assert_eq!(s.volume_id(), Some(volume.as_str()));
    assert_eq!(
        s.description(),
        Some(format!("unitgen: {JOB} {volume}").as_str())
    );
    assert_eq!(s.state().map(|s| s.as_str()), Some("completed"));
    let tags: BTreeMap<&str, &str> = s
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(
        tags,
        BTreeMap::from([
            ("app", "bitcoind"),
            ("team", "ops"),
            ("unitgen:job", JOB),
            ("unitgen:managed-by", "unitgen"),
            ("unitgen:run", RUN),
            ("unitgen:volume", volume.as_str()),
        ])
    );
    assert!(out.decisions.is_empty() && out.deleted.is_empty());
}

#[tokio::test]
async fn retention_deletes_only_our_snapshots_beyond_the_policy() {
    let moto = Moto::start();
    let ec2 = moto.sdk().await;
    let volume = new_volume(&ec2).await;
    let other_volume = new_volume(&ec2).await;

    // Someone else's snapshots, all older than ours: if retention
    // considered them, keep_last would delete them first.
    let mut foreign = BTreeMap::new();
    let no_owner = vec![(TAG_JOB, JOB.to_owned()), (TAG_VOLUME, volume.clone())];
    foreign.insert("no ownership tag", snapshot(&ec2, &volume, &no_owner).await);
    let other_vol = ours(&other_volume);
    foreign.insert(
        "same job, other volume",
        snapshot(&ec2, &other_volume, &other_vol).await,
    );
    let other_job = vec![
        (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
        (TAG_JOB, "another-job".to_owned()),
        (TAG_VOLUME, volume.clone()),
    ];
    foreign.insert(
        "other job, same volume",
        snapshot(&ec2, &volume, &other_job).await,
    );
    let no_job = vec![
        (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
        (TAG_VOLUME, volume.clone()),
    ];
    foreign.insert(
        "managed-by but no job",
        snapshot(&ec2, &volume, &no_job).await,
    );
    foreign.insert("untagged", snapshot(&ec2, &volume, &[]).await);

    // Ours, from earlier runs: two in one second, then a newer one.
    let old1 = snapshot(&ec2, &volume, &ours(&volume)).await;
    let old2 = snapshot(&ec2, &volume, &ours(&volume)).await;
    next_second();
    let old3 = snapshot(&ec2, &volume, &ours(&volume)).await;
    next_second();

    let out = ebs::run(
        &step_api(&moto).await,
        JOB,
        &job(&volume, keep_last(2)),
        &opts(),
    )
    .await
    .unwrap();
    let new = out.created.clone().unwrap();

    // Only ours were considered: the new one, old3, old1, old2.
    assert_eq!(out.decisions.len(), 4, "{:#?}", out.decisions);
    assert_eq!(out.decisions[0].snapshot.id, new);
    assert_eq!(out.decisions[1].snapshot.id, old3);
    assert_eq!(set(&out.to_delete()), set(&[&old1, &old2]));
    assert_eq!(
        out.deleted.iter().cloned().collect::<BTreeSet<_>>(),
        set(&[&old1, &old2])
    );

    let left = all_snapshots(&ec2).await;
    for (what, id) in &foreign {
        assert!(
            left.contains_key(id),
            "the {what} snapshot {id} was deleted"
        );
    }
    assert!(left.contains_key(&new) && left.contains_key(&old3));
    assert_eq!(left.len(), foreign.len() + 2, "{left:#?}");
}

#[tokio::test]
async fn a_dry_run_creates_and_deletes_nothing_and_reports_what_it_would_delete() {
    let moto = Moto::start();
    let ec2 = moto.sdk().await;
    let volume = new_volume(&ec2).await;
    let old1 = snapshot(&ec2, &volume, &ours(&volume)).await;
    let old2 = snapshot(&ec2, &volume, &ours(&volume)).await;
    next_second();
    let newest = snapshot(&ec2, &volume, &ours(&volume)).await;
    let foreign = snapshot(&ec2, &volume, &[]).await;
    let before = all_snapshots(&ec2).await;

    let out = ebs::run(
        &step_api(&moto).await,
        JOB,
        &job(&volume, keep_last(1)),
        &Options {
            dry_run: true,
            ..opts()
        },
    )
    .await
    .unwrap();

    assert_eq!(out.created, None);
    assert!(out.deleted.is_empty());
    assert_eq!(set(&out.to_delete()), set(&[&old1, &old2]));
    assert_eq!(out.decisions[0].snapshot.id, newest);
    assert!(!out.decisions[0].is_delete());
    assert!(!out.to_delete().contains(&foreign.as_str()));
    // Nothing created, nothing deleted.
    assert_eq!(all_snapshots(&ec2).await, before);
}

#[tokio::test]
async fn a_snapshot_held_by_an_ami_is_reported_and_the_rest_still_deleted() {
    let moto = Moto::start();
    let ec2 = moto.sdk().await;
    let volume = new_volume(&ec2).await;
    let old1 = snapshot(&ec2, &volume, &ours(&volume)).await;
    let for_ami = snapshot(&ec2, &volume, &ours(&volume)).await;
    let image = ec2
        .register_image()
        .name("from-a-backup")
        .root_device_name("/dev/sda1")
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/sda1")
                .ebs(EbsBlockDevice::builder().snapshot_id(&for_ami).build())
                .build(),
        )
        .send()
        .await
        .expect("RegisterImage")
        .image_id()
        .unwrap()
        .to_owned();
    // moto ignores the mapping: the image holds a snapshot moto made up
    // (only that one gets InvalidSnapshot.InUse). Tag that one as ours, as
    // if it were our backup the image was registered from.
    let images = ec2
        .describe_images()
        .image_ids(&image)
        .send()
        .await
        .unwrap();
    let held = images.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .unwrap()
        .to_owned();
    let mut tag = ec2.create_tags().resources(&held);
    for (k, v) in ours(&volume) {
        tag = tag.tags(Tag::builder().key(k).value(v).build());
    }
    tag.send().await.expect("CreateTags");
    next_second();

    let err = ebs::run(
        &step_api(&moto).await,
        JOB,
        &job(&volume, keep_last(1)),
        &opts(),
    )
    .await
    .unwrap_err();

    assert!(!err.is_config());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "retention could not delete 1 of the 3 snapshots it chose: {held} (InvalidSnapshot.InUse: "
        )),
        "{text}"
    );
    assert!(text.contains(&image), "{text}");
    let EbsError::DeleteFailed { deleted, failed } = err else {
        unreachable!()
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(
        deleted.into_iter().collect::<BTreeSet<_>>(),
        set(&[&old1, &for_ami])
    );
    let left = all_snapshots(&ec2).await;
    assert!(left.contains_key(&held));
    assert_eq!(left.len(), 2, "the new one and the held one: {left:#?}");
}

#[tokio::test]
async fn an_unknown_volume_names_the_aws_error() {
    let moto = Moto::start();
    let err = ebs::run(
        &step_api(&moto).await,
        JOB,
        &job("vol-0000000000000000f", keep_last(1)),
        &opts(),
    )
    .await
    .unwrap_err();
    assert!(!err.is_config());
    let text = err.to_string();
    assert!(
        text.starts_with(
            "CreateSnapshot of vol-0000000000000000f failed: InvalidVolume.NotFound: "
        ),
        "{text}"
    );
}

#[tokio::test]
async fn refused_credentials_say_so_and_never_show_the_secret() {
    // With auth on, moto checks keys against its IAM: ours are unknown.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let api = ebs::aws_ec2(
        REGION,
        Some(&moto.endpoint()),
        Some(AwsKeys {
            access_key_id: SecretString::new("AKIDNOTKNOWN"),
            secret_access_key: SecretString::new("s3cr3t-never-shown"),
        }),
        TIMEOUT,
    )
    .await;
    let err = ebs::run(&api, JOB, &job("vol-0123abcd", keep_last(1)), &opts())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "CreateSnapshot of vol-0123abcd failed: AuthFailure: AWS was not able to validate the \
             provided access credentials (check the AWS credentials"
        ),
        "{text}"
    );
    assert!(!format!("{text} {err:?}").contains("s3cr3t"), "{text}");
}

#[tokio::test]
async fn nothing_listening_gives_a_clear_error() {
    // A port that was free a moment ago; nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let api = ebs::aws_ec2(REGION, Some(&endpoint), Some(keys()), TIMEOUT).await;
    let started = std::time::Instant::now();
    let err = ebs::run(&api, JOB, &job("vol-0123abcd", keep_last(1)), &opts())
        .await
        .unwrap_err();
    assert!(!err.is_config());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "CreateSnapshot of vol-0123abcd failed: cannot reach {endpoint}: "
        )),
        "{text}"
    );
    assert!(text.contains("onnection refused"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
