//! [`S3Api`] over aws-sdk-s3.
//!
//! Two traps of S3-compatible stores (MinIO, Ceph, moto, ...) are handled
//! for a custom `endpoint`:
//! - addressing: virtual-hosted style (`bucket.host`) needs wildcard DNS the
//!   store rarely has, so requests go path-style (`host/bucket/key`);
//! - checksums: since early 2025 the SDK adds a CRC32 checksum to every
//!   upload it can (sent as an `aws-chunked` trailer for streamed bodies),
//!   which several stores refuse; checksums are then computed and checked
//!   only where an operation requires one. See the SDK's "data integrity"
//!   notes: <https://docs.aws.amazon.com/sdkref/latest/guide/feature-dataintegrity.html>.
//!
//! Against AWS itself both stay at the SDK's defaults.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, Length};

use super::api::{ApiError, Body, Head, Lifecycle, Object, Page, S3Api};
use crate::diag::chain;
pub use crate::runner::secrets::AwsKeys;

/// Bytes the SDK reads from a file per chunk while sending it.
const READ_BUFFER: usize = 256 * 1024;

/// [`S3Api`] over aws-sdk-s3, for one bucket.
#[derive(Debug, Clone)]
pub struct AwsS3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Where requests go, for "cannot reach" errors.
    target: String,
}

/// An S3 client for `bucket` in `region`; `endpoint` overrides the URL (an
/// S3-compatible store, moto in the tests); `credentials` `None` means the
/// default chain (environment, instance profile, ...).
pub async fn aws_s3(
    bucket: &str,
    region: &str,
    endpoint: Option<&str>,
    credentials: Option<AwsKeys>,
) -> AwsS3 {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

    // An attempt carries up to a 16 MiB object or an 8 MiB part, sharing
    // the link with 7 others: it gets minutes, not seconds. (The client's
    // read timeout would not help: it runs from the first byte sent to the
    // answer, so it would cut slow uploads, not only dead servers.)
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(900))
        .build();
    // S3 answers SlowDown (503) under load: more attempts, with the
    // standard mode's exponential backoff and jitter.
    let retry = RetryConfig::standard().with_max_attempts(5);
    let sdk = crate::runner::aws::sdk_config(
        region,
        endpoint,
        credentials.as_ref(),
        timeouts,
        Some(retry),
    )
    .await;
    let mut config = aws_sdk_s3::config::Builder::from(&sdk);
    if endpoint.is_some() {
        config = config
            .force_path_style(true)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    AwsS3 {
        client: aws_sdk_s3::Client::from_conf(config.build()),
        bucket: bucket.to_owned(),
        target: match endpoint {
            Some(url) => url.to_owned(),
            None => format!("S3 in {region}"),
        },
    }
}

fn sdk_error<E>(err: aws_sdk_s3::error::SdkError<E>, target: &str) -> ApiError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
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
        _ => ApiError::other(chain(&err)),
    }
}

async fn byte_stream(body: Body) -> Result<ByteStream, ApiError> {
    match body {
        Body::Bytes(bytes) => Ok(ByteStream::from(bytes)),
        Body::File {
            path,
            offset,
            length,
        } => ByteStream::read_from()
            .path(&path)
            .offset(offset)
            .length(Length::Exact(length))
            .buffer_size(READ_BUFFER)
            .build()
            .await
            .map_err(|e| ApiError::other(format!("cannot read {}: {}", path.display(), chain(&e)))),
    }
}

fn metadata_map(metadata: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!metadata.is_empty()).then(|| metadata.clone().into_iter().collect())
}

fn size(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

impl S3Api for AwsS3 {
    async fn list_objects(&self, prefix: &str, token: Option<&str>) -> Result<Page, ApiError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_continuation_token(token.map(str::to_owned))
            .max_keys(1000)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(Page {
            objects: out
                .contents()
                .iter()
                .filter_map(|o| {
                    Some(Object {
                        key: o.key()?.to_owned(),
                        size: size(o.size()),
                    })
                })
                .collect(),
            next_token: if out.is_truncated() == Some(true) {
                out.next_continuation_token().map(str::to_owned)
            } else {
                None
            },
        })
    }

    async fn head_object(&self, key: &str) -> Result<Option<Head>, ApiError> {
        use aws_sdk_s3::error::SdkError;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Head {
                size: size(out.content_length()),
                metadata: out
                    .metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(sdk_error(e, &self.target)),
        }
    }

    async fn put_object(
        &self,
        key: &str,
        body: Body,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        let length = body.len();
        let stream = byte_stream(body).await?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length as i64)
            .set_metadata(metadata_map(metadata))
            .body(stream)
            // The SDK would hash an in-memory body for the signature (a
            // streamed one goes unsigned anyway): the content's integrity is
            // TLS's and, on AWS, the SDK's CRC32's.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(())
    }

    async fn create_multipart(
        &self,
        key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, ApiError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(metadata_map(metadata))
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::other("S3 returned no upload id"))
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
    ) -> Result<String, ApiError> {
        let length = body.len();
        let stream = byte_stream(body).await?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(length as i64)
            .body(stream)
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        out.e_tag()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::other(format!("S3 returned no ETag for part {part_number}")))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ApiError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ApiError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(())
    }

    async fn upload_open(&self, key: &str, upload_id: &str) -> Result<bool, ApiError> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        match self
            .client
            .list_parts()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .max_parts(1)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("NoSuchUpload") => Ok(false),
            Err(e) => Err(sdk_error(e, &self.target)),
        }
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, ApiError)>, ApiError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::other(chain(&e)))?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| ApiError::other(chain(&e)))?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(out
            .errors()
            .iter()
            .map(|e| {
                (
                    e.key().unwrap_or("").to_owned(),
                    ApiError {
                        code: e.code().map(str::to_owned),
                        message: e.message().unwrap_or("(no message)").to_owned(),
                    },
                )
            })
            .collect())
    }

    async fn get_lifecycle(&self) -> Result<Option<Lifecycle>, ApiError> {
        use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
        match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Lifecycle {
                rules: out.rules().to_vec(),
                min_object_size: out.transition_default_minimum_object_size().cloned(),
            })),
            Err(e @ SdkError::ServiceError(_))
                if e.code() == Some("NoSuchLifecycleConfiguration") =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error(e, &self.target)),
        }
    }

    async fn put_lifecycle(&self, config: &Lifecycle) -> Result<(), ApiError> {
        use aws_sdk_s3::types::BucketLifecycleConfiguration;
        let body = BucketLifecycleConfiguration::builder()
            .set_rules(Some(config.rules.clone()))
            .build()
            .map_err(|e| ApiError::other(chain(&e)))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(body)
            .set_transition_default_minimum_object_size(config.min_object_size.clone())
            .send()
            .await
            .map_err(|e| sdk_error(e, &self.target))?;
        Ok(())
    }
}
