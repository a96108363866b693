//! Validation and rendering of a 10,000-job spec: decode, validate (every
//! schedule parsed by the calendar engine), render. Run with
//! `cargo bench --bench render`; numbers go in BENCHMARKS.md.

use std::time::Instant;

use unitgen::generate::values::Values;

fn spec(jobs: usize) -> String {
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
            "  job-{i:05}:\n    schedule: \"{schedule}\"\n    timer: {{ persistent: true, randomized_delay: 10m }}\n    fleet: {{ machine_metadata: {{ region: us-east-1 }} }}\n    container: {{ volumes: [\"/var/lib/app{i}:/data\"] }}\n    steps:\n      - ebs_snapshot: {{ volume_id: vol-0123456789abcdef0, region: us-east-1, credentials: default_chain, retention: {{ keep_daily: 7 }} }}\n"
        ));
    }
    s
}

fn main() {
    let jobs = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unitgen.yaml");
    std::fs::write(&path, spec(jobs)).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let runs = 5;
    let mut best = f64::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        let loaded = unitgen::generate::load(&path).unwrap();
        let files = loaded.render(&Values::none(loaded.refs())).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(files.len(), jobs * 2);
    }
    println!(
        "render_spec: {jobs} jobs ({:.1} MiB spec) -> {} units: best of {runs} {:.0} ms ({:.1} µs/job)",
        size as f64 / 1048576.0,
        jobs * 2,
        best * 1e3,
        best * 1e6 / jobs as f64
    );
}
