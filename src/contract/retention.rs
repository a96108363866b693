//! A retention policy: restic-style `keep_*` rules. The policy and its one
//! rule (it must keep something) live here; the engine that applies it is
//! `runner/retention.rs`, shared by every step that prunes.

use serde::{Deserialize, Serialize};

// The spec and the runner share this type, so the policy reaches the
// runner as written.
/// restic-style retention: each rule keeps the newest snapshot of that many
/// distinct periods; a snapshot kept by any rule is kept. At least one rule
/// must keep something.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = keeps_something)]
pub struct RetentionPolicy {
    /// Keep the newest N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep the newest of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep the newest of each of the last N ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

/// The JSON Schema's form of [`RetentionPolicy::check`]: some `keep_*` is
/// at least 1.
fn keeps_something(schema: &mut schemars::Schema) {
    let rules: Vec<_> = [
        "keep_last",
        "keep_hourly",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "keep_yearly",
    ]
    .iter()
    .map(|k| serde_json::json!({ "required": [k], "properties": { *k: { "type": "integer", "minimum": 1 } } }))
    .collect();
    schema.insert("anyOf".into(), rules.into());
}

/// A policy that keeps nothing would delete everything it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an empty retention policy would delete every snapshot; set at least one `keep_*` above 0, or remove `retention`"
)]
pub struct EmptyPolicy;

impl RetentionPolicy {
    /// Refuses a policy that keeps nothing.
    pub fn check(&self) -> Result<(), EmptyPolicy> {
        let keeps = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        if keeps.iter().all(|k| k.unwrap_or(0) == 0) {
            Err(EmptyPolicy)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_must_keep_something() {
        assert_eq!(RetentionPolicy::default().check(), Err(EmptyPolicy));
        let zero = RetentionPolicy {
            keep_daily: Some(0),
            ..Default::default()
        };
        assert_eq!(zero.check(), Err(EmptyPolicy));
        let one = RetentionPolicy {
            keep_weekly: Some(1),
            ..Default::default()
        };
        assert_eq!(one.check(), Ok(()));
    }
}
