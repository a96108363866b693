//! Reading a job's secrets from etcd, all of them before any step runs, so
//! a missing key stops the job before it changes anything. Which keys a
//! step needs is the contract's answer ([`RunnerStep::secrets`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Args, Failure, log};
use crate::contract::RunnerStep;
use crate::contract::aws::{ACCESS_KEY_ID, Credentials, SECRET_ACCESS_KEY};
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

pub(super) fn settings(args: &Args) -> Result<Settings, Failure> {
    let timeout = crate::contract::timespan::parse(&args.etcd_timeout)
        .map_err(|e| Failure::Config(format!("--etcd-timeout {e}")))?;
    let password =
        crate::etcd::password(args.etcd_password_file.as_deref()).map_err(etcd_failure)?;
    Ok(Settings {
        endpoints: args.etcd_endpoints.clone(),
        ca_file: args.etcd_ca_file.clone(),
        cert_file: args.etcd_cert_file.clone(),
        key_file: args.etcd_key_file.clone(),
        user: args.etcd_user.clone(),
        password,
        timeout: Some(timeout.unwrap_or(Duration::from_secs(3600))),
    })
}

/// Every secret the steps need; nothing is connected when none is.
pub async fn read(args: &Args, steps: &[RunnerStep]) -> Result<Secrets, Failure> {
    let keys: Vec<String> = steps
        .iter()
        .flat_map(RunnerStep::secrets)
        .map(|s| s.key)
        .collect();
    let mut secrets = Secrets::default();
    if keys.is_empty() {
        return Ok(secrets);
    }
    let etcd = Etcd::connect(&settings(args)?)
        .await
        .map_err(etcd_failure)?;
    for key in keys {
        let value = etcd.secret(&key).await.map_err(etcd_failure)?;
        secrets.0.insert(key, value);
    }
    log::info(format!(
        "read the job's secrets from etcd at {}",
        etcd.endpoints()
    ));
    Ok(secrets)
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
