//! The contract between `unitgen` and `unitgen-runner`: each step as the
//! runner receives it, one JSON object per `--step` argument on the unit's
//! command line. The unit is the only thing fleet ships, so it carries the
//! whole job. Values here are resolved; secrets appear only as etcd keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunnerStep {
    Rpc(RpcCall),
    EbsSnapshot(SnapshotJob),
}

impl RunnerStep {
    /// Whether the runner needs etcd for this step (it reads a secret).
    pub fn reads_etcd(&self) -> bool {
        match self {
            RunnerStep::Rpc(rpc) => rpc.password_etcd.is_some(),
            RunnerStep::EbsSnapshot(s) => matches!(s.credentials, RunnerCredentials::EtcdPrefix(_)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpcCall {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet: Option<String>,
    pub method: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The etcd key holding the password, read at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_etcd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotJob {
    pub volume_id: String,
    pub region: String,
    pub credentials: RunnerCredentials,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerCredentials {
    DefaultChain,
    /// etcd prefix; the runner reads `PREFIX` + `access-key-id` and `secret-access-key`.
    EtcdPrefix(String),
}

/// restic-style retention: each rule keeps the newest snapshot of that many
/// distinct periods; a snapshot kept by any rule is kept. The spec and the
/// runner share this type, so the policy reaches the runner as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

impl RetentionPolicy {
    /// A policy that keeps nothing would delete every snapshot: refused.
    pub fn is_empty(&self) -> bool {
        [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ]
        .iter()
        .all(|k| k.unwrap_or(0) == 0)
    }
}
