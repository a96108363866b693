//! What a service runs: a host command, or a container (`docker run`)
//! holding unitgen-runner and its steps or a command of the spec's. The
//! docker command lines are built here from words, never from strings.

use super::Cx;
use super::etcd::RunnerEtcdArgs;
use crate::contract::lock::JobLock;
use crate::diag::{KeyPath, shown};
use crate::generate::escape::{self, EnvAssignment, ExecLine, ExecWord};
use crate::generate::model::{Command, Setting};
use crate::generate::spec::{ContainerSpec, Defaults, Job, PullPolicy, Str};

const DEFAULT_DOCKER: &str = "/usr/bin/docker";
/// `contract::lock::HOST_LOCK_DIR` on the host, at the same path inside.
const HOST_LOCK_VOLUME: &str = "/run/lock/unitgen:/run/lock/unitgen";

/// A service's commands and environment, validated.
pub(super) struct Run {
    /// The container's name, when the job runs one.
    pub container: Option<String>,
    pub environment: Vec<EnvAssignment>,
    pub exec_start_pre: Vec<Command>,
    pub exec_start: Command,
    pub exec_stop_post: Vec<Command>,
    /// `SuccessExitStatus=`: a host command's busy lock with `on_busy: skip`.
    pub success_exit_status: Option<u8>,
    /// How systemd runs a host command (`service:`); empty for containers.
    pub exec: Vec<Setting>,
}

/// A container job, validated.
struct Container {
    name: String,
    image: ExecWord,
    pull: Option<PullPolicy>,
    network: Option<ExecWord>,
    links: Vec<ExecWord>,
    volumes: Vec<ExecWord>,
    /// The command run in the image: the runner and its steps, or the spec's own.
    command: Vec<Vec<ExecWord>>,
    /// Whether `command` is unitgen-runner's.
    runner: bool,
}

