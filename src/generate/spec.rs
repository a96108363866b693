//! The serde mirror of `unitgen.yaml`, version 1. No logic lives here: the
//! types say what the file may contain, `source.rs` decodes it (collecting
//! every problem), and `validate/` turns it into a model.
//!
//! Every struct rejects unknown keys: decoding reports them all with their
//! location, and the JSON Schema (`unitgen schema`) is generated from these
//! same types, so editors and the parser cannot disagree. Doc comments
//! (`///`) become the schema's descriptions, which editors show to
//! operators: they say what a key does, never how unitgen works inside
//! (notes for this code's readers are `//` comments). The rules the
//! parser enforces beyond types (`version: 1`, job names, what starts a
//! job) are added to the schema by the `schema_*` functions at the end.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

pub use crate::contract::aws::Credentials;
pub use crate::contract::lock::OnBusy;
use crate::contract::retention::RetentionPolicy;
pub use crate::contract::s3::Compare;

// `J` is the job type: `source.rs` first decodes the jobs as raw YAML
// values, then each on its own, so that one bad job does not hide the
// problems of others (and error recovery stays linear).
/// unitgen's spec: backup jobs, each rendered into a systemd `NAME.service`
/// and `NAME.timer` for a fleet cluster or a plain systemd host. See
/// `unitgen --help` and the README.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "UnitgenSpec", transform = schema_spec_rules)]
pub struct SpecOf<J> {
    /// The spec format's version: `1`.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// Where render-time values and run-time secrets live.
    #[serde(default)]
    pub etcd: Option<EtcdSpec>,
    /// Settings merged into every job; a job's own setting wins.
    #[serde(default)]
    pub defaults: Defaults,
    /// The backup jobs, at least one, by name. Each becomes `NAME.service`
    /// and `NAME.timer`, so a name is a unit name: ASCII letters, digits
    /// and `:_.@-`, at most one `@` (not first or last), not starting with
    /// `.` or `-`, at most 247 characters.
    #[schemars(extend("minProperties" = 1, "propertyNames" = schema_job_names()))]
    pub jobs: BTreeMap<String, J>,
}

/// The spec as users write it.
pub type Spec = SpecOf<Job>;

/// Where `unitgen` reads `{ etcd: KEY }` values at render time, and how
/// the runner reaches etcd for secrets at run time.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSpec {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`, where `unitgen`
    /// reads values (and, unless `runner` says otherwise, where the runner
    /// reads secrets). `--etcd-endpoints` overrides them.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// TLS for `unitgen`'s connection; paths are relative to the spec.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
    /// User for etcd authentication. The password never goes in the spec:
    /// it comes from `UNITGEN_ETCD_PASSWORD` or `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the etcd password (relative to the spec).
    #[serde(default)]
    pub password_file: Option<String>,
    /// How long connecting or one request may take, e.g. `5s`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// How the runner reaches etcd from inside its container.
    #[serde(default)]
    pub runner: Option<RunnerEtcd>,
}

/// TLS files for an etcd connection.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// CA bundle that signed the etcd server's certificate (PEM).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM), with `key_file`.
    #[serde(default)]
    pub cert_file: Option<String>,
    /// Client key (PEM), with `cert_file`.
    #[serde(default)]
    pub key_file: Option<String>,
}

/// etcd as the runner sees it, inside its container: paths are inside the
/// container (mount them with `container.volumes`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunnerEtcd {
    /// Endpoints the container can reach, e.g. the docker0 address
    /// `http://172.17.0.1:2379`. Default: `etcd.endpoints`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// TLS files inside the container.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
    /// User for etcd authentication (default: `etcd.username`).
    #[serde(default)]
    pub username: Option<String>,
    /// File inside the container holding the etcd password.
    #[serde(default)]
    pub password_file: Option<String>,
}

/// Where the units run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A fleet cluster: adds `[X-Fleet]` placement, no `[Install]`.
    Fleet,
    /// A plain systemd host: the timer gets `[Install] WantedBy=timers.target`.
    Systemd,
}

/// When docker pulls the image before running it (`docker run --pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull before every run.
    Always,
    /// Pull only when the host does not have the image (docker's default).
    Missing,
    /// Never pull: the image must be on the host.
    Never,
}

