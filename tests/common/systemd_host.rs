//! A real systemd host for the tests: Debian bookworm's systemd 252 booted
//! as PID 1 in a container on the machine's Docker Engine, so rendered
//! units are loaded, timers fire and `OnFailure=` units run exactly as on a
//! server. The image comes from `.ci/systemd-host-image` (built once with
//! debootstrap, reused after); each `SystemdHost` is its own uniquely named
//! container, removed on drop. A test that cannot boot its host fails with
//! the journal; it never skips.
//!
//! No `--privileged` (the engine refuses it): systemd runs with the flags of
//! the classic recipe, see `SystemdHost::boot_with`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::docker::{docker, unique_name};

const IMAGE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/systemd-host-image");
/// Where the host's Docker CLI appears inside: the `docker:` default of the
/// spec, so rendered units run unchanged.
pub const DOCKER_CLI: &str = "/usr/bin/docker";
/// Systemd 252 boots in under a second here; the rest is slack for a loaded
/// CI machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the image if it is missing (once per machine and script version:
/// the script locks and reuses) and returns its tag.
pub fn image() -> String {
    let out = Command::new("bash")
        .arg(IMAGE_SCRIPT)
        .stderr(Stdio::inherit())
        .output()
        .expect("run .ci/systemd-host-image");
    assert!(
        out.status.success(),
        ".ci/systemd-host-image failed ({}): the systemd host tests need debootstrap, \
         the machine's apt mirror and the Docker Engine",
        out.status
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// How to boot a host: `SystemdHost::options().with_docker().boot()`.
#[derive(Default, Clone)]
pub struct Options {
    docker: bool,
    shares: Vec<(PathBuf, String)>,
}

impl Options {
    /// The host's Docker Engine socket and CLI inside, as on a real Docker
    /// host: a unit's `docker run` starts a sibling container on the same
    /// engine. Also installs a `docker.service` stand-in, since rendered
    /// container units say `Requires=docker.service`.
    pub fn with_docker(mut self) -> Options {
        self.docker = true;
        self
    }

    /// A host folder bind-mounted read-write at `container_path`.
    pub fn share(mut self, host_path: impl AsRef<Path>, container_path: &str) -> Options {
        self.shares
            .push((host_path.as_ref().to_owned(), container_path.to_owned()));
        self
    }

    pub fn boot(self) -> SystemdHost {
        SystemdHost::boot_with(self)
    }
}

pub struct SystemdHost {
    /// The container's name, unique to this host.
    pub name: String,
}

impl SystemdHost {
    /// A plain host: systemd, dbus, journald, nothing else running.
    pub fn boot() -> SystemdHost {
        SystemdHost::boot_with(Options::default())
    }

    pub fn options() -> Options {
        Options::default()
    }

    pub fn boot_with(options: Options) -> SystemdHost {
        let image = image();
        let name = unique_name("unitgen-systemd");
        let mut args: Vec<String> = vec![
            "run".into(),
            "--detach".into(),
            format!("--name={name}"),
            // For a human looking at `docker ps` after a crashed test run.
            "--label=unitgen-test=systemd-host".into(),
            // systemd needs /run and /run/lock to be tmpfs it can write
            // (its container interface: https://systemd.io/CONTAINER_INTERFACE/).
            "--tmpfs=/run".into(),
            "--tmpfs=/run/lock".into(),
            // Cgroup v1 here (`docker info`: Cgroup Version 1, host cgroup
            // namespace). The bind is recursive and `:ro` makes only its top
            // tmpfs read-only: the hierarchies mounted below it stay
            // writable, so systemd creates its slices under the container's
            // own /docker/ID cgroup, and runc removes them with the
            // container. Engines from 25 on make `:ro` recursive (kernel
            // >= 5.12), which this recipe cannot survive; there the mount
            // would be `--mount type=bind,...,readonly,bind-recursive=writable`
            // (https://github.com/moby/moby/issues/44978). Untested on a
            // cgroup v2 engine.
            "--volume=/sys/fs/cgroup:/sys/fs/cgroup:ro".into(),
            // How systemd knows it runs in a container (systemd-detect-virt):
            // it skips what a container cannot do and says so.
            "--env=container=docker".into(),
        ];
        if options.docker {
            let socket = docker_socket();
            let cli = host_docker_cli();
            args.push(format!("--volume={}:/run/docker.sock", socket.display()));
            args.push(format!("--volume={}:{DOCKER_CLI}:ro", cli.display()));
        }
        for (host_path, container_path) in &options.shares {
            args.push(format!("--volume={}:{container_path}", host_path.display()));
        }
        args.push(image);
        args.push("/lib/systemd/systemd".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Owned before `docker run`: a run that creates the container and
        // then fails to start it, or a boot that times out, still ends in
        // Drop's `docker rm`.
        let host = SystemdHost { name };
        docker(&args);
        host.wait_booted();
        if options.docker {
            host.install_docker_service();
        }
        host
    }

    /// Waits until `systemctl is-system-running --wait` says `running`.
    ///
    /// `degraded` (a unit failed at boot) panics with the failed units: the
    /// image is built so that nothing fails in a container here (units that
    /// cannot work in one, like getty on tty1, are skipped by their
    /// conditions), and a test that reads the journal or counts failed
    /// units needs a clean start.
    fn wait_booted(&self) {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < BOOT_TIMEOUT {
            // `--wait` blocks until boot is finished; `timeout` bounds it so
            // a hung boot ends in the panic below. Right after `docker run`
            // systemd's private bus socket may not exist yet: retry then.
            let out = self.exec(&["timeout", "10", "systemctl", "is-system-running", "--wait"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            match state.as_str() {
                "running" => return,
                "degraded" => panic!(
                    "systemd host {} booted degraded; failed units:\n{}\njournal:\n{}",
                    self.name,
                    self.exec_text(&["systemctl", "--failed", "--no-pager", "--full"]),
                    self.journal_text(&["-b", "-p", "warning"]),
                ),
                _ => {}
            }
            last = format!("{state} {}", String::from_utf8_lossy(&out.stderr).trim());
            if !self.is_up() {
                panic!(
                    "systemd host {} exited while booting; docker logs:\n{}",
                    self.name,
                    self.docker_logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "systemd host {} did not reach `running` within {BOOT_TIMEOUT:?} (last: {last}); \
             engine cgroup version/driver: {}\njobs:\n{}\njournal:\n{}\ndocker logs:\n{}",
            self.name,
            docker(&["info", "--format", "{{.CgroupVersion}}/{{.CgroupDriver}}"]),
            self.exec_text(&["systemctl", "list-jobs", "--no-pager"]),
            self.journal_text(&["-b"]),
            self.docker_logs(),
        );
    }

    fn is_up(&self) -> bool {
        Command::new("docker")
            .args(["inspect", "--format={{.State.Running}}", &self.name])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    }

    fn docker_logs(&self) -> String {
        Command::new("docker")
            .args(["logs", "--tail=50", &self.name])
            .output()
            .map(|o| output_text(&o))
            .unwrap_or_default()
    }

    /// A `docker.service` that is active when the mounted engine answers,
    /// so `Requires=docker.service` in a rendered unit holds as on a Docker
    /// host. Also proves the host's CLI runs in this image.
    fn install_docker_service(&self) {
        let version = self.exec(&[DOCKER_CLI, "version", "--format", "{{.Server.Version}}"]);
        assert!(
            version.status.success(),
            "the host's docker CLI does not work inside the systemd host ({}); it must run on \
             Debian bookworm (a static binary does):\n{}",
            host_docker_cli().display(),
            String::from_utf8_lossy(&version.stderr)
        );
        self.write_file(
            "/etc/systemd/system/docker.service",
            &format!(
                "[Unit]\nDescription=The host's Docker Engine, through its socket\n\n\
                 [Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart={DOCKER_CLI} version --format {{{{.Server.Version}}}}\n"
            ),
        );
        self.systemctl(&["daemon-reload"]);
        self.systemctl(&["start", "docker.service"]);
    }

    /// `docker exec` in the host, as root; the output whatever the status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("docker")
            .arg("exec")
            .arg(&self.name)
            .args(argv)
            .output()
            .expect("run docker exec")
    }

    /// Stdout and stderr of `argv`, whatever its status (for messages).
    fn exec_text(&self, argv: &[&str]) -> String {
        output_text(&self.exec(argv))
    }

    /// Runs `argv`; panics with its output unless it succeeds; returns
    /// its stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} in systemd host {} failed ({}):\n{}",
            self.name,
            out.status,
            output_text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl ARGS` that must succeed; its stdout.
    pub fn systemctl(&self, args: &[&str]) -> String {
        let mut argv = vec!["systemctl", "--no-pager"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// One property of a unit (`systemctl show --value -p NAME`).
    pub fn property(&self, unit: &str, name: &str) -> String {
        self.systemctl(&["show", "--value", "-p", name, unit])
            .trim()
            .to_owned()
    }

    /// `docker cp`: a file or folder from this machine into the host.
    /// Copied files belong to root inside, whoever owns them here.
    pub fn copy_in(&self, host_path: impl AsRef<Path>, container_path: &str) {
        let src = host_path
            .as_ref()
            .to_str()
            .expect("a UTF-8 path")
            .to_owned();
        docker(&["cp", &src, &format!("{}:{container_path}", self.name)]);
    }

    /// Writes `contents` to `path` inside the host (parents created).
    pub fn write_file(&self, path: &str, contents: &str) {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(r#"mkdir -p "$(dirname "$1")" && cat >"$1""#)
            .args(["sh", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker exec");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(contents.as_bytes())
            .expect("write to docker exec");
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "writing {path} in systemd host {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Installs unit files (`(name, contents)`) into /etc/systemd/system
    /// and reloads systemd, as an operator would after copying units.
    pub fn install_units(&self, units: &[(&str, &str)]) {
        for (name, contents) in units {
            self.write_file(&format!("/etc/systemd/system/{name}"), contents);
        }
        self.systemctl(&["daemon-reload"]);
    }

    /// Every journal entry of `unit` this boot, oldest first, as
    /// `(priority, message)`: systemd's own lines about the unit and what
    /// its processes wrote. Read with `journalctl -o json`, so the
    /// priority is journald's, not parsed from text. Each start of a unit
    /// adds one warning of the container's making: see
    /// `is_container_artifact`.
    pub fn journal(&self, unit: &str) -> Vec<(u8, String)> {
        let text = self.run(&[
            "journalctl",
            "--no-pager",
            "-b",
            "-u",
            unit,
            "-o",
            "json",
            "--output-fields=PRIORITY,MESSAGE",
        ]);
        text.lines()
            .map(|line| {
                let entry: serde_json::Value =
                    serde_json::from_str(line).expect("journalctl -o json line");
                let priority = entry["PRIORITY"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("journal entry without PRIORITY: {line}"));
                (priority, journal_message(&entry["MESSAGE"]))
            })
            .collect()
    }

    /// `journalctl ARGS` as text, for failure messages.
    pub fn journal_text(&self, args: &[&str]) -> String {
        let mut argv = vec!["journalctl", "--no-pager", "-o", "short-precise"];
        argv.extend_from_slice(args);
        let text = self.exec_text(&argv);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    /// Polls `done` every 100 ms until it holds; after `timeout` panics
    /// with `what` and the tail of this boot's journal.
    pub fn wait_until(&self, timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
        let started = Instant::now();
        while !done() {
            if started.elapsed() > timeout {
                panic!(
                    "systemd host {}: {what} did not happen within {timeout:?}; journal:\n{}",
                    self.name,
                    self.journal_text(&["-b"])
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until a oneshot `unit` has finished a run (it went through
    /// activation and is no longer activating) and returns its `Result`
    /// (`success`, `exit-code`, ...).
    pub fn wait_finished(&self, unit: &str, timeout: Duration) -> String {
        self.wait_until(timeout, &format!("a finished run of {unit}"), || {
            let props = self.systemctl(&[
                "show",
                "-p",
                "ActiveState",
                "-p",
                "ExecMainExitTimestampMonotonic",
                unit,
            ]);
            let exited = props
                .lines()
                .any(|l| l.starts_with("ExecMainExitTimestampMonotonic=") && !l.ends_with("=0"));
            // Oneshot: activating while ExecStart runs, deactivating
            // while ExecStopPost runs; `Result` is final after both.
            exited
                && !props.contains("ActiveState=activating")
                && !props.contains("ActiveState=deactivating")
        });
        self.property(unit, "Result")
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        // Only the container this value created, by its unique name.
        let _ = Command::new("docker")
            .args(["rm", "--force", &self.name])
            .output();
    }
}

/// A command's stdout then stderr, for messages.
fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one warning systemd logs for every unit it starts in this
/// container, whatever the unit: "UNIT: Failed to get cgroup ID of cgroup
/// ..., ignoring: Operation not permitted". systemd 252 reads a cgroup's ID
/// with name_to_handle_at(2), which Docker's default seccomp profile allows
/// only with CAP_SYS_ADMIN; `--security-opt seccomp=unconfined` silences it,
/// but would also let units do what they cannot in a container on a real
/// host. Tests that look for a unit's warnings leave this one out.
pub fn is_container_artifact(message: &str) -> bool {
    message.contains("Failed to get cgroup ID of cgroup ")
        && message.ends_with("ignoring: Operation not permitted")
}

/// journald's MESSAGE: a string, or an array of bytes when it is not
/// valid UTF-8 or holds control characters (`journalctl -o json`, see
/// https://systemd.io/JOURNAL_EXPORT_FORMATS/).
fn journal_message(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(bytes) => String::from_utf8_lossy(
            &bytes
                .iter()
                .map(|b| b.as_u64().expect("a byte") as u8)
                .collect::<Vec<u8>>(),
        )
        .into_owned(),
        serde_json::Value::Null => String::new(),
        other => panic!("unexpected MESSAGE in journal JSON: {other}"),
    }
}

/// The engine's Unix socket on this machine (`DOCKER_HOST=unix://...` or
/// the default).
fn docker_socket() -> PathBuf {
    let path = match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => {
            PathBuf::from(host.strip_prefix("unix://").unwrap_or_else(|| {
                panic!("DOCKER_HOST={host}: the systemd host can mount only a Unix socket")
            }))
        }
        _ => PathBuf::from("/var/run/docker.sock"),
    };
    assert!(
        path.exists(),
        "{} is missing: is the Docker Engine running?",
        path.display()
    );
    path
}

/// The docker CLI this process runs, resolved through PATH and symlinks.
fn host_docker_cli() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("docker"))
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .expect("no docker CLI on PATH")
}