impl Cx<'_> {
    pub(super) fn payload(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        path: &KeyPath,
    ) -> Option<Run> {
        let environment = self.environment(job, path);
        let lock = self.lock(job, defaults, path);
        // Reported, and the rest of the container still checked.
        let service_refused = job.command.is_none() && job.service.is_some();
        if service_refused {
            self.key_err(
                &path.key("service"),
                "`service` sets how systemd runs a host `command`; this job runs a container, \
                 where it would constrain only the docker CLI, not the container: remove it (the \
                 container runs as its image's user, and sees only `container.volumes`)",
            );
        }
        if let Some(command) = &job.command {
            let exec = self.exec_settings(job, path);
            let p = path.key("command");
            if job.container.is_some() || !job.steps.is_empty() {
                self.err(&p, "a host `command` cannot be combined with `container` or `steps`; a job runs one or the other");
                return None;
            }
            if command.is_empty() {
                self.err(
                    &p,
                    "the command is empty; give the program's absolute path and its arguments",
                );
                return None;
            }
            let mut argv = Vec::new();
            for (i, word) in command.iter().enumerate() {
                let wp = p.index(i);
                let text = self.str(word, &wp);
                let word = match (i, text) {
                    (0, Some(t)) => self.executable(&t, &wp),
                    (_, Some(t)) => self.word(&t, &wp),
                    (_, None) => None,
                };
                argv.push(word);
            }
            let argv = argv.into_iter().collect::<Option<Vec<_>>>()?;
            let exec = exec?;
            let mut exec_start_pre = Vec::new();
            let mut success_exit_status = None;
            let mut words = match lock? {
                Some(lock) => {
                    let (words, skip) = self.flock_words(&lock, &path.key("lock"))?;
                    exec_start_pre.push(self.lock_dir_command());
                    success_exit_status = skip;
                    words
                }
                None => Vec::new(),
            };
            words.extend(argv);
            let mut words = words.into_iter();
            let line = ExecLine::new(words.next()?).inline(words);
            let mut env = Vec::new();
            for (k, v) in environment? {
                match EnvAssignment::new(&k, &v) {
                    Ok(a) => env.push(a),
                    Err(e) => self.err(&path.key("environment").key(&k), format!("value {e}")),
                }
            }
            return Some(Run {
                container: None,
                environment: env,
                exec_start_pre,
                exec_start: Command {
                    ignore_failure: false,
                    privileged: false,
                    line,
                },
                exec_stop_post: Vec::new(),
                success_exit_status,
                exec,
            });
        }
        let docker = self.docker_path(defaults);
        let known_lock = lock.as_ref().and_then(Option::as_ref);
        let c = self.container(name, job, defaults, etcd, known_lock, path);
        let (docker, c, environment, lock) = (docker?, c?, environment?, lock?);
        if service_refused {
            return None;
        }
        let host_lock = lock.as_ref().is_some_and(|l| !l.is_etcd());
        let cname = self.word(&c.name, &path.key("container").key("name"))?;
        // `-`: a missing container is the normal case, not a failure.
        let cleanup = Command {
            ignore_failure: true,
            privileged: false,
            line: ExecLine::new(docker.clone()).inline([
                ExecWord::literal("rm"),
                ExecWord::literal("--force"),
                cname.clone(),
            ]),
        };
        let mut run = ExecLine::new(docker).inline([
            ExecWord::literal("run"),
            ExecWord::literal("--rm"),
            ExecWord::literal("--name"),
            cname,
        ]);
        if let Some(pull) = c.pull {
            run.group([
                ExecWord::literal("--pull"),
                ExecWord::literal(pull_word(pull)),
            ]);
        }
        if let Some(net) = c.network {
            run.group([ExecWord::literal("--network"), net]);
        }
        for link in c.links {
            run.group([ExecWord::literal("--link"), link]);
        }
        for volume in c.volumes {
            run.group([ExecWord::literal("--volume"), volume]);
        }
        if host_lock {
            // The host's lock folder, so that the runner's flock(2) and any
            // other holder's (a host command's flock(1), another job's
            // runner) are on the same file.
            run.group([
                ExecWord::literal("--volume"),
                ExecWord::literal(HOST_LOCK_VOLUME),
            ]);
        }
        for (k, v) in environment {
            let word = self.word(&format!("{k}={v}"), &path.key("environment").key(&k))?;
            run.group([ExecWord::literal("--env"), word]);
        }
        if c.runner {
            // The runner prefixes its log lines with a syslog priority when
            // it sees this (set by systemd).
            run.group([
                ExecWord::literal("--env"),
                ExecWord::literal("JOURNAL_STREAM"),
            ]);
        }
        run.group([c.image]);
        for group in c.command {
            run.group(group);
        }
        let mut exec_start_pre = vec![cleanup.clone()];
        if host_lock {
            exec_start_pre.push(self.lock_dir_command());
        }
        Some(Run {
            container: Some(c.name),
            environment: Vec::new(),
            exec_start_pre,
            exec_start: Command {
                ignore_failure: false,
                privileged: false,
                line: run,
            },
            exec_stop_post: vec![cleanup],
            success_exit_status: None,
            exec: Vec::new(),
        })
    }

    /// A container image reference, as a word of the `docker run` line.
    pub(super) fn image(&mut self, value: &Str, path: &KeyPath) -> Option<ExecWord> {
        let image = self.str(value, path)?;
        if is_image_ref(&image) {
            self.word(&image, path)
        } else {
            self.err(path, format!("`{}` is not a container image reference such as `registry.example.com/unitgen-runner:0.1.0`", shown(&image)));
            None
        }
    }

    fn environment(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (key, value) in &job.environment {
            let p = path.key("environment").key(key);
            if !escape::is_env_name(key) {
                self.key_err(&p, format!("`{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)", shown(key)));
                ok = false;
                continue;
            }
            match self.str(value, &p) {
                Some(v) => out.push((key.clone(), v)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn docker_path(&mut self, defaults: &Defaults) -> Option<ExecWord> {
        let p = KeyPath::root().key("defaults").key("docker");
        let path = match &defaults.docker {
            Some(d) => self.str(d, &p)?,
            None => DEFAULT_DOCKER.to_owned(),
        };
        self.executable(&path, &p)
    }

    fn container(
        &mut self,
        name: &str,
        job: &Job,
        defaults: &Defaults,
        etcd: &RunnerEtcdArgs,
        lock: Option<&JobLock>,
        path: &KeyPath,
    ) -> Option<Container> {
        let empty = ContainerSpec::default();
        let spec = job.container.as_ref().unwrap_or(&empty);
        let cpath = path.key("container");
        if spec.command.is_none() && job.steps.is_empty() {
            self.key_err(path, "nothing to run: give `steps` for unitgen-runner, a `container.command`, or a host `command`");
            return None;
        }
        let host_network = matches!(&spec.network, Some(Str::Literal(n)) if n == "host");
        let command = match &spec.command {
            Some(_) if !job.steps.is_empty() => {
                self.err(&cpath.key("command"), "`container.command` replaces the runner, so it cannot be combined with `steps`");
                return None;
            }
            Some(_) if job.lock.is_some() => {
                self.key_err(&path.key("lock"), "a lock is held by unitgen-runner, which `container.command` replaces; give the job `steps`, or run a host `command` (which `flock(1)` can hold a host lock around)");
                return None;
            }
            Some(cmd) => {
                let mut words = Vec::new();
                for (i, w) in cmd.iter().enumerate() {
                    let p = cpath.key("command").index(i);
                    let text = self.str(w, &p);
                    words.push(text.and_then(|t| self.word(&t, &p)));
                }
                Some(vec![words.into_iter().collect::<Option<Vec<_>>>()?])
            }
            None => self.runner_command(name, job, defaults, etcd, lock, path),
        };
        let image_path = if spec.image.is_some() {
            cpath.key("image")
        } else {
            KeyPath::root().key("defaults").key("image")
        };
        let image = match spec.image.as_ref().or(defaults.image.as_ref()) {
            Some(i) => self.image(i, &image_path),
            None => {
                self.key_err(
                    path,
                    "no container image: set `container.image` or `defaults.image`",
                );
                None
            }
        };
        let cname = match &spec.name {
            Some(n) => self.str(n, &cpath.key("name")).filter(|text| {
                let ok = is_docker_name(text);
                if !ok {
                    self.err(&cpath.key("name"), format!("`{}` is not a container name (letters, digits, `_.-`, starting with a letter or digit)", shown(text)));
                }
                ok
            }),
            None => Some(container_name(name)),
        };
        // `Some(None)`: no network given; `None`: a problem (or unknown).
        let network = match &spec.network {
            Some(n) => self
                .str(n, &cpath.key("network"))
                .and_then(|text| {
                    if is_docker_name(&text) {
                        self.word(&text, &cpath.key("network"))
                    } else {
                        self.err(
                            &cpath.key("network"),
                            format!("`{}` is not a docker network name", shown(&text)),
                        );
                        None
                    }
                })
                .map(Some),
            None => Some(None),
        };
        if host_network && !spec.links.is_empty() {
            // docker refuses it at run time: "conflicting options: host
            // type networking can't be used with links".
            self.err(
                &cpath.key("links"),
                "docker refuses `links` with `network: host` (the container shares the host's \
                 network, so reach the linked container by its published port instead); remove one",
            );
        }
        let mut links = Vec::new();
        for (i, l) in spec.links.iter().enumerate() {
            let p = cpath.key("links").index(i);
            let Some(text) = self.str(l, &p) else {
                continue;
            };
            let valid = match text.split_once(':') {
                Some((n, alias)) => is_docker_name(n) && is_docker_name(alias),
                None => is_docker_name(&text),
            };
            if !valid {
                self.err(
                    &p,
                    format!(
                        "`{}` is not a link; write `CONTAINER:ALIAS`, e.g. `bitcoind:bitcoind`",
                        shown(&text)
                    ),
                );
                continue;
            }
            links.extend(self.word(&text, &p));
        }
        let mut volumes = Vec::new();
        let mut volume_texts = Vec::new();
        for (i, v) in spec.volumes.iter().enumerate() {
            let p = cpath.key("volumes").index(i);
            let Some(text) = self.str(v, &p) else {
                continue;
            };
            if let Err(e) = check_volume(&text) {
                self.err(&p, e);
                continue;
            }
            volumes.extend(self.word(&text, &p));
            volume_texts.push(text);
        }
        if links.len() != spec.links.len() || volumes.len() != spec.volumes.len() {
            return None;
        }
        if spec.command.is_none() {
            self.copy_mounts(job, &volume_texts, path);
        }
        Some(Container {
            name: cname?,
            image: image?,
            pull: spec.pull.or(defaults.pull),
            network: network?,
            links,
            volumes,
            command: command?,
            runner: spec.command.is_none(),
        })
    }
}

pub(super) fn pull_word(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "always",
        PullPolicy::Missing => "missing",
        PullPolicy::Never => "never",
    }
}

/// Docker's container and network name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(super) fn is_docker_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// The default container name: the job name, with the characters docker
/// refuses (`@`, `:`) as `_`.
fn container_name(job: &str) -> String {
    let name: String = job
        .chars()
        .map(|c| if c == '@' || c == ':' { '_' } else { c })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name
    } else {
        format!("job{name}")
    }
}

/// A conservative image reference check: `[registry[:port]/]path[:tag][@digest]`.
/// Above all it must not start with `-`, which docker would take as an option.
fn is_image_ref(image: &str) -> bool {
    let mut b = image.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && image.len() <= 512
        && b.all(|c| c.is_ascii_alphanumeric() || b"._-/:@".contains(&c))
}

const VOLUME_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "z",
    "Z",
    "shared",
    "slave",
    "private",
    "rshared",
    "rslave",
    "rprivate",
    "nocopy",
    "consistent",
    "cached",
    "delegated",
];

