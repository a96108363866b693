//! The `unitgen` command line: parse, run, map the outcome to an exit
//! status. Everything that touches the terminal, the environment or etcd
//! on the generator's side starts here.

pub mod cli;
pub mod deploy;
pub mod init;
pub mod list;
pub mod man;
pub mod report;
pub mod settings;
pub mod term;
pub mod validate;
pub mod watch;

use std::io::Write;

use clap::CommandFactory;

use crate::error::Error;
use crate::generate::output;
use crate::generate::render::UnitFile;
use cli::{Cli, Command, RenderArgs, SpecArgs};
pub use report::report;

pub fn run(cli: Cli) -> i32 {
    term::set_level(match (cli.quiet, cli.verbose) {
        (true, _) => term::Level::Quiet,
        (false, true) => term::Level::Verbose,
        (false, false) => term::Level::Normal,
    });
    term::set_color(cli.color);
    let result = match cli.command {
        Command::Render(args) => render(&args),
        Command::Validate(args) => validate::run(&args),
        Command::List(args) => list::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Watch(args) => watch::run(&args),
        Command::Plan(args) => deploy::plan(&args),
        Command::Apply(args) => deploy::apply(&args),
        Command::Schedule(args) => schedule(args),
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics on a failed write.
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "unitgen", &mut text);
            print_stdout(&text)
        }
        Command::Man(args) => man::run(&args),
        Command::Schema => print_stdout(format!("{}\n", init::schema_text()).as_bytes()),
    };
    match result {
        Ok(()) => 0,
        Err(Error::Silent(code)) => code,
        // The reader went away (`| head`): nothing to report.
        Err(Error::ClosedPipe) => term::closed_pipe_exit(),
        Err(e) => {
            report(&e);
            e.code()
        }
    }
}

/// `bytes` on standard output, at once.
pub fn print_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(term::stdout_error)
}

/// Exit 0 when every expression is valid, 2 when any is not (invalid
/// input, like an invalid spec). Results go to stdout; an invalid
/// expression is an error on stderr (`--json` reports it in its object).
fn schedule(cmd: cli::ScheduleCmd) -> Result<(), Error> {
    let args = crate::schedule::report::ScheduleArgs {
        exprs: cmd.exprs,
        cron: cmd.cron,
        iterations: cmd.iterations,
        base_time: cmd.base_time,
        json: cmd.json,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut errors = ScheduleErrors;
    let result = crate::schedule::report::run(&args, &mut out, &mut errors);
    let flushed = out.flush();
    match result {
        Ok(true) => flushed.map_err(term::stdout_error),
        Ok(false) => flushed
            .map_err(term::stdout_error)
            .and(Err(Error::Silent(2))),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(Error::Usage(e.to_string())),
        Err(e) => Err(term::stdout_error(e)),
    }
}

/// Where `unitgen schedule` says an expression is invalid: stderr, as
/// every other error.
struct ScheduleErrors;

impl crate::schedule::report::Errors for ScheduleErrors {
    fn invalid(&mut self, message: &str) {
        report(&Error::Usage(message.to_owned()));
    }
}

/// Reads the spec, fetches its references once and renders: nothing written.
fn render_files(args: &SpecArgs) -> Result<Vec<UnitFile>, Error> {
    render_loaded(args).map(|(_, files)| files)
}

/// [`render_files`], with the spec it read.
fn render_loaded(args: &SpecArgs) -> Result<(crate::generate::Loaded, Vec<UnitFile>), Error> {
    let started = std::time::Instant::now();
    let loaded = crate::generate::load(&args.spec)?;
    let values = validate::values_for(args, &loaded)?;
    let files = loaded.render(&values)?;
    term::debug(format_args!(
        "rendered {} unit(s) from {} in {}",
        files.len(),
        crate::generate::source::display_name(&args.spec),
        term::elapsed(started)
    ));
    Ok((loaded, files))
}

fn render(args: &RenderArgs) -> Result<(), Error> {
    if args.format.is_json() {
        return validate::check_json(args);
    }
    let files = render_files(&args.spec)?;
    // Buffered: 20,000 paths are one write, not 20,000 (stdout is line
    // buffered); flushed before returning so errors are still seen.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = term::stdout_error;
    if args.stdout {
        for (i, f) in files.iter().enumerate() {
            let sep = if i == 0 { "" } else { "\n" };
            write!(out, "{sep}# {}\n{}", f.name, f.contents).map_err(io)?;
        }
        return out.flush().map_err(io);
    }
    if args.check {
        let diff = output::check(&args.output, &files)?;
        if diff.is_empty() {
            return Ok(());
        }
        out.write_all(term::diff(&diff).as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
        return Err(out_of_date(args));
    }
    let written = output::write(&args.output, &files)?;
    let end = if args.print0 { '\0' } else { '\n' };
    // The units are written whatever happens to stdout: a closed pipe
    // still leaves the removals to report.
    let printed = written
        .units
        .iter()
        .try_for_each(|path| write!(out, "{}{end}", path.display()))
        .and_then(|()| out.flush());
    for path in &written.changed {
        term::debug(format_args!("wrote {}", path.display()));
    }
    term::debug(format_args!(
        "{} unit(s) unchanged",
        written.units.len() - written.changed.len()
    ));
    for path in &written.removed {
        term::info(format_args!("removed {}", path.display()));
    }
    printed.map_err(io)
}

/// `render --check` found differences.
fn out_of_date(args: &RenderArgs) -> Error {
    Error::Drift(format!(
        "{} is out of date with {}; run `unitgen render` and commit the result",
        args.output.display(),
        crate::generate::source::display_name(&args.spec.spec)
    ))
}
