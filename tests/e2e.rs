//! The first seed end to end, in its own topology: litecoind in a
//! container named `bitcoind`, the runner in a container linked to it
//! (`--link bitcoind:bitcoind`), etcd and moto on the docker0 address.
//! The bundled bitcoind-wallet example is rendered against the real etcd,
//! and the service's commands are run exactly as systemd parses them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::moto::{Moto, new_volume};
use common::{run, unitgen, world_readable_tempdir};

const RUNNER_IMAGE: &str = "unitgen-e2e-runner:test";
const NODE_IMAGE: &str = "unitgen-e2e-litecoind:test";
const CANARY: &str = "canary-e2e-3a9f-rpc-password";

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("run docker (the machine's Docker Engine)");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The host's address on the default bridge, where containers reach it.
fn docker0() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .expect("run ip (iproute2)");
    let text = String::from_utf8(out.stdout).unwrap();
    let inet = text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap_or_else(|| panic!("docker0 has no IPv4 address: {text}"));
    inet.split('/').next().unwrap().to_owned()
}

fn scratch_image(tag: &str, binaries: &[(&str, &str)]) {
    let mut cmd = Command::new("bash");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/scratch-image"))
        .arg(tag);
    for (src, dest) in binaries {
        cmd.arg(format!("{src}:{dest}"));
    }
    let out = cmd.output().expect("run .ci/scratch-image");
    assert!(
        out.status.success(),
        "building {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes containers by name when the test ends, however it ends.
struct Containers(Vec<&'static str>);

impl Drop for Containers {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("docker")
                .args(["rm", "--force", name])
                .output();
        }
    }
}

/// A JSON-RPC call to the node container, for setting the scene.
fn rpc(addr: &str, method: &str, params: serde_json::Value) -> Result<serde_json::Value, String> {
    common::litecoind::raw_rpc(addr, &format!("bitcoinrpc:{CANARY}"), "/", method, params)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn the_bitcoind_wallet_example_backs_up_and_snapshots_through_containers() {
    let gateway = docker0();
    let etcd = Etcd::start_on(&[&gateway]);
    let moto = Moto::start_on(&gateway, &[]);
    let _containers = Containers(vec!["bitcoind", "bitcoind-backup"]);
    for name in ["bitcoind", "bitcoind-backup"] {
        let _ = Command::new("docker")
            .args(["rm", "--force", name])
            .output();
    }
    scratch_image(
        RUNNER_IMAGE,
        &[(env!("CARGO_BIN_EXE_unitgen-runner"), "/unitgen-runner")],
    );
    scratch_image(NODE_IMAGE, &[("/usr/lib/litecoin/litecoind", "/litecoind")]);

    // The hot wallet's node, as in the seed: a container named bitcoind,
    // its data folder shared with the host.
    let shared = world_readable_tempdir();
    std::fs::create_dir_all(shared.path().join("backups")).unwrap();
    std::fs::create_dir_all(shared.path().join("data")).unwrap();
    let volume_arg = format!("{}:/bitcoind", shared.path().display());
    let rpcpassword = format!("-rpcpassword={CANARY}");
    docker(&[
        "run",
        "--detach",
        "--name",
        "bitcoind",
        "--volume",
        &volume_arg,
        NODE_IMAGE,
        "/litecoind",
        "-regtest",
        "-datadir=/bitcoind/data",
        "-server=1",
        "-listen=0",
        "-rpcbind=0.0.0.0",
        "-rpcallowip=0.0.0.0/0",
        "-rpcport=8332",
        "-rpcuser=bitcoinrpc",
        &rpcpassword,
        "-printtoconsole=0",
    ]);
    let ip = docker(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}}",
        "bitcoind",
    ]);
    let node = format!("{ip}:8332");
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = rpc(&node, "getblockchaininfo", serde_json::json!([])) {
        assert!(Instant::now() < deadline, "litecoind did not answer: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    rpc(&node, "createwallet", serde_json::json!(["hot"])).expect("createwallet");

    // What the seed kept in etcd.
    let volume = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { new_volume(&moto.sdk().await).await });
    etcd.put("/bitcoind/rpc/user", "bitcoinrpc");
    etcd.put("/bitcoind/rpc/password", CANARY);
    etcd.put("/aws/volume-id", &volume);
    etcd.put("/aws/access-key-id", "AKIDTEST");
    etcd.put("/aws/secret-access-key", "secret");

    // The bundled example, pointed at this test's servers and image.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/bitcoind-wallet/unitgen.yaml"
    ))
    .unwrap();
    let mut spec = example
        .replace("http://127.0.0.1:2379", &etcd.endpoint())
        .replace("http://172.17.0.1:2379", &etcd.endpoint_on(&gateway))
        .replace("registry.example.com/unitgen-runner:0.1.0", RUNNER_IMAGE)
        .replace("/var/lib/bitcoind:/bitcoind", &volume_arg)
        .replace(
            "          region: us-east-1\n",
            &format!(
                "          region: us-east-1\n          endpoint: {}\n",
                moto.endpoint()
            ),
        );
    let docker_path = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    spec = spec.replace(
        "defaults:\n",
        &format!("defaults:\n  docker: {}\n", docker_path.trim()),
    );
    assert_ne!(spec, example);
    let dir = world_readable_tempdir();
    let spec_path = dir.path().join("unitgen.yaml");
    std::fs::write(&spec_path, &spec).unwrap();
    let units = dir.path().join("units");
    let r = run(unitgen()
        .arg("render")
        .arg("-f")
        .arg(&spec_path)
        .arg("-o")
        .arg(&units));
    assert_eq!(r.status, 0, "{}", r.stderr);
    let service_text = std::fs::read_to_string(units.join("bitcoind-backup.service")).unwrap();
    assert!(
        service_text.contains(&volume),
        "the volume id was resolved at render time"
    );
    assert!(!service_text.contains(CANARY));

    // Run the service's commands exactly as systemd parses them.
    let parsed = common::systemd_dump(&units, "bitcoind-backup.service");
    let service = &parsed["bitcoind-backup.service"];
    let mut output = String::new();
    for (setting, argv) in &service.commands {
        if setting == "ExecStopPost" {
            continue;
        }
        let out = Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        output += &String::from_utf8_lossy(&out.stdout);
        output += &String::from_utf8_lossy(&out.stderr);
        if setting == "ExecStart" {
            assert!(out.status.success(), "ExecStart failed:\n{output}");
        }
    }
    assert!(output.contains("all 2 step(s) done"), "{output}");
    assert!(!output.contains(CANARY), "the secret leaked:\n{output}");

    // The wallet backup is on the shared volume, the snapshot in moto.
    let backup = shared.path().join("backups/wallet.dat");
    assert!(
        Path::new(&backup)
            .metadata()
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "no wallet backup at {}",
        backup.display()
    );
    let snapshots = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            moto.sdk()
                .await
                .describe_snapshots()
                .send()
                .await
                .unwrap()
                .snapshots()
                .to_vec()
        });
    let ours: Vec<_> = snapshots
        .iter()
        .filter(|s| s.volume_id() == Some(volume.as_str()))
        .collect();
    assert_eq!(ours.len(), 1, "{snapshots:?}");
    let tags: std::collections::BTreeMap<_, _> = ours[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get("unitgen:job"), Some(&"bitcoind-backup"));
    assert_eq!(tags.get("unitgen:volume"), Some(&volume.as_str()));
    assert_eq!(tags.get("app"), Some(&"bitcoind"));

    for image in [RUNNER_IMAGE, NODE_IMAGE] {
        let _ = Command::new("docker")
            .args(["rmi", "--force", image])
            .output();
    }
}
