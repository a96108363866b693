//! Where a command's values come from: `--values FILE`, etcd (connection
//! settings from flags, their `UNITGEN_ETCD_*` variables, then the spec's
//! `etcd:` section), or nothing. Fetching is the one I/O step between
//! decoding a spec and validating it: exactly the keys the spec references,
//! once, and a secret's only by a count-only read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cmd::cli::{EtcdArgs, SpecArgs};
use crate::error::Error;
use crate::etcd::{self, Lookup, Need};
use crate::generate::Loaded;
use crate::generate::values::{Origin, Refs, Values};

/// A single-threaded runtime for the etcd client; commands stay sync.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))
}

/// `--values FILE`: a YAML map of etcd key to value, an offline stand-in
/// for etcd (CI, the bundled examples). A secret's key is listed with
/// `null`: its value never belongs in a file.
#[derive(Debug, Clone)]
pub struct ValuesFile {
    map: BTreeMap<String, Option<String>>,
}

/// A secret's value found in a values file: said once per key, by its
/// key, never its value (a committed file must not hold it).
fn warn_secret_value(file: &Path, key: &str) {
    crate::cmd::term::warn(format_args!(
        "{}: `{}` holds a value, but the spec uses it as a secret: this file is meant \
         to be committed, so list the key with `null` (render only checks that it exists; the \
         runner reads the secret from etcd at run time)",
        crate::diag::escape_controls(&file.display().to_string()),
        crate::diag::shown(key)
    ));
}

