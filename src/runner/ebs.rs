//! EBS snapshot step: create, wait, prune.
//!
//! [`run`] snapshots the job's volume (tagged at creation, so it is never
//! untagged), waits for it to complete, then applies the retention policy
//! to the snapshots this job made of this volume. The EC2 calls go through
//! [`Ec2Api`]: [`AwsEc2`] in production, moto in the integration tests, and
//! a fake in the unit tests below for what moto cannot show (pending
//! states, pagination, failures).
//!
//! Retention only ever touches a snapshot that carries all three of our
//! tags with exact values ([`TAG_MANAGED_BY`], [`TAG_JOB`], [`TAG_VOLUME`]):
//! the DescribeSnapshots filter asks for them, and every snapshot returned is
//! checked again here, since a filter is a request, not a guarantee.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use jiff::Timestamp;

use crate::job::{RetentionPolicy, SnapshotJob};
use crate::runner::log;
use crate::runner::retention::{self, Action, Candidate, Decision, SnapshotState};
use crate::secret::SecretString;
use crate::timespan;

/// Ownership tag: unitgen created this snapshot. Value [`MANAGED_BY`].
pub const TAG_MANAGED_BY: &str = "unitgen:managed-by";
pub const MANAGED_BY: &str = "unitgen";
/// The job's name (the spec's key under `jobs:`).
pub const TAG_JOB: &str = "unitgen:job";
/// The volume the snapshot was taken of.
pub const TAG_VOLUME: &str = "unitgen:volume";

/// EC2 error codes that mean the credentials, not the request, are wrong.
const AUTH_CODES: &[&str] = &[
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "RequestExpired",
    "OptInRequired",
];

/// A snapshot as the step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub volume_id: Option<String>,
    pub state: SnapshotState,
    /// EC2's `Progress`, e.g. `42%`.
    pub progress: Option<String>,
    /// `None` only if EC2 left it out; such a snapshot is never deleted.
    pub start_time: Option<Timestamp>,
    /// Why a snapshot is in the `error` state.
    pub state_message: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// One page of DescribeSnapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub snapshots: Vec<Snapshot>,
    pub next_token: Option<String>,
}

/// The EC2 calls the step makes.
pub trait Ec2Api {
    /// CreateSnapshot, with `tags` applied by the same call.
    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<Snapshot, ApiError>> + Send;

    /// DescribeSnapshots of one id.
    fn describe_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<Snapshot, ApiError>> + Send;

    /// One page of DescribeSnapshots with `OwnerIds=self` and a
    /// `tag:KEY=VALUE` filter per entry of `tags`.
    fn list_snapshots(
        &self,
        tags: &BTreeMap<String, String>,
        next_token: Option<&str>,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    fn delete_snapshot(
        &self,
        snapshot_id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// An EC2 call that failed: the AWS error code when EC2 answered, and a
/// message. Built from error texts only, never from a request, so it holds
/// no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some(code.to_owned()),
            message: message.into(),
        }
    }

    /// The credentials were refused (or lack a permission).
    pub fn is_auth(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| AUTH_CODES.contains(&c))
    }

    fn is_snapshot_not_found(&self) -> bool {
        self.code.as_deref() == Some("InvalidSnapshot.NotFound")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if self.is_auth() {
            f.write_str(
                " (check the AWS credentials: the etcd keys `access-key-id` and \
                 `secret-access-key` under the job's `credentials.etcd_prefix`, or, for \
                 `default_chain`, the instance profile and its IAM policy)",
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, thiserror::Error)]
pub enum EbsError {
    /// The job cannot run as given; nothing was called. The runner exits 2.
    #[error("invalid ebs_snapshot job: {0}")]
    Config(String),
    /// An EC2 call failed; `what` names the operation and its subject.
    #[error("{what} failed: {error}")]
    Api { what: String, error: ApiError },
    #[error("snapshot {snapshot} of {volume} failed (state `error`): {message}")]
    SnapshotFailed {
        snapshot: String,
        volume: String,
        message: String,
    },
    #[error(
        "snapshot {snapshot} of {volume} was still {state} ({progress}) after {waited} (the job's `wait`)"
    )]
    WaitTimeout {
        snapshot: String,
        volume: String,
        state: SnapshotState,
        progress: String,
        waited: String,
    },
    /// Retention could not delete some snapshots; the rest were deleted.
    #[error("retention could not delete {} of the {} snapshots it chose: {}", failed.len(), failed.len() + deleted.len(), list_failures(failed))]
    DeleteFailed {
        failed: Vec<(String, ApiError)>,
        deleted: Vec<String>,
    },
}

