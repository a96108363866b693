//! The one place that knows where `{ etcd: KEY }` values come from.
//!
//! Validation asks [`Values`] for each reference it meets: `get` for a
//! render-time value (written into a unit), `exists` for a secret (whose
//! value is never read). Values records every request; [`resolve`] then
//! fetches what was asked and runs validation again, until nothing new is
//! asked. So exactly the keys the spec references are read, a secret's
//! value never leaves etcd, and every missing key is reported at once, at
//! every spec path that needs it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use crate::error::Error;
pub use crate::etcd::{Lookup, Need};

/// A render-time value is written into a unit line; anything larger than
/// this is a mistake (a file stored under the wrong key), not a value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Where values come from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// No source configured.
    None,
    /// `--values FILE`.
    File(String),
    /// etcd at these endpoints.
    Etcd(String),
}

/// Values for etcd keys, as fetched for one render.
#[derive(Debug)]
pub struct Values {
    fetched: BTreeMap<String, Lookup>,
    /// Keys asked for during the last validation, and what was needed.
    requested: RefCell<BTreeMap<String, Need>>,
    origin: Origin,
}

impl Values {
    pub fn new(origin: Origin) -> Self {
        Values {
            fetched: BTreeMap::new(),
            requested: RefCell::default(),
            origin,
        }
    }

    /// No value source: any reference is an error that says how to add one.
    pub fn none() -> Self {
        Values::new(Origin::None)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The value of a render-time key; `Err` says why there is none.
    pub fn get(&self, key: &str) -> Result<&str, String> {
        self.request(key, Need::Value);
        match self.fetched.get(key) {
            Some(Lookup::Value(value)) if value.len() > MAX_VALUE_BYTES => Err(format!(
                "etcd key `{key}` holds {} bytes; a value written into a unit is at most {} KiB",
                value.len(),
                MAX_VALUE_BYTES / 1024
            )),
            Some(Lookup::Value(value)) => Ok(value),
            Some(Lookup::Exists) => Err(match &self.origin {
                Origin::File(file) if !self.is_secret(key) => format!(
                    "etcd key `{key}` has no value in {file}; a render-time value must be given"
                ),
                _ => format!(
                    "etcd key `{key}` is also used as a secret in this spec, so its value is never \
                     written into a unit; use a separate key for this value"
                ),
            }),
            Some(Lookup::Missing) => Err(self.missing(key)),
            None => Err(format!("etcd key `{key}` was not looked up")),
        }
    }

    /// Whether a secret's key exists (its value is never read here).
    pub fn exists(&self, key: &str) -> bool {
        self.request(key, Need::Exists);
        match self.fetched.get(key) {
            Some(Lookup::Value(_) | Lookup::Exists) => true,
            Some(Lookup::Missing) => false,
            // Not looked up yet: this pass's result is thrown away.
            None => true,
        }
    }

    /// Why `key` (a secret) is missing.
    pub fn missing(&self, key: &str) -> String {
        match &self.origin {
            Origin::File(file) => format!("etcd key `{key}` is not set in {file}"),
            Origin::Etcd(endpoints) => format!(
                "etcd key `{key}` does not exist in etcd at {endpoints}; store it with `etcdctl put {key} VALUE`"
            ),
            Origin::None => format!(
                "needs etcd key `{key}`, but there is no etcd to read it from; set `etcd.endpoints` \
                 in the spec (or --etcd-endpoints), or pass `--values FILE` (a YAML map of etcd key to value)"
            ),
        }
    }

    fn is_secret(&self, key: &str) -> bool {
        self.requested.borrow().get(key) == Some(&Need::Exists)
    }

    fn request(&self, key: &str, need: Need) {
        let mut requested = self.requested.borrow_mut();
        let entry = requested.entry(key.to_owned()).or_insert(need);
        // A key that is a secret anywhere is only ever checked to exist.
        if need == Need::Exists {
            *entry = Need::Exists;
        }
    }

    /// Every key the last validation asked for, and what it needed.
    pub fn requested(&self) -> BTreeMap<String, Need> {
        self.requested.borrow().clone()
    }

    /// Requests that were not answered yet (or that now need less: a value
    /// fetched earlier for a key that turned out to be a secret is dropped).
    fn unanswered(&mut self) -> BTreeMap<String, Need> {
        let requested = self.requested.borrow().clone();
        let mut out = BTreeMap::new();
        for (key, need) in requested {
            match (self.fetched.get(&key), need) {
                (None, _) => {
                    out.insert(key, need);
                }
                (Some(Lookup::Value(_)), Need::Exists) => {
                    self.fetched.insert(key, Lookup::Exists);
                }
                _ => {}
            }
        }
        out
    }

    /// Records lookups.
    pub fn insert(&mut self, found: BTreeMap<String, Lookup>) {
        self.fetched.extend(found);
    }

    /// The current answer for `key`, if it was looked up.
    pub fn lookup(&self, key: &str) -> Option<&Lookup> {
        self.fetched.get(key)
    }

    /// Forgets everything fetched (after a compaction, a spec change).
    pub fn clear(&mut self) {
        self.fetched.clear();
        self.requested.borrow_mut().clear();
    }

    /// Applies a change seen by a watch: a put or a delete of `key`.
    /// Returns whether anything this render depends on changed.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> bool {
        let need = self.requested.borrow().get(key).copied();
        let Some(need) = need else {
            return false;
        };
        let new = match (value, need) {
            (None, _) => Lookup::Missing,
            (Some(_), Need::Exists) => Lookup::Exists,
            (Some(v), Need::Value) => Lookup::Value(v.to_owned()),
        };
        self.fetched.insert(key.to_owned(), new.clone()) != Some(new)
    }
}

