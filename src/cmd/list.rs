//! `unitgen list`: every job at a glance, offline. It never asks etcd
//! (nor systemd): without `--values`, a job that needs an etcd value is
//! listed from what the spec says, and its units are not compared.

use std::io::Write;
use std::path::Path;

use jiff::Zoned;
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::cmd::cli::ListArgs;
use crate::cmd::settings::{ValueSource, ValuesFile, runtime};
use crate::error::Error;
use crate::generate::output;
use crate::generate::overview::JobOverview;
use crate::generate::render::UnitFile;
use crate::generate::spec::Target;
use crate::generate::values::{Origin, Values};

/// Whether the output folder holds a job's units as `render` writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Units {
    UpToDate,
    /// Some unit differs, or some (not all) are missing.
    Stale,
    /// None of its units is there.
    Missing,
    /// Its units need an etcd value that was not given.
    NeedsEtcd,
}

impl Units {
    fn text(self) -> &'static str {
        match self {
            Units::UpToDate => "up to date",
            Units::Stale => "stale",
            Units::Missing => "missing",
            Units::NeedsEtcd => "unknown (needs etcd)",
        }
    }

    fn of(dir: &Path, files: Option<&[UnitFile]>) -> Result<Units, Error> {
        let Some(files) = files else {
            return Ok(Units::NeedsEtcd);
        };
        let mut missing = 0;
        let mut differ = 0;
        for file in files {
            match output::status(dir, file)? {
                None => {}
                Some(d) if d.status == output::FileStatus::Missing => missing += 1,
                Some(_) => differ += 1,
            }
        }
        Ok(match (missing, differ) {
            (0, 0) => Units::UpToDate,
            (m, 0) if m == files.len() => Units::Missing,
            _ => Units::Stale,
        })
    }
}

/// One job's line of `--json` (the fields `unitgen list --help` lists).
#[derive(Serialize)]
struct JobJson<'a> {
    job: &'a str,
    target: &'static str,
    runs_on: Option<String>,
    x_fleet: Option<&'a [String]>,
    on_calendar: Option<&'a [String]>,
    timers: Option<&'a [String]>,
    next_run: Option<String>,
    units: Units,
    files: Option<Vec<String>>,
    steps: &'a [String],
}

pub fn run(args: &ListArgs) -> Result<(), Error> {
    let base = match &args.base_time {
        Some(text) => crate::schedule::report::parse_base_time(text, &TimeZone::system())
            .map_err(|e| Error::Usage(format!("--base-time: {e}")))?,
        None => Zoned::now(),
    };
    let loaded = crate::generate::load(&args.spec)?;
    let values = match &args.values {
        Some(path) => {
            let mut source = ValueSource::File(ValuesFile::read(path)?, path.clone());
            runtime()?.block_on(source.fetch(loaded.refs()))?
        }
        None => Values::unknown(loaded.refs(), Origin::None),
    };
    let jobs = loaded.render_known(&values)?;
    let mut rows = Vec::with_capacity(jobs.len());
    for job in &jobs {
        rows.push((job, Units::of(&args.output, job.files.as_deref())?));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed pipe ends quietly, as every command's stdout does.
    let io = crate::cmd::term::stdout_error;
    if args.json {
        for (job, units) in rows {
            let line = json(job, units, &base, &args.output);
            serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
            writeln!(out).map_err(io)?;
        }
    } else {
        out.write_all(table(&rows, &base).as_bytes()).map_err(io)?;
    }
    out.flush().map_err(io)
}

fn target(job: &JobOverview) -> &'static str {
    match job.target {
        Target::Fleet => "fleet",
        Target::Systemd => "systemd",
    }
}

fn json<'a>(job: &'a JobOverview, units: Units, base: &Zoned, dir: &Path) -> JobJson<'a> {
    JobJson {
        job: &job.name,
        target: target(job),
        runs_on: job.runs_on(),
        x_fleet: job.x_fleet.as_deref(),
        on_calendar: job.on_calendar.as_deref(),
        timers: job.monotonic.as_deref(),
        next_run: job.next_run(base).map(|t| t.timestamp().to_string()),
        units,
        files: job.files.as_ref().map(|files| {
            files
                .iter()
                .map(|f| dir.join(&f.name).display().to_string())
                .collect()
        }),
        steps: &job.steps,
    }
}

const UNKNOWN: &str = "unknown (needs etcd)";

/// The table: a header, one row per job, columns aligned, the widest
/// (the steps) last.
fn table(rows: &[(&JobOverview, Units)], base: &Zoned) -> String {
    let header = [
        "JOB", "TARGET", "RUNS ON", "SCHEDULE", "NEXT RUN", "UNITS", "STEPS",
    ];
    let mut cells: Vec<[String; 7]> = vec![header.map(str::to_owned)];
    for (job, units) in rows {
        let schedule = match (&job.on_calendar, &job.monotonic) {
            (Some(calendar), Some(monotonic)) => {
                let all: Vec<&str> = calendar
                    .iter()
                    .chain(monotonic)
                    .map(String::as_str)
                    .collect();
                all.join("; ")
            }
            _ => UNKNOWN.to_owned(),
        };
        let next = match (&job.on_calendar, job.next_run(base)) {
            (None, _) => UNKNOWN.to_owned(),
            (Some(_), Some(t)) => t.strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
            (Some(_), None) => "-".to_owned(),
        };
        let steps = if job.steps.is_empty() {
            "-".to_owned()
        } else {
            job.steps.join(", ")
        };
        cells.push([
            job.name.clone(),
            target(job).to_owned(),
            job.runs_on().unwrap_or_else(|| UNKNOWN.to_owned()),
            schedule,
            next,
            units.text().to_owned(),
            steps,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
