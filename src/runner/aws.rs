//! What the EC2 and S3 clients share: the region, an endpoint override,
//! keys from etcd or the default credential chain, and one HTTPS client.

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

pub use crate::runner::secrets::AwsKeys;

/// The settings one step's client is built from: `endpoint` overrides the
/// URL (moto in the tests, an S3-compatible store); `credentials` `None`
/// means the default chain (environment, instance profile, ...).
pub async fn sdk_config(
    region: &str,
    endpoint: Option<&str>,
    credentials: Option<&AwsKeys>,
    timeouts: TimeoutConfig,
    retry: Option<RetryConfig>,
) -> SdkConfig {
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;

    // aws-config's default HTTPS client is compiled out (it pulls in
    // aws-lc, see Cargo.toml): the same rustls + ring client serves the
    // credential providers (IMDS, STS) and the service.
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .http_client(http)
        .timeout_config(timeouts);
    if let Some(retry) = retry {
        loader = loader.retry_config(retry);
    }
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
    // A service's config built `from` this one takes its HTTP client too.
    loader.load().await
}
