//! `unitgen man`: the manual pages, built from the same clap definitions
//! as `--help` (so a flag cannot be documented in one and missing from
//! the other): unitgen(1) with the environment, files and exit status,
//! one page per command (unitgen-render(1), ...), and unitgen-runner(1)
//! and unitgen-runner-notify(1) from the runner's own definitions.
//!
//! Every page a page refers to (its SEE ALSO, the command list of
//! unitgen(1)) is one of [`pages`]; `tests/cli_messages.rs` renders each
//! with groff and checks that.

use std::path::Path;

use clap::CommandFactory;

use super::cli::{Cli, ManArgs};
use crate::error::Error;

/// The runner's pages.
const RUNNER: &str = "unitgen-runner";
const RUNNER_NOTIFY: &str = "unitgen-runner-notify";

/// `unitgen` as the pages show it: the `help` subcommand is left out (it
/// has no page of its own; `--help` is on every page).
fn generator() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Every page, by name: `unitgen`, `unitgen-COMMAND` for each command,
/// `unitgen-runner`, `unitgen-runner-notify`.
pub fn pages() -> Vec<String> {
    let cmd = generator();
    let mut out = vec![cmd.get_name().to_owned()];
    out.extend(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| format!("unitgen-{}", s.get_name())),
    );
    out.push(RUNNER.into());
    out.push(RUNNER_NOTIFY.into());
    out
}

pub fn run(args: &ManArgs) -> Result<(), Error> {
    if let Some(dir) = &args.all {
        return write_all(dir);
    }
    let name = match &args.page {
        None => "unitgen".to_owned(),
        Some(p) if p == "unitgen" || p.starts_with("unitgen-") => p.clone(),
        Some(p) => format!("unitgen-{p}"),
    };
    let page = page(&name).ok_or_else(|| {
        Error::Usage(format!(
            "no man page `{}`; the pages are: {}",
            crate::diag::shown(args.page.as_deref().unwrap_or_default()),
            pages().join(", ")
        ))
    })?;
    super::print_stdout(&page)
}

/// `unitgen man --all DIR`: every page as `DIR/NAME.1`, each path printed.
fn write_all(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let mut listing = String::new();
    for name in pages() {
        let text = page(&name).expect("every listed page renders");
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, text).map_err(Error::io(&path))?;
        listing.push_str(&format!("{}\n", path.display()));
    }
    super::print_stdout(listing.as_bytes())
}

/// The roff text of page `name`, or `None` if there is no such page.
pub fn page(name: &str) -> Option<Vec<u8>> {
    let all = pages();
    let see_also = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .filter(|n| **n != name)
            .map(|n| (*n).to_owned())
            .collect()
    };
    if name == "unitgen" {
        let cmd = generator();
        let mut extra = Vec::new();
        examples(&mut extra, &cmd);
        environment(&mut extra, &cmd);
        files(&mut extra);
        exit_status(&mut extra);
        let others: Vec<&str> = all.iter().skip(1).map(String::as_str).collect();
        return Some(render(&cmd, &extra, &see_also(&others)));
    }
    if name == RUNNER || name == RUNNER_NOTIFY {
        let cmd = if name == RUNNER {
            crate::runner::Args::command()
        } else {
            crate::runner::notify::Args::command()
                .bin_name("unitgen-runner notify")
                .display_name(RUNNER_NOTIFY)
        };
        let mut extra = Vec::new();
        examples(&mut extra, &cmd);
        runner_environment(&mut extra);
        return Some(render(
            &cmd,
            &extra,
            &see_also(&["unitgen", RUNNER, RUNNER_NOTIFY]),
        ));
    }
    let sub = name.strip_prefix("unitgen-")?;
    let cmd = generator()
        .get_subcommands()
        .find(|s| s.get_name() == sub && !s.is_hide_set())?
        .clone();
    let mut extra = Vec::new();
    examples(&mut extra, &cmd);
    exit_status(&mut extra);
    Some(render(&cmd, &extra, &see_also(&["unitgen"])))
}

/// A page: clap_mangen's title, name, synopsis, description, options (and
/// the list of commands), then `extra` (roff), SEE ALSO and the version.
fn render(cmd: &clap::Command, extra: &[u8], see_also: &[String]) -> Vec<u8> {
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("writing to memory");
    // No hyphenation, ragged right: names such as unitgen-runner and
    // --etcd-endpoints must not be split or stretched.
    out.extend_from_slice(b".nh\n.ad l\n");
    for rendered in [
        man.render_name_section(&mut out),
        man.render_synopsis_section(&mut out),
        man.render_description_section(&mut out),
    ] {
        rendered.expect("writing to memory");
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)
            .expect("writing to memory");
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut out)
            .expect("writing to memory");
    }
    out.extend_from_slice(extra);
    if !see_also.is_empty() {
        out.extend_from_slice(b".SH \"SEE ALSO\"\n");
        let refs: Vec<String> = see_also
            .iter()
            .map(|n| format!("\\fB{}\\fR(1)", escape(n)))
            .collect();
        out.extend_from_slice(refs.join(",\n").as_bytes());
        out.push(b'\n');
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out)
            .expect("writing to memory");
    }
    once_preamble(&out)
}

/// The text with clap_mangen's two-line preamble (which defines `\*(Aq`)
/// once, at the top, rather than before each section it rendered.
fn once_preamble(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let mut seen = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let preamble = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if preamble && !seen.insert(line.to_owned()) {
            continue;
        }
        out.push_str(line);
    }
    out.into_bytes()
}

/// Text for roff: a backslash shown as one, `-` as a minus (so options
/// copy and paste), and no line taken for a request.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    match text.starts_with(['.', '\'']) {
        true => format!("\\&{text}"),
        false => text,
    }
}