/// Settings for every job; a job's own setting wins (`timer` and `notify`
/// are merged key by key).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Where the units run: `fleet` or `systemd` (the default).
    pub target: Option<Target>,
    /// Container image holding `unitgen-runner`.
    pub image: Option<Str>,
    /// When docker pulls the image: `always`, `missing` or `never`.
    pub pull: Option<PullPolicy>,
    /// Absolute path of the docker CLI on the hosts (default `/usr/bin/docker`).
    pub docker: Option<Str>,
    /// Path of `unitgen-runner` inside the image (default `/unitgen-runner`).
    pub runner: Option<Str>,
    /// Timer settings for every job, merged key by key with the job's.
    pub timer: Option<TimerSpec>,
    /// `TimeoutStartSec=`: how long one run may take (a systemd time span).
    pub timeout: Option<Str>,
    /// Unit started when the job fails; a template such as
    /// `unit-status-mail@.service` gets the job's service name as its instance.
    pub on_failure: Option<Str>,
    /// fleet placement for every job (with `target: fleet`).
    pub fleet: Option<FleetSpec>,
    /// Failure notification for every job, merged field by field with the
    /// job's own `notify`.
    pub notify: Option<NotifySpec>,
}

/// One backup job: when it runs (`schedule`, `cron` or a `timer` start),
/// and what it runs: `steps` of `unitgen-runner` in a container, a
/// `container.command`, or a host `command`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(transform = schema_job_rules)]
pub struct Job {
    /// `Description=` of both units.
    pub description: Option<Str>,
    /// A systemd calendar expression (`OnCalendar=`, see `man
    /// systemd.time`), e.g. `*-*-* 00:15:00` or `daily`.
    pub schedule: Option<Str>,
    /// A 5-field cron line (`15 0 * * *`) or `@daily`-style shorthand,
    /// instead of `schedule`; only the schedule, not the command.
    pub cron: Option<Str>,
    /// Timer settings, and starts besides or instead of a schedule
    /// (`on_boot`, ...).
    pub timer: Option<TimerSpec>,
    /// Where the units run: `fleet` or `systemd` (default: `defaults.target`,
    /// else `systemd`).
    pub target: Option<Target>,
    /// Units to start after (`After=`), e.g. the application's service.
    #[serde(default)]
    pub after: Vec<Str>,
    /// Units that must be running (`Requires=`, and `After=` as well).
    #[serde(default)]
    pub requires: Vec<Str>,
    /// Unit started when the job fails (`OnFailure=`); a template such as
    /// `unit-status-mail@.service` gets the job's service name as its instance.
    pub on_failure: Option<Str>,
    /// `TimeoutStartSec=`: how long one run may take (a systemd time span).
    pub timeout: Option<Str>,
    /// fleet placement (`[X-Fleet]`, with `target: fleet`).
    pub fleet: Option<FleetSpec>,
    /// Keep runs that touch the same data apart: a host lock or an etcd
    /// lock, held around all steps (or, for a host `command`, by `flock(1)`).
    pub lock: Option<LockSpec>,
    /// Run in a container (the default when `steps` are given).
    pub container: Option<ContainerSpec>,
    /// Run this command on the host instead of a container; the first word
    /// is an absolute path.
    #[schemars(length(min = 1))]
    pub command: Option<Vec<Str>>,
    /// Non-secret environment for the command or container.
    #[serde(default)]
    pub environment: BTreeMap<String, Str>,
    /// How systemd runs a host `command`: its user, priority and
    /// sandboxing (systemd.exec(5)). Not for container jobs.
    pub service: Option<ServiceSpec>,
    /// What `unitgen-runner` does, in order.
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Tell someone when the job fails (mail, webhook) and ping
    /// healthchecks.io on every run; `defaults.notify` is merged in.
    pub notify: Option<NotifySpec>,
}