fn list_failures(failed: &[(String, ApiError)]) -> String {
    failed
        .iter()
        .map(|(id, e)| format!("{id} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl EbsError {
    /// A problem with the job itself (exit 2), not with a run of it (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, EbsError::Config(_))
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Create and delete nothing; report what retention would delete among
    /// the existing snapshots.
    pub dry_run: bool,
    /// How often to ask EC2 about a pending snapshot.
    pub poll_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            poll_interval: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The snapshot this run created; `None` in a dry run.
    pub created: Option<String>,
    /// Retention's decision on each of our snapshots, newest first; empty
    /// without `retention`.
    pub decisions: Vec<Decision>,
    /// The snapshots deleted; empty in a dry run.
    pub deleted: Vec<String>,
}

impl Outcome {
    /// What retention chose to delete (in a dry run: would have deleted).
    pub fn to_delete(&self) -> Vec<&str> {
        self.decisions
            .iter()
            .filter(|d| d.is_delete())
            .map(|d| d.snapshot.id.as_str())
            .collect()
    }
}

/// The three tags that make a snapshot this job's, for this volume.
pub fn ownership_tags(job_name: &str, volume_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_JOB.to_owned(), job_name.to_owned()),
        (TAG_VOLUME.to_owned(), volume_id.to_owned()),
    ])
}

/// The job's checked settings.
struct Plan<'a> {
    /// `Some(None)`: wait without limit (`infinity`).
    wait: Option<Option<Duration>>,
    retention: Option<&'a RetentionPolicy>,
}

fn check<'a>(job_name: &str, job: &'a SnapshotJob) -> Result<Plan<'a>, EbsError> {
    if job_name.is_empty() {
        return Err(EbsError::Config("the job name is empty".into()));
    }
    if job.volume_id.trim().is_empty() {
        return Err(EbsError::Config("`volume_id` is empty".into()));
    }
    let wait = match &job.wait {
        Some(text) => {
            Some(timespan::parse(text).map_err(|e| EbsError::Config(format!("`wait`: {e}")))?)
        }
        None => None,
    };
    if let Some(policy) = &job.retention {
        if wait.is_none() {
            return Err(EbsError::Config(
                "`retention` needs `wait`: old snapshots are pruned only after the new one \
                 completed"
                    .into(),
            ));
        }
        retention::decide(&[], policy).map_err(|e| EbsError::Config(e.to_string()))?;
    }
    Ok(Plan {
        wait,
        retention: job.retention.as_ref(),
    })
}

/// Runs the step. Config problems are reported before any EC2 call.
pub async fn run<A: Ec2Api>(
    api: &A,
    job_name: &str,
    job: &SnapshotJob,
    opts: &Options,
) -> Result<Outcome, EbsError> {
    let plan = check(job_name, job)?;
    let volume = job.volume_id.as_str();
    let description = format!("unitgen: {job_name} {volume}");
    // Ours last, so they win (the renderer already refuses `unitgen:` keys).
    let mut tags = job.tags.clone();
    tags.extend(ownership_tags(job_name, volume));

    if opts.dry_run {
        log::info(format_args!(
            "dry run: would snapshot {volume} as \"{description}\" with tags {}",
            show_tags(&tags)
        ));
        let Some(policy) = plan.retention else {
            return Ok(Outcome::default());
        };
        let (decisions, deleted) = prune(api, job_name, volume, policy, None, true).await?;
        return Ok(Outcome {
            created: None,
            decisions,
            deleted,
        });
    }

    let created = api
        .create_snapshot(volume, &description, &tags)
        .await
        .map_err(|error| EbsError::Api {
            what: format!("CreateSnapshot of {volume}"),
            error,
        })?;
    log::info(format_args!(
        "created snapshot {} of {volume} ({})",
        created.id,
        describe_state(&created)
    ));
    let Some(limit) = plan.wait else {
        log::info(format_args!(
            "not waiting for {} to complete (no `wait`)",
            created.id
        ));
        return Ok(Outcome {
            created: Some(created.id),
            ..Outcome::default()
        });
    };
    let done = match wait_completed(api, created, volume, limit, opts.poll_interval).await {
        Ok(done) => done,
        Err(e) => {
            if plan.retention.is_some() {
                log::warn("retention skipped: the new snapshot did not complete");
            }
            return Err(e);
        }
    };
    let Some(policy) = plan.retention else {
        return Ok(Outcome {
            created: Some(done.id),
            ..Outcome::default()
        });
    };
    let (decisions, deleted) = prune(api, job_name, volume, policy, Some(&done), false).await?;
    Ok(Outcome {
        created: Some(done.id),
        decisions,
        deleted,
    })
}

fn show_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_state(s: &Snapshot) -> String {
    match &s.progress {
        Some(p) if !p.is_empty() => format!("{}, {p}", s.state),
        _ => s.state.to_string(),
    }
}

/// `1h 2m 3s`, or milliseconds under a second (tests poll that fast).
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = jiff::SignedDuration::from_secs(d.as_secs() as i64);
    format!("{secs:#}")
}

/// One progress line per poll.
fn progress_line(s: &Snapshot, volume: &str, waited: Duration) -> String {
    format!(
        "snapshot {} of {volume}: {} after {}",
        s.id,
        describe_state(s),
        human(waited)
    )
}