pub(super) fn check_volume(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let usage = "write `HOST_PATH:CONTAINER_PATH[:OPTIONS]`, e.g. `/var/lib/bitcoind:/bitcoind:ro`";
    if !(2..=3).contains(&parts.len()) {
        return Err(format!("`{}` is not a volume; {usage}", shown(spec)));
    }
    let (host, inside) = (parts[0], parts[1]);
    if !(host.starts_with('/') || is_docker_name(host)) {
        return Err(format!(
            "volume source `{}` must be an absolute path or a volume name; {usage}",
            shown(host)
        ));
    }
    if !inside.starts_with('/') {
        return Err(format!(
            "volume target `{}` must be an absolute path; {usage}",
            shown(inside)
        ));
    }
    if let Some(opts) = parts.get(2)
        && let Some(bad) = opts.split(',').find(|o| !VOLUME_OPTIONS.contains(o))
    {
        return Err(format!(
            "unknown volume option `{}`; use {}",
            shown(bad),
            VOLUME_OPTIONS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_refs() {
        assert_eq!(container_name("wallet@hot"), "wallet_hot");
        assert_eq!(container_name("_x"), "job_x");
        assert!(is_image_ref(
            "registry.example.com:5000/unitgen-runner:0.1.0"
        ));
        assert!(!is_image_ref("--privileged"));
        assert!(!is_image_ref("Upper"));
        assert!(check_volume("/var/lib/bitcoind:/bitcoind:ro").is_ok());
        assert!(check_volume("data:/data").is_ok());
        assert!(check_volume("/a").is_err());
        assert!(check_volume("/a:b").is_err());
        assert!(check_volume("/a:/b:rwx").is_err());
    }

    #[test]
    fn the_lock_mount_is_the_runners_lock_folder_on_both_sides() {
        use crate::contract::lock::HOST_LOCK_DIR;
        assert_eq!(HOST_LOCK_VOLUME, format!("{HOST_LOCK_DIR}:{HOST_LOCK_DIR}"));
        assert!(check_volume(HOST_LOCK_VOLUME).is_ok());
    }
}