/// Somewhere to look keys up: a values file or etcd.
pub trait Fetch {
    fn fetch(
        &mut self,
        needs: &BTreeMap<String, Need>,
    ) -> impl std::future::Future<Output = Result<BTreeMap<String, Lookup>, Error>>;
}

/// Validates (through `check`) until every key it asks for is answered.
/// `check` runs at least once; its last result is returned.
pub async fn resolve<T, F: Fetch>(
    values: &mut Values,
    source: &mut F,
    mut check: impl FnMut(&Values) -> T,
) -> Result<T, Error> {
    loop {
        values.requested.borrow_mut().clear();
        let result = check(values);
        let needs = values.unanswered();
        if needs.is_empty() {
            return Ok(result);
        }
        let found = source.fetch(&needs).await?;
        values.insert(found);
    }
}

/// `--values FILE`: a YAML map of etcd key to value, an offline stand-in
/// for etcd (CI, the bundled examples). A secret's key is listed with
/// `null`: its value never belongs in a file.
#[derive(Debug, Clone)]
pub struct ValuesFile {
    map: BTreeMap<String, Option<String>>,
}

impl ValuesFile {
    pub fn read(path: &Path) -> Result<Self, Error> {
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
        Ok(ValuesFile { map })
    }

    /// Answers exactly as etcd would.
    pub fn lookup(&self, key: &str, need: Need) -> Lookup {
        match (self.map.get(key), need) {
            (None, _) => Lookup::Missing,
            (Some(_), Need::Exists) | (Some(None), Need::Value) => Lookup::Exists,
            (Some(Some(v)), Need::Value) => Lookup::Value(v.clone()),
        }
    }
}

impl Fetch for ValuesFile {
    async fn fetch(
        &mut self,
        needs: &BTreeMap<String, Need>,
    ) -> Result<BTreeMap<String, Lookup>, Error> {
        Ok(needs
            .iter()
            .map(|(k, n)| (k.clone(), self.lookup(k, *n)))
            .collect())
    }
}

/// No source: every key is missing (and the message says how to add one).
pub struct NoSource;

impl Fetch for NoSource {
    async fn fetch(
        &mut self,
        needs: &BTreeMap<String, Need>,
    ) -> Result<BTreeMap<String, Lookup>, Error> {
        Ok(needs.keys().map(|k| (k.clone(), Lookup::Missing)).collect())
    }
}

/// etcd itself; connects on the first lookup, so a spec without
/// references never needs a reachable etcd.
pub struct EtcdSource {
    settings: crate::etcd::Settings,
    etcd: Option<crate::etcd::Etcd>,
    /// The lowest store revision the fetches since the last `take_revision`
    /// reflect (0: none).
    revision: i64,
}

