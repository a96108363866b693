//! The spec's `etcd` section: the endpoints `unitgen` reads values from,
//! and how the runner reaches etcd from inside its container (checked by
//! the contract's rules, `contract/invocation.rs`).

use super::Cx;
use crate::contract::invocation::RunnerEtcd;
use crate::diag::{KeyPath, Kind, Problem, Seg};
use crate::generate::escape;
use crate::generate::source::Source;
use crate::generate::spec::Spec;

/// The runner's etcd settings, and where its endpoints were written (for
/// errors about them).
#[derive(Default)]
pub(super) struct RunnerEtcdArgs {
    pub etcd: RunnerEtcd,
    pub endpoints_path: Option<KeyPath>,
}

/// Problems with `etcd.endpoints`, the endpoints `unitgen` itself connects
/// to: the edge asks before connecting; validation reports them with the rest.
pub fn endpoint_problems(spec: &Spec, src: &Source) -> Vec<Problem> {
    let Some(etcd) = &spec.etcd else {
        return Vec::new();
    };
    let path = KeyPath::root().key("etcd").key("endpoints");
    etcd.endpoints
        .iter()
        .enumerate()
        .filter_map(|(i, url)| {
            crate::contract::url::check_http(url)
                .err()
                .map(|e| src.at_value(&path.index(i), Kind::Invalid, e))
        })
        .collect()
}

impl Cx<'_> {
    pub(super) fn runner_etcd(&mut self, spec: &Spec) -> RunnerEtcdArgs {
        let Some(etcd) = &spec.etcd else {
            return RunnerEtcdArgs::default();
        };
        self.problems.extend(endpoint_problems(spec, self.src));
        let root = KeyPath::root().key("etcd");
        let rp = root.key("runner");
        let runner = etcd.runner.clone().unwrap_or_default();
        let tls = runner.tls.clone().unwrap_or_default();
        let (endpoints, endpoints_path) = if runner.endpoints.is_empty() {
            (etcd.endpoints.clone(), root.key("endpoints"))
        } else {
            (runner.endpoints.clone(), rp.key("endpoints"))
        };
        let mut args = RunnerEtcdArgs {
            etcd: RunnerEtcd {
                endpoints,
                ca_file: tls.ca_file.clone(),
                cert_file: tls.cert_file.clone(),
                key_file: tls.key_file.clone(),
                username: runner.username.clone(),
                password_file: runner.password_file.clone(),
            },
            endpoints_path: Some(endpoints_path),
        };
        // Each value goes into the unit: no line breaks.
        let fields = [
            (rp.key("tls").key("ca_file"), &mut args.etcd.ca_file),
            (rp.key("tls").key("cert_file"), &mut args.etcd.cert_file),
            (rp.key("tls").key("key_file"), &mut args.etcd.key_file),
            (rp.key("username"), &mut args.etcd.username),
            (rp.key("password_file"), &mut args.etcd.password_file),
        ];
        for (path, value) in fields {
            if let Some(v) = value
                && let Err(e) = escape::reject_line_breaks(v)
            {
                self.problems.push(
                    self.src
                        .at_value(&path, Kind::Invalid, format!("value {e}")),
                );
                *value = None;
            }
        }
        for v in args.etcd.check() {
            let own_endpoint = runner.endpoints.is_empty()
                && matches!(v.field.segments().first(), Some(Seg::Key(k)) if k == "endpoints");
            // `etcd.endpoints` was checked above, where they were written.
            if !own_endpoint {
                self.err(&rp.join(&v.field), v.message);
            }
        }
        args
    }
}

impl Cx<'_> {
    /// Whether a container that reads etcd at run time can reach it:
    /// endpoints exist, and none is the loopback unless the container
    /// shares the host's network. `who` says who reads it (`job `x` reads
    /// secrets from etcd`), `empty` what to say without endpoints, `network`
    /// the key that gives the container the host's network.
    pub(super) fn runner_reaches_etcd(
        &mut self,
        etcd: &RunnerEtcdArgs,
        host_network: bool,
        at: &KeyPath,
        who: &str,
        empty: &str,
        network: &str,
    ) -> bool {
        if etcd.etcd.endpoints.is_empty() {
            self.key_err(at, empty);
            return false;
        }
        let loopback = etcd
            .etcd
            .endpoints
            .iter()
            .find(|e| crate::contract::url::is_loopback(e));
        if let (false, Some(e)) = (host_network, loopback) {
            let p = etcd.endpoints_path.clone().unwrap_or_else(|| at.clone());
            self.err(
                &p,
                format!(
                    "{who} inside its container, where `{}` is the container itself, not the host; \
                     set `etcd.runner.endpoints` to an address the container can reach (the docker0 \
                     address, e.g. http://172.17.0.1:2379), or use `{network}: host`",
                    crate::diag::shown(e)
                ),
            );
            return false;
        }
        true
    }
}