/// How systemd runs a host `command` (systemd.exec(5)): as which user,
/// at which priority, in which sandbox. A container job's service runs
/// only the docker CLI, so these settings would not reach the container:
/// they are refused there.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// `User=`: run the command as this user (a name or a numeric ID)
    /// instead of root, as a crontab's user field does.
    pub user: Option<Str>,
    /// `Group=`: run it with this group (default: the user's).
    pub group: Option<Str>,
    /// `WorkingDirectory=`: an absolute path (default `/`).
    pub working_directory: Option<Str>,
    /// `EnvironmentFile=`: files of `KEY=value` lines read on the host when
    /// the job starts (how secrets the host keeps reach a command without
    /// being written into the unit); an absolute path, prefixed with `-`
    /// when a missing file is fine.
    #[serde(default)]
    pub environment_files: Vec<Str>,
    /// `Nice=`: CPU priority, from -20 (first) to 19 (last); backups
    /// usually run at 19.
    #[schemars(range(min = -20, max = 19))]
    pub nice: Option<i64>,
    /// `CPUSchedulingPolicy=`: `batch` for a CPU-heavy job, `idle` to run
    /// only when nothing else wants the CPU.
    pub cpu_scheduling_policy: Option<CpuSchedulingPolicy>,
    /// `IOSchedulingClass=`: `idle` to use the disks only when nothing
    /// else does, or `best-effort` with a priority.
    pub io_scheduling_class: Option<IoSchedulingClass>,
    /// `IOSchedulingPriority=`: from 0 (first) to 7 (last), within the class.
    #[schemars(range(min = 0, max = 7))]
    pub io_scheduling_priority: Option<i64>,
    /// `NoNewPrivileges=`: the command and its children can never gain
    /// privileges (setuid programs, file capabilities).
    pub no_new_privileges: Option<bool>,
    /// `ProtectSystem=`: `true` makes /usr and /boot read-only, `full` /etc
    /// too, `strict` everything but /dev, /proc and /sys (open what the
    /// job writes with `read_write_paths`).
    pub protect_system: Option<ProtectSystem>,
    /// `ProtectHome=`: `true` hides /home, /root and /run/user,
    /// `read-only` makes them read-only, `tmpfs` puts empty folders there.
    pub protect_home: Option<ProtectHome>,
    /// `PrivateTmp=`: a /tmp and /var/tmp of its own.
    pub private_tmp: Option<bool>,
    /// `PrivateDevices=`: no physical devices in /dev.
    pub private_devices: Option<bool>,
    /// `ReadWritePaths=`: absolute paths the command may write despite
    /// `protect_system` and `protect_home`, e.g. the backup destination.
    #[serde(default)]
    pub read_write_paths: Vec<Str>,
    /// `ReadOnlyPaths=`: absolute paths the command may only read, e.g.
    /// the data it backs up.
    #[serde(default)]
    pub read_only_paths: Vec<Str>,
}

/// `CPUSchedulingPolicy=` (sched(7)); the real-time policies are left
/// out: a backup has no business starving the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CpuSchedulingPolicy {
    /// The default time-sharing policy.
    Other,
    /// For CPU-bound, non-interactive work.
    Batch,
    /// Below nice 19: only when the CPU would otherwise be idle.
    Idle,
}

/// `IOSchedulingClass=` (ioprio_set(2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IoSchedulingClass {
    /// Before every other class: use with care.
    Realtime,
    /// The default, ordered by `io_scheduling_priority`.
    BestEffort,
    /// Only when no other process uses the disk.
    Idle,
}

impl CpuSchedulingPolicy {
    /// The value as systemd reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            CpuSchedulingPolicy::Other => "other",
            CpuSchedulingPolicy::Batch => "batch",
            CpuSchedulingPolicy::Idle => "idle",
        }
    }
}

impl IoSchedulingClass {
    /// The value as systemd reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            IoSchedulingClass::Realtime => "realtime",
            IoSchedulingClass::BestEffort => "best-effort",
            IoSchedulingClass::Idle => "idle",
        }
    }
}

/// `ProtectSystem=`: `true`, `false`, `full` or `strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectSystem {
    Off,
    On,
    Full,
    Strict,
}

/// `ProtectHome=`: `true`, `false`, `read-only` or `tmpfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtectHome {
    Off,
    On,
    ReadOnly,
    Tmpfs,
}

/// Settings systemd writes as a boolean or a mode name. Decoded by hand:
/// serde's untagged enums would say "did not match any variant" instead
/// of what may be written.
macro_rules! bool_or_mode {
    ($ty:ident, $desc:literal, $(($name:literal, $variant:ident)),+) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str(concat!("true, false", $(", `", $name, "`"),+))
                    }
                    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<$ty, E> {
                        Ok(if v { $ty::On } else { $ty::Off })
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        match v {
                            $($name => Ok($ty::$variant),)+
                            _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                        }
                    }
                }
                d.deserialize_any(V)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": $desc,
                    "enum": [true, false, $($name),+]
                })
            }
        }

        impl $ty {
            /// The value as systemd reads it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $ty::Off => "false",
                    $ty::On => "true",
                    $($ty::$variant => $name,)+
                }
            }
        }
    };
}

