//! `unitgen validate` (online, `--offline`, `--format json`), how every
//! command that renders gets its values (an etcd that cannot be asked is
//! one problem among the spec's own), and `render --check --format json`.

use std::io::Write;

use crate::cmd::cli::{RenderArgs, SpecArgs, ValidateArgs};
use crate::cmd::report::{report, report_json};
use crate::cmd::settings::{ValueSource, runtime};
use crate::cmd::term;
use crate::diag::{KeyPath, Kind, Problem, escape_controls};
use crate::error::Error;
use crate::etcd::{EtcdError, Need};
use crate::generate::output::{self, FileStatus};
use crate::generate::source::display_name;
use crate::generate::values::{Origin, Values};
use crate::generate::{Loaded, load};

pub fn run(args: &ValidateArgs) -> Result<(), Error> {
    let result = if args.offline {
        offline(args)
    } else {
        online(args)
    };
    as_format(args.format.is_json(), result)
}

/// With `--format json`, an error is printed as JSON here and only its
/// exit status goes on.
fn as_format(json: bool, result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(e) if json && !matches!(e, Error::Silent(_)) => {
            report_json(&e);
            Err(Error::Silent(e.code()))
        }
        other => other,
    }
}

fn online(args: &ValidateArgs) -> Result<(), Error> {
    let files = super::render_files(&args.spec)?;
    // A job has two or three units (its notify unit): count jobs, not files.
    let jobs: std::collections::BTreeSet<&str> = files.iter().map(|f| f.job.as_str()).collect();
    term::info(format_args!(
        "{}: ok, {} job(s)",
        display_name(&args.spec.spec),
        jobs.len()
    ));
    Ok(())
}

/// Every rule that needs no value; then the keys a render would read,
/// on stderr after the ok line, as validate says everything.
fn offline(args: &ValidateArgs) -> Result<(), Error> {
    let loaded = load(&args.spec.spec)?;
    let values = Values::unknown(loaded.refs(), Origin::None);
    let jobs = loaded.render_known(&values)?;
    let name = display_name(&args.spec.spec);
    let needs = loaded.refs().needs();
    // Informational, as the online ok line: `-q` drops the whole report.
    if needs.is_empty() {
        term::info(format_args!(
            "{name}: ok, {} job(s), offline (etcd not asked); it reads no etcd keys",
            jobs.len()
        ));
        return Ok(());
    }
    term::info(format_args!(
        "{name}: ok, {} job(s), offline (etcd not asked); a render reads {} etcd key(s):",
        jobs.len(),
        needs.len()
    ));
    let keys: Vec<(String, Need)> = needs
        .iter()
        .map(|(k, n)| (escape_controls(k).into_owned(), *n))
        .collect();
    let width = keys
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (key, need) in keys {
        let what = match need {
            Need::Value => "value: written into the units",
            Need::Exists => "secret: render checks that it exists; the runner reads it at run time",
        };
        term::info(format_args!("  {key:width$}  {what}"));
    }
    Ok(())
}

/// The values a render of `loaded` reads: from `--values`, etcd, or
/// nothing. When they cannot be had (etcd down, refused, misconfigured),
/// the spec is validated without them, so that its own problems come in
/// the same report, followed by the etcd one: exit 2, as for any invalid
/// spec. A spec with no problem of its own gets the etcd error alone, with
/// its own exit status (1: etcd is down, the spec is fine; 2: settings).
pub fn values_for(args: &SpecArgs, loaded: &Loaded) -> Result<Values, Error> {
    let fetched = ValueSource::for_spec(args, loaded)
        .and_then(|mut source| runtime()?.block_on(source.fetch(loaded.refs())));
    let err = match fetched {
        Ok(values) => return Ok(values),
        // Invalid: the spec's endpoints, which validation reports too.
        Err(e @ (Error::Etcd(_) | Error::Invalid(_))) => e,
        Err(e) => return Err(e),
    };
    let unknown = Values::unknown(loaded.refs(), Origin::None);
    let mut problems = match loaded.render_known(&unknown) {
        Ok(_) => return Err(err),
        Err(Error::Invalid(problems)) => problems,
        Err(_) => return Err(err),
    };
    if let Error::Etcd(e) = &err {
        problems.push(etcd_problem(args, loaded, e));
    }
    Err(Error::Invalid(problems))
}

/// An etcd that could not be asked, as a problem: at the spec's
/// `etcd.endpoints` when those were used, else about no place in it (the
/// endpoints came from `--etcd-endpoints` or its variable).
fn etcd_problem(args: &SpecArgs, loaded: &Loaded, e: &EtcdError) -> Problem {
    let path = KeyPath::root().key("etcd").key("endpoints");
    let from_spec = args.etcd.etcd_endpoints.is_empty()
        && loaded
            .spec()
            .and_then(|s| s.etcd.as_ref())
            .is_some_and(|etcd| !etcd.endpoints.is_empty());
    if from_spec {
        loaded.src.at_value(&path, Kind::Etcd, e.to_string())
    } else {
        Problem {
            file: loaded.src.name.clone(),
            location: None,
            path: KeyPath::root(),
            kind: Kind::Etcd,
            message: e.to_string(),
        }
    }
}

/// `render --check --format json`: one object per file that differs,
/// `{"file": PATH, "status": "stale"|"missing"|"extra"|"leftover"}`, then
/// exit 1 with the usual line on stderr; problems as `validate` prints them.
pub fn check_json(args: &RenderArgs) -> Result<(), Error> {
    if !args.check {
        return Err(Error::Usage(
            "--format json is for `render --check` (and `validate`); a render that writes \
             prints the paths it wrote: add --check, or drop --format json"
                .into(),
        ));
    }
    let drift = || -> Result<Vec<output::Drift>, Error> {
        let files = super::render_files(&args.spec)?;
        output::compare(&args.output, &files)
    };
    let drift = match drift() {
        Ok(drift) => drift,
        Err(e) => return as_format(true, Err(e)),
    };
    if drift.is_empty() {
        return Ok(());
    }
    #[derive(serde::Serialize)]
    struct FileJson {
        file: String,
        status: FileStatus,
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // A closed pipe ends quietly, as every command's stdout does.
    let io = crate::cmd::term::stdout_error;
    for d in &drift {
        let line = FileJson {
            file: d.path.display().to_string(),
            status: d.status,
        };
        serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
        writeln!(out).map_err(io)?;
    }
    out.flush().map_err(io)?;
    let e = super::out_of_date(args);
    report(&e);
    Err(Error::Silent(e.code()))
}
