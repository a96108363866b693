//! `{ etcd: KEY }` references: which keys a spec needs ([`Refs`], found by
//! walking the decoded spec once, before anything is fetched) and what was
//! found for them ([`Values`], which validation reads). Fetching itself
//! happens at the edge (`cmd/sources.rs`): one fetch of exactly these keys.
//!
//! A key read as a secret anywhere in the spec is only ever checked to
//! exist, so its value never leaves etcd; validation then refuses the
//! other uses, which would write it into a unit.

use std::collections::{BTreeMap, BTreeSet};

pub use crate::etcd::{Lookup, Need};
use crate::generate::spec::{
    ContainerSpec, CopyStep, Defaults, EbsSnapshotStep, EndpointFields, EndpointSpec, FleetSpec,
    Job, LockSpec, MailFields, MailSpec, NotifySpec, OneOrMany, RpcStep, S3LifecycleRule,
    S3LifecycleStep, S3SyncStep, Secret, ServiceSpec, Spec, Step, Str, TimerSpec,
};

/// A render-time value is written into a unit line; anything larger than
/// this is a mistake (a file stored under the wrong key), not a value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Every etcd key a spec references, and what it needs of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refs {
    needs: BTreeMap<String, Need>,
}

impl Refs {
    /// Walks the spec once; the walk lists every field that may hold a
    /// reference (see [`Walk`]).
    pub fn collect(spec: &Spec) -> Refs {
        let mut refs = Refs::default();
        spec.defaults.walk(&mut refs);
        for job in spec.jobs.values() {
            job.walk(&mut refs);
        }
        refs
    }

    fn value(&mut self, key: &str) {
        self.needs.entry(key.to_owned()).or_insert(Need::Value);
    }

    fn secret(&mut self, key: &str) {
        self.needs.insert(key.to_owned(), Need::Exists);
    }

    /// Each key with what it needs (a secret's need wins).
    pub fn needs(&self) -> &BTreeMap<String, Need> {
        &self.needs
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.needs.len()
    }

    pub fn is_secret(&self, key: &str) -> bool {
        self.needs.get(key) == Some(&Need::Exists)
    }
}

/// The fields of a spec type that may hold a reference.
trait Walk {
    fn walk(&self, refs: &mut Refs);
}

impl Walk for Str {
    fn walk(&self, refs: &mut Refs) {
        if let Str::Etcd(r) = self {
            refs.value(&r.etcd);
        }
    }
}

impl Walk for Secret {
    fn walk(&self, refs: &mut Refs) {
        refs.secret(&self.0.etcd);
    }
}

impl<T: Walk> Walk for Option<T> {
    fn walk(&self, refs: &mut Refs) {
        if let Some(v) = self {
            v.walk(refs);
        }
    }
}

impl<T: Walk> Walk for Vec<T> {
    fn walk(&self, refs: &mut Refs) {
        self.iter().for_each(|v| v.walk(refs));
    }
}

impl<K, T: Walk> Walk for BTreeMap<K, T> {
    fn walk(&self, refs: &mut Refs) {
        self.values().for_each(|v| v.walk(refs));
    }
}

impl<T: Walk> Walk for OneOrMany<T> {
    fn walk(&self, refs: &mut Refs) {
        self.as_slice().iter().for_each(|v| v.walk(refs));
    }
}

impl Walk for Defaults {
    fn walk(&self, refs: &mut Refs) {
        let Defaults {
            target: _,
            image,
            pull: _,
            docker,
            runner,
            timer,
            timeout,
            on_failure,
            fleet,
            notify,
        } = self;
        image.walk(refs);
        docker.walk(refs);
        runner.walk(refs);
        timer.walk(refs);
        timeout.walk(refs);
        on_failure.walk(refs);
        fleet.walk(refs);
        notify.walk(refs);
    }
}

// Each impl destructures its struct without `..`, so a new field does not
// compile until it is listed here.