impl ValuesFile {
    pub fn read(path: &Path) -> Result<Self, Error> {
        let err = |message: String| Error::ReadValues {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let raw: BTreeMap<String, serde_yaml::Value> = serde_yaml::from_str(&text)
            .map_err(|e| err(crate::diag::plain_serde(&e.to_string())))?;
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

    /// Warns about each key the spec uses as a secret that has a value
    /// here, then forgets that value: a secret is only ever checked to
    /// exist, so nothing needs it, and it is not kept.
    fn drop_secret_values(&mut self, refs: &Refs, file: &Path) {
        for (key, need) in refs.needs() {
            if *need == Need::Exists
                && let Some(value @ Some(_)) = self.map.get_mut(key)
            {
                warn_secret_value(file, key);
                *value = None;
            }
        }
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

/// etcd itself; connects on first use, so a spec without references never
/// needs a reachable etcd.
pub struct EtcdSource {
    settings: etcd::Settings,
    etcd: Option<etcd::Etcd>,
    /// The lowest store revision the last fetch reflects (0: none).
    revision: i64,
}

impl EtcdSource {
    pub fn new(settings: etcd::Settings) -> Self {
        EtcdSource {
            settings,
            etcd: None,
            revision: 0,
        }
    }

    pub fn origin(&self) -> Origin {
        Origin::Etcd(self.settings.endpoints.join(","))
    }

    pub async fn connect(&mut self) -> Result<etcd::Etcd, Error> {
        if let Some(etcd) = &self.etcd {
            return Ok(etcd.clone());
        }
        let etcd = etcd::Etcd::connect(&self.settings).await?;
        self.etcd = Some(etcd.clone());
        Ok(etcd)
    }

    /// Drops the connection (after an error); the next use reconnects.
    pub fn disconnect(&mut self) {
        self.etcd = None;
    }

    /// The lowest revision the last fetch reflects (0: nothing fetched).
    pub fn revision(&self) -> i64 {
        self.revision
    }
}

/// The source a command reads values from.
#[allow(clippy::large_enum_variant)] // one per command, never in a collection
pub enum ValueSource {
    File(ValuesFile, PathBuf),
    Etcd(EtcdSource),
    None,
}

impl ValueSource {
    /// `--values FILE`, else etcd (flags, env, then the spec), else nothing.
    pub fn for_spec(args: &SpecArgs, loaded: &Loaded) -> Result<ValueSource, Error> {
        if let Some(path) = &args.values {
            return Ok(ValueSource::File(ValuesFile::read(path)?, path.clone()));
        }
        match etcd_settings(&args.etcd, loaded, &args.spec)? {
            Some(settings) => Ok(ValueSource::Etcd(EtcdSource::new(settings))),
            None => Ok(ValueSource::None),
        }
    }

    pub fn origin(&self) -> Origin {
        match self {
            ValueSource::File(_, path) => Origin::File(path.display().to_string()),
            ValueSource::Etcd(e) => e.origin(),
            ValueSource::None => Origin::None,
        }
    }

    /// One fetch of exactly the keys in `refs`.
    pub async fn fetch(&mut self, refs: &Refs) -> Result<Values, Error> {
        let origin = self.origin();
        match self {
            ValueSource::None => Ok(Values::none(refs)),
            ValueSource::File(file, path) => {
                crate::cmd::term::debug(format_args!(
                    "values: looking up {} in {}",
                    describe_keys(refs),
                    path.display()
                ));
                file.drop_secret_values(refs, path);
                let found = refs
                    .needs()
                    .iter()
                    .map(|(k, n)| (k.clone(), file.lookup(k, *n)))
                    .collect();
                Ok(Values::new(refs, found, origin))
            }
            ValueSource::Etcd(_) if refs.is_empty() => {
                Ok(Values::new(refs, BTreeMap::new(), origin))
            }
            ValueSource::Etcd(source) => {
                let started = std::time::Instant::now();
                crate::cmd::term::debug(format_args!(
                    "etcd: reading {} from {}",
                    describe_keys(refs),
                    source.settings.endpoints.join(",")
                ));
                let etcd = source.connect().await?;
                let (found, revision) = etcd.fetch(refs.needs()).await?;
                crate::cmd::term::debug(format_args!(
                    "etcd: {} answered in {} (revision {revision})",
                    etcd.current_endpoint(),
                    crate::cmd::term::elapsed(started)
                ));
                source.revision = revision;
                Ok(Values::new(refs, found, origin))
            }
        }
    }
}

/// The keys a fetch reads, for `-v`: how many, which (the first few), and
/// which of them are secrets, whose existence only is checked.
fn describe_keys(refs: &Refs) -> String {
    const SHOWN: usize = 10;
    let needs = refs.needs();
    let secrets = needs.values().filter(|n| **n == Need::Exists).count();
    let mut names: Vec<String> = needs
        .iter()
        .take(SHOWN)
        .map(|(k, n)| match n {
            Need::Value => crate::diag::shown(k),
            Need::Exists => format!("{} (secret: exists?)", crate::diag::shown(k)),
        })
        .collect();
    if needs.len() > SHOWN {
        names.push(format!("and {} more", needs.len() - SHOWN));
    }
    format!(
        "{} key(s), {secrets} of them secret(s) checked for existence only: {}",
        needs.len(),
        names.join(", ")
    )
}

/// Endpoints as given, trimmed, without empty ones.
fn endpoint_list<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    items
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// `--etcd-endpoints` as a variable. Read here rather than by clap: clap
/// counts a variable as its flag, and `--values` (which conflicts with
/// the flag) would be refused whenever it is exported. With `--values` it
/// is not read at all: the file wins, quietly.
pub const ENDPOINTS_VAR: &str = "UNITGEN_ETCD_ENDPOINTS";

/// Connection settings: each flag (or its `UNITGEN_ETCD_*` variable) wins
/// over the spec's `etcd:` section; spec paths are relative to the spec.
/// `None` when no endpoints are configured anywhere.
fn etcd_settings(
    args: &EtcdArgs,
    loaded: &Loaded,
    spec_path: &Path,
) -> Result<Option<etcd::Settings>, Error> {
    let spec = loaded
        .spec()
        .and_then(|s| s.etcd.clone())
        .unwrap_or_default();
    let from_env = std::env::var(ENDPOINTS_VAR).unwrap_or_default();
    let endpoints = if !args.etcd_endpoints.is_empty() {
        endpoint_list(args.etcd_endpoints.iter().map(String::as_str))
    } else if !from_env.trim().is_empty() {
        endpoint_list(from_env.split(','))
    } else {
        // A malformed spec endpoint is reported with its location.
        let problems = loaded.endpoint_problems();
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        spec.endpoints.clone()
    };
    if endpoints.is_empty() {
        return Ok(None);
    }
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let relative = |p: &Option<String>| p.as_ref().map(|p| base.join(p));
    let tls = spec.tls.clone().unwrap_or_default();
    let config = |m: String| Error::Etcd(etcd::EtcdError::Config(m));
    let password_file: Option<PathBuf> = args
        .etcd_password_file
        .clone()
        .or_else(|| relative(&spec.password_file));
    let password = etcd::password(password_file.as_deref())?;
    let timeout = match args.etcd_timeout.as_ref().or(spec.timeout.as_ref()) {
        Some(text) => Some(
            crate::contract::timespan::parse(text)
                .map_err(|e| config(format!("timeout {e}")))?
                .ok_or_else(|| config("timeout must be finite".into()))?,
        ),
        None => None,
    };
    Ok(Some(etcd::Settings {
        caller: etcd::Caller::Generator,
        endpoints,
        ca_file: args.etcd_ca_file.clone().or_else(|| relative(&tls.ca_file)),
        cert_file: args
            .etcd_cert_file
            .clone()
            .or_else(|| relative(&tls.cert_file)),
        key_file: args
            .etcd_key_file
            .clone()
            .or_else(|| relative(&tls.key_file)),
        user: args.etcd_user.clone().or(spec.username.clone()),
        password,
        timeout,
    }))
}