impl EtcdSource {
    pub fn new(settings: crate::etcd::Settings) -> Self {
        EtcdSource {
            settings,
            etcd: None,
            revision: 0,
        }
    }

    pub fn origin(&self) -> Origin {
        Origin::Etcd(self.settings.endpoints.join(","))
    }

    pub async fn connect(&mut self) -> Result<crate::etcd::Etcd, Error> {
        if let Some(etcd) = &self.etcd {
            return Ok(etcd.clone());
        }
        let etcd = crate::etcd::Etcd::connect(&self.settings).await?;
        self.etcd = Some(etcd.clone());
        Ok(etcd)
    }

    /// Drops the connection (after an error); the next use reconnects.
    pub fn disconnect(&mut self) {
        self.etcd = None;
    }

    /// The lowest revision fetched since the last call (0: nothing fetched).
    pub fn take_revision(&mut self) -> i64 {
        std::mem::take(&mut self.revision)
    }
}

impl Fetch for EtcdSource {
    async fn fetch(
        &mut self,
        needs: &BTreeMap<String, Need>,
    ) -> Result<BTreeMap<String, Lookup>, Error> {
        let etcd = self.connect().await?;
        let (found, revision) = etcd.fetch(needs).await?;
        self.revision = if self.revision == 0 {
            revision
        } else {
            self.revision.min(revision)
        };
        Ok(found)
    }
}

/// The source a command reads values from.
#[allow(clippy::large_enum_variant)] // one per command, never in a collection
pub enum ValueSource {
    File(ValuesFile, String),
    Etcd(EtcdSource),
    None,
}

impl ValueSource {
    pub fn origin(&self) -> Origin {
        match self {
            ValueSource::File(_, path) => Origin::File(path.clone()),
            ValueSource::Etcd(e) => e.origin(),
            ValueSource::None => Origin::None,
        }
    }

    /// Fresh, empty values for this source.
    pub fn values(&self) -> Values {
        Values::new(self.origin())
    }
}

impl Fetch for ValueSource {
    async fn fetch(
        &mut self,
        needs: &BTreeMap<String, Need>,
    ) -> Result<BTreeMap<String, Lookup>, Error> {
        match self {
            ValueSource::File(f, _) => f.fetch(needs).await,
            ValueSource::Etcd(e) => e.fetch(needs).await,
            ValueSource::None => NoSource.fetch(needs).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_used_as_secret_anywhere_is_never_read() {
        let mut values = Values::new(Origin::Etcd("http://e".into()));
        values.insert(BTreeMap::from([(
            "/k".to_owned(),
            Lookup::Value("v".into()),
        )]));
        assert_eq!(values.get("/k"), Ok("v"));
        assert!(values.exists("/k"));
        // The secret use wins: the value is dropped, and `get` refuses.
        assert!(values.unanswered().is_empty());
        assert_eq!(values.lookup("/k"), Some(&Lookup::Exists));
        let err = values.get("/k").unwrap_err();
        assert!(err.contains("also used as a secret"), "{err}");
    }

    #[test]
    fn an_oversized_value_is_refused() {
        let mut values = Values::new(Origin::Etcd("http://e".into()));
        let big = "v".repeat(MAX_VALUE_BYTES + 1);
        values.insert(BTreeMap::from([("/big".to_owned(), Lookup::Value(big))]));
        let err = values.get("/big").unwrap_err();
        assert_eq!(
            err,
            "etcd key `/big` holds 65537 bytes; a value written into a unit is at most 64 KiB"
        );
    }

    #[test]
    fn watch_changes_to_secrets_keep_no_value() {
        let mut values = Values::new(Origin::Etcd("http://e".into()));
        values.exists("/s");
        let _ = values.get("/v");
        assert!(values.apply("/s", Some("hunter2")));
        assert_eq!(values.lookup("/s"), Some(&Lookup::Exists));
        assert!(
            !values.apply("/s", Some("other")),
            "a secret's new value is no change"
        );
        assert!(values.apply("/v", Some("a")));
        assert!(!values.apply("/v", Some("a")));
        assert!(values.apply("/v", None));
        assert!(!values.apply("/unrelated", Some("x")));
    }
}