bool_or_mode!(
    ProtectSystem,
    "`true` (/usr and /boot read-only), `full` (/etc too), `strict` (all but /dev, /proc, /sys), or `false`.",
    ("full", Full),
    ("strict", Strict)
);
bool_or_mode!(
    ProtectHome,
    "`true` (hidden), `read-only`, `tmpfs` (empty), or `false`.",
    ("read-only", ReadOnly),
    ("tmpfs", Tmpfs)
);

/// Failure notification: `{ mail: [me@me.biz] }`, `{ webhook: URL }`,
/// `{ healthchecks: URL }`, or several of them. Mail and webhook are sent
/// by the unit `unitgen-notify@JOB.service`, which the job's unit starts
/// through `OnFailure=`; healthchecks pings come from the job's own unit,
/// when a run starts and when it ends. Each runs `unitgen-runner notify`
/// in a container of the job's image.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifySpec {
    /// Mail on failure: a list of addresses, or `{ to, from, smtp, ... }`.
    pub mail: Option<MailSpec>,
    /// A JSON POST on failure (Slack-compatible): a URL, or `{ url }`, or
    /// `{ url_secret: { etcd: KEY } }` when the URL holds a token.
    pub webhook: Option<EndpointSpec>,
    /// A healthchecks.io ping URL: `/start` when a run starts, the URL on
    /// success, `/<exit status>` or `/fail` on failure.
    pub healthchecks: Option<EndpointSpec>,
    /// `docker run --network` of the notifier's container (default: the
    /// job's `container.network`); `host` reaches the host's loopback.
    pub network: Option<Str>,
}

/// Mail: the recipients alone (`[me@me.biz]`), or the whole setting.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum MailSpec {
    To(Vec<Str>),
    Full(MailFields),
}

/// Mail settings: recipients, sender and SMTP server.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MailFields {
    /// Recipients.
    #[serde(default)]
    pub to: Vec<Str>,
    /// Sender (default `unitgen@HOST`, HOST being the host's name).
    pub from: Option<Str>,
    /// The SMTP server: `smtp://HOST[:PORT]` (port 25) or
    /// `smtps://HOST[:PORT]` (TLS, port 465).
    pub smtp: Option<Str>,
    /// Upgrade `smtp://` with STARTTLS (required when set).
    pub starttls: Option<bool>,
    /// SMTP user (AUTH PLAIN, over TLS only).
    pub user: Option<Str>,
    /// Read from etcd by the runner at run time; never written into a unit.
    pub password: Option<Secret>,
}

/// An HTTP endpoint: its URL, or `{ url }`, or `{ url_secret: { etcd: KEY } }`.
#[derive(Debug, Clone, JsonSchema)]
#[schemars(untagged)]
pub enum EndpointSpec {
    Url(String),
    Full(EndpointFields),
}

/// An HTTP endpoint's URL, written into the unit or kept in etcd.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointFields {
    /// Written into the unit (`{ etcd: KEY }` is read at render time).
    pub url: Option<Str>,
    /// A URL that holds a token (Slack, a healthchecks UUID): read from etcd
    /// by the runner at run time, never written into a unit.
    pub url_secret: Option<Secret>,
}

impl MailSpec {
    /// The full form (the short form is `to` alone).
    pub fn fields(&self) -> MailFields {
        match self {
            MailSpec::To(to) => MailFields {
                to: to.clone(),
                ..MailFields::default()
            },
            MailSpec::Full(f) => f.clone(),
        }
    }
}

