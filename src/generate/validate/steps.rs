//! unitgen-runner's steps: each spec step resolved into the contract's
//! step (`contract/`), judged by the contract's own `check` (the same code
//! the runner runs), and the runner's command line built from it.

use super::Cx;
use super::etcd::RunnerEtcdArgs;
use crate::contract::invocation::Invocation;
use crate::contract::lock::JobLock;
use crate::contract::secret::is_etcd_key;
use crate::contract::{Maybe, RpcCall, RunnerStep, SnapshotJob};
use crate::diag::KeyPath;
use crate::generate::escape::{self, ExecWord};
use crate::generate::spec::{Defaults, EbsSnapshotStep, Job, RpcStep, Step, Str};

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