fn section(out: &mut Vec<u8>, title: &str) {
    out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
}

fn paragraph(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b".PP\n");
    for line in text.lines() {
        out.extend_from_slice(escape(line.trim()).as_bytes());
        out.push(b'\n');
    }
}

/// An indented item: `tag` in bold, then its text.
fn item(out: &mut Vec<u8>, tag: &str, text: &str) {
    out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n", escape(tag)).as_bytes());
    out.extend_from_slice(escape(text).as_bytes());
    out.push(b'\n');
}

/// The command's `after_help`: example lines (indented) unfilled, as
/// typed; prose as paragraphs.
fn examples(out: &mut Vec<u8>, cmd: &clap::Command) {
    let Some(text) = cmd.get_after_help().map(|t| t.to_string()) else {
        return;
    };
    section(out, "EXAMPLES");
    let mut prose = String::new();
    let mut block = Vec::new();
    let flush_prose = |out: &mut Vec<u8>, prose: &mut String| {
        if !prose.trim().is_empty() {
            paragraph(out, prose);
        }
        prose.clear();
    };
    let flush_block = |out: &mut Vec<u8>, block: &mut Vec<String>| {
        if !block.is_empty() {
            out.extend_from_slice(b".PP\n.RS 2\n.nf\n");
            for line in block.iter() {
                out.extend_from_slice(escape(line).as_bytes());
                out.push(b'\n');
            }
            out.extend_from_slice(b".fi\n.RE\n");
        }
        block.clear();
    };
    for line in text.lines() {
        if line.trim_end() == "Examples:" {
            continue;
        }
        if let Some(example) = line.strip_prefix("  ") {
            flush_prose(out, &mut prose);
            block.push(example.to_owned());
        } else if line.trim().is_empty() {
            flush_block(out, &mut block);
            flush_prose(out, &mut prose);
        } else {
            flush_block(out, &mut block);
            prose.push_str(line);
            prose.push('\n');
        }
    }
    flush_block(out, &mut block);
    flush_prose(out, &mut prose);
}

/// The variables `unitgen` reads: each etcd flag's (from the clap
/// definitions), and those read elsewhere.
fn environment(out: &mut Vec<u8>, cmd: &clap::Command) {
    section(out, "ENVIRONMENT");
    item(
        out,
        "UNITGEN_ETCD_ENDPOINTS",
        "etcd endpoints, comma-separated, as --etcd-endpoints (which wins); \
         ignored when --values is given.",
    );
    let render = cmd
        .find_subcommand("render")
        .expect("unitgen has a render command");
    for arg in render.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        item(
            out,
            &env.to_string_lossy(),
            &format!("As --{long}: {}", help.trim_end_matches('.')),
        );
    }
    item(
        out,
        "UNITGEN_ETCD_PASSWORD",
        "The etcd password (never a flag, which would show in ps, nor a spec value); \
         else the first line of --etcd-password-file or etcd.password_file.",
    );
    item(
        out,
        "NO_COLOR",
        "Any value but the empty one turns colour off, as --color=never, unless \
         --color=always is given.",
    );
    item(
        out,
        "UNITGEN_CHANGED, UNITGEN_REMOVED",
        "Set for the command of watch --exec: the unit files rewritten and removed by the \
         batch, one path per line.",
    );
    item(
        out,
        "FLEETCTL_ENDPOINT, FLEETCTL_DRIVER, FLEETCTL_TUNNEL",
        "Read by fleetctl, which plan, apply and watch --apply run for target fleet.",
    );
}

fn runner_environment(out: &mut Vec<u8>) {
    section(out, "ENVIRONMENT");
    item(
        out,
        "UNITGEN_ETCD_PASSWORD",
        "The etcd password; else the first line of --etcd-password-file.",
    );
    item(
        out,
        "JOURNAL_STREAM",
        "Set by systemd (and passed into the container by the unit): each log line \
         then starts with its syslog priority, for journald.",
    );
}

fn files(out: &mut Vec<u8>) {
    use crate::contract::lock::HOST_LOCK_DIR;
    use crate::deploy::record::RECORD;
    use crate::generate::output::MANIFEST;
    section(out, "FILES");
    item(
        out,
        "unitgen.yaml",
        "The spec, unless -f names another (- reads it from standard input). \
         unitgen schema prints its JSON Schema.",
    );
    item(
        out,
        "units/",
        "The output folder, unless -o names another: NAME.service and NAME.timer per job.",
    );
    item(
        out,
        &format!("units/{MANIFEST}"),
        "What render wrote there. A unit it does not list and that has no [X-Unitgen] \
         section is never overwritten or removed.",
    );
    item(
        out,
        &format!("units/{RECORD}"),
        "What apply deployed from the folder, per target: the only units apply may remove.",
    );
    item(
        out,
        "/etc/systemd/system/",
        "Where apply --target systemd installs the units (under --root DIR for an image).",
    );
    item(
        out,
        &format!("{HOST_LOCK_DIR}/"),
        "The host locks of jobs with lock: { name: ... }, shared by unitgen-runner and flock(1).",
    );
}

fn exit_status(out: &mut Vec<u8>) {
    section(out, "EXIT STATUS");
    item(out, "0", "Success; for plan, nothing to do.");
    item(
        out,
        "1",
        "A failure (etcd, a file, a deploy step), units that are out of date (render \
         --check), or actions to apply (plan).",
    );
    item(
        out,
        "2",
        "A usage error, or a spec with problems (each on its own line on standard error).",
    );
    item(
        out,
        "141",
        "Standard output was closed early (unitgen render --stdout | head): \
         the process ends quietly by SIGPIPE, as other Unix tools do.",
    );
}