async fn wait_completed<A: Ec2Api>(
    api: &A,
    created: Snapshot,
    volume: &str,
    limit: Option<Duration>,
    poll: Duration,
) -> Result<Snapshot, EbsError> {
    let started = tokio::time::Instant::now();
    let mut current = created;
    loop {
        let waited = started.elapsed();
        match current.state {
            SnapshotState::Completed => {
                log::info(format_args!(
                    "snapshot {} of {volume} completed after {}",
                    current.id,
                    human(waited)
                ));
                return Ok(current);
            }
            SnapshotState::Error => {
                return Err(EbsError::SnapshotFailed {
                    snapshot: current.id,
                    volume: volume.to_owned(),
                    message: current
                        .state_message
                        .unwrap_or_else(|| "EC2 gave no reason".into()),
                });
            }
            _ => {}
        }
        if let Some(limit) = limit
            && waited >= limit
        {
            return Err(EbsError::WaitTimeout {
                progress: current.progress.unwrap_or_else(|| "no progress".into()),
                snapshot: current.id,
                volume: volume.to_owned(),
                state: current.state,
                waited: human(limit),
            });
        }
        // The last nap ends at the deadline, for one last look.
        let nap = limit.map_or(poll, |limit| poll.min(limit - waited));
        tokio::time::sleep(nap).await;
        match api.describe_snapshot(&current.id).await {
            Ok(s) => {
                current = s;
                if current.state != SnapshotState::Completed {
                    log::info(progress_line(&current, volume, started.elapsed()));
                }
            }
            // EC2 is eventually consistent: a snapshot just created may not
            // be visible to DescribeSnapshots yet.
            Err(e) if e.is_snapshot_not_found() => log::info(format_args!(
                "snapshot {} of {volume}: not visible yet after {}",
                current.id,
                human(started.elapsed())
            )),
            Err(error) => {
                return Err(EbsError::Api {
                    what: format!("DescribeSnapshots of {}", current.id),
                    error,
                });
            }
        }
    }
}

/// Whether `s` carries all three of our tags, with exactly our values.
fn owned(s: &Snapshot, expected: &BTreeMap<String, String>) -> bool {
    expected.iter().all(|(k, v)| s.tags.get(k) == Some(v))
}

/// Lists our snapshots, decides, and (unless `dry_run`) deletes. Returns
/// the decisions and the ids deleted.
async fn prune<A: Ec2Api>(
    api: &A,
    job_name: &str,
    volume: &str,
    policy: &RetentionPolicy,
    created: Option<&Snapshot>,
    dry_run: bool,
) -> Result<(Vec<Decision>, Vec<String>), EbsError> {
    let ours = ownership_tags(job_name, volume);
    let mut found: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut foreign = 0;
    let mut token: Option<String> = None;
    loop {
        let page = api
            .list_snapshots(&ours, token.as_deref())
            .await
            .map_err(|error| EbsError::Api {
                what: format!("DescribeSnapshots of job {job_name}'s snapshots of {volume}"),
                error,
            })?;
        for s in page.snapshots {
            if owned(&s, &ours) {
                found.insert(s.id.clone(), s);
            } else {
                foreign += 1;
            }
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_ref() == Some(&next) => {
                return Err(EbsError::Api {
                    what: format!("DescribeSnapshots of job {job_name}'s snapshots of {volume}"),
                    error: ApiError {
                        code: None,
                        message: "EC2 returned the same NextToken twice".into(),
                    },
                });
            }
            Some(next) => token = Some(next),
            None => break,
        }
    }
    if foreign > 0 {
        log::warn(format_args!(
            "left alone {foreign} snapshots that EC2 listed without all of the tags {}",
            show_tags(&ours)
        ));
    }
    // The listing may lag behind (eventual consistency) or show a stale
    // state; what the wait saw is authoritative for our own snapshot.
    if let Some(c) = created {
        found.insert(c.id.clone(), c.clone());
    }
    let mut candidates = Vec::new();
    for s in found.values() {
        match s.start_time {
            Some(start_time) => candidates.push(Candidate {
                id: s.id.clone(),
                start_time,
                state: s.state.clone(),
            }),
            None => log::warn(format_args!("left alone {}: EC2 gave no start time", s.id)),
        }
    }
    let mut decisions =
        retention::decide(&candidates, policy).map_err(|e| EbsError::Config(e.to_string()))?;
    // Never delete what this run just made, even if a clock put an older
    // snapshot after it.
    if let Some(c) = created {
        for d in decisions.iter_mut().filter(|d| d.snapshot.id == c.id) {
            if d.is_delete() {
                d.action = Action::Keep(vec!["created by this run".into()]);
            }
        }
    }

    let prefix = if dry_run { "dry run: " } else { "" };
    for d in &decisions {
        let when = d.snapshot.start_time;
        match &d.action {
            Action::Keep(reasons) => log::info(format_args!(
                "{prefix}keep {} ({when}): {}",
                d.snapshot.id,
                reasons.join(", ")
            )),
            Action::Delete if dry_run => log::info(format_args!(
                "dry run: would delete {} ({when})",
                d.snapshot.id
            )),
            Action::Delete => {}
        }
    }
    let kept = decisions.iter().filter(|d| !d.is_delete()).count();
    let doomed: Vec<&Decision> = decisions.iter().filter(|d| d.is_delete()).collect();
    if dry_run {
        log::info(format_args!(
            "dry run: would keep {kept} and delete {} of {} snapshots; deleted nothing",
            doomed.len(),
            decisions.len()
        ));
        return Ok((decisions, Vec::new()));
    }

    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for d in doomed {
        let id = &d.snapshot.id;
        match api.delete_snapshot(id).await {
            Ok(()) => {
                log::info(format_args!(
                    "deleted snapshot {id} ({})",
                    d.snapshot.start_time
                ));
                deleted.push(id.clone());
            }
            Err(e) => {
                log::warn(format_args!("could not delete snapshot {id}: {e}"));
                failed.push((id.clone(), e));
            }
        }
    }
    log::info(format_args!(
        "retention kept {kept} and deleted {} of {} snapshots",
        deleted.len(),
        decisions.len()
    ));
    if !failed.is_empty() {
        return Err(EbsError::DeleteFailed { failed, deleted });
    }
    Ok((decisions, deleted))
}