impl EndpointSpec {
    pub fn fields(&self) -> EndpointFields {
        match self {
            EndpointSpec::Url(u) => EndpointFields {
                url: Some(Str::Literal(u.clone())),
                url_secret: None,
            },
            EndpointSpec::Full(f) => f.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for MailSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = MailSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of addresses or `{ to: [...], smtp: smtp://HOST, ... }`")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<MailSpec, A::Error> {
                Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(MailSpec::To)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<MailSpec, A::Error> {
                MailFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(MailSpec::Full)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL, `{ url: URL }` or `{ url_secret: { etcd: KEY } }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec::Url(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<EndpointSpec, A::Error> {
                EndpointFields::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(EndpointSpec::Full)
            }
        }
        d.deserialize_any(V)
    }
}

/// Timer settings (systemd.timer(5)). Besides `schedule` or `cron`, or
/// instead of them, a timer may start the job a time span after an event:
/// `on_boot: 15min` with `on_unit_active: 1d` runs it 15 minutes after
/// boot, then a day after each run.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimerSpec {
    /// `Persistent=`: catch up on a run missed while the host was down
    /// (for `schedule` and `cron` only).
    pub persistent: Option<bool>,
    /// `RandomizedDelaySec=`: spread runs over this time span.
    pub randomized_delay: Option<Str>,
    /// `AccuracySec=`: how late systemd may fire to coalesce wake-ups.
    pub accuracy: Option<Str>,
    /// `OnActiveSec=`: run this long after the timer is started
    /// (`systemctl start`, `fleetctl start`).
    pub on_active: Option<Str>,
    /// `OnBootSec=`: run this long after the machine booted (at once when
    /// the timer starts later than that), e.g. `15min`; what cron's
    /// `@reboot` does.
    pub on_boot: Option<Str>,
    /// `OnStartupSec=`: run this long after systemd started; for the
    /// system's systemd, much the same as `on_boot`.
    pub on_startup: Option<Str>,
    /// `OnUnitActiveSec=`: run again this long after the job last started,
    /// e.g. `1d`. It counts from a run, so it needs a first one: give
    /// `on_boot`, `on_startup`, `on_active`, `schedule` or `cron` too.
    pub on_unit_active: Option<Str>,
    /// `OnUnitInactiveSec=`: run again this long after the job last
    /// finished; needs a first run like `on_unit_active`.
    pub on_unit_inactive: Option<Str>,
}

/// A job's lock: `{ name: backups, wait: 10s, on_busy: fail }` on the
/// host, or `{ etcd: /locks/backups, wait: 10s }` across machines. Not a
/// `defaults` setting: a lock names the data a job touches, and a shared
/// default would silently serialize unrelated jobs, with no way to opt out.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockSpec {
    /// A host lock: `flock(2)` on `/run/lock/unitgen/NAME.lock`, which the
    /// kernel releases when the run ends, however it ends. Jobs (and any
    /// `flock(1)`) naming the same lock exclude each other.
    pub name: Option<Str>,
    /// A lock across machines under this etcd key (`etcdctl lock`'s keys),
    /// held with a lease the runner keeps alive; the run stops if the
    /// lease is lost.
    pub etcd: Option<Str>,
    /// How long to wait for the lock (a time span, `infinity` for no
    /// limit); default 0: try once.
    pub wait: Option<Str>,
    /// What to do when it is still held after `wait`: `fail` (default) or
    /// `skip` (exit 0 with one log line).
    pub on_busy: Option<OnBusy>,
    /// etcd locks: the lease's time to live (whole seconds, default 10s),
    /// how long the lock outlives a runner that died holding it.
    pub ttl: Option<Str>,
}

/// fleet placement (`[X-Fleet]`), see fleet's unit-files-and-scheduling docs.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Run only on this machine (its 32-hex-digit `/etc/machine-id`).
    pub machine_id: Option<Str>,
    /// Run on the machine that runs this unit, e.g. `bitcoind.service`.
    pub machine_of: Option<Str>,
    /// Run only on machines with this metadata; several values for one key
    /// mean any of them.
    #[serde(default)]
    pub machine_metadata: BTreeMap<String, OneOrMany<Str>>,
    /// Never run on a machine with a unit matching one of these globs.
    #[serde(default)]
    pub conflicts: Vec<Str>,
    /// Run on every machine (only `machine_metadata` may narrow it).
    pub global: Option<bool>,
}

/// The container a job runs in (`docker run`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// The image (default: `defaults.image`).
    pub image: Option<Str>,
    /// Container name (default: the job name, with `@` and `:` as `_`).
    pub name: Option<Str>,
    /// `docker run --link CONTAINER:ALIAS`: reach another container by a
    /// host name, e.g. `bitcoind:bitcoind`.
    #[serde(default)]
    pub links: Vec<Str>,
    /// `docker run --network NAME` (`host` reaches the host's loopback).
    pub network: Option<Str>,
    /// `docker run --volume HOST:CONTAINER[:OPTIONS]`.
    #[serde(default)]
    pub volumes: Vec<Str>,
    /// When docker pulls the image: `always`, `missing` or `never`.
    pub pull: Option<PullPolicy>,
    /// Run this command in the image instead of `unitgen-runner` steps.
    #[schemars(length(min = 1))]
    pub command: Option<Vec<Str>>,
}

/// One step of `unitgen-runner`, written as a one-key map (`- rpc: {...}`).
#[derive(Debug, Clone, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// A JSON-RPC call, e.g. bitcoind `backupwallet`.
    Rpc(RpcStep),
    /// An EBS snapshot of a volume, then pruning by a retention policy.
    EbsSnapshot(EbsSnapshotStep),
    /// A dated snapshot folder of a local folder, unchanged files
    /// hard-linked to the previous snapshot, then pruning by a retention
    /// policy.
    Copy(CopyStep),
    /// Upload a folder tree to `s3://bucket/prefix`, rsync-style.
    S3Sync(S3SyncStep),
    /// Ensure unitgen's lifecycle rules on a bucket, keeping all others.
    S3Lifecycle(S3LifecycleStep),
}

/// A JSON-RPC call over HTTP, e.g. bitcoind's `backupwallet`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RpcStep {
    /// Endpoint, e.g. `http://bitcoind:8332/`.
    pub url: Str,
    /// Wallet name: calls go to `/wallet/NAME`.
    pub wallet: Option<Str>,
    /// The RPC method, e.g. `backupwallet`.
    pub method: Str,
    /// Positional parameters, as JSON values.
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
    /// RPC user (basic auth), with `password`.
    pub user: Option<Str>,
    /// Read from etcd by the runner at run time; never written into a unit.
    pub password: Option<Secret>,
    /// Path of bitcoind's `.cookie` file inside the container, instead of user/password.
    pub cookie_file: Option<Str>,
    /// How long the call may take (a systemd time span).
    pub timeout: Option<Str>,
}

/// An EBS snapshot of a volume, then retention over this job's snapshots
/// of it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EbsSnapshotStep {
    /// e.g. `vol-0123456789abcdef0`; usually `{ etcd: /aws/volume-id }`.
    pub volume_id: Str,
    /// The volume's AWS region, e.g. `us-east-1`.
    pub region: Str,
    /// `default_chain` (instance profile, environment) or
    /// `{ etcd_prefix: /aws/ }` (keys read from etcd at run time).
    pub credentials: Credentials,
    /// Extra tags on the snapshot (the ownership, job and volume tags are always added).
    #[serde(default)]
    pub tags: BTreeMap<String, Str>,
    /// Wait until the snapshot is `completed`, at most this long.
    pub wait: Option<Str>,
    /// Which of this job's completed snapshots of the volume to keep; the
    /// others are deleted (never the newest).
    pub retention: Option<RetentionPolicy>,
    /// EC2 endpoint override (testing against a local server).
    pub endpoint: Option<Str>,
    /// How long one EC2 request may take, e.g. `60s` (the default). A
    /// CreateSnapshot whose answer does not come in time is looked up by
    /// this run's tag before it is ever sent again.
    pub request_timeout: Option<Str>,
}

/// A dated snapshot folder of a local folder, then retention over this
/// job's snapshot folders.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CopyStep {
    /// The folder to copy, inside the container (mount it with `container.volumes`).
    pub source: Str,
    /// The folder holding the snapshot folders (`JOB.2026-11-20T001500Z`),
    /// inside the container; it must be mounted, and not read-only.
    pub destination: Str,
    /// Which of this job's snapshot folders to keep; the others are
    /// deleted (never the newest).
    pub retention: Option<RetentionPolicy>,
}