impl Walk for Job {
    fn walk(&self, refs: &mut Refs) {
        let Job {
            description,
            schedule,
            cron,
            timer,
            target: _,
            after,
            requires,
            on_failure,
            timeout,
            fleet,
            lock,
            container,
            command,
            environment,
            service,
            steps,
            notify,
        } = self;
        description.walk(refs);
        schedule.walk(refs);
        cron.walk(refs);
        timer.walk(refs);
        after.walk(refs);
        requires.walk(refs);
        on_failure.walk(refs);
        timeout.walk(refs);
        fleet.walk(refs);
        lock.walk(refs);
        container.walk(refs);
        command.walk(refs);
        environment.walk(refs);
        service.walk(refs);
        steps.walk(refs);
        notify.walk(refs);
    }
}

impl Walk for ServiceSpec {
    fn walk(&self, refs: &mut Refs) {
        let ServiceSpec {
            user,
            group,
            working_directory,
            environment_files,
            nice: _,
            cpu_scheduling_policy: _,
            io_scheduling_class: _,
            io_scheduling_priority: _,
            no_new_privileges: _,
            protect_system: _,
            protect_home: _,
            private_tmp: _,
            private_devices: _,
            read_write_paths,
            read_only_paths,
        } = self;
        user.walk(refs);
        group.walk(refs);
        working_directory.walk(refs);
        environment_files.walk(refs);
        read_write_paths.walk(refs);
        read_only_paths.walk(refs);
    }
}

impl Walk for NotifySpec {
    fn walk(&self, refs: &mut Refs) {
        let NotifySpec {
            mail,
            webhook,
            healthchecks,
            network,
        } = self;
        mail.walk(refs);
        webhook.walk(refs);
        healthchecks.walk(refs);
        network.walk(refs);
    }
}

impl Walk for MailSpec {
    fn walk(&self, refs: &mut Refs) {
        let MailFields {
            to,
            from,
            smtp,
            starttls: _,
            user,
            password,
        } = &self.fields();
        to.walk(refs);
        from.walk(refs);
        smtp.walk(refs);
        user.walk(refs);
        password.walk(refs);
    }
}

impl Walk for EndpointSpec {
    fn walk(&self, refs: &mut Refs) {
        let EndpointFields { url, url_secret } = &self.fields();
        url.walk(refs);
        url_secret.walk(refs);
    }
}

impl Walk for TimerSpec {
    fn walk(&self, refs: &mut Refs) {
        let TimerSpec {
            persistent: _,
            randomized_delay,
            accuracy,
            on_active,
            on_boot,
            on_startup,
            on_unit_active,
            on_unit_inactive,
        } = self;
        randomized_delay.walk(refs);
        accuracy.walk(refs);
        on_active.walk(refs);
        on_boot.walk(refs);
        on_startup.walk(refs);
        on_unit_active.walk(refs);
        on_unit_inactive.walk(refs);
    }
}

impl Walk for FleetSpec {
    fn walk(&self, refs: &mut Refs) {
        let FleetSpec {
            machine_id,
            machine_of,
            machine_metadata,
            conflicts,
            global: _,
        } = self;
        machine_id.walk(refs);
        machine_of.walk(refs);
        machine_metadata.walk(refs);
        conflicts.walk(refs);
    }
}

impl Walk for ContainerSpec {
    fn walk(&self, refs: &mut Refs) {
        let ContainerSpec {
            image,
            name,
            links,
            network,
            volumes,
            pull: _,
            command,
        } = self;
        image.walk(refs);
        name.walk(refs);
        links.walk(refs);
        network.walk(refs);
        volumes.walk(refs);
        command.walk(refs);
    }
}

impl Walk for Step {
    fn walk(&self, refs: &mut Refs) {
        match self {
            Step::Rpc(s) => s.walk(refs),
            Step::EbsSnapshot(s) => s.walk(refs),
            Step::Copy(s) => s.walk(refs),
            Step::S3Sync(s) => s.walk(refs),
            Step::S3Lifecycle(s) => s.walk(refs),
        }
    }
}

impl Walk for LockSpec {
    fn walk(&self, refs: &mut Refs) {
        let LockSpec {
            name,
            etcd,
            wait,
            on_busy: _,
            ttl,
        } = self;
        name.walk(refs);
        etcd.walk(refs);
        wait.walk(refs);
        ttl.walk(refs);
    }
}

