//! Render-time values and runtime-only secrets against a real etcd.

mod common;

use std::path::Path;

use common::etcd::Etcd;
use common::{read_tree, run, unitgen, write};

/// A spec referencing render-time values (volume id, RPC user, an image
/// tag) and secrets (RPC password, AWS keys).
fn spec(endpoint: &str) -> String {
    format!(
        r#"version: 1
etcd:
  endpoints: ["{endpoint}"]
  runner:
    endpoints: ["http://172.17.0.1:2379"]
defaults:
  target: fleet
  image: {{ etcd: /unitgen/image }}
jobs:
  wallet:
    schedule: daily
    steps:
      - rpc:
          url: http://bitcoind:8332/
          method: backupwallet
          params: ["/backups/wallet.dat"]
          user: {{ etcd: /bitcoind/rpc/user }}
          password: {{ etcd: /bitcoind/rpc/password }}
      - ebs_snapshot:
          volume_id: {{ etcd: /aws/volume-id }}
          region: us-east-1
          credentials: {{ etcd_prefix: /aws/ }}
  other:
    schedule: weekly
    steps:
      - ebs_snapshot:
          volume_id: {{ etcd: /aws/other-volume-id }}
          region: us-east-1
          credentials: default_chain
"#
    )
}

const CANARY: &str = "canary-5f2b9c1e-secret-value";

fn seed(etcd: &Etcd) {
    etcd.put(
        "/unitgen/image",
        "registry.example.com/unitgen-runner:0.1.0",
    );
    etcd.put("/bitcoind/rpc/user", "bitcoinrpc");
    etcd.put("/bitcoind/rpc/password", CANARY);
    etcd.put("/aws/volume-id", "vol-0123456789abcdef0");
    etcd.put("/aws/other-volume-id", "vol-0fedcba9876543210");
    etcd.put("/aws/access-key-id", &format!("AKID{CANARY}"));
    etcd.put("/aws/secret-access-key", &format!("SECRET{CANARY}"));
}

const VALUES: &str = "\
/unitgen/image: registry.example.com/unitgen-runner:0.1.0
/bitcoind/rpc/user: bitcoinrpc
/bitcoind/rpc/password: null
/aws/volume-id: vol-0123456789abcdef0
/aws/other-volume-id: vol-0fedcba9876543210
/aws/access-key-id: null
/aws/secret-access-key: null
";

/// Seeds `etcd` and writes the spec for it into a fresh folder.
fn seeded_spec(etcd: &Etcd) -> (tempfile::TempDir, std::path::PathBuf) {
    seed(etcd);
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("unitgen.yaml");
    write(&spec_path, &spec(&etcd.endpoint()));
    (dir, spec_path)
}

fn render(spec: &Path, out: &Path, extra: &[&str]) -> common::Run {
    run(unitgen()
        .env_remove("UNITGEN_ETCD_PASSWORD")
        .args(["render", "-f"])
        .arg(spec)
        .arg("-o")
        .arg(out)
        .args(extra))
}

