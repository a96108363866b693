//! Reading a job's secrets from etcd, all of them before any step runs, so
//! a missing key stops the job before it changes anything. Which keys a
//! step needs is the contract's answer ([`RunnerStep::secrets`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{Failure, log};
use crate::contract::RunnerStep;
use crate::contract::aws::{ACCESS_KEY_ID, Credentials, SECRET_ACCESS_KEY};
use crate::contract::invocation as flag;
use crate::contract::secret::SecretString;
use crate::etcd::{Etcd, EtcdError, Settings};

/// Static AWS keys, read from etcd.
#[derive(Debug, Clone)]
pub struct AwsKeys {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

/// The job's secrets, by etcd key.
#[derive(Default)]
pub struct Secrets(BTreeMap<String, SecretString>);

impl Secrets {
    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.0.get(key)
    }

    /// Static keys for `credentials`, or `None` for the default chain.
    pub fn aws(&self, credentials: &Credentials) -> Option<AwsKeys> {
        match credentials {
            Credentials::DefaultChain => None,
            Credentials::EtcdPrefix(prefix) => Some(AwsKeys {
                access_key_id: self.get(&format!("{prefix}{ACCESS_KEY_ID}"))?.clone(),
                secret_access_key: self.get(&format!("{prefix}{SECRET_ACCESS_KEY}"))?.clone(),
            }),
        }
    }
}

/// How the runner reaches etcd: the flags the generator writes from the
/// spec's `etcd.runner` (contract/invocation.rs), shared by every runner
/// command that reads a secret.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EtcdFlags {
    /// etcd endpoint for secrets; repeat for several
    #[arg(long = flag::ETCD_ENDPOINT, value_name = "URL")]
    pub endpoints: Vec<String>,
    /// CA certificate (PEM) for https:// etcd endpoints
    #[arg(long = flag::ETCD_CA_FILE, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// etcd client certificate (PEM)
    #[arg(long = flag::ETCD_CERT_FILE, value_name = "FILE")]
    pub cert_file: Option<PathBuf>,
    /// etcd client key (PEM)
    #[arg(long = flag::ETCD_KEY_FILE, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// etcd user; the password comes from UNITGEN_ETCD_PASSWORD or --etcd-password-file
    #[arg(long = flag::ETCD_USER, value_name = "USER")]
    pub user: Option<String>,
    /// File holding the etcd password (mounted into the container)
    #[arg(long = flag::ETCD_PASSWORD_FILE, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// etcd connect and request timeout
    #[arg(long = flag::ETCD_TIMEOUT, value_name = "SPAN", default_value = "10s")]
    pub timeout: String,
}

impl EtcdFlags {
    pub fn settings(&self) -> Result<Settings, EtcdError> {
        let timeout = crate::contract::timespan::parse(&self.timeout)
            .map_err(|e| EtcdError::Config(format!("--etcd-timeout {e}")))?;
        Ok(Settings {
            // Errors then name these flags and the spec's `etcd.runner`.
            caller: crate::etcd::Caller::Runner,
            endpoints: self.endpoints.clone(),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            user: self.user.clone(),
            password: crate::etcd::password(self.password_file.as_deref())?,
            timeout: Some(timeout.unwrap_or(Duration::from_secs(3600))),
        })
    }

    /// Reads `keys` (each once, in order); nothing is connected when there
    /// are none. Returns the values and the endpoints that answered.
    pub async fn read(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Result<(BTreeMap<String, SecretString>, Option<String>), EtcdError> {
        let mut out = BTreeMap::new();
        let mut keys = keys.into_iter().peekable();
        if keys.peek().is_none() {
            return Ok((out, None));
        }
        let etcd = Etcd::connect(&self.settings()?).await?;
        for key in keys {
            if let std::collections::btree_map::Entry::Vacant(slot) = out.entry(key) {
                let value = etcd.secret(slot.key()).await?;
                slot.insert(value);
            }
        }
        Ok((out, Some(etcd.endpoints().to_owned())))
    }
}

/// Every secret the steps need, before any step runs.
pub async fn read(flags: &EtcdFlags, steps: &[RunnerStep]) -> Result<Secrets, Failure> {
    let keys = steps.iter().flat_map(RunnerStep::secrets).map(|s| s.key);
    let (values, from) = flags.read(keys).await.map_err(etcd_failure)?;
    if let Some(endpoints) = from {
        log::info(format!("read the job's secrets from etcd at {endpoints}"));
    }
    Ok(Secrets(values))
}

fn etcd_failure(e: EtcdError) -> Failure {
    match e {
        EtcdError::Missing { .. } | EtcdError::NotUtf8 { .. } | EtcdError::Config(_) => {
            Failure::Config(format!("cannot read secrets: {e}"))
        }
        other => Failure::Step(format!("cannot read secrets: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
