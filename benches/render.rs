//! Render at scale, in process (no process start-up in the numbers):
//! validation, a first render into an empty folder, a re-render with
//! nothing changed, and validation of specs with 1,000 and 10,000
//! problems. Beside them, the file system's own floor: the same files
//! written the cheapest way that is still atomic and durable (create,
//! write, one syncfs, rename), with no spec at all.
//!
//! `cargo bench --bench render`, or `bash benches/render.sh` to run it on
//! a fresh ext4 file system (ext4 slows inode allocation right after many
//! files were deleted, which a bench that renders again and again into
//! the same disk would otherwise measure). `UNITGEN_BENCH_DIR` says where
//! to write. Numbers go in BENCHMARKS.md.

use std::path::Path;
use std::time::Instant;

use unitgen::generate::output;
use unitgen::generate::values::Values;

/// Host-command jobs on plain systemd, as an operator's cron table becomes.
fn host_spec(jobs: usize, bad_key: bool) -> String {
    let mut s = String::from("version: 1\njobs:\n");
    for i in 0..jobs {
        let bogus = if bad_key { "    bogus: 1\n" } else { "" };
        s.push_str(&format!(
            "  job-{i:05}:\n    cron: \"{} {} * * *\"\n{bogus}    timer: {{ persistent: true }}\n    command: [/usr/local/bin/backup, --set, \"s{i}\"]\n",
            i % 60,
            i % 24
        ));
    }
    s
}

/// Container jobs on fleet, every schedule through the calendar engine.
fn fleet_spec(jobs: usize) -> String {
    let mut s = String::from(
        "version: 1\ndefaults:\n  target: fleet\n  image: registry.example.com/unitgen-runner:0.1.0\njobs:\n",
    );
    for i in 0..jobs {
        let schedule = [
            "*-*-* 00:15:00",
            "Mon..Fri 02:30",
            "hourly",
            "*-*-1,15 04:00 Europe/Berlin",
        ][i % 4];
        s.push_str(&format!(
            "  job-{i:05}:\n    schedule: \"{schedule}\"\n    timer: {{ persistent: true, randomized_delay: 10m }}\n    fleet: {{ machine_metadata: {{ region: us-east-1 }} }}\n    container: {{ volumes: [\"/var/lib/app{i}:/data\"] }}\n    steps:\n      - ebs_snapshot: {{ volume_id: vol-0123456789abcdef0, region: us-east-1, credentials: default_chain, wait: 1h, retention: {{ keep_daily: 7 }} }}\n"
        ));
    }
    s
}

/// Best of `runs`, in milliseconds; `setup` runs before each, untimed,
/// and what it returns is `f`'s argument.
fn best<T>(runs: usize, mut setup: impl FnMut() -> T, mut f: impl FnMut(&T)) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let arg = setup();
        let t = Instant::now();
        f(&arg);
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn render(path: &Path) -> Result<Vec<unitgen::generate::render::UnitFile>, unitgen::error::Error> {
    let loaded = unitgen::generate::load(path).unwrap();
    loaded.render(&Values::none(loaded.refs()))
}

/// The floor: `files` written as atomically and durably as a render does,
/// with nothing else (no spec, no comparison, no manifest).
fn floor(dir: &Path, files: &[unitgen::generate::render::UnitFile]) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).unwrap();
    for (i, f) in files.iter().enumerate() {
        let mut t = std::fs::File::create(dir.join(format!(".t{i}"))).unwrap();
        t.write_all(f.contents.as_bytes()).unwrap();
    }
    let d = std::fs::File::open(dir).unwrap();
    // SAFETY: syncfs only reads the descriptor `d` keeps open.
    assert_eq!(unsafe { libc::syncfs(d.as_raw_fd()) }, 0);
    for (i, f) in files.iter().enumerate() {
        std::fs::rename(dir.join(format!(".t{i}")), dir.join(&f.name)).unwrap();
    }
    d.sync_all().unwrap();
}

fn main() {
    let base = std::env::var_os("UNITGEN_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let runs = 5;
    // Every first render gets a folder of its own, never deleted during
    // the bench (see the top of this file).
    let mut fresh = 0;
    let mut next = |what: &str| {
        fresh += 1;
        dir.path().join(format!("{what}-{fresh}"))
    };
    println!("| spec | operation | best of {runs} |");
    println!("| --- | --- | --- |");
    for (label, text, jobs) in [
        (
            "10,000 host-command jobs (systemd)",
            host_spec(10_000, false),
            10_000,
        ),
        ("10,000 container jobs (fleet)", fleet_spec(10_000), 10_000),
    ] {
        let path = dir.path().join("unitgen.yaml");
        std::fs::write(&path, &text).unwrap();
        let validate = best(
            runs,
            || {},
            |_| {
                assert_eq!(render(&path).unwrap().len(), jobs * 2);
            },
        );
        let mut out = dir.path().join("units");
        let first = best(
            runs,
            || {
                out = next("units");
                out.clone()
            },
            |out| {
                let files = render(&path).unwrap();
                output::write(out, &files).unwrap();
            },
        );
        let files = render(&path).unwrap();
        let fs_floor = best(runs, || next("plain"), |plain| floor(plain, &files));
        let again = best(
            runs,
            || {},
            |_| {
                let files = render(&path).unwrap();
                let w = output::write(&out, &files).unwrap();
                assert!(w.changed.is_empty());
            },
        );
        println!("| {label} | validate | {validate:.0} ms |");
        println!(
            "| {label} | first render | {first:.0} ms ({:.1}x validate) |",
            first / validate
        );
        println!("| {label} | re-render, nothing changed | {again:.0} ms |");
        println!(
            "| {label} | the file system's floor: {} files created, one syncfs, renamed | {fs_floor:.0} ms |",
            files.len()
        );
    }
    for problems in [1_000, 10_000] {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, host_spec(problems, true)).unwrap();
        let t = best(
            runs,
            || {},
            |_| match render(&path) {
                Err(unitgen::error::Error::Invalid(found)) => assert_eq!(found.len(), problems),
                other => panic!("{:?}", other.map(|f| f.len())),
            },
        );
        println!(
            "| {problems} jobs, one unknown key each | validate ({problems} problems) | {t:.0} ms |"
        );
    }
}
