//! Command-line definitions only; `app.rs` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The help heading of the etcd connection flags.
pub const ETCD_HEADING: &str = "etcd";
/// The help heading of the deploy flags (`plan`, `apply`, `watch --apply`).
pub const DEPLOY_HEADING: &str = "Deploying";

// Example lines stay within 79 columns, so that clap, which wraps help at
// the terminal's width, never breaks one on an 80-column terminal (a
// test checks): a longer command continues on the next line with `\`.
const EXAMPLES: &str = "\
Examples:
  unitgen render                          Render ./unitgen.yaml into ./units
  unitgen render --check                  Exit 1 and a diff if ./units is stale
  unitgen render | xargs fleetctl submit  Submit every rendered unit to fleet
  unitgen validate -f ops/unitgen.yaml    Report every problem in a spec
  unitgen list                            Each job, its next run, ./units state
  unitgen init                            Write a commented starter spec
  unitgen watch --exec ./on-change.sh     Re-render when etcd values change
  unitgen plan                            What apply would do; exit 1 if any
  unitgen apply                           Make fleet (or a host) run ./units
  unitgen schedule --cron '15 0 * * *'    Show the OnCalendar form, next run
  unitgen man render | man -l -           Read the manual of `render`";

#[derive(Debug, Parser)]
#[command(
    name = "unitgen",
    version,
    about = "Render scheduled backup jobs into fleet/systemd .service + .timer units",
    long_about = "unitgen reads a YAML spec of backup jobs and renders, for each job, a \
NAME.service and NAME.timer for fleet clusters or plain systemd hosts. Non-secret values \
may come from etcd at render time; secrets stay in etcd and are read by unitgen-runner at \
run time, never written into a unit.\n\nExit status: 0 ok, 1 failure or drift, 2 usage \
error or invalid spec.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print only errors and warnings: no `ok` line, no `removed PATH`, no watch notes
    // Listed after each command's own options (display_order).
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 1000
    )]
    pub quiet: bool,
    /// Also print what helps debugging: the etcd endpoints and keys read (never a
    /// secret's value), timings, the files written
    #[arg(short, long, global = true, display_order = 1001)]
    pub verbose: bool,
    /// Colour the `render --check` diff: auto (on a terminal, unless NO_COLOR is set),
    /// always, never
    #[arg(
        long,
        global = true,
        value_name = "WHEN",
        default_value = "auto",
        display_order = 1002
    )]
    pub color: clap::ColorChoice,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the spec's units into the output folder
    #[command(after_help = "\
Examples:
  unitgen render
  unitgen render -f examples/bitcoind-wallet/unitgen.yaml \\
    --values examples/bitcoind-wallet/values.yaml -o units/bitcoind-wallet
  unitgen render --stdout                 Print the units, write nothing
  unitgen render --check                  Exit 1 and a diff if ./units is stale
  unitgen render | xargs fleetctl submit  Paths: each service, then its timer
  unitgen render --check --format json    One JSON object per stale file")]
    Render(RenderArgs),
    /// Report every problem in the spec; write nothing
    #[command(after_help = "\
Examples:
  unitgen validate
  unitgen validate -f ops/unitgen.yaml --values ci-values.yaml
  unitgen validate --offline              No etcd; lists the keys it reads
  unitgen validate --format json          A JSON object per problem, for CI

With --format json (or --json), each problem is one line on stdout: {\"file\", \"line\",
\"column\", \"path\" (the key path), \"kind\", \"message\", \"hint\" (a suggested
replacement)}, null where unknown; the exit status stays the same. An etcd that cannot be
asked is one more problem when the spec has others (exit 2), else the only error (exit 1).")]
    Validate(ValidateArgs),
    /// List every job: where and when it runs, what it does, whether DIR is current
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Write a commented starter spec, its JSON Schema and a values file
    #[command(after_help = "\
Examples:
  unitgen init                            Into the current folder
  unitgen init ops/backups                Into ops/backups (created if missing)

Writes DIR/unitgen.yaml (a commented starter spec whose first line points editors at the
schema), DIR/unitgen.schema.json (what `unitgen schema` prints) and DIR/values.yaml (the
etcd keys the starter reads, for offline renders; secrets listed with null). Writes
nothing if any of them exists. No .gitignore: all of it belongs in git, with units/.")]
    Init(InitArgs),
    /// Show the OnCalendar form of schedules and when they fire next
    #[command(after_help = "\