/// Uploads a local folder to an S3 bucket, like `aws s3 sync`: only files
/// that changed are sent.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3SyncStep {
    /// The folder to upload, inside the container: mount it with
    /// `container.volumes` (e.g. `/backups:/backups:ro`).
    pub source: Str,
    /// The bucket's name, e.g. `my-backups`.
    pub bucket: Str,
    /// Key prefix ending in `/`, e.g. `host1/`; default: the bucket's top.
    pub prefix: Option<Str>,
    /// `size` (default): same size means unchanged. `checksum`: also the
    /// same SHA-256 (kept in each object's metadata), which catches edits
    /// that keep the size but reads every file.
    pub compare: Option<Compare>,
    /// Delete objects under `prefix` that `source` no longer has (default false).
    pub delete: Option<bool>,
    /// The bucket's AWS region, e.g. `us-east-1`.
    pub region: Str,
    /// `default_chain` (instance profile, environment) or
    /// `{ etcd_prefix: /aws/ }` (keys read from etcd at run time).
    pub credentials: Credentials,
    /// S3 endpoint override (an S3-compatible store, or a local test
    /// server): path-style addressing, checksums only where required.
    pub endpoint: Option<Str>,
}

/// Sets a bucket's lifecycle rules (archive to Glacier, expire), keeping
/// the bucket's other rules as they are.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3LifecycleStep {
    /// The bucket's name, e.g. `my-backups`.
    pub bucket: Str,
    /// The bucket's AWS region, e.g. `us-east-1`.
    pub region: Str,
    /// `default_chain` (instance profile, environment) or
    /// `{ etcd_prefix: /aws/ }` (keys read from etcd at run time).
    pub credentials: Credentials,
    /// S3 endpoint override (an S3-compatible store, or a local test
    /// server).
    pub endpoint: Option<Str>,
    /// Every rule unitgen owns on the bucket (ids starting `unitgen-`);
    /// other rules of the bucket are kept exactly as they are.
    pub rules: Vec<S3LifecycleRule>,
}

