//! The second seed end to end, under a real systemd 252 (the systemd host
//! harness, with the machine's Docker Engine): the bundled
//! `examples/s3-archive` spec, pointed at this test's servers (etcd, moto's
//! S3 and an SMTP server, all on the docker0 address, as the example's
//! containers reach them on the default bridge), rendered against the
//! real etcd and installed on the host. Its service runs the real
//! `unitgen-runner` in an image built FROM scratch: it takes the host
//! lock, copies the data into a dated snapshot (hard-linking what did not
//! change), uploads the backups to S3 and makes sure the bucket's Glacier
//! rule is there; a second run links instead of copying; a run while the
//! lock is held fails after `wait`; and a failed run is mailed by its
//! notify unit.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::docker::{ScratchImage, docker0};
use common::etcd::Etcd;
use common::moto::Moto;
use common::smtp::{Options as SmtpOptions, Smtpd};
use common::systemd_host::SystemdHost;

const WAIT: Duration = Duration::from_secs(120);
const SECRET: &str = "canary-s3-archive-secret";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every object in the bucket, by key, with its size.
fn objects(moto: &Moto) -> BTreeMap<String, i64> {
    rt().block_on(async {
        let s3 = moto.s3().await;
        let out = s3
            .list_objects_v2()
            .bucket("my-backups")
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap_or(0)))
            .collect()
    })
}