Examples:
  unitgen schedule '*-*-* 00:15:00'
  unitgen schedule -n 5 'Mon..Fri 02:30' 'Sat 04:00 Europe/Berlin'
  unitgen schedule --cron '15 0 * * *' '@weekly' '0 0 1,15 * mon'
  unitgen schedule --json --base-time 2024-01-15T00:00:00Z daily")]
    Schedule(ScheduleCmd),
    /// Render, then re-render whenever a referenced etcd key or the spec changes
    #[command(after_help = "\
Examples:
  unitgen watch -o units
  unitgen watch --exec 'fleetctl destroy \"$@\" && fleetctl start \"$@\"'
  UNITGEN_ETCD_PASSWORD_FILE=/etc/unitgen/etcd.pw \\
    unitgen watch --etcd-user unitgen
  unitgen watch --apply                   Deploy each change as `unitgen apply`

Each batch of changes prints the rewritten unit paths, one per line, and runs --exec once
with them as arguments (\"$@\"); units of jobs removed from the spec are deleted, reported
on stderr (`removed PATH`) and given to --exec only in $UNITGEN_REMOVED (one path per
line; $UNITGEN_CHANGED lists the rewritten ones the same way), never as arguments. A
referenced key that disappears is reported, and the last good units stay. SIGINT or
SIGTERM stops the watch.

With --apply, the first render is applied in full (as `unitgen apply`), and each later
batch applies exactly the jobs whose units were rewritten or removed, before --exec runs.
A failed apply is reported; the watch goes on, and tries those jobs again with the next
batch.")]
    Watch(WatchArgs),
    /// Show what `apply` would change on the fleet cluster or systemd host
    #[command(after_help = "\
Examples:
  unitgen plan                            One action per line; exit 1 if any
  unitgen plan --target systemd --json    The same, for tools
  FLEETCTL_DRIVER=etcd FLEETCTL_ENDPOINT=http://10.0.0.1:2379 unitgen plan

Renders the spec in memory (nothing is written) and compares it with what fleet (through
fleetctl) or the host runs, and with the record of what `unitgen apply` deployed from DIR
(DIR/.unitgen-deployed). The actions are the commands apply runs, in order.")]
    Plan(PlanArgs),
    /// Make the fleet cluster or systemd host run exactly the rendered units
    #[command(after_help = "\
Examples:
  unitgen apply                           fleetctl from PATH, as its env says
  unitgen apply --fleetctl-arg=--driver=etcd \\
    --fleetctl-arg=--endpoint=http://10.0.0.1:2379
  unitgen apply --target systemd          Into /etc/systemd/system, systemctl
  unitgen apply --target systemd --root /mnt/image   Offline, for an image

Renders the spec into DIR (as `unitgen render`), then runs `unitgen plan`'s actions one by
one, printing each before it runs, and stops at the first failure with fleetctl's or
systemctl's output. fleet: new units are submitted, services loaded and timers started;
changed units are replaced with --replace, never while their service runs a backup (it is
waited for, up to --wait-idle); units of removed jobs are destroyed, timer first. A host:
files are written, systemd reloaded, timers enabled and started. Only units that DIR's record
lists and that carry [X-Unitgen] are ever removed; a unit of a rendered name that is not
unitgen's is an error.")]
    Apply(ApplyArgs),
    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  unitgen completions bash > /etc/bash_completion.d/unitgen
  unitgen completions zsh > \"${fpath[1]}/_unitgen\"
  unitgen completions fish > ~/.config/fish/completions/unitgen.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): unitgen(1), one per command, unitgen-runner(1)
    #[command(after_help = "\
Examples:
  unitgen man | man -l -
  unitgen man render | man -l -
  unitgen man --all /usr/local/share/man/man1

Pages: unitgen, one per command (unitgen-render, ...), unitgen-runner and
unitgen-runner-notify; PAGE may be given with or without its `unitgen-` prefix.")]
    Man(ManArgs),
    /// Print the spec's JSON Schema, for editors
    #[command(after_help = "\
Examples:
  unitgen schema > unitgen.schema.json
  # then, first line of unitgen.yaml for yaml-language-server:
  # yaml-language-server: $schema=./unitgen.schema.json")]
    Schema,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The page to print [default: unitgen]
    #[arg(value_name = "PAGE", conflicts_with = "all")]
    pub page: Option<String>,
    /// Write every page into DIR (unitgen.1, unitgen-render.1, ..., unitgen-runner.1)
    #[arg(long, value_name = "DIR")]
    pub all: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScheduleCmd {
    /// Calendar expressions (systemd.time(7)), or cron lines with --cron
    #[arg(required = true, value_name = "EXPR")]
    pub exprs: Vec<String>,
    /// Read each EXPR as a 5-field cron line or an @daily-style shorthand
    #[arg(long)]
    pub cron: bool,
    /// How many elapse times to show
    #[arg(
        short = 'n',
        long = "iterations",
        value_name = "N",
        default_value_t = 1
    )]
    pub iterations: usize,
    /// Compute from this time instead of now (RFC 3339, or `YYYY-MM-DD HH:MM:SS [ZONE]`)
    #[arg(long, value_name = "TIME")]
    pub base_time: Option<String>,
    /// One JSON object per expression, one per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The spec file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "SPEC",
        default_value = "unitgen.yaml"
    )]
    pub spec: PathBuf,
    /// YAML map of etcd key to value, used instead of etcd (offline renders, CI)
    #[arg(long, value_name = "FILE", conflicts_with = "etcd_endpoints")]
    pub values: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// How `unitgen` reaches etcd; each overrides the spec's `etcd:` section.
