//! The one place that knows where `{ etcd: KEY }` values come from.
//!
//! Rendering first collects every key the spec references, fetches them in
//! one go, then validation resolves from the result, so a missing key is
//! reported with every spec path that needs it, all at once.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Error;

/// Values for etcd keys, as fetched for one render.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// `None`: the key exists but its value is not given here (a secret's
    /// key in a values file, which must never hold the secret itself).
    map: BTreeMap<String, Option<String>>,
    /// Where the values came from, for error messages.
    origin: Option<String>,
}

impl Values {
    /// No value source: any reference is an error that says how to add one.
    pub fn none() -> Self {
        Values::default()
    }

    /// `--values FILE`: a YAML map of etcd key to value, an offline stand-in
    /// for etcd (CI, the bundled examples).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let err = |message: String| Error::ReadValues {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let raw: BTreeMap<String, serde_yaml::Value> =
            serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut map = BTreeMap::new();
        for (key, value) in raw {
            let text = match value {
                serde_yaml::Value::String(s) => Some(s),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                serde_yaml::Value::Null => None,
                _ => {
                    return Err(err(format!(
                        "the value of `{key}` must be a string or null"
                    )));
                }
            };
            map.insert(key, text);
        }
        Ok(Values {
            map,
            origin: Some(path.display().to_string()),
        })
    }

    /// The value of a render-time key; `Err` says why there is none.
    pub fn get(&self, key: &str) -> Result<&str, String> {
        match self.map.get(key) {
            Some(Some(value)) => Ok(value),
            Some(None) => Err(format!(
                "etcd key `{key}` has no value in {}; a render-time value must be given",
                self.origin.as_deref().unwrap_or("the values")
            )),
            None => Err(self.missing(key)),
        }
    }

    /// Whether a secret's key exists (its value is never read here).
    pub fn exists(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// What to tell the user when `key` has no value.
    fn missing(&self, key: &str) -> String {
        match &self.origin {
            Some(origin) => format!("etcd key `{key}` is not set in {origin}"),
            None => format!(
                "needs etcd key `{key}`, but no values were given; pass `--values FILE` \
                 (a YAML map of etcd key to value)"
            ),
        }
    }
}