/// One lifecycle rule: when objects under a prefix move to a cheaper
/// storage class, and when they are deleted.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3LifecycleRule {
    /// The rule's id, starting `unitgen-`, e.g. `unitgen-archive`.
    pub id: Str,
    /// Key prefix the rule applies to, e.g. `host1/`; default: the whole bucket.
    pub prefix: Option<Str>,
    /// Days after creation to move objects to `storage_class`.
    pub transition_days: Option<u32>,
    /// GLACIER, DEEP_ARCHIVE, GLACIER_IR, INTELLIGENT_TIERING, STANDARD_IA or ONEZONE_IA.
    pub storage_class: Option<Str>,
    /// Days after creation to delete objects.
    pub expiration_days: Option<u32>,
    /// Days after which S3 aborts an unfinished multipart upload (a runner
    /// killed mid-upload leaves one behind).
    pub abort_incomplete_uploads_days: Option<u32>,
}

/// A string written in the spec, or `{ etcd: KEY }` read at render time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Str {
    Literal(String),
    Etcd(EtcdRef),
}

/// A value kept in etcd, read at render time (or, for a secret, by the
/// runner at run time).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdRef {
    /// The etcd key, e.g. `/aws/volume-id`.
    pub etcd: String,
}

/// A secret: only a reference, which the runner reads at run time.
#[derive(Debug, Clone, PartialEq, Eq, JsonSchema)]
#[schemars(transparent)]
pub struct Secret(pub EtcdRef);

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(v) => std::slice::from_ref(v),
            OneOrMany::Many(v) => v,
        }
    }
}