/// Snapshot folders under `backups`, oldest first.
fn snapshots(backups: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("backups.") && !n.ends_with(".partial"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_second_seed_runs_under_systemd_copies_uploads_archives_and_mails_a_failure() {
    let gateway = docker0();
    let etcd = Etcd::start_on(&[&gateway]);
    let moto = Moto::start_on(&gateway, &[]);
    let smtpd = Smtpd::start_with(SmtpOptions {
        host: Some(gateway.clone()),
        ..SmtpOptions::default()
    });
    let image = ScratchImage::build(&[(env!("CARGO_BIN_EXE_unitgen-runner"), "/unitgen-runner")]);
    rt().block_on(async {
        moto.s3()
            .await
            .create_bucket()
            .bucket("my-backups")
            .send()
            .await
            .unwrap()
    });
    etcd.put("/aws/access-key-id", "AKIDTEST");
    etcd.put("/aws/secret-access-key", SECRET);

    // The machine's folders, as the docker daemon sees them.
    let data = common::world_readable_tempdir();
    let backups = common::world_readable_tempdir();
    common::write(&data.path().join("wallet.dat"), "wallet bytes\n");
    common::write(&data.path().join("db/dump.sql"), &"row\n".repeat(5000));

    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/s3-archive/unitgen.yaml"
    ))
    .unwrap();
    let endpoint = format!(
        "          region: us-east-1\n          endpoint: {}\n",
        moto.endpoint()
    );
    let spec = example
        .replace("http://127.0.0.1:2379", &etcd.endpoint())
        .replace("http://172.17.0.1:2379", &etcd.endpoint_on(&gateway))
        .replace("registry.example.com/unitgen-runner:0.1.0", &image.tag)
        .replace("smtp://172.17.0.1:25", &smtpd.url())
        .replace(
            "\"/data:/data:ro\"",
            &format!("\"{}:/data:ro\"", data.path().display()),
        )
        .replace(
            "\"/backups:/backups\"",
            &format!("\"{}:/backups\"", backups.path().display()),
        )
        .replace("          region: us-east-1\n", &endpoint)
        .replace("  image:", "  pull: never\n  image:");
    assert_ne!(spec, example);
    let dir = tempfile::tempdir().unwrap();
    common::write(&dir.path().join("unitgen.yaml"), &spec);
    let r = common::run(
        common::unitgen()
            .args(["render", "-f", "unitgen.yaml", "-o", "units"])
            .current_dir(dir.path()),
    );
    assert_eq!(r.status, 0, "{}", r.stderr);
    let units: Vec<(String, String)> = common::read_tree(&dir.path().join("units"))
        .into_iter()
        .map(|(p, t)| (p.to_str().unwrap().to_owned(), t))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    for (name, text) in &units {
        assert!(!text.contains(SECRET), "{name} holds the secret");
    }

    let host = SystemdHost::options().with_docker().boot();
    let refs: Vec<(&str, &str)> = units
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    host.install_units(&refs);

    // First run: a snapshot of /data, the backups in S3, the Glacier rule.
    let out = host.exec(&["systemctl", "start", "backups.service"]);
    assert!(
        out.status.success(),
        "{}",
        host.journal_text(&["-u", "backups.service"])
    );
    // `systemctl start` of a oneshot returns when the run has ended.
    let first = snapshots(backups.path());
    assert_eq!(first.len(), 1, "{first:?}");
    let snap = backups.path().join(&first[0]);
    assert_eq!(
        std::fs::read_to_string(snap.join("wallet.dat")).unwrap(),
        "wallet bytes\n"
    );
    let uploaded = objects(&moto);
    let key = format!("host1/{}/db/dump.sql", first[0]);
    assert_eq!(uploaded.get(&key), Some(&20000), "{uploaded:?}");
    let rules = rt().block_on(async {
        moto.s3()
            .await
            .get_bucket_lifecycle_configuration()
            .bucket("my-backups")
            .send()
            .await
            .unwrap()
            .rules()
            .to_vec()
    });
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].id(), Some("unitgen-archive"));
    let journal = host.journal_text(&["-u", "backups.service", "-o", "cat"]);
    assert!(journal.contains("all 3 step(s) done"), "{journal}");
    assert!(!journal.contains(SECRET), "the secret reached the journal");

    // Second run: a new snapshot whose unchanged files are hard links to
    // the first's; the same day, so `keep_daily: 7` keeps only the newest.
    let inode = |snap: &Path, file: &str| std::fs::metadata(snap.join(file)).unwrap().ino();
    let (dump, wallet) = (inode(&snap, "db/dump.sql"), inode(&snap, "wallet.dat"));
    common::write(&data.path().join("wallet.dat"), "wallet bytes, later\n");
    let out = host.exec(&["systemctl", "start", "backups.service"]);
    assert!(
        out.status.success(),
        "{}",
        host.journal_text(&["-u", "backups.service"])
    );
    let second = snapshots(backups.path());
    assert_eq!(second.len(), 1, "one a day is kept: {second:?}");
    assert_ne!(second, first, "the newest is kept");
    let snap2 = backups.path().join(&second[0]);
    assert_eq!(
        inode(&snap2, "db/dump.sql"),
        dump,
        "an unchanged file is a hard link"
    );
    assert_ne!(
        inode(&snap2, "wallet.dat"),
        wallet,
        "a changed file is a new copy"
    );
    let after = objects(&moto);
    assert!(after.contains_key(&format!("host1/{}/wallet.dat", second[0])));
    let journal = host.journal_text(&["-u", "backups.service", "-o", "cat"]);
    assert!(journal.contains("skipped"), "{journal}");

    // A failed run (the bucket is gone) fails the unit with the step named,
    // and OnFailure= mails me@me.biz through the notify unit.
    let keys: Vec<String> = objects(&moto).into_keys().collect();
    rt().block_on(async {
        let s3 = moto.s3().await;
        for key in &keys {
            s3.delete_object()
                .bucket("my-backups")
                .key(key)
                .send()
                .await
                .unwrap();
        }
        s3.delete_bucket()
            .bucket("my-backups")
            .send()
            .await
            .unwrap();
    });
    let out = host.exec(&["systemctl", "start", "backups.service"]);
    assert!(!out.status.success(), "the run without a bucket succeeded");
    assert_eq!(host.wait_finished("backups.service", WAIT), "exit-code");
    assert_eq!(
        host.wait_finished("unitgen-notify@backups.service", WAIT),
        "success",
        "{}",
        host.journal_text(&["-u", "unitgen-notify@backups.service"])
    );
    let mail = smtpd.wait_for(1, WAIT);
    assert_eq!(mail[0].rcpt_tos, ["me@me.biz"]);
    let body = mail[0].body();
    assert!(body.contains("step 2/3 (s3_sync"), "{body}");
    assert!(body.contains("failed"), "{body}");
    assert!(!body.contains(SECRET));

    // The lock: while another holder has it (the host's own flock(1) on the
    // same file, as the seed's cron line would), a run waits 10 s, then
    // fails without copying anything.
    let lock_dir = Path::new("/run/lock/unitgen");
    std::fs::create_dir_all(lock_dir).unwrap();
    let mut holder = std::process::Command::new("flock")
        .arg(lock_dir.join("backups.lock"))
        .args(["sleep", "60"])
        .spawn()
        .expect("run flock (util-linux)");
    std::thread::sleep(Duration::from_millis(300));
    let before = snapshots(backups.path());
    let out = host.exec(&["systemctl", "start", "backups.service"]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!out.status.success(), "a run got past a held lock");
    let journal = host.journal_text(&["-u", "backups.service", "-o", "cat"]);
    assert!(journal.contains("(on_busy: fail)"), "{journal}");
    assert_eq!(snapshots(backups.path()), before, "a locked-out run copied");
    let _ = std::fs::remove_file(lock_dir.join("backups.lock"));
}
