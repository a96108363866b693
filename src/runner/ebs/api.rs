//! The EC2 calls the snapshot step makes, behind a trait: the AWS SDK in
//! production (`aws.rs`) and with moto in the integration tests, a fake in
//! the unit tests for what moto cannot show (pending states, pagination,
//! failures).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;

use jiff::Timestamp;

use crate::runner::retention::SnapshotState;

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
    /// No answer came (a timeout, a dropped connection, a server error):
    /// the request may have been carried out all the same.
    pub unanswered: bool,
}

impl ApiError {
    /// EC2 answered with an error code.
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: Some(code.to_owned()),
            message: message.into(),
            unanswered: false,
        }
    }

    /// No usable answer: `message` says what happened.
    pub fn other(message: impl Into<String>) -> ApiError {
        ApiError {
            code: None,
            message: message.into(),
            unanswered: false,
        }
    }

    /// The request went out and no answer came back.
    pub fn unanswered(message: impl Into<String>) -> ApiError {
        ApiError {
            unanswered: true,
            ..ApiError::other(message)
        }
    }

    /// The credentials were refused (or lack a permission).
    pub fn is_auth(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| AUTH_CODES.contains(&c))
    }

    pub(crate) fn is_snapshot_not_found(&self) -> bool {
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
