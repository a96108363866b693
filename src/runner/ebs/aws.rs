//! [`Ec2Api`] over aws-sdk-ec2.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use super::api::{ApiError, Ec2Api, Page, Snapshot};
use crate::diag::chain;
use crate::runner::retention::SnapshotState;
pub use crate::runner::secrets::AwsKeys;

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
pub async fn aws_ec2(
    region: &str,
    endpoint: Option<&str>,
    credentials: Option<AwsKeys>,
    request_timeout: Duration,
) -> AwsEc2 {
    use aws_config::timeout::TimeoutConfig;

    // The step's `request_timeout` bounds each attempt; the SDK's standard
    // retries (3 attempts) bound the whole call. CreateSnapshot is never
    // retried by the SDK (see `create_snapshot`).
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        .operation_attempt_timeout(request_timeout)
        .operation_timeout(request_timeout * 3)
        .build();
    let sdk =
        crate::runner::aws::sdk_config(region, endpoint, credentials.as_ref(), timeouts, None)
            .await;
    let config = aws_sdk_ec2::config::Builder::from(&sdk).build();
    AwsEc2 {
        client: aws_sdk_ec2::Client::from_conf(config),
        target: match endpoint {
            Some(url) => url.to_owned(),
            None => format!("EC2 in {region}"),
        },
    }
}

fn sdk_error<E>(err: aws_sdk_ec2::error::SdkError<E>, target: &str) -> ApiError
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let mut e = match err.code() {
                Some(code) => ApiError::new(code, err.message().unwrap_or("(no message)")),
                None => ApiError::other(format!("HTTP {status} from {target}: {}", chain(&err))),
            };
            // A server error says nothing about whether the work was done.
            e.unanswered = status >= 500;
            e
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => {
            ApiError::unanswered(format!("cannot reach {target}: {}", chain(&err)))
        }
        SdkError::TimeoutError(_) => ApiError::unanswered(format!(
            "no answer within the step's `request_timeout` from {target}"
        )),
        SdkError::ResponseError(_) => {
            ApiError::unanswered(format!("unreadable answer from {target}: {}", chain(&err)))
        }
        _ => ApiError::other(chain(&err)),
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
        // CreateSnapshot takes no idempotency token: a retry after a lost
        // answer would make a second snapshot. The step looks the first up
        // by its run tag instead (`ebs::create`), so the SDK must not retry.
        let no_retries = aws_sdk_ec2::config::Builder::default()
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled());
        let out = self
            .client
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .tag_specifications(spec)
            .customize()
            .config_override(no_retries)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        let snapshot = snapshot_from!(&out);
        if snapshot.id.is_empty() {
            return Err(ApiError::other("EC2 returned no snapshot id"));
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
