//! Starts a real etcd (Debian's `etcd-server`) for the tests: a temp data
//! dir, random loopback ports, killed on drop. Setup goes through the real
//! `etcdctl` (package `etcd-client`). A test that needs etcd and cannot
//! start it fails; it never skips.

use super::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD: &str = "/usr/bin/etcd";
const ETCDCTL: &str = "/usr/bin/etcdctl";

/// TLS material made with the real `openssl` CLI: a CA, a server
/// certificate for 127.0.0.1, and a second, unrelated CA.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn other_ca(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn make_certs(dir: &Path) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}-key.pem"),
                "-out",
                &format!("{ca}.pem"),
                "-subj",
                &format!("/CN=unitgen test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server-key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    Certs {
        dir: dir.to_owned(),
    }
}

pub struct Etcd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    /// Extra client URLs (e.g. on the docker bridge, for containers).
    extra_hosts: Vec<String>,
    tls: Option<Certs>,
    /// `user:password` once auth is enabled (for etcdctl).
    auth: Option<String>,
}

impl Etcd {
    pub fn start() -> Etcd {
        Etcd::start_with(Vec::new(), false)
    }

    /// etcd that also listens on `hosts` (same port), e.g. the docker0
    /// address so that containers on the bridge network reach it.
    pub fn start_on(hosts: &[&str]) -> Etcd {
        Etcd::start_with(hosts.iter().map(|h| h.to_string()).collect(), false)
    }

    /// etcd serving TLS with a certificate from a test CA.
    pub fn start_tls() -> Etcd {
        Etcd::start_with(Vec::new(), true)
    }

    fn start_with(extra_hosts: Vec<String>, tls: bool) -> Etcd {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server (the README's test command does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let certs = tls.then(|| make_certs(&dir.path().join("certs")));
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: 0,
            peer_port: 0,
            extra_hosts,
            tls: certs,
            auth: None,
        };
        // A port picked free can be taken before etcd binds it: retry.
        for _ in 0..5 {
            etcd.client_port = free_port();
            etcd.peer_port = free_port();
            if etcd.spawn() {
                return etcd;
            }
        }
        panic!("etcd did not start; log:\n{}", etcd.log_tail());
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client_port)
    }

    /// The endpoint on an extra host given to `start_on`.
    pub fn endpoint_on(&self, host: &str) -> String {
        format!("{}://{host}:{}", self.scheme(), self.client_port)
    }

    pub fn certs(&self) -> &Certs {
        self.tls.as_ref().expect("a TLS etcd")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn spawn(&mut self) -> bool {
        let mut clients = vec![self.endpoint()];
        for host in &self.extra_hosts {
            clients.push(self.endpoint_on(host));
        }
        let clients = clients.join(",");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name=test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={clients}"))
            .arg(format!("--advertise-client-urls={}", self.endpoint()))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(c) = &self.tls {
            cmd.arg(format!("--cert-file={}", c.server_cert().display()))
                .arg(format!("--key-file={}", c.server_key().display()));
        }
        self.child = Some(cmd.spawn().expect("start etcd"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("etcd exited ({status}); log:\n{}", self.log_tail());
                self.child = None;
                return false;
            }
            if self.ctl_status(&["endpoint", "health"]).0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn ctl_status(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=5s");
        if let Some(c) = &self.tls {
            cmd.arg(format!("--cacert={}", c.ca().display()));
        }
        if let Some(auth) = &self.auth {
            cmd.arg(format!("--user={auth}"));
        }
        let out = cmd
            .args(args)
            .output()
            .expect("run etcdctl (package etcd-client)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Runs etcdctl; panics with its output on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let (ok, text) = self.ctl_status(args);
        assert!(ok, "etcdctl {args:?} failed: {text}");
        text
    }

    pub fn put(&self, key: &str, value: &str) {
        // `--` so values starting with `-` are not read as flags.
        self.ctl(&["put", "--", key, value]);
    }

    pub fn del(&self, key: &str) {
        self.ctl(&["del", "--", key]);
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl(&["get", "--write-out=json", "/"]);
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    pub fn compact(&self, revision: i64) {
        self.ctl(&["compact", &revision.to_string(), "--physical"]);
    }

    /// Enables authentication with a `root` user and `user`, who may read
    /// everything.
    pub fn enable_auth(&mut self, user: &str, password: &str) {
        enable_auth(|args| drop(self.ctl(args)), user, password);
        self.auth = Some(ROOT_AUTH.into());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "etcd did not restart:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `root`'s credentials once [`enable_auth`] ran.
pub const ROOT_AUTH: &str = "root:rootpw";

/// Turns on etcd's authentication through `ctl` (etcdctl with the
/// cluster's endpoints): a `root` user, and `user`, who may read every key.
pub fn enable_auth(ctl: impl Fn(&[&str]), user: &str, password: &str) {
    ctl(&["user", "add", "root", "--new-user-password=rootpw"]);
    ctl(&["role", "add", "reader"]);
    ctl(&[
        "role",
        "grant-permission",
        "reader",
        "--prefix=true",
        "read",
        "/",
    ]);
    ctl(&[
        "user",
        "add",
        user,
        &format!("--new-user-password={password}"),
    ]);
    ctl(&["user", "grant-role", user, "reader"]);
    ctl(&["auth", "enable"]);
}