impl Walk for CopyStep {
    fn walk(&self, refs: &mut Refs) {
        let CopyStep {
            source,
            destination,
            retention: _,
        } = self;
        source.walk(refs);
        destination.walk(refs);
    }
}

impl Walk for RpcStep {
    fn walk(&self, refs: &mut Refs) {
        let RpcStep {
            url,
            wallet,
            method,
            params: _,
            user,
            password,
            cookie_file,
            timeout,
        } = self;
        url.walk(refs);
        wallet.walk(refs);
        method.walk(refs);
        user.walk(refs);
        password.walk(refs);
        cookie_file.walk(refs);
        timeout.walk(refs);
    }
}

impl Walk for EbsSnapshotStep {
    fn walk(&self, refs: &mut Refs) {
        let EbsSnapshotStep {
            volume_id,
            region,
            credentials,
            tags,
            wait,
            retention: _,
            endpoint,
            request_timeout,
        } = self;
        volume_id.walk(refs);
        region.walk(refs);
        for s in credentials.secrets() {
            refs.secret(&s.key);
        }
        tags.walk(refs);
        wait.walk(refs);
        endpoint.walk(refs);
        request_timeout.walk(refs);
    }
}

impl Walk for S3SyncStep {
    fn walk(&self, refs: &mut Refs) {
        let S3SyncStep {
            source,
            bucket,
            prefix,
            compare: _,
            delete: _,
            region,
            credentials,
            endpoint,
        } = self;
        source.walk(refs);
        bucket.walk(refs);
        prefix.walk(refs);
        region.walk(refs);
        for s in credentials.secrets() {
            refs.secret(&s.key);
        }
        endpoint.walk(refs);
    }
}

impl Walk for S3LifecycleStep {
    fn walk(&self, refs: &mut Refs) {
        let S3LifecycleStep {
            bucket,
            region,
            credentials,
            endpoint,
            rules,
        } = self;
        bucket.walk(refs);
        region.walk(refs);
        for s in credentials.secrets() {
            refs.secret(&s.key);
        }
        endpoint.walk(refs);
        rules.walk(refs);
    }
}

impl Walk for S3LifecycleRule {
    fn walk(&self, refs: &mut Refs) {
        let S3LifecycleRule {
            id,
            prefix,
            transition_days: _,
            storage_class,
            expiration_days: _,
            abort_incomplete_uploads_days: _,
        } = self;
        id.walk(refs);
        prefix.walk(refs);
        storage_class.walk(refs);
    }
}

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

/// What was found for each referenced key, as validation reads it.
#[derive(Debug, Clone)]
pub struct Values {
    needs: BTreeMap<String, Need>,
    found: BTreeMap<String, Lookup>,
    origin: Origin,
    /// Nothing was looked up (`--offline`, or etcd could not be asked):
    /// every reference is unknown, and rules on those values are skipped.
    unknown: bool,
}

impl Values {
    /// The answers of one fetch of `refs`' keys.
    pub fn new(refs: &Refs, found: BTreeMap<String, Lookup>, origin: Origin) -> Self {
        Values {
            needs: refs.needs.clone(),
            found,
            origin,
            unknown: false,
        }
    }

    /// Nothing looked up: every reference is unknown.
    pub fn unknown(refs: &Refs, origin: Origin) -> Self {
        Values {
            unknown: true,
            ..Values::new(refs, BTreeMap::new(), origin)
        }
    }

    /// No source at all: every reference is an error that says how to add one.
    pub fn none(refs: &Refs) -> Self {
        let found = refs
            .needs
            .keys()
            .map(|k| (k.clone(), Lookup::Missing))
            .collect();
        Values::new(refs, found, Origin::None)
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The keys this render depends on.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.needs.keys().map(String::as_str).collect()
    }

