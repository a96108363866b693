//! AWS credentials for a step: the SDK's default chain, or static keys
//! under an etcd prefix that the runner reads at run time.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::SecretKey;
use crate::diag::shown;

/// The etcd keys under a credentials prefix.
pub const ACCESS_KEY_ID: &str = "access-key-id";
pub const SECRET_ACCESS_KEY: &str = "secret-access-key";

/// AWS credentials for the runner: `default_chain` or `{ etcd_prefix: /aws/ }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// The SDK's default chain (environment, instance profile, ...).
    DefaultChain,
    /// `PREFIX` + `access-key-id` and `secret-access-key` in etcd.
    EtcdPrefix(String),
}

impl Credentials {
    /// The secrets these credentials read: none, or the two keys.
    pub fn secrets(&self) -> Vec<SecretKey> {
        match self {
            Credentials::DefaultChain => Vec::new(),
            Credentials::EtcdPrefix(prefix) => [ACCESS_KEY_ID, SECRET_ACCESS_KEY]
                .iter()
                .map(|leaf| SecretKey {
                    key: format!("{prefix}{leaf}"),
                    field: crate::diag::KeyPath::root()
                        .key("credentials")
                        .key("etcd_prefix"),
                })
                .collect(),
        }
    }

    /// The etcd prefix rule: a key prefix, starting with `/`.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Credentials::EtcdPrefix(prefix) if !super::secret::is_etcd_key(prefix) => Err(format!(
                "`{}` is not an etcd key prefix; it starts with `/`",
                crate::diag::shown(prefix)
            )),
            _ => Ok(()),
        }
    }
}

/// An AWS region name such as `us-east-1`.
pub fn check_region(r: &str) -> Result<(), String> {
    if r.is_empty()
        || !r
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "`{}` is not an AWS region such as `us-east-1`",
            shown(r)
        ));
    }
    Ok(())
}

const EXPECTED: &str = "`default_chain` or `{ etcd_prefix: /aws/ }`";

/// Refuses whatever was written without echoing it: someone may have
/// pasted a key where the prefix belongs.
fn refused<E: serde::de::Error>() -> E {
    E::custom(format!(
        "expected {EXPECTED} (the value is not shown: AWS keys never go in the spec; store them \
         in etcd as PREFIX{ACCESS_KEY_ID} and PREFIX{SECRET_ACCESS_KEY})"
    ))
}

impl<'de> Deserialize<'de> for Credentials {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Credentials;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Credentials, E> {
                match v {
                    "default_chain" => Ok(Credentials::DefaultChain),
                    _ => Err(refused()),
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Credentials, A::Error> {
                let key: Option<String> = map.next_key()?;
                if key.as_deref() != Some("etcd_prefix") {
                    return Err(refused());
                }
                let prefix: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(refused());
                }
                Ok(Credentials::EtcdPrefix(prefix))
            }
            crate::contract::secret::refuse_other_types!(refused);
        }
        d.deserialize_any(V)
    }
}
