//! The `unitgen` command line: parse, run, map the outcome to an exit
//! status. Everything that touches the terminal, the environment or etcd
//! on the generator's side starts here.

pub mod cli;
pub mod deploy;
pub mod init;
pub mod list;
pub mod report;
pub mod settings;
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
            println!("{}", init::schema_text());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(Error::Silent(code)) => code,
        Err(e) => {
            report(&e);
            e.code()
        }
    }
}

/// Exit 0 when every expression is valid, 2 when any is not (invalid
/// input, like an invalid spec).
fn schedule(cmd: cli::ScheduleCmd) -> Result<(), Error> {
    let args = crate::schedule::report::ScheduleArgs {
        exprs: cmd.exprs,
        cron: cmd.cron,
        iterations: cmd.iterations,
        base_time: cmd.base_time,
        json: cmd.json,
    };
    let mut out = std::io::stdout().lock();
    match crate::schedule::report::run(&args, &mut out) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Silent(2)),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(Error::Usage(e.to_string())),
        Err(e) => Err(Error::io("stdout")(e)),
    }
}

/// Reads the spec, fetches its references once and renders: nothing written.
fn render_files(args: &SpecArgs) -> Result<Vec<UnitFile>, Error> {
    render_loaded(args).map(|(_, files)| files)
}

/// [`render_files`], with the spec it read.
fn render_loaded(args: &SpecArgs) -> Result<(crate::generate::Loaded, Vec<UnitFile>), Error> {
    let loaded = crate::generate::load(&args.spec)?;
    let values = validate::values_for(args, &loaded)?;
    let files = loaded.render(&values)?;
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
    let io = |e| Error::io("stdout")(e);
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
        out.write_all(diff.as_bytes()).map_err(io)?;
        out.flush().map_err(io)?;
        return Err(out_of_date(args));
    }
    let written = output::write(&args.output, &files)?;
    let end = if args.print0 { '\0' } else { '\n' };
    for path in &written.units {
        write!(out, "{}{end}", path.display()).map_err(io)?;
    }
    out.flush().map_err(io)?;
    for path in &written.removed {
        eprintln!("removed {}", path.display());
    }
    Ok(())
}

/// `render --check` found differences.
fn out_of_date(args: &RenderArgs) -> Error {
    Error::Drift(format!(
        "{} is out of date with {}; run `unitgen render` and commit the result",
        args.output.display(),
        crate::generate::source::display_name(&args.spec.spec)
    ))
}