    /// The value of a render-time key: `Ok(None)` when it is not known
    /// (nothing was looked up); `Err` says why there is none.
    pub fn get(&self, key: &str) -> Result<Option<&str>, String> {
        match self.found.get(key) {
            Some(Lookup::Value(value)) if value.len() > MAX_VALUE_BYTES => Err(format!(
                "etcd key `{key}` holds {} bytes; a value written into a unit is at most {} KiB",
                value.len(),
                MAX_VALUE_BYTES / 1024
            )),
            Some(Lookup::Value(value)) => Ok(Some(value)),
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
            None if self.unknown && self.is_secret(key) => Err(format!(
                "etcd key `{key}` is also used as a secret in this spec, so its value is never \
                 written into a unit; use a separate key for this value"
            )),
            None if self.unknown => Ok(None),
            None => Err(format!(
                "etcd key `{key}` was not looked up; this is a bug in unitgen, please report it"
            )),
        }
    }

    /// Checks that a secret's key exists (its value is never read here).
    /// `Ok(false)` when that is not known.
    pub fn secret(&self, key: &str) -> Result<bool, String> {
        match self.found.get(key) {
            Some(Lookup::Value(_) | Lookup::Exists) => Ok(true),
            Some(Lookup::Missing) => Err(self.missing(key)),
            None if self.unknown => Ok(false),
            None => Err(format!(
                "etcd key `{key}` was not looked up; this is a bug in unitgen, please report it"
            )),
        }
    }

    /// Why `key` is missing.
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
        self.needs.get(key) == Some(&Need::Exists)
    }

    /// The current answer for `key`, if it was looked up.
    pub fn lookup(&self, key: &str) -> Option<&Lookup> {
        self.found.get(key)
    }

    /// Applies a change seen by a watch: a put or a delete of `key`.
    /// Returns whether anything this render depends on changed. A secret's
    /// put never carries its value here (the watch filters puts of secret
    /// keys out), and if one did, only its existence would be kept.
    pub fn apply(&mut self, key: &str, value: Option<&str>) -> bool {
        let Some(need) = self.needs.get(key).copied() else {
            return false;
        };
        let new = match (value, need) {
            (None, _) => Lookup::Missing,
            (Some(_), Need::Exists) => Lookup::Exists,
            (Some(v), Need::Value) => Lookup::Value(v.to_owned()),
        };
        self.found.insert(key.to_owned(), new.clone()) != Some(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &[&str], secret: &[&str]) -> Refs {
        let mut r = Refs::default();
        value.iter().for_each(|k| r.value(k));
        secret.iter().for_each(|k| r.secret(k));
        r
    }

    #[test]
    fn a_key_used_as_secret_anywhere_is_never_read() {
        let r = refs(&["/k"], &["/k"]);
        assert_eq!(r.needs()["/k"], Need::Exists);
        let values = Values::new(
            &r,
            BTreeMap::from([("/k".to_owned(), Lookup::Exists)]),
            Origin::Etcd("http://e".into()),
        );
        let err = values.get("/k").unwrap_err();
        assert!(err.contains("also used as a secret"), "{err}");
        assert_eq!(values.secret("/k"), Ok(true));
    }

    #[test]
    fn an_oversized_value_is_refused() {
        let r = refs(&["/big"], &[]);
        let big = "v".repeat(MAX_VALUE_BYTES + 1);
        let values = Values::new(
            &r,
            BTreeMap::from([("/big".to_owned(), Lookup::Value(big))]),
            Origin::Etcd("http://e".into()),
        );
        assert_eq!(
            values.get("/big").unwrap_err(),
            "etcd key `/big` holds 65537 bytes; a value written into a unit is at most 64 KiB"
        );
    }

    #[test]
    fn unknown_values_skip_their_rules() {
        let r = refs(&["/v"], &["/s"]);
        let values = Values::unknown(&r, Origin::None);
        assert_eq!(values.get("/v"), Ok(None));
        assert_eq!(values.secret("/s"), Ok(false));
    }

    #[test]
    fn watch_changes_to_secrets_keep_no_value() {
        let r = refs(&["/v"], &["/s"]);
        let mut values = Values::new(&r, BTreeMap::new(), Origin::Etcd("http://e".into()));
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
