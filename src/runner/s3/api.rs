//! The S3 calls the `s3_sync` and `s3_lifecycle` steps make, on one
//! bucket, behind a trait: the AWS SDK in production (`aws.rs`) and with
//! moto in the integration tests; a fake in the unit tests for what moto
//! cannot show (a part failing in the middle of a multipart upload,
//! throttling, listings in pages).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;

pub use aws_sdk_s3::types::LifecycleRule;
pub use aws_sdk_s3::types::TransitionDefaultMinimumObjectSize;

/// S3 error codes that mean the credentials, not the request, are wrong.
const AUTH_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AllAccessDisabled",
];

/// Codes S3 answers when the bucket lives in another region than the
/// client signs for.
const REGION_CODES: &[&str] = &[
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
];

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<Object>,
    pub next_token: Option<String>,
}

/// What HeadObject tells: the size and the user metadata (keys without
/// their `x-amz-meta-` prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub size: u64,
    pub metadata: BTreeMap<String, String>,
}

/// An upload's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Read into memory already (small files: one read, no second open).
    Bytes(Vec<u8>),
    /// `length` bytes of a file from `offset`, streamed by the client as it
    /// sends them, so memory stays bounded whatever the file's size; a
    /// retry reads them again.
    File {
        path: PathBuf,
        offset: u64,
        length: u64,
    },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File { length, .. } => *length,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A bucket's lifecycle configuration as S3 returned it. Rules are kept as
/// the SDK's own type so that rules unitgen does not own go back exactly
/// as they came, every field included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifecycle {
    pub rules: Vec<LifecycleRule>,
    /// A bucket-wide setting that PutBucketLifecycleConfiguration resets to
    /// S3's default unless it is sent again.
    pub min_object_size: Option<TransitionDefaultMinimumObjectSize>,
}

/// The S3 calls, on the step's bucket. Every method is one request (the
/// SDK retries throttling and 5xx answers within it).
pub trait S3Api: Send + Sync + 'static {
    /// One page of ListObjectsV2 under `prefix`.
    fn list_objects(
        &self,
        prefix: &str,
        token: Option<&str>,
    ) -> impl Future<Output = Result<Page, ApiError>> + Send;

    /// HeadObject; `None` when there is no such object.
    fn head_object(&self, key: &str)
    -> impl Future<Output = Result<Option<Head>, ApiError>> + Send;

    fn put_object(
        &self,
        key: &str,
        body: Body,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// CreateMultipartUpload; returns the upload id.
    fn create_multipart(
        &self,
        key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// UploadPart; returns the part's ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// CompleteMultipartUpload of `(part number, ETag)`s, in order.
    fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    fn abort_multipart(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Whether a multipart upload is still open (ListParts; S3 answers
    /// NoSuchUpload once it is completed or aborted).
    fn upload_open(
        &self,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<bool, ApiError>> + Send;

    /// DeleteObjects of at most 1,000 keys; returns the keys S3 could not
    /// delete, with why.
    fn delete_objects(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<(String, ApiError)>, ApiError>> + Send;

    /// GetBucketLifecycleConfiguration; `None` when the bucket has none.
    fn get_lifecycle(&self) -> impl Future<Output = Result<Option<Lifecycle>, ApiError>> + Send;

    /// PutBucketLifecycleConfiguration: replaces the whole configuration.
    fn put_lifecycle(
        &self,
        config: &Lifecycle,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;
}

/// An S3 call that failed: the S3 error code when S3 answered, and a
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

    /// Not an answer from S3 (a local file, a connection).
    pub fn other(message: impl Into<String>) -> ApiError {
        ApiError {
            code: None,
            message: message.into(),
        }
    }

    /// The credentials were refused (or lack a permission).
    pub fn is_auth(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| AUTH_CODES.contains(&c))
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        let code = self.code.as_deref().unwrap_or("");
        if self.is_auth() {
            f.write_str(
                " (check the AWS credentials: the etcd keys `access-key-id` and \
                 `secret-access-key` under the step's `credentials.etcd_prefix`, or, for \
                 `default_chain`, the instance profile and its IAM policy)",
            )?;
        } else if REGION_CODES.contains(&code) {
            f.write_str(" (the bucket may be in another region than the step's `region`)")?;
        } else if code == "NoSuchBucket" {
            f.write_str(" (create the bucket first; unitgen never creates buckets)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}
