//! Runs a parsed command line; returns the exit status.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, Command, RenderArgs, SpecArgs};
use crate::error::Error;
use crate::output;
use crate::resolve::Values;

pub fn run(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Render(args) => render(&args),
        Command::Validate(args) => validate(&args),
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
fn report(e: &Error) {
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

fn values(args: &SpecArgs) -> Result<Values, Error> {
    match &args.values {
        Some(path) => Values::from_file(path),
        None => Ok(Values::none()),
    }
}

fn validate(args: &SpecArgs) -> Result<(), Error> {
    let files = crate::render_spec(&args.spec, &values(args)?)?;
    eprintln!("{}: ok, {} job(s)", args.spec.display(), files.len() / 2);
    Ok(())
}

fn render(args: &RenderArgs) -> Result<(), Error> {
    let files = crate::render_spec(&args.spec.spec, &values(&args.spec)?)?;
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