// `Str` and `Secret` decode by hand: an untagged enum's error ("data did not
// match any variant") would not tell the user what to write.

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Str;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or `{ etcd: KEY }`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Str, E> {
                Ok(Str::Literal(v.to_owned()))
            }
            // YAML reads `10` or `true` as numbers and booleans; where a
            // string is expected they mean their text.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Str, E> {
                Ok(Str::Literal(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Str, E> {
                Ok(Str::Literal(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Str, E> {
                Ok(Str::Literal(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Str, E> {
                Ok(Str::Literal(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Str, A::Error> {
                EtcdRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Str::Etcd)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        /// Never echoes what was written: it is a secret someone just
        /// pasted, whatever its type.
        fn refused<E: serde::de::Error>() -> E {
            E::custom(
                "a secret cannot be written in the spec; store it in \
                 etcd (`etcdctl put /some/key VALUE`) and write `{ etcd: /some/key }`",
            )
        }
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`{ etcd: KEY }`")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Secret, E> {
                Err(refused())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Secret, A::Error> {
                // Only `etcd:` is read; any other key is refused without
                // naming it (a pasted `{ hunter2: }` is still a secret).
                let key: Option<String> = map.next_key()?;
                if key.as_deref() != Some("etcd") {
                    return Err(refused());
                }
                let etcd: String = map.next_value()?;
                if map.next_key::<String>()?.is_some() {
                    return Err(refused());
                }
                Ok(Secret(EtcdRef { etcd }))
            }
            crate::contract::secret::refuse_other_types!(refused);
        }
        d.deserialize_any(V)
    }
}

// serde_yaml 0.9 reads enums only from `!tags`; the spec writes them as
// one-key maps (`- rpc: {...}`), as people write YAML.

/// Reads the single key of a one-key map and hands its value to `read`.
fn one_key_map<'de, A, T>(
    mut map: A,
    variants: &'static [&'static str],
    read: impl FnOnce(&str, &mut A) -> Result<T, A::Error>,
) -> Result<T, A::Error>
where
    A: serde::de::MapAccess<'de>,
{
    use serde::de::Error;
    let Some(kind) = map.next_key::<String>()? else {
        return Err(A::Error::custom(format!(
            "empty map; expected one of: {}",
            variants.join(", ")
        )));
    };
    if !variants.contains(&kind.as_str()) {
        return Err(A::Error::unknown_variant(&kind, variants));
    }
    let value = read(&kind, &mut map)?;
    if let Some(other) = map.next_key::<String>()? {
        return Err(A::Error::custom(format!(
            "`{kind}` and `{other}` in one item; each item has exactly one kind (start another item with `-`)"
        )));
    }
    Ok(value)
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const VARIANTS: &[&str] = &["rpc", "ebs_snapshot", "copy", "s3_sync", "s3_lifecycle"];
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Step;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a step such as `rpc: {...}` or `ebs_snapshot: {...}`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Step, A::Error> {
                one_key_map(map, VARIANTS, |kind, map| match kind {
                    "rpc" => map.next_value().map(Step::Rpc),
                    "copy" => map.next_value().map(Step::Copy),
                    "s3_sync" => map.next_value().map(Step::S3Sync),
                    "s3_lifecycle" => map.next_value().map(Step::S3Lifecycle),
                    _ => map.next_value().map(Step::EbsSnapshot),
                })
            }
        }
        d.deserialize_map(V)
    }
}

// The JSON Schema: rules the parser enforces that the derived types
// cannot say. Each mirrors a check elsewhere, named in its comment; the
// schema tests (`tests/schema.rs`) hold both to the same specs.

// `Str` decodes numbers and booleans as their text (`timeout: 30`).
impl JsonSchema for Str {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Str".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let etcd = generator.subschema_for::<EtcdRef>();
        schemars::json_schema!({
            "description": "A string written in the spec (a number or a boolean means its text), or `{ etcd: KEY }` read at render time.",
            "anyOf": [
                { "type": ["string", "number", "boolean"] },
                etcd
            ]
        })
    }
}

/// The timer keys that start a job by themselves (`validate/timer.rs`:
/// `on_unit_active` and `on_unit_inactive` count from a run, so they
/// need one of these, or a schedule).
const SCHEMA_TIMER_STARTS: [&str; 3] = ["on_active", "on_boot", "on_startup"];

fn schema_timer_start() -> serde_json::Value {
    let any: Vec<_> = SCHEMA_TIMER_STARTS
        .iter()
        .map(|k| serde_json::json!({ "required": [k] }))
        .collect();
    serde_json::json!({ "required": ["timer"], "properties": { "timer": { "anyOf": any } } })
}

/// Job names are unit names (`escape.rs`, `UnitName::job_base`), and the
/// `unitgen-notify@` prefix is reserved (`validate/notify.rs`).
fn schema_job_names() -> serde_json::Value {
    use crate::generate::escape::{JOB_NAME_PATTERN, UNIT_NAME_MAX};
    // The reserved prefix in any case, as the check compares it.
    let reserved: String = crate::generate::validate::NOTIFY_UNIT_PREFIX
        .chars()
        .map(|c| match c.is_ascii_alphabetic() {
            true => format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase()),
            false => c.to_string(),
        })
        .collect();
    serde_json::json!({
        "pattern": JOB_NAME_PATTERN,
        "maxLength": UNIT_NAME_MAX - ".service".len(),
        "not": { "pattern": format!("^{reserved}") }
    })
}

/// A job has one of `schedule` and `cron`, not both (`validate/timer.rs`).
fn schema_job_rules(schema: &mut schemars::Schema) {
    schema.insert(
        "not".into(),
        serde_json::json!({ "required": ["schedule", "cron"] }),
    );
}

/// Something starts every job: its `schedule`, `cron` or timer start, or a
/// timer start in `defaults.timer`, which every job inherits
/// (`validate/timer.rs`).
fn schema_spec_rules(schema: &mut schemars::Schema) {
    schema.insert(
        "if".into(),
        serde_json::json!({
            "required": ["defaults"],
            "properties": { "defaults": schema_timer_start() }
        }),
    );
    schema.insert(
        "else".into(),
        serde_json::json!({
            "properties": {
                "jobs": {
                    "additionalProperties": {
                        "anyOf": [
                            { "required": ["schedule"] },
                            { "required": ["cron"] },
                            schema_timer_start()
                        ]
                    }
                }
            }
        }),
    );
}
