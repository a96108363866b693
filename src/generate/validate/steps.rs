//! unitgen-runner's steps: each spec step resolved into the contract's
//! step (`contract/`), judged by the contract's own `check` (the same code
//! the runner runs), and the runner's command line built from it.

use super::Cx;
use super::etcd::RunnerEtcdArgs;
use crate::contract::invocation::Invocation;
use crate::contract::lock::JobLock;
use crate::contract::s3::{LifecycleJob, LifecycleRule, SyncJob};
use crate::contract::secret::is_etcd_key;
use crate::contract::{Maybe, RpcCall, RunnerStep, SnapshotJob, Text};
use crate::diag::{KeyPath, shown};
use crate::generate::escape::{self, ExecWord};
use crate::generate::spec::{
    Defaults, EbsSnapshotStep, Job, RpcStep, S3LifecycleStep, S3SyncStep, Step, Str,
};

pub(super) const DEFAULT_RUNNER: &str = "/unitgen-runner";

impl Cx<'_> {
    /// `/unitgen-runner --job NAME [--etcd-endpoint URL]... --step JSON...`,
    /// one group of words per physical line when the unit spreads it out.
    pub(super) fn runner_command(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        lock: Option<&JobLock>,
        path: &KeyPath,
    ) -> Option<Vec<Vec<ExecWord>>> {
        let host_network = job
            .container
            .as_ref()
            .is_some_and(|c| matches!(&c.network, Some(Str::Literal(n)) if n == "host"));
        let rp = KeyPath::root().key("defaults").key("runner");
        let runner = match &defaults.runner {
            Some(r) => self.str(r, &rp),
            None => Some(DEFAULT_RUNNER.to_owned()),
        };
        let runner = runner.and_then(|r| self.executable(&r, &rp));
        let steps: Vec<Option<RunnerStep>> = job
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| self.step(step, &path.key("steps").index(i)))
            .collect();
        self.s3_sources_mounted(job, &steps, path);
        let steps: Vec<RunnerStep> = steps.into_iter().collect::<Option<_>>()?;
        let runner = runner?;
        let reads_secrets = Invocation::reads_etcd(&steps);
        let etcd_lock = lock.is_some_and(JobLock::is_etcd);
        let reads_etcd = reads_secrets || etcd_lock;
        // What the runner does with etcd, for the messages below.
        let uses = if reads_secrets {
            "reads secrets from etcd"
        } else {
            "holds its lock in etcd"
        };
        if reads_etcd {
            let empty = if reads_secrets {
                "steps read secrets from etcd at run time, but `etcd.endpoints` is empty"
            } else {
                "`lock.etcd` needs etcd at run time, but `etcd.endpoints` is empty"
            };
            let who = format!("job `{name}` {uses}");
            if !self.runner_reaches_etcd(etcd, host_network, path, &who, empty, "container.network")
            {
                return None;
            }
        }
        let invocation = Invocation {
            job: name.to_owned(),
            etcd: reads_etcd.then(|| etcd.etcd.clone()),
            lock: lock.cloned(),
            steps,
        };
        let mut groups = Vec::new();
        for (i, group) in invocation.arg_groups().into_iter().enumerate() {
            let mut words = Vec::new();
            if i == 0 {
                words.push(runner.clone());
            }
            for w in group {
                words.push(self.word(&w, path)?);
            }
            groups.push(words);
        }
        Some(groups)
    }

    /// One step, as the runner will receive it; `None` after reporting a
    /// problem (or meeting a value not known yet).
    fn step(&mut self, step: &Step, path: &KeyPath) -> Option<RunnerStep> {
        let (p, step) = match step {
            Step::Rpc(s) => {
                let p = path.key("rpc");
                let call = self.rpc(s, &p);
                (p, RunnerStep::Rpc(call?))
            }
            Step::EbsSnapshot(s) => {
                let p = path.key("ebs_snapshot");
                (p.clone(), RunnerStep::EbsSnapshot(self.snapshot(s, &p)))
            }
            Step::Copy(s) => {
                let p = path.key("copy");
                (p.clone(), RunnerStep::Copy(self.copy(s, &p)))
            }
            Step::S3Sync(s) => {
                let p = path.key("s3_sync");
                (p.clone(), RunnerStep::S3Sync(self.s3_sync(s, &p)))
            }
            Step::S3Lifecycle(s) => {
                let p = path.key("s3_lifecycle");
                let job = self.s3_lifecycle(s, &p);
                self.one_lifecycle_owner(&job, &p);
                (p, RunnerStep::S3Lifecycle(job))
            }
        };
        let before = self.problems.len();
        for v in step.check() {
            let at = p.join(&v.field);
            if v.about_key {
                self.key_err(&at, v.message);
            } else {
                self.err(&at, v.message);
            }
        }
        for secret in step.secrets() {
            // A malformed key is reported by the check above.
            if is_etcd_key(&secret.key) {
                self.secret_exists(&secret.key, &p.join(&secret.field));
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let known = step.into_known();
        if known.is_none() {
            self.unknown = true;
        }
        known
    }

    fn opt_text(&mut self, value: Option<&Str>, path: &KeyPath) -> Option<Maybe> {
        value.map(|v| self.text(v, path))
    }

    fn rpc(&mut self, s: &RpcStep, p: &KeyPath) -> Option<RpcCall<Maybe>> {
        let call = RpcCall {
            url: self.text(&s.url, &p.key("url")),
            wallet: self.opt_text(s.wallet.as_ref(), &p.key("wallet")),
            method: self.text(&s.method, &p.key("method")),
            params: s.params.clone(),
            user: self.opt_text(s.user.as_ref(), &p.key("user")),
            password_etcd: s.password.as_ref().map(|secret| secret.0.etcd.clone()),
            cookie_file: self.opt_text(s.cookie_file.as_ref(), &p.key("cookie_file")),
            timeout: self.opt_text(s.timeout.as_ref(), &p.key("timeout")),
        };
        // Every string inside the JSON params goes into the unit too.
        let params = serde_json::Value::Array(s.params.clone());
        self.json_params(&params, &p.key("params")).then_some(call)
    }

    fn snapshot(&mut self, s: &EbsSnapshotStep, p: &KeyPath) -> SnapshotJob<Maybe> {
        SnapshotJob {
            volume_id: self.text(&s.volume_id, &p.key("volume_id")),
            region: self.text(&s.region, &p.key("region")),
            credentials: s.credentials.clone(),
            tags: s
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), self.text(v, &p.key("tags").key(k))))
                .collect(),
            wait: self.opt_text(s.wait.as_ref(), &p.key("wait")),
            retention: s.retention.clone(),
            endpoint: self.opt_text(s.endpoint.as_ref(), &p.key("endpoint")),
            request_timeout: self.opt_text(s.request_timeout.as_ref(), &p.key("request_timeout")),
        }
    }

    fn s3_sync(&mut self, s: &S3SyncStep, p: &KeyPath) -> SyncJob<Maybe> {
        SyncJob {
            source: self.text(&s.source, &p.key("source")),
            bucket: self.text(&s.bucket, &p.key("bucket")),
            prefix: self.opt_text(s.prefix.as_ref(), &p.key("prefix")),
            compare: s.compare.unwrap_or_default(),
            delete: s.delete.unwrap_or(false),
            region: self.text(&s.region, &p.key("region")),
            credentials: s.credentials.clone(),
            endpoint: self.opt_text(s.endpoint.as_ref(), &p.key("endpoint")),
        }
    }

    fn s3_lifecycle(&mut self, s: &S3LifecycleStep, p: &KeyPath) -> LifecycleJob<Maybe> {
        let rules = s
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let rp = p.key("rules").index(i);
                LifecycleRule {
                    id: self.text(&r.id, &rp.key("id")),
                    prefix: self.opt_text(r.prefix.as_ref(), &rp.key("prefix")),
                    transition_days: r.transition_days,
                    storage_class: self
                        .opt_text(r.storage_class.as_ref(), &rp.key("storage_class")),
                    expiration_days: r.expiration_days,
                    abort_incomplete_uploads_days: r.abort_incomplete_uploads_days,
                }
            })
            .collect();
        LifecycleJob {
            bucket: self.text(&s.bucket, &p.key("bucket")),
            region: self.text(&s.region, &p.key("region")),
            credentials: s.credentials.clone(),
            endpoint: self.opt_text(s.endpoint.as_ref(), &p.key("endpoint")),
            rules,
        }
    }

    /// A generator rule: each `s3_lifecycle` step owns every `unitgen-`
    /// rule of its bucket (it removes those it does not list), so two steps
    /// on one bucket would remove each other's rules on every run.
    fn one_lifecycle_owner(&mut self, job: &LifecycleJob<Maybe>, p: &KeyPath) {
        let (Some(bucket), Some(endpoint)) = (
            job.bucket.known(),
            job.endpoint.as_ref().map_or(Some(""), |e| e.known()),
        ) else {
            return;
        };
        let key = (endpoint.to_owned(), bucket.to_owned());
        match self.lifecycle_owners.get(&key) {
            Some(first) if first != p => {
                let first = first.clone();
                self.err(
                    &p.key("bucket"),
                    format!(
                        "`{first}` already manages the lifecycle rules of bucket `{}`; each \
                         `s3_lifecycle` step owns all of a bucket's `unitgen-` rules (it removes \
                         those it does not list), so two would undo each other on every run: \
                         list all the rules in one step",
                        shown(bucket)
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.lifecycle_owners.insert(key, p.clone());
            }
        }
    }

    /// A generator rule: `s3_sync` uploads a folder of the container's, so
    /// it must be inside a folder the job mounts (`container.volumes`);
    /// anything else is the image's own file system, missing at run time.
    fn s3_sources_mounted(&mut self, job: &Job, steps: &[Option<RunnerStep>], path: &KeyPath) {
        let mut targets = Vec::new();
        if let Some(c) = &job.container {
            for (i, v) in c.volumes.iter().enumerate() {
                let vp = path.key("container").key("volumes").index(i);
                // An unknown or malformed volume: the rule cannot be judged
                // (the volume's own problem is reported where it is checked).
                let Some(text) = self.str(v, &vp) else {
                    return;
                };
                match text.split(':').nth(1) {
                    Some(target) if target.starts_with('/') => targets.push(target.to_owned()),
                    _ => return,
                }
            }
        }
        for (i, step) in steps.iter().enumerate() {
            let Some(RunnerStep::S3Sync(s)) = step else {
                continue;
            };
            if targets.iter().any(|t| is_inside(&s.source, t)) {
                continue;
            }
            let mounted = if targets.is_empty() {
                "the job mounts no folder".to_owned()
            } else {
                format!("the job mounts only {}", targets.join(", "))
            };
            let source = s.source.trim_end_matches('/');
            self.err(
                &path.key("steps").index(i).key("s3_sync").key("source"),
                format!(
                    "`{}` is not inside a folder mounted into the runner's container ({mounted}), \
                     so the runner would find nothing to upload; add a volume such as \
                     `container.volumes: [\"/HOST/FOLDER:{}:ro\"]`",
                    shown(&s.source),
                    shown(source)
                ),
            );
        }
    }

    /// JSON parameters: the same line-break rule for every string inside them.
    fn json_params(&mut self, value: &serde_json::Value, path: &KeyPath) -> bool {
        match value {
            serde_json::Value::String(s) => match escape::reject_line_breaks(s) {
                Ok(()) => true,
                Err(e) => {
                    self.err(path, format!("value {e}"));
                    false
                }
            },
            serde_json::Value::Array(items) => {
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    ok &= self.json_params(item, &path.index(i));
                }
                ok
            }
            serde_json::Value::Object(map) => {
                let mut ok = true;
                for (k, v) in map {
                    ok &= self.json_params(&serde_json::Value::String(k.clone()), &path.key(k))
                        && self.json_params(v, &path.key(k));
                }
                ok
            }
            _ => true,
        }
    }
}

/// Whether the container path `path` is `mount` or below it.
fn is_inside(path: &str, mount: &str) -> bool {
    let mount = mount.trim_end_matches('/');
    let path = path.trim_end_matches('/');
    mount.is_empty()
        || path == mount
        || path.strip_prefix(mount).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn inside_a_mount() {
        use super::is_inside;
        assert!(is_inside("/backups", "/backups"));
        assert!(is_inside("/backups/", "/backups"));
        assert!(is_inside("/backups/host1", "/backups/"));
        assert!(is_inside("/anything", "/"));
        assert!(!is_inside("/backups2", "/backups"));
        assert!(!is_inside("/back", "/backups"));
    }
}