#[test]
fn values_from_etcd_render_the_same_bytes_as_a_values_file() {
    let etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    write(&dir.path().join("values.yaml"), VALUES);

    let from_etcd = render(&spec_path, &dir.path().join("a"), &[]);
    assert_eq!(from_etcd.status, 0, "{}", from_etcd.stderr);
    let values = dir.path().join("values.yaml");
    let from_file = render(
        &spec_path,
        &dir.path().join("b"),
        &["--values", values.to_str().unwrap()],
    );
    assert_eq!(from_file.status, 0, "{}", from_file.stderr);
    let (a, b) = (
        read_tree(&dir.path().join("a")),
        read_tree(&dir.path().join("b")),
    );
    assert_eq!(a.len(), 5, "4 units and the manifest: {a:?}");
    assert_eq!(a, b);
    let service = &a[Path::new("wallet.service")];
    assert!(service.contains("vol-0123456789abcdef0"), "{service}");
    assert!(service.contains("registry.example.com/unitgen-runner:0.1.0"));
    assert!(
        service.contains(r#""password_etcd":"/bitcoind/rpc/password""#),
        "{service}"
    );
}

#[test]
fn a_secret_value_appears_nowhere_but_its_key_does() {
    let etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    let out = dir.path().join("units");

    let mut seen = String::new();
    for args in [vec![], vec!["--stdout"], vec!["--check"]] {
        let r = render(&spec_path, &out, &args);
        seen += &r.stdout;
        seen += &r.stderr;
    }
    let r = run(unitgen().arg("validate").arg("-f").arg(&spec_path));
    assert_eq!(r.status, 0, "{}", r.stderr);
    seen += &r.stderr;
    // An error render: a value is missing while secrets exist.
    etcd.del("/aws/other-volume-id");
    let r = render(&spec_path, &dir.path().join("failed"), &[]);
    assert_eq!(r.status, 2);
    seen += &r.stdout;
    seen += &r.stderr;
    for (_, text) in read_tree(&out) {
        seen += &text;
    }
    assert!(!seen.contains(CANARY), "the secret leaked:\n{seen}");
    for key in ["/bitcoind/rpc/password", "/aws/"] {
        assert!(seen.contains(key), "the key `{key}` is named in the unit");
    }
}

#[test]
fn every_missing_key_is_reported_at_once_and_nothing_is_written() {
    let etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    let out = dir.path().join("units");
    assert_eq!(render(&spec_path, &out, &[]).status, 0);
    let before = read_tree(&out);

    etcd.del("/aws/volume-id");
    etcd.del("/bitcoind/rpc/password");
    etcd.del("/aws/secret-access-key");
    etcd.put(
        "/unitgen/image",
        "registry.example.com/unitgen-runner:0.2.0",
    );
    let r = render(&spec_path, &out, &[]);
    let ep = etcd.endpoint();
    let spec = spec_path.display();
    assert_eq!(
        r.stderr,
        format!(
            "error: {spec}:18:21: jobs.wallet.steps[0].rpc.password: etcd key `/bitcoind/rpc/password` does not exist in etcd at {ep}; store it with `etcdctl put /bitcoind/rpc/password VALUE`\n\
             error: {spec}:20:22: jobs.wallet.steps[1].ebs_snapshot.volume_id: etcd key `/aws/volume-id` does not exist in etcd at {ep}; store it with `etcdctl put /aws/volume-id VALUE`\n\
             error: {spec}:22:39: jobs.wallet.steps[1].ebs_snapshot.credentials.etcd_prefix: etcd key `/aws/secret-access-key` does not exist in etcd at {ep}; store it with `etcdctl put /aws/secret-access-key VALUE`\n"
        )
    );
    assert_eq!(r.status, 2);
    assert_eq!(read_tree(&out), before, "the previous units are intact");
}

#[test]
fn etcd_down_is_named_with_its_endpoint_and_nothing_is_written() {
    let mut etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    let out = dir.path().join("units");
    assert_eq!(render(&spec_path, &out, &[]).status, 0);
    let before = read_tree(&out);
    etcd.put("/aws/volume-id", "vol-0aaaaaaaaaaaaaaaa");
    etcd.stop();

    let r = render(&spec_path, &out, &["--etcd-timeout", "2s"]);
    assert_eq!(r.status, 1, "{}", r.stderr);
    let expected = format!("error: etcd at {} is unreachable (", etcd.endpoint());
    assert!(r.stderr.starts_with(&expected), "{}", r.stderr);
    assert!(
        r.stderr.ends_with("); check that etcd runs there, or set the endpoints (--etcd-endpoints, UNITGEN_ETCD_ENDPOINTS)\n"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1);
    assert_eq!(read_tree(&out), before);
}

#[test]
fn a_server_that_never_answers_times_out() {
    // Accepts connections and never speaks: a hung etcd.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let _hold = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("unitgen.yaml");
    write(&spec_path, &spec(&endpoint));
    let started = std::time::Instant::now();
    let r = render(
        &spec_path,
        &dir.path().join("units"),
        &["--etcd-timeout", "1s"],
    );
    assert_eq!(r.status, 1, "{}", r.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        r.stderr.starts_with(&format!(
            "error: etcd at {endpoint} did not answer within 1s"
        )),
        "{}",
        r.stderr
    );
    assert!(!dir.path().join("units").exists());
}

#[test]
fn a_wrong_password_is_an_authentication_failure() {
    let mut etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    etcd.enable_auth("unitgen", "right-password");
    let out = dir.path().join("units");

    let r = run(unitgen()
        .env("UNITGEN_ETCD_PASSWORD", "wrong-password")
        .args(["render", "--etcd-user", "unitgen", "-f"])
        .arg(&spec_path)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.status, 1);
    assert_eq!(
        r.stderr,
        format!(
            "error: etcd at {}: authentication failed for user `unitgen` (etcdserver: authentication failed, invalid user ID or password); check the user and the password (UNITGEN_ETCD_PASSWORD or --etcd-password-file)\n",
            etcd.endpoint()
        )
    );
    assert!(!r.stderr.contains("wrong-password"));
    assert!(!out.exists(), "nothing written");

    // No credentials at all: etcd says so, and so do we.
    let r = render(&spec_path, &out, &[]);
    assert_eq!(r.status, 1);
    assert!(
        r.stderr
            .contains("etcd requires authentication: set --etcd-user"),
        "{}",
        r.stderr
    );

    // The right password, from a file.
    let pw = dir.path().join("pw");
    write(&pw, "right-password\n");
    let r = render(
        &spec_path,
        &out,
        &[
            "--etcd-user",
            "unitgen",
            "--etcd-password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    assert!(out.join("wallet.service").exists());
}

#[test]
fn a_wrong_ca_is_a_tls_failure() {
    let etcd = Etcd::start_tls();
    let (dir, spec_path) = seeded_spec(&etcd);
    let out = dir.path().join("units");

    let wrong = etcd.certs().other_ca();
    let r = render(
        &spec_path,
        &out,
        &["--etcd-ca-file", wrong.to_str().unwrap()],
    );
    assert_eq!(r.status, 1);
    let expected = format!("error: etcd at {}: TLS handshake failed (", etcd.endpoint());
    assert!(r.stderr.starts_with(&expected), "{}", r.stderr);
    assert!(
        r.stderr
            .ends_with("); check the CA (--etcd-ca-file) and the client certificate and key\n"),
        "{}",
        r.stderr
    );
    assert!(!out.exists());

    let right = etcd.certs().ca();
    let r = run(unitgen()
        .env("UNITGEN_ETCD_CA_FILE", &right)
        .args(["render", "-f"])
        .arg(&spec_path)
        .arg("-o")
        .arg(&out));
    assert_eq!(r.status, 0, "{}", r.stderr);
}

#[test]
fn a_secret_key_cannot_double_as_a_rendered_value() {
    let etcd = Etcd::start();
    let (dir, spec_path) = seeded_spec(&etcd);
    // The RPC user is read from the password's key: that would write the
    // secret into the unit.
    write(
        &spec_path,
        &spec(&etcd.endpoint()).replace(
            "{ etcd: /bitcoind/rpc/user }",
            "{ etcd: /bitcoind/rpc/password }",
        ),
    );
    let r = render(&spec_path, &dir.path().join("units"), &[]);
    assert_eq!(r.status, 2);
    assert!(
        r.stderr.contains("jobs.wallet.steps[0].rpc.user: etcd key `/bitcoind/rpc/password` is also used as a secret in this spec"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(CANARY));
}

#[test]
fn a_spec_without_references_never_connects() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("unitgen.yaml");
    // Port 9 (discard) on loopback: nothing listens there.
    write(
        &spec_path,
        "version: 1\netcd: { endpoints: [\"http://127.0.0.1:9\"] }\njobs:\n  a:\n    schedule: daily\n    command: [/bin/true]\n",
    );
    let r = render(&spec_path, &dir.path().join("units"), &[]);
    assert_eq!(r.status, 0, "{}", r.stderr);
}

#[test]
fn a_bridged_runner_cannot_read_etcd_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("unitgen.yaml");
    let values = dir.path().join("values.yaml");
    write(&values, VALUES);
    // The spec without `etcd.runner`: the runner would get 127.0.0.1.
    let text = spec("http://127.0.0.1:2379").replace(
        "  runner:\n    endpoints: [\"http://172.17.0.1:2379\"]\n",
        "",
    );
    write(&spec_path, &text);
    let r = run(unitgen()
        .args(["validate", "--values", values.to_str().unwrap(), "-f"])
        .arg(&spec_path));
    assert_eq!(r.status, 2);
    assert_eq!(
        r.stderr,
        format!(
            "error: {}:3:14: etcd.endpoints: job `wallet` reads secrets from etcd inside its container, \
             where `http://127.0.0.1:2379` is the container itself, not the host; set `etcd.runner.endpoints` \
             to an address the container can reach (the docker0 address, e.g. http://172.17.0.1:2379), \
             or use `container.network: host`\n",
            spec_path.display()
        )
    );
    // On the host network, loopback is the host.
    let host = text.replace(
        "  wallet:\n    schedule: daily\n",
        "  wallet:\n    schedule: daily\n    container: { network: host }\n",
    );
    write(&spec_path, &host);
    let r = run(unitgen()
        .args(["validate", "--values", values.to_str().unwrap(), "-f"])
        .arg(&spec_path));
    assert_eq!(r.status, 0, "{}", r.stderr);
}