/// Static AWS keys, read from etcd by the runner.
#[derive(Debug, Clone)]
pub struct AwsKeys {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

/// [`Ec2Api`] over aws-sdk-ec2.
#[derive(Debug, Clone)]
pub struct AwsEc2 {
    client: aws_sdk_ec2::Client,
    /// Where requests go, for "cannot reach" errors.
    target: String,
}

/// An EC2 client for `region`; `endpoint` overrides the URL (moto in the
/// tests); `credentials` `None` means the default chain (environment,
/// instance profile, ...).
pub async fn aws_ec2(region: &str, endpoint: Option<&str>, credentials: Option<AwsKeys>) -> AwsEc2 {
    use aws_config::timeout::TimeoutConfig;
    use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

    // aws-config's default HTTPS client is compiled out (it pulls in
    // aws-lc, see Cargo.toml): the same rustls + ring client serves the
    // credential providers (IMDS, STS) and EC2.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(180))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .http_client(http.clone())
        .timeout_config(timeouts);
    if let Some(url) = endpoint {
        loader = loader.endpoint_url(url);
    }
    if let Some(keys) = credentials {
        loader = loader.credentials_provider(Credentials::new(
            keys.access_key_id.expose(),
            keys.secret_access_key.expose(),
            None,
            None,
            "unitgen-etcd",
        ));
    }
    let sdk = loader.load().await;
    let config = aws_sdk_ec2::config::Builder::from(&sdk)
        .http_client(http)
        .build();
    AwsEc2 {
        client: aws_sdk_ec2::Client::from_conf(config),
        target: match endpoint {
            Some(url) => url.to_owned(),
            None => format!("EC2 in {region}"),
        },
    }
}

/// Each message of an error's source chain, joined by `: `, skipping a
/// message its cause repeats. (DisplayErrorContext would add a Debug dump.)
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn sdk_error<E>(err: aws_sdk_ec2::error::SdkError<E>, target: &str) -> ApiError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
    match &err {
        SdkError::ServiceError(service) => match err.code() {
            Some(code) => ApiError {
                code: Some(code.to_owned()),
                message: err.message().unwrap_or("(no message)").to_owned(),
            },
            None => ApiError {
                code: None,
                message: format!(
                    "HTTP {} from {target}: {}",
                    service.raw().status().as_u16(),
                    chain(&err)
                ),
            },
        },
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => ApiError {
            code: None,
            message: format!("cannot reach {target}: {}", chain(&err)),
        },
        SdkError::TimeoutError(_) => ApiError {
            code: None,
            message: format!("no answer in time from {target}: {}", chain(&err)),
        },
        _ => ApiError {
            code: None,
            message: chain(&err),
        },
    }
}