/// The password is never a flag (it would show in `ps`): it comes from
/// `UNITGEN_ETCD_PASSWORD` or a file.
///
/// Each argument names its heading itself: a `next_help_heading` here
/// would also put every option declared after the flatten (`-o`,
/// `--check`, ...) under "etcd".
#[derive(Debug, Args, Default)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated [env: UNITGEN_ETCD_ENDPOINTS] (default: the
    /// spec's `etcd.endpoints`)
    // Not clap's `env`: clap would count the variable as the flag, and
    // refuse `--values` whenever it is exported; `cmd::settings` reads it,
    // and only when `--values` is not given.
    #[arg(
        long,
        value_name = "URLS",
        value_delimiter = ',',
        help_heading = ETCD_HEADING
    )]
    pub etcd_endpoints: Vec<String>,
    /// CA certificate (PEM) for https:// endpoints
    #[arg(long, value_name = "FILE", env = "UNITGEN_ETCD_CA_FILE", help_heading = ETCD_HEADING)]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM)
    #[arg(long, value_name = "FILE", env = "UNITGEN_ETCD_CERT_FILE", help_heading = ETCD_HEADING)]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM)
    #[arg(long, value_name = "FILE", env = "UNITGEN_ETCD_KEY_FILE", help_heading = ETCD_HEADING)]
    pub etcd_key_file: Option<PathBuf>,
    /// User for etcd authentication; the password comes from
    /// UNITGEN_ETCD_PASSWORD or --etcd-password-file
    #[arg(long, value_name = "USER", env = "UNITGEN_ETCD_USER", help_heading = ETCD_HEADING)]
    pub etcd_user: Option<String>,
    /// File holding the etcd password
    #[arg(long, value_name = "FILE", env = "UNITGEN_ETCD_PASSWORD_FILE", help_heading = ETCD_HEADING)]
    pub etcd_password_file: Option<PathBuf>,
    /// Connect and request timeout, e.g. `5s`
    #[arg(long, value_name = "SPAN", env = "UNITGEN_ETCD_TIMEOUT", help_heading = ETCD_HEADING)]
    pub etcd_timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The output folder
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "units"
    )]
    pub output: PathBuf,
    /// Shell command run once per batch of changes; the rewritten unit paths
    /// are its arguments ("$@"), removed ones are in $UNITGEN_REMOVED
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Wait this long after a change for more before re-rendering, e.g. `200ms`
    #[arg(long, value_name = "SPAN", default_value = "200ms")]
    pub debounce: String,
    /// Deploy each change to fleet or the host, as `unitgen apply` does
    #[arg(long, help_heading = DEPLOY_HEADING)]
    pub apply: bool,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Where `plan`, `apply` and `watch --apply` deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    /// A fleet cluster, through fleetctl
    Fleet,
    /// This host's systemd (or an image with --root)
    Systemd,
}

/// Each argument names its heading (see [`EtcdArgs`]).
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Deploy the jobs with this target [default: the one every job of the spec has]
    #[arg(long, value_enum, value_name = "TARGET", help_heading = DEPLOY_HEADING)]
    pub target: Option<TargetArg>,
    /// The fleetctl to run; it connects as its environment says
    /// (FLEETCTL_ENDPOINT, FLEETCTL_DRIVER, ...)
    #[arg(
        long,
        value_name = "PATH",
        default_value = "fleetctl",
        help_heading = DEPLOY_HEADING
    )]
    pub fleetctl: PathBuf,
    /// A global flag for every fleetctl call, e.g. `--fleetctl-arg=--driver=etcd` (repeatable)
    #[arg(
        long = "fleetctl-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        help_heading = DEPLOY_HEADING
    )]
    pub fleetctl_args: Vec<String>,
    /// systemd: deploy into the image whose root is DIR (DIR/etc/systemd/system), offline:
    /// only `systemctl --root=DIR enable/disable`
    #[arg(long, value_name = "DIR", help_heading = DEPLOY_HEADING)]
    pub root: Option<PathBuf>,
}

