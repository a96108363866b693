//! Latency from an etcd put to the rewritten unit on disk, through
//! `unitgen watch`, with a 1,000-job spec and the debounce window at 0.
//!
//!     cargo bench --bench watch
//!
//! `UNITGEN_BIN=PATH` measures that `unitgen` instead of the one built with
//! the bench, e.g. a release build driven by a debug build of this harness:
//! `cargo build --bench watch`, then run the executable it names with
//! `UNITGEN_BIN=target/release/unitgen`.
//!
//! Starts a real etcd (Debian's etcd-server) on random loopback ports.

#[path = "../tests/common/etcd.rs"]
#[allow(dead_code)]
mod etcd;

/// What `tests/common` gives the etcd harness: a free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const JOBS: usize = 1000;
const CHANGES: usize = 200;

fn main() {
    let etcd = etcd::Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = format!(
        "version: 1\netcd:\n  endpoints: [\"{}\"]\n  runner:\n    endpoints: [\"http://172.17.0.1:2379\"]\n\
         defaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\njobs:\n",
        etcd.endpoint()
    );
    for i in 0..JOBS {
        spec += &format!(
            "  job{i}:\n    schedule: daily\n    steps:\n      - ebs_snapshot:\n          \
             volume_id: {{ etcd: /vol/{i} }}\n          region: us-east-1\n          \
             credentials: {{ etcd_prefix: /aws/ }}\n          wait: 30min\n          \
             retention: {{ keep_last: 7, keep_daily: 14 }}\n"
        );
    }
    std::fs::write(dir.path().join("unitgen.yaml"), spec).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .unwrap();
        c.put("/aws/access-key-id", "AKID", None).await.unwrap();
        c.put("/aws/secret-access-key", "secret", None)
            .await
            .unwrap();
        for i in 0..JOBS {
            c.put(format!("/vol/{i}"), format!("vol-{i:017x}"), None)
                .await
                .unwrap();
        }
        c
    });

    let started = Instant::now();
    let bin = std::env::var("UNITGEN_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_unitgen").into());
    println!("measuring {bin}");
    let mut watch = Command::new(bin)
        .args(["watch", "--debounce", "0ms", "-f"])
        .arg(dir.path().join("unitgen.yaml"))
        .arg("-o")
        .arg(dir.path().join("units"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(watch.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("watching") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "watch exited");
    }
    println!(
        "initial render of {JOBS} jobs from etcd ({} keys): {:.0} ms",
        JOBS + 2,
        started.elapsed().as_secs_f64() * 1000.0
    );
    std::thread::spawn(move || for _ in stderr.lines() {});

    let mut latencies = Vec::with_capacity(CHANGES);
    for n in 0..CHANGES {
        let job = (n * 7919) % JOBS;
        let value = format!("vol-{:017x}", 0x1_0000_0000u64 + n as u64);
        let path = dir.path().join(format!("units/job{job}.service"));
        let t0 = Instant::now();
        rt.block_on(client.put(format!("/vol/{job}"), value.clone(), None))
            .unwrap();
        loop {
            if std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&value)) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no rewrite of {path:?}"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(t0.elapsed());
    }
    let _ = watch.kill();
    let _ = watch.wait();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).min(latencies.len()) - 1];
    println!(
        "etcd put -> unit rewritten ({JOBS} jobs, {CHANGES} changes, debounce 0): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
}
