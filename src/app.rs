//! Runs a parsed command line; returns the exit status.

use std::io::Write;

use clap::CommandFactory;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command, EtcdArgs, RenderArgs, SpecArgs};
use crate::error::Error;
use crate::output;
use crate::render::UnitFile;
use crate::resolve::{EtcdSource, ValueSource, ValuesFile};
use crate::{Loaded, etcd};

pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Render(args) => render(&args),
        Command::Validate(args) => validate(&args),
        Command::Watch(args) => crate::watch::run(&args),
        Command::Schedule(args) => return schedule(args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "unitgen",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map_err(Error::io("stdout")),
        Command::Schema => {
            let schema = schemars::schema_for!(crate::spec::Spec);
            let text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
            println!("{text}");
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            report(&e);
            e.code()
        }
    }
}

/// One line per problem on stderr, in the `file:line:col: path: message`
/// form editors and CI logs link to.
pub(crate) fn report(e: &Error) {
    let mut err = std::io::stderr().lock();
    match e {
        Error::Invalid(problems) => {
            for p in problems {
                let _ = writeln!(err, "error: {p}");
            }
        }
        other => {
            let _ = writeln!(err, "error: {other}");
        }
    }
}

/// Exit 0 when every expression is valid, 2 when any is not (invalid
/// input, like an invalid spec).
fn schedule(cmd: crate::cli::ScheduleCmd) -> i32 {
    let args = crate::schedule::report::ScheduleArgs {
        exprs: cmd.exprs,
        cron: cmd.cron,
        iterations: cmd.iterations,
        base_time: cmd.base_time,
        json: cmd.json,
    };
    let mut out = std::io::stdout().lock();
    match crate::schedule::report::run(&args, &mut out) {
        Ok(true) => 0,
        Ok(false) => 2,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: stdout: {e}");
            1
        }
    }
}

/// A single-threaded runtime for the etcd client; commands stay sync.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::io("tokio runtime"))
}

/// `--values FILE`, else etcd (flags, env, then the spec), else nothing.
pub fn value_source(args: &SpecArgs, loaded: &Loaded) -> Result<ValueSource, Error> {
    if let Some(path) = &args.values {
        return Ok(ValueSource::File(
            ValuesFile::read(path)?,
            path.display().to_string(),
        ));
    }
    match etcd_settings(&args.etcd, loaded, &args.spec)? {
        Some(settings) => Ok(ValueSource::Etcd(EtcdSource::new(settings))),
        None => Ok(ValueSource::None),
    }
}

/// Connection settings: each flag (or its `UNITGEN_ETCD_*` variable) wins
/// over the spec's `etcd:` section; spec paths are relative to the spec.
/// `None` when no endpoints are configured anywhere.
fn etcd_settings(
    args: &EtcdArgs,
    loaded: &Loaded,
    spec_path: &Path,
) -> Result<Option<etcd::Settings>, Error> {
    let spec = loaded
        .spec()
        .and_then(|s| s.etcd.clone())
        .unwrap_or_default();
    let endpoints = if args.etcd_endpoints.is_empty() {
        // A malformed spec endpoint is reported with its location, by the
        // same validation that reports everything else.
        if spec
            .endpoints
            .iter()
            .any(|e| !crate::validate::is_http_url(e))
        {
            let problems = match loaded.render(&crate::resolve::Values::none()) {
                Err(Error::Invalid(ps)) => ps
                    .into_iter()
                    .filter(|p| p.path.starts_with("etcd."))
                    .collect(),
                _ => Vec::new(),
            };
            if !problems.is_empty() {
                return Err(Error::Invalid(problems));
            }
        }
        spec.endpoints.clone()
    } else {
        args.etcd_endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect()
    };
    if endpoints.is_empty() {
        return Ok(None);
    }
    let base = spec_path.parent().unwrap_or(Path::new("."));
    let relative = |p: &Option<String>| p.as_ref().map(|p| base.join(p));
    let tls = spec.tls.clone().unwrap_or_default();
    let config = |m: String| Error::Etcd(etcd::EtcdError::Config(m));
    let password_file: Option<PathBuf> = args
        .etcd_password_file
        .clone()
        .or_else(|| relative(&spec.password_file));
    let password = etcd::password(password_file.as_deref())?;
    let timeout = match args.etcd_timeout.as_ref().or(spec.timeout.as_ref()) {
        Some(text) => Some(
            crate::timespan::parse(text)
                .map_err(|e| config(format!("timeout {e}")))?
                .ok_or_else(|| config("timeout must be finite".into()))?,
        ),
        None => None,
    };
    Ok(Some(etcd::Settings {
        endpoints,
        ca_file: args.etcd_ca_file.clone().or_else(|| relative(&tls.ca_file)),
        cert_file: args
            .etcd_cert_file
            .clone()
            .or_else(|| relative(&tls.cert_file)),
        key_file: args
            .etcd_key_file
            .clone()
            .or_else(|| relative(&tls.key_file)),
        user: args.etcd_user.clone().or(spec.username.clone()),
        password,
        timeout,
    }))
}

/// Reads the spec, resolves its references and renders: nothing written.
fn render_files(args: &SpecArgs) -> Result<Vec<UnitFile>, Error> {
    let loaded = crate::load(&args.spec)?;
    let mut source = value_source(args, &loaded)?;
    let mut values = source.values();
    runtime()?.block_on(crate::resolve::resolve(&mut values, &mut source, |v| {
        loaded.render(v)
    }))?
}

fn validate(args: &SpecArgs) -> Result<(), Error> {
    let files = render_files(args)?;
    eprintln!("{}: ok, {} job(s)", args.spec.display(), files.len() / 2);
    Ok(())
}

fn render(args: &RenderArgs) -> Result<(), Error> {
    let files = render_files(&args.spec)?;
    let mut out = std::io::stdout().lock();
    let io = |e| Error::io("stdout")(e);
    if args.stdout {
        for (i, f) in files.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\n" };
            write!(out, "{sep}# {}\n{}", f.name, f.contents).map_err(io)?;
        }
        return Ok(());
    }
    if args.check {
        let diff = output::check(&args.output, &files)?;
        if diff.is_empty() {
            return Ok(());
        }
        out.write_all(diff.as_bytes()).map_err(io)?;
        return Err(Error::Drift(format!(
            "{} is out of date with {}; run `unitgen render` and commit the result",
            args.output.display(),
            args.spec.spec.display()
        )));
    }
    let written = output::write(&args.output, &files)?;
    let end = if args.print0 { '\0' } else { '\n' };
    for path in &written.units {
        write!(out, "{}{end}", path.display()).map_err(io)?;
    }
    for path in &written.removed {
        eprintln!("removed {}", path.display());
    }
    Ok(())
}
