//! Starts a real moto for the tests; stopped on drop.
//!
//! One server per test: it is ready in about half a second, tests stay
//! independent, and nothing can outlive the test process (a server shared
//! through a static would never be dropped). A server that cannot start
//! fails the test with its own output: these tests never skip.

use super::free_port;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    child: Child,
    host: String,
    port: u16,
    /// moto's stdout and stderr, shown when it fails.
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// With extra environment, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0` to
    /// make moto check credentials.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        Moto::start_on("127.0.0.1", env)
    }

    /// Listening on `host` (e.g. the docker0 address, for containers).
    pub fn start_on(host: &str, env: &[(&str, &str)]) -> Moto {
        // A port picked here may be taken before moto binds it: retry then.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("moto log file");
            let child = Command::new("moto_server")
                .args(["-H", host, "-p", &port.to_string()])
                .env("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.reopen().unwrap())
                .stderr(log.reopen().unwrap())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run moto_server ({e}): these tests need a real moto \
                         (pip install 'moto[server]'); they never pass without it"
                    )
                });
            let mut moto = Moto {
                child,
                host: host.to_owned(),
                port,
                log,
            };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return moto,
                Err(why) => {
                    last_log = format!("{why}\n{}", read(moto.log.path()));
                    if !last_log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("moto_server did not start:\n{last_log}");
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("moto_server exited with {status}"));
            }
            if let Ok(status) = request(&self.host, self.port, "GET", "/moto-api/")
                && status == 200
            {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(format!("moto_server did not answer within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Forgets every resource (POST /moto-api/reset).
    pub fn reset(&self) {
        let status = request(&self.host, self.port, "POST", "/moto-api/reset")
            .unwrap_or_else(|e| panic!("moto reset: {e}\n{}", read(self.log.path())));
        assert_eq!(status, 200, "moto reset");
    }

    /// The settings of the plain test clients: static test keys, moto's
    /// endpoint.
    async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .http_client(http)
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .load()
            .await
    }

    /// A plain SDK client (static test keys), for setting the scene and
    /// checking it.
    pub async fn sdk(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    /// A plain S3 client (static test keys, path-style as moto needs), for
    /// setting the scene and checking it.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config().await;
        let config = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// An unsigned GET (moto checks no signature unless told to): the
    /// status and the body exactly as moto sent it.
    pub fn get_raw(&self, path: &str) -> (u16, String) {
        let response = exchange(&self.host, self.port, "GET", path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", read(self.log.path())));
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    /// What moto printed so far (its request log).
    pub fn output(&self) -> String {
        read(self.log.path())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A bodiless HTTP/1.1 request; returns the whole response.
fn exchange(host: &str, port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// A bodiless HTTP/1.1 request; returns the status code.
fn request(host: &str, port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let response = exchange(host, port, method, path)?;
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.80}")))
}

/// A fresh 1 GiB volume in us-east-1a.
pub async fn new_volume(ec2: &aws_sdk_ec2::Client) -> String {
    let out = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(1)
        .send()
        .await
        .expect("CreateVolume");
    out.volume_id().unwrap().to_owned()
}
