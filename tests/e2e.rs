//! The first seed end to end, in its own topology: litecoind in a
//! container named `bitcoind`, the runner in a container linked to it
//! (`--link bitcoind:bitcoind`), etcd and moto on the docker0 address.
//! The bundled bitcoind-wallet example is rendered against the real etcd,
//! and the service's commands are run exactly as systemd parses them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::docker::{Containers, ScratchImage, docker, docker0, unique_name};
use common::etcd::Etcd;
use common::moto::{Moto, new_volume};
use common::{run, unitgen, world_readable_tempdir};

const CANARY: &str = "canary-e2e-3a9f-rpc-password";

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
    // Names of this test's own: a user's real `bitcoind` container is
    // never touched. The runner reaches the node by the link's alias,
    // `bitcoind`, exactly as in the seed.
    let node_name = unique_name("unitgen-e2e-bitcoind");
    let runner_name = unique_name("unitgen-e2e-backup");
    let _containers = Containers(vec![node_name.clone(), runner_name.clone()]);
    let runner_image =
        ScratchImage::build(&[(env!("CARGO_BIN_EXE_unitgen-runner"), "/unitgen-runner")]);
    let node_image = ScratchImage::build(&[("/usr/lib/litecoin/litecoind", "/litecoind")]);

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
        &node_name,
        "--volume",
        &volume_arg,
        &node_image.tag,
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
        &node_name,
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
        .replace(
            "registry.example.com/unitgen-runner:0.1.0",
            &runner_image.tag,
        )
        .replace("/var/lib/bitcoind:/bitcoind", &volume_arg)
        .replace(
            "links: [\"bitcoind:bitcoind\"]",
            &format!("name: {runner_name}\n      links: [\"{node_name}:bitcoind\"]"),
        )
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
}