fn timestamp(t: &aws_sdk_ec2::primitives::DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

fn tag_map(tags: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

/// CreateSnapshot's output and DescribeSnapshots' items have the same
/// getters but no common type.
macro_rules! snapshot_from {
    ($s:expr) => {{
        let s = $s;
        Snapshot {
            id: s.snapshot_id().unwrap_or_default().to_owned(),
            volume_id: s.volume_id().map(str::to_owned),
            state: SnapshotState::parse(s.state().map_or("", |st| st.as_str())),
            progress: s.progress().map(str::to_owned),
            start_time: s.start_time().and_then(timestamp),
            state_message: s.state_message().map(str::to_owned),
            tags: tag_map(s.tags()),
        }
    }};
}

impl Ec2Api for AwsEc2 {
    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Snapshot, ApiError> {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build();
        let out = self
            .client
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .tag_specifications(spec)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        let snapshot = snapshot_from!(&out);
        if snapshot.id.is_empty() {
            return Err(ApiError {
                code: None,
                message: "EC2 returned no snapshot id".into(),
            });
        }
        Ok(snapshot)
    }

    async fn describe_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, ApiError> {
        let out = self
            .client
            .describe_snapshots()
            .snapshot_ids(snapshot_id)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        out.snapshots()
            .iter()
            .find(|s| s.snapshot_id() == Some(snapshot_id))
            .map(|s| snapshot_from!(s))
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidSnapshot.NotFound",
                    format!("EC2 did not return {snapshot_id}"),
                )
            })
    }

    async fn list_snapshots(
        &self,
        tags: &BTreeMap<String, String>,
        next_token: Option<&str>,
    ) -> Result<Page, ApiError> {
        use aws_sdk_ec2::types::Filter;
        let filters = tags
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        let out = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .max_results(1000)
            .set_next_token(next_token.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(Page {
            snapshots: out.snapshots().iter().map(|s| snapshot_from!(s)).collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), ApiError> {
        self.client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An in-memory EC2 for what moto cannot show: snapshots that stay
    /// pending, fail or vanish for a while, pages, failing deletes, and a
    /// tag filter that does not filter.
    #[derive(Default)]
    struct Fake(Mutex<State>);

    #[derive(Default)]
    struct State {
        snapshots: BTreeMap<String, Stored>,
        /// Every call, in order: `create VOL`, `describe ID`, `list TOKEN`,
        /// `delete ID`.
        calls: Vec<String>,
        created: u32,
        /// The next created snapshot: pending for this many describes ...
        pending_polls: u32,
        /// ... then `error` instead of `completed`.
        ends_in_error: bool,
        /// Describes answering InvalidSnapshot.NotFound first.
        invisible_polls: u32,
        /// A listing leaves out what was created (eventual consistency).
        list_hides_created: bool,
        /// Snapshots per page; 0 is all in one.
        page_size: usize,
        /// Return every snapshot, whatever the filter says.
        ignore_filter: bool,
        /// Always answer this NextToken.
        stuck_token: Option<String>,
        delete_errors: BTreeMap<String, ApiError>,
        create_error: Option<ApiError>,
    }

    struct Stored {
        snapshot: Snapshot,
        polls_left: u32,
        invisible_left: u32,
        ends_in_error: bool,
        created_here: bool,
    }

    const VOL: &str = "vol-0123";
    const JOB: &str = "wallet";
    /// The fake's clock: snapshots created by `run` start here.
    const NOW: &str = "2026-11-20T00:15:00Z";

    impl Fake {
        fn with(f: impl FnOnce(&mut State)) -> Fake {
            let fake = Fake::default();
            f(&mut fake.0.lock().unwrap());
            fake
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        fn calls(&self) -> Vec<String> {
            self.state().calls.clone()
        }

        fn count(&self, prefix: &str) -> usize {
            self.calls()
                .iter()
                .filter(|c| c.starts_with(prefix))
                .count()
        }

        fn ids(&self) -> Vec<String> {
            self.state().snapshots.keys().cloned().collect()
        }
    }

    impl State {
        fn add(
            &mut self,
            id: &str,
            start: &str,
            state: SnapshotState,
            tags: &BTreeMap<String, String>,
        ) {
            let snapshot = Snapshot {
                id: id.to_owned(),
                volume_id: Some(VOL.to_owned()),
                state,
                progress: Some("100%".into()),
                start_time: Some(start.parse().unwrap()),
                state_message: None,
                tags: tags.clone(),
            };
            self.snapshots.insert(
                id.to_owned(),
                Stored {
                    snapshot,
                    polls_left: 0,
                    invisible_left: 0,
                    ends_in_error: false,
                    created_here: false,
                },
            );
        }

        /// `n` completed snapshots of ours, one a day before NOW, ids
        /// `snap-old-01` (newest) to `snap-old-NN`.
        fn add_ours(&mut self, n: u32) {
            let now: Timestamp = NOW.parse().unwrap();
            for i in 1..=n {
                let start = now - jiff::SignedDuration::from_hours(24 * i64::from(i));
                self.add(
                    &format!("snap-old-{i:02}"),
                    &start.to_string(),
                    SnapshotState::Completed,
                    &ownership_tags(JOB, VOL),
                );
            }
        }
    }

    impl Ec2Api for Fake {
        async fn create_snapshot(
            &self,
            volume_id: &str,
            description: &str,
            tags: &BTreeMap<String, String>,
        ) -> Result<Snapshot, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("create {volume_id} {description}"));
            if let Some(e) = st.create_error.clone() {
                return Err(e);
            }
            st.created += 1;
            let id = format!("snap-new-{}", st.created);
            let done = st.pending_polls == 0 && !st.ends_in_error;
            let snapshot = Snapshot {
                id: id.clone(),
                volume_id: Some(volume_id.to_owned()),
                state: if done {
                    SnapshotState::Completed
                } else {
                    SnapshotState::Pending
                },
                progress: Some(if done { "100%" } else { "0%" }.into()),
                start_time: Some(NOW.parse().unwrap()),
                state_message: None,
                tags: tags.clone(),
            };
            let stored = Stored {
                snapshot: snapshot.clone(),
                polls_left: st.pending_polls,
                invisible_left: st.invisible_polls,
                ends_in_error: st.ends_in_error,
                created_here: true,
            };
            st.snapshots.insert(id, stored);
            Ok(snapshot)
        }

        async fn describe_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("describe {snapshot_id}"));
            let Some(s) = st.snapshots.get_mut(snapshot_id) else {
                return Err(ApiError::new(
                    "InvalidSnapshot.NotFound",
                    "no such snapshot",
                ));
            };
            if s.invisible_left > 0 {
                s.invisible_left -= 1;
                return Err(ApiError::new(
                    "InvalidSnapshot.NotFound",
                    format!("The snapshot '{snapshot_id}' does not exist."),
                ));
            }
            if s.polls_left > 0 {
                s.polls_left -= 1;
                s.snapshot.progress = Some(format!("{}%", 90 / (s.polls_left + 1)));
            } else if s.ends_in_error {
                s.snapshot.state = SnapshotState::Error;
                s.snapshot.state_message = Some("volume went away".into());
            } else {
                s.snapshot.state = SnapshotState::Completed;
                s.snapshot.progress = Some("100%".into());
            }
            Ok(s.snapshot.clone())
        }

        async fn list_snapshots(
            &self,
            tags: &BTreeMap<String, String>,
            next_token: Option<&str>,
        ) -> Result<Page, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("list {}", next_token.unwrap_or("-")));
            let matching: Vec<Snapshot> = st
                .snapshots
                .values()
                .filter(|s| !(st.list_hides_created && s.created_here))
                .filter(|s| st.ignore_filter || owned(&s.snapshot, tags))
                .map(|s| s.snapshot.clone())
                .collect();
            if let Some(token) = &st.stuck_token {
                return Ok(Page {
                    snapshots: matching,
                    next_token: Some(token.clone()),
                });
            }
            let start: usize = next_token.map_or(0, |t| t.parse().unwrap());
            let size = if st.page_size == 0 {
                usize::MAX
            } else {
                st.page_size
            };
            let end = start.saturating_add(size).min(matching.len());
            Ok(Page {
                snapshots: matching[start..end].to_vec(),
                next_token: (end < matching.len()).then(|| end.to_string()),
            })
        }

        async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), ApiError> {
            let mut st = self.state();
            st.calls.push(format!("delete {snapshot_id}"));
            if let Some(e) = st.delete_errors.get(snapshot_id) {
                return Err(e.clone());
            }
            st.snapshots
                .remove(snapshot_id)
                .map(|_| ())
                .ok_or_else(|| ApiError::new("InvalidSnapshot.NotFound", "gone"))
        }
    }

    fn job(wait: Option<&str>, retention: Option<RetentionPolicy>) -> SnapshotJob {
        SnapshotJob {
            volume_id: VOL.into(),
            region: "us-east-1".into(),
            credentials: crate::job::RunnerCredentials::DefaultChain,
            tags: BTreeMap::from([("app".to_owned(), "bitcoind".to_owned())]),
            wait: wait.map(str::to_owned),
            retention,
            endpoint: None,
        }
    }

    fn keep_last(n: u32) -> Option<RetentionPolicy> {
        Some(RetentionPolicy {
            keep_last: Some(n),
            ..RetentionPolicy::default()
        })
    }

    fn fast() -> Options {
        Options {
            dry_run: false,
            poll_interval: Duration::from_millis(2),
        }
    }

    fn dry() -> Options {
        Options {
            dry_run: true,
            ..fast()
        }
    }

    fn kept_ids(outcome: &Outcome) -> Vec<&str> {
        outcome
            .decisions
            .iter()
            .filter(|d| !d.is_delete())
            .map(|d| d.snapshot.id.as_str())
            .collect()
    }

    #[tokio::test]
    async fn creates_a_tagged_snapshot_and_polls_until_completed() {
        let fake = Fake::with(|s| s.pending_polls = 3);
        let mut j = job(Some("10min"), None);
        // The renderer refuses `unitgen:` keys; even so, ours win.
        j.tags.insert(TAG_JOB.into(), "forged".into());
        let out = run(&fake, JOB, &j, &fast()).await.unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert!(out.decisions.is_empty());
        // Pending on three describes, completed on the fourth.
        assert_eq!(fake.count("describe snap-new-1"), 4);
        assert_eq!(
            fake.calls()[0],
            format!("create {VOL} unitgen: {JOB} {VOL}")
        );
        let st = fake.state();
        let tags = &st.snapshots["snap-new-1"].snapshot.tags;
        assert_eq!(
            show_tags(tags),
            format!(
                "app=bitcoind, unitgen:job={JOB}, unitgen:managed-by=unitgen, unitgen:volume={VOL}"
            )
        );
    }

    #[test]
    fn progress_lines_show_state_percent_and_time() {
        let s = Snapshot {
            id: "snap-1".into(),
            volume_id: None,
            state: SnapshotState::Pending,
            progress: Some("42%".into()),
            start_time: None,
            state_message: None,
            tags: BTreeMap::new(),
        };
        assert_eq!(
            progress_line(&s, VOL, Duration::from_secs(90)),
            "snapshot snap-1 of vol-0123: pending, 42% after 1m 30s"
        );
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(3723)), "1h 2m 3s");
    }

    #[tokio::test]
    async fn a_snapshot_not_yet_visible_is_polled_again() {
        let fake = Fake::with(|s| {
            s.invisible_polls = 2;
            s.pending_polls = 1;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert_eq!(fake.count("describe"), 4);
    }

    #[tokio::test]
    async fn an_errored_snapshot_fails_the_step_and_skips_retention() {
        let fake = Fake::with(|s| {
            s.add_ours(3);
            s.pending_polls = 1;
            s.ends_in_error = true;
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        assert_eq!(
            err.to_string(),
            "snapshot snap-new-1 of vol-0123 failed (state `error`): volume went away"
        );
        assert_eq!(fake.count("list"), 0);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn a_wait_timeout_names_the_snapshot_and_the_limit() {
        let fake = Fake::with(|s| {
            s.add_ours(3);
            s.pending_polls = u32::MAX;
        });
        let started = std::time::Instant::now();
        let err = run(
            &fake,
            JOB,
            &job(Some("300ms"), keep_last(1)),
            &Options {
                poll_interval: Duration::from_millis(200),
                ..fast()
            },
        )
        .await
        .unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(matches!(err, EbsError::WaitTimeout { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("snapshot snap-new-1 of vol-0123 was still pending ("),
            "{text}"
        );
        assert!(text.ends_with("after 300ms (the job's `wait`)"), "{text}");
        // 200 + 100 ms: the last nap ends at the deadline, for a last look.
        assert_eq!(fake.count("describe"), 2);
        assert_eq!(fake.count("list"), 0);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn every_page_is_read_and_the_newest_completed_kept() {
        let fake = Fake::with(|s| {
            s.add_ours(7);
            s.page_size = 2;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(2)), &fast())
            .await
            .unwrap();
        // 8 snapshots in pages of 2: tokens -, 2, 4, 6.
        assert_eq!(
            fake.calls()
                .iter()
                .filter(|c| c.starts_with("list"))
                .collect::<Vec<_>>(),
            ["list -", "list 2", "list 4", "list 6"]
        );
        assert_eq!(out.decisions.len(), 8);
        assert_eq!(kept_ids(&out), ["snap-new-1", "snap-old-01"]);
        assert_eq!(fake.ids(), ["snap-new-1", "snap-old-01"]);
        assert_eq!(out.deleted.len(), 6);
    }

    #[tokio::test]
    async fn a_dry_run_over_pages_keeps_the_newest_even_on_the_last_page() {
        // Ids sort the newest snapshot onto the last page.
        let fake = Fake::with(|s| {
            s.page_size = 2;
            let tags = ownership_tags(JOB, VOL);
            s.add(
                "snap-a",
                "2026-11-01T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-b",
                "2026-11-02T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-c",
                "2026-11-03T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-d",
                "2026-11-04T00:00:00Z",
                SnapshotState::Pending,
                &tags,
            );
            s.add(
                "snap-e",
                "2026-11-05T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &dry())
            .await
            .unwrap();
        assert_eq!(out.created, None);
        assert!(out.deleted.is_empty());
        assert_eq!(out.to_delete(), ["snap-c", "snap-b", "snap-a"]);
        assert_eq!(kept_ids(&out), ["snap-e", "snap-d"]);
        // Nothing created, nothing deleted; only listed.
        assert_eq!(fake.calls(), ["list -", "list 2", "list 4"]);
        assert_eq!(fake.ids().len(), 5);
    }

    #[tokio::test]
    async fn a_failed_delete_does_not_stop_the_others_but_fails_the_step() {
        let fake = Fake::with(|s| {
            s.add_ours(5);
            s.delete_errors.insert(
                "snap-old-03".into(),
                ApiError::new(
                    "InvalidSnapshot.InUse",
                    "The snapshot snap-old-03 is currently in use by ami-1",
                ),
            );
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(2)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        assert_eq!(
            err.to_string(),
            "retention could not delete 1 of the 4 snapshots it chose: snap-old-03 \
             (InvalidSnapshot.InUse: The snapshot snap-old-03 is currently in use by ami-1)"
        );
        let EbsError::DeleteFailed { deleted, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(deleted, &["snap-old-02", "snap-old-04", "snap-old-05"]);
        // The one after the failure was still tried and deleted.
        assert_eq!(fake.ids(), ["snap-new-1", "snap-old-01", "snap-old-03"]);
    }

    #[tokio::test]
    async fn snapshots_a_wrong_filter_returns_are_left_alone() {
        let fake = Fake::with(|s| {
            s.ignore_filter = true;
            s.add_ours(2);
            let old = "2020-01-01T00:00:00Z";
            let mut tags = ownership_tags(JOB, VOL);
            tags.remove(TAG_MANAGED_BY);
            s.add("foreign-no-owner", old, SnapshotState::Completed, &tags);
            s.add(
                "foreign-other-volume",
                old,
                SnapshotState::Completed,
                &ownership_tags(JOB, "vol-other"),
            );
            s.add(
                "foreign-other-job",
                old,
                SnapshotState::Completed,
                &ownership_tags("other", VOL),
            );
            s.add(
                "foreign-job-prefix",
                old,
                SnapshotState::Completed,
                &ownership_tags("wallet2", VOL),
            );
            let mut tags = ownership_tags(JOB, VOL);
            tags.remove(TAG_JOB);
            s.add("foreign-no-job", old, SnapshotState::Completed, &tags);
            let mut tags = ownership_tags(JOB, VOL);
            tags.insert(TAG_MANAGED_BY.into(), "someone-else".into());
            s.add("foreign-other-owner", old, SnapshotState::Completed, &tags);
            s.add(
                "foreign-untagged",
                old,
                SnapshotState::Completed,
                &BTreeMap::new(),
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.deleted, ["snap-old-01", "snap-old-02"]);
        assert_eq!(out.decisions.len(), 3);
        let left = fake.ids();
        assert_eq!(
            left.iter().filter(|id| id.starts_with("foreign-")).count(),
            7
        );
        assert!(left.contains(&"snap-new-1".to_owned()));
    }

    #[tokio::test]
    async fn pending_and_errored_snapshots_are_never_deleted() {
        let fake = Fake::with(|s| {
            let tags = ownership_tags(JOB, VOL);
            s.add(
                "old-pending",
                "2020-01-01T00:00:00Z",
                SnapshotState::Pending,
                &tags,
            );
            s.add(
                "old-error",
                "2020-01-02T00:00:00Z",
                SnapshotState::Error,
                &tags,
            );
            s.add(
                "old-done",
                "2020-01-03T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.deleted, ["old-done"]);
        assert_eq!(fake.ids(), ["old-error", "old-pending", "snap-new-1"]);
    }

    #[tokio::test]
    async fn the_new_snapshot_counts_even_when_the_listing_lags() {
        let fake = Fake::with(|s| {
            s.add_ours(2);
            s.list_hides_created = true;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(kept_ids(&out), ["snap-new-1"]);
        assert_eq!(fake.ids(), ["snap-new-1"]);
    }

    #[tokio::test]
    async fn the_new_snapshot_is_kept_even_behind_a_future_dated_one() {
        let fake = Fake::with(|s| {
            s.add(
                "snap-future",
                "2030-01-01T00:00:00Z",
                SnapshotState::Completed,
                &ownership_tags(JOB, VOL),
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert!(out.deleted.is_empty());
        assert_eq!(
            out.decisions[1].action,
            Action::Keep(vec!["created by this run".into()])
        );
    }

    #[tokio::test]
    async fn a_repeated_next_token_stops_the_listing() {
        let fake = Fake::with(|s| {
            s.add_ours(2);
            s.stuck_token = Some("again".into());
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("the same NextToken twice"),
            "{err}"
        );
        assert_eq!(fake.count("list"), 2);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn without_wait_it_returns_after_creating() {
        let fake = Fake::with(|s| s.pending_polls = 5);
        let out = run(&fake, JOB, &job(None, None), &fast()).await.unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert_eq!(fake.calls().len(), 1);
    }

    #[tokio::test]
    async fn a_dry_run_without_retention_calls_nothing() {
        let fake = Fake::default();
        let out = run(&fake, JOB, &job(Some("1min"), None), &dry())
            .await
            .unwrap();
        assert_eq!(out, Outcome::default());
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn config_errors_are_reported_before_any_call() {
        let empty = Some(RetentionPolicy {
            keep_last: Some(0),
            ..RetentionPolicy::default()
        });
        let mut no_volume = job(Some("1min"), None);
        no_volume.volume_id = String::new();
        let cases = [
            (JOB, job(None, keep_last(3)), "`retention` needs `wait`"),
            (
                JOB,
                job(Some("1min"), empty.clone()),
                "empty retention policy",
            ),
            (JOB, job(None, empty), "`retention` needs `wait`"),
            (
                JOB,
                job(Some("10 parsecs"), None),
                "`wait`: `10 parsecs` is not a time span",
            ),
            ("", job(Some("1min"), None), "the job name is empty"),
            (JOB, no_volume, "`volume_id` is empty"),
        ];
        for (name, j, want) in cases {
            for opts in [fast(), dry()] {
                let fake = Fake::default();
                let err = run(&fake, name, &j, &opts).await.unwrap_err();
                assert!(err.is_config(), "{err:?}");
                assert!(
                    err.to_string().starts_with("invalid ebs_snapshot job: "),
                    "{err}"
                );
                assert!(err.to_string().contains(want), "{err} lacks {want}");
                assert!(fake.calls().is_empty(), "{want}: {:?}", fake.calls());
            }
        }
    }

    #[tokio::test]
    async fn auth_failures_hint_at_the_credentials() {
        let fake = Fake::with(|s| {
            s.create_error = Some(ApiError::new(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ));
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        let text = err.to_string();
        assert!(
            text.starts_with(
                "CreateSnapshot of vol-0123 failed: AuthFailure: AWS was not able to validate \
                 the provided access credentials (check the AWS credentials: the etcd keys"
            ),
            "{text}"
        );
        assert!(ApiError::new("UnauthorizedOperation", "no").is_auth());
        assert!(ApiError::new("InvalidClientTokenId", "no").is_auth());
        let other = ApiError::new(
            "InvalidVolume.NotFound",
            "The volume 'vol-0123' does not exist.",
        );
        assert!(!other.is_auth());
        assert_eq!(
            other.to_string(),
            "InvalidVolume.NotFound: The volume 'vol-0123' does not exist."
        );
    }

    #[test]
    fn keys_never_show_in_debug() {
        let keys = AwsKeys {
            access_key_id: SecretString::new("AKIDSECRET"),
            secret_access_key: SecretString::new("hunter2"),
        };
        let text = format!("{keys:?}");
        assert!(
            !text.contains("AKIDSECRET") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