/// Each argument names its heading (see [`EtcdArgs`]).
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// How long fleet or systemd may take to report a unit's state; `0` triggers and does
    /// not wait (fleetctl --no-block, systemctl --no-block)
    #[arg(
        long,
        value_name = "SPAN",
        default_value = "1min",
        help_heading = DEPLOY_HEADING
    )]
    pub wait: String,
    /// How long a running backup may take to finish before its service is replaced or
    /// destroyed; after that the apply fails, naming the busy unit
    #[arg(
        long,
        value_name = "SPAN",
        default_value = "10min",
        help_heading = DEPLOY_HEADING
    )]
    pub wait_idle: String,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The output folder (its record says what apply deployed from it)
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "units"
    )]
    pub output: PathBuf,
    /// One JSON object: the target, the actions and the notes
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The output folder: rendered into first, and deployed from
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "units"
    )]
    pub output: PathBuf,
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The output folder
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "units"
    )]
    pub output: PathBuf,
    /// Print the units to stdout instead of writing them
    #[arg(long, conflicts_with_all = ["check", "print0"])]
    pub stdout: bool,
    /// Write nothing; exit 1 with a unified diff if DIR differs from the spec
    #[arg(long)]
    pub check: bool,
    /// End printed paths with NUL instead of newline (for `xargs -0`)
    #[arg(long)]
    pub print0: bool,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// How problems (and `render --check`'s differences) are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One line per problem on stderr, `file:line:col: key.path: message`
    #[default]
    Text,
    /// One JSON object per problem (per file with --check) and line, on stdout
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct FormatArgs {
    /// How to print problems: `json` for CI annotations (with render: --check only)
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t)]
    pub format: Format,
    /// Short for --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

impl FormatArgs {
    pub fn is_json(&self) -> bool {
        self.json || self.format == Format::Json
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Ask no etcd: check every rule that needs no value, and list the etcd keys a render
    /// reads
    #[arg(long, conflicts_with = "values")]
    pub offline: bool,
    #[command(flatten)]
    pub format: FormatArgs,
    // After the plain options: its etcd flags set a help heading.
    #[command(flatten)]
    pub spec: SpecArgs,
}

const LIST_HELP: &str = "\
Examples:
  unitgen list
  unitgen list -f examples/bitcoind-wallet/unitgen.yaml \\
    -o units/bitcoind-wallet
  unitgen list --values ci-values.yaml    Also compare jobs that need etcd
  unitgen list --json | jq -r 'select(.units != \"up_to_date\") | .job'

One row per job: where it runs (its fleet placement, or this host), its OnCalendar= lines
in systemd's normalized form (and monotonic timers), its next run, computed offline in
this machine's time zone, whether DIR holds its units as `unitgen render` would write them
(up to date, stale, missing), and its steps in short. etcd is never asked: without
--values, the units of a job that needs an etcd value are `unknown (needs etcd)`.

--json prints one object per job and line, with these fields:
  job          the job's name
  target       \"fleet\" or \"systemd\"
  runs_on      where it runs, in short (\"this host\", \"with bitcoind.service\")
  x_fleet      the service's [X-Fleet] lines, e.g. [\"MachineOf=db.service\"]
  on_calendar  the normalized OnCalendar= expressions
  timers       the monotonic timers, e.g. [\"OnBootSec=15min\"]
  next_run     the next elapse, RFC 3339 in UTC; null without OnCalendar=
  units        \"up_to_date\", \"stale\", \"missing\" or \"needs_etcd\"
  files        the job's unit files in DIR
  steps        what the service runs, one string per step (or the host command)
A field that depends on an etcd value that was not given is null.";

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The spec file
    #[arg(
        short = 'f',
        long = "file",
        value_name = "SPEC",
        default_value = "unitgen.yaml"
    )]
    pub spec: PathBuf,
    /// YAML map of etcd key to value; without it, jobs that need a value are listed
    /// without comparing their units
    #[arg(long, value_name = "FILE")]
    pub values: Option<PathBuf>,
    /// The output folder to compare with
    #[arg(
        short = 'o',
        long = "output",
        value_name = "DIR",
        default_value = "units"
    )]
    pub output: PathBuf,
    /// Count next runs from this time instead of now (RFC 3339, or `YYYY-MM-DD HH:MM:SS
    /// [ZONE]`)
    #[arg(long, value_name = "TIME")]
    pub base_time: Option<String>,
    /// One JSON object per job and line (fields below)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The folder to write into; created if missing
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

#[cfg(test)]
mod tests {
    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
