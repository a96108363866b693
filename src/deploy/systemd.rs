//! The systemd backend: unit files in `/etc/systemd/system` (or
//! `ROOT/etc/systemd/system` for an image, `--root`), and `systemctl`.
//!
//! systemctl(1) facts this relies on:
//! - `daemon-reload` re-reads unit files and never stops a running unit: a
//!   backup running from a changed or removed file finishes, and the new
//!   text applies from the next start. So nothing here waits for idle.
//! - `disable` reads the unit's `[Install]` section to find its symlinks:
//!   a removed job's timer is disabled (`--now`: and stopped) before its
//!   file goes.
//! - `enable --now` starts a timer with the text systemd has loaded, hence
//!   after the reload; a running timer whose text changed is restarted, so
//!   that its next elapse follows the new `OnCalendar=`.
//! - With `--root=DIR`, systemctl edits the image's symlinks offline and
//!   refuses to talk to a manager: only `enable`/`disable`/`is-enabled`.
//!
//! Who wrote a file is read from the file: the `[X-Unitgen]` section. A
//! file of a rendered name without it, a symlink (a masked or linked unit),
//! or a unit of that name elsewhere on systemd's unit path (a package's
//! `/usr/lib/systemd/system`, a runtime unit; systemd.unit(5), "Unit File
//! Load Path") is someone else's: unitgen's file would shadow or replace it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::fleet::span;
use super::plan::{Action, Op, Why};
use super::process;
use super::{Activation, Backend, Desired, Owner, Present, State, Target, Waits, sha1_hex};
use crate::error::Error;
use crate::generate::render::UnitFile;

const UNIT_DIR: &str = "etc/systemd/system";
/// The rest of systemd's system unit path, where a unit of the same name
/// would be shadowed by (or shadow) unitgen's file in /etc.
const OTHER_DIRS: &[&str] = &[
    "run/systemd/system",
    "usr/local/lib/systemd/system",
    "usr/lib/systemd/system",
    "lib/systemd/system",
];
const BACKSTOP: Duration = Duration::from_secs(60);
/// As output.rs names its temp files, so a killed apply's leftovers are
/// recognizable (and hidden from systemd, which skips dot files).
const TEMP_PREFIX: &str = ".unitgen-tmp.";

pub struct Systemd {
    /// `--root`, absolute; `None` for the running system.
    root: Option<PathBuf>,
    unit_dir: PathBuf,
    waits: Waits,
    /// The rendered text of each unit, by name.
    files: BTreeMap<String, String>,
    systemctl: OsString,
}

impl Systemd {
    pub fn new(root: Option<PathBuf>, waits: Waits, files: &[UnitFile]) -> Systemd {
        let root = root.map(|r| std::path::absolute(&r).unwrap_or(r));
        let base = root.clone().unwrap_or_else(|| PathBuf::from("/"));
        Systemd {
            unit_dir: base.join(UNIT_DIR),
            root,
            waits,
            files: files
                .iter()
                .map(|f| (f.name.clone(), f.contents.clone()))
                .collect(),
            systemctl: OsString::from("systemctl"),
        }
    }

    fn base(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from("/"))
    }

    fn path(&self, unit: &str) -> PathBuf {
        self.unit_dir.join(unit)
    }

    fn root_flag(&self) -> Option<String> {
        self.root
            .as_ref()
            .map(|r| format!("--root={}", r.display()))
    }

    /// `systemctl ARGS`; the error says `line`.
    fn systemctl(&self, line: &str, args: Vec<String>) -> Result<process::Ran, Error> {
        let deadline = self.waits.state + BACKSTOP;
        let ran =
            process::run(&self.systemctl, &args, &[], deadline).map_err(|e| Error::Deploy {
                lines: vec![format!("cannot run systemctl: {e}")],
                detail: Vec::new(),
            })?;
        if ran.timed_out {
            return Err(Error::Deploy {
                lines: vec![format!(
                    "`{line}` did not finish within {} and was stopped",
                    span(deadline)
                )],
                detail: ran.lines(),
            });
        }
        if ran.code != Some(0) {
            let status = ran.code.map_or("killed by a signal".to_owned(), |c| {
                format!("exit status {c}")
            });
            return Err(Error::Deploy {
                lines: vec![format!("`{line}` failed ({status})")],
                detail: ran.lines(),
            });
        }
        Ok(ran)
    }

    /// A unit of this name elsewhere on the unit path.
    fn elsewhere(&self, unit: &str) -> Option<PathBuf> {
        let base = self.base();
        OTHER_DIRS
            .iter()
            .map(|d| base.join(d).join(unit))
            .find(|p| fs::symlink_metadata(p).is_ok())
    }

    /// What /etc holds for `unit`: its sha1 and owner, or nothing.
    fn file(&self, unit: &str) -> Result<Option<(String, Owner)>, Error> {
        let path = self.path(unit);
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.is_file() => Ok(Some((
                String::new(),
                Owner::Foreign {
                    what: format!("{} (a symlink: a masked or linked unit)", path.display()),
                },
            ))),
            Ok(_) => {
                let bytes = fs::read(&path).map_err(Error::io(&path))?;
                let owner = match super::unitgen_job(&String::from_utf8_lossy(&bytes)) {
                    Some(job) => Owner::Unitgen { job },
                    None => Owner::Foreign {
                        what: path.display().to_string(),
                    },
                };
                Ok(Some((sha1_hex(&bytes), owner)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path)(e)),
        }
    }

    /// `systemctl show` of `names`, one property map per name.
    fn show(&self, names: &[String]) -> Result<Vec<BTreeMap<String, String>>, Error> {
        let mut args: Vec<String> = vec![
            "show".into(),
            "--property=Id,LoadState,ActiveState,SubState,UnitFileState,FragmentPath".into(),
            "--".into(),
        ];
        args.extend(names.iter().cloned());
        let ran = self.systemctl("systemctl show", args)?;
        let blocks: Vec<BTreeMap<String, String>> = ran
            .stdout
            .split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(|b| {
                b.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect();
        if blocks.len() != names.len() {
            return Err(Error::Deploy {
                lines: vec![format!(
                    "`systemctl show` described {} units, not the {} asked for",
                    blocks.len(),
                    names.len()
                )],
                detail: ran.lines(),
            });
        }
        Ok(blocks)
    }

    /// Writes `text` as `unit` atomically: temp file, fsync, rename, fsync
    /// of the folder; mode 0644 as systemd expects of unit files.
    fn write(&self, unit: &str, text: &str) -> Result<(), Error> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = &self.unit_dir;
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let dest = self.path(unit);
        if let Some((_, Owner::Foreign { what })) = self.file(unit)? {
            return Err(Error::Deploy {
                lines: vec![format!(
                    "{what} appeared since the plan and is not unitgen's; not replacing it"
                )],
                detail: Vec::new(),
            });
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TEMP_PREFIX}{}.{n}", std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.set_permissions(fs::Permissions::from_mode(0o644))?;
            f.sync_all()?;
            fs::rename(&tmp, &dest)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(&dest)(e));
        }
        sync_dir(dir)
    }

    fn remove(&self, unit: &str) -> Result<(), Error> {
        let path = self.path(unit);
        match self.file(unit)? {
            None => Ok(()),
            Some((_, Owner::Unitgen { .. })) => {
                fs::remove_file(&path).map_err(Error::io(&path))?;
                sync_dir(&self.unit_dir)
            }
            Some(_) => Err(Error::Deploy {
                lines: vec![format!(
                    "{} is no longer unitgen's; not removing it",
                    path.display()
                )],
                detail: Vec::new(),
            }),
        }
    }

    /// The command an action runs, as `plan` prints it.
    fn command(&self, action: &Action) -> String {
        let unit = &action.unit;
        let root = self
            .root_flag()
            .map(|r| format!("{r} "))
            .unwrap_or_default();
        match action.op {
            Op::Write => format!("write {}", self.path(unit).display()),
            Op::Remove => format!("remove {}", self.path(unit).display()),
            Op::DaemonReload => "systemctl daemon-reload".to_owned(),
            Op::EnableNow if self.live() => format!("systemctl enable --now {unit}"),
            Op::EnableNow => format!("systemctl {root}enable {unit}"),
            Op::Restart => format!("systemctl restart {unit}"),
            Op::DisableNow if self.live() => format!("systemctl disable --now {unit}"),
            Op::DisableNow => format!("systemctl {root}disable {unit}"),
            op => format!("{op:?} {unit}"),
        }
    }

    /// `--no-block` for `--wait 0`: queue the job, do not wait for it.
    fn no_block(&self) -> Option<String> {
        self.waits.state.is_zero().then(|| "--no-block".to_owned())
    }
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    let d = fs::File::open(dir).map_err(Error::io(dir))?;
    match d.sync_all() {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) => Err(Error::io(dir)(e)),
    }
}

impl Backend for Systemd {
    fn target(&self) -> Target {
        Target::Systemd
    }

    fn location(&self) -> String {
        self.unit_dir.display().to_string()
    }

    fn live(&self) -> bool {
        self.root.is_none()
    }

    fn read(&mut self, names: &BTreeSet<String>, desired: &[Desired]) -> Result<State, Error> {
        let rendered: BTreeSet<&str> = desired.iter().map(|d| d.name.as_str()).collect();
        let mut state = State::default();
        for name in names {
            let found = self.file(name)?;
            // A rendered unit must not shadow one of the same name
            // elsewhere; a recorded one only counts in /etc.
            if rendered.contains(name.as_str())
                && let Some(other) = self.elsewhere(name)
            {
                state.units.insert(
                    name.clone(),
                    Present {
                        hash: String::new(),
                        owner: Owner::Foreign {
                            what: other.display().to_string(),
                        },
                        desired: Activation::Loaded,
                        current: None,
                        busy: false,
                    },
                );
                continue;
            }
            if let Some((hash, owner)) = found {
                state.units.insert(
                    name.clone(),
                    Present {
                        hash,
                        owner,
                        desired: Activation::Loaded,
                        current: Some(Activation::Loaded),
                        busy: false,
                    },
                );
            }
        }
        let ours: Vec<String> = state
            .units
            .iter()
            .filter(|(_, p)| !matches!(p.owner, Owner::Foreign { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        if ours.is_empty() {
            return Ok(state);
        }
        if self.live() {
            let shown = self.show(&ours)?;
            for (name, props) in ours.iter().zip(shown) {
                let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
                let p = state.units.get_mut(name).expect("read above");
                let fragment = get("FragmentPath");
                if get("LoadState") == "masked"
                    || (!fragment.is_empty() && Path::new(fragment) != self.path(name))
                {
                    // Loaded from elsewhere (a transient or generated unit
                    // wins over /etc), or masked.
                    p.owner = Owner::Foreign {
                        what: format!(
                            "{name} as systemd loads it ({})",
                            if fragment.is_empty() {
                                "masked"
                            } else {
                                fragment
                            }
                        ),
                    };
                    continue;
                }
                let active = get("ActiveState");
                if name.ends_with(".timer") {
                    let enabled = get("UnitFileState") == "enabled";
                    p.desired = if enabled && active == "active" {
                        Activation::Launched
                    } else {
                        Activation::Loaded
                    };
                    p.current = Some(p.desired);
                } else {
                    p.busy = matches!(active, "activating" | "deactivating" | "reloading")
                        || (active == "active" && get("SubState") == "running");
                }
            }
        } else {
            let root = self.root_flag().unwrap_or_default();
            for name in ours.iter().filter(|n| n.ends_with(".timer")) {
                let line = format!("systemctl {root} is-enabled {name}");
                // is-enabled exits 1 for a disabled unit: read its word.
                let ran = process::run(
                    &self.systemctl,
                    &[root.clone(), "is-enabled".into(), name.clone()],
                    &[],
                    BACKSTOP,
                )
                .map_err(|e| Error::Deploy {
                    lines: vec![format!("cannot run `{line}`: {e}")],
                    detail: Vec::new(),
                })?;
                if ran.stdout.trim() == "enabled" {
                    let p = state.units.get_mut(name).expect("read above");
                    p.desired = Activation::Launched;
                    p.current = Some(Activation::Launched);
                }
            }
        }
        Ok(state)
    }

    fn line(&self, action: &Action) -> String {
        match action.why {
            Why::Resume => format!(
                "{}  # unchanged, but not enabled and started yet",
                self.command(action)
            ),
            _ => self.command(action),
        }
    }

    fn run(&mut self, action: &Action) -> Result<(), Error> {
        let unit = action.unit.as_str();
        let line = self.command(action);
        let mut args: Vec<String> = Vec::new();
        match action.op {
            Op::Write => {
                let Some(text) = self.files.get(unit) else {
                    return Err(Error::Deploy {
                        lines: vec![format!("{unit} was not rendered; this is a bug in unitgen")],
                        detail: Vec::new(),
                    });
                };
                return self.write(unit, text);
            }
            Op::Remove => return self.remove(unit),
            Op::DaemonReload => args.push("daemon-reload".into()),
            Op::EnableNow | Op::DisableNow => {
                args.extend(self.root_flag());
                let verb = if action.op == Op::EnableNow {
                    "enable"
                } else {
                    "disable"
                };
                args.push(verb.into());
                if self.live() {
                    args.push("--now".into());
                    args.extend(self.no_block());
                }
                args.push(unit.into());
            }
            Op::Restart => {
                args.push("restart".into());
                args.extend(self.no_block());
                args.push(unit.into());
            }
            op => {
                return Err(Error::Deploy {
                    lines: vec![format!(
                        "{op:?} is not a systemd action; this is a bug in unitgen"
                    )],
                    detail: Vec::new(),
                });
            }
        }
        self.systemctl(&line, args).map(|_| ())
    }

    /// Every rendered unit's file holds the rendered text; removed ones
    /// are gone.
    fn verify(&mut self, desired: &[Desired], gone: &[String]) -> Result<(), Error> {
        let mut wrong = Vec::new();
        for d in desired {
            match self.file(&d.name)? {
                Some((hash, _)) if hash == d.hash => {}
                Some(_) => wrong.push(format!("{} differs from the rendered unit", d.name)),
                None => wrong.push(format!("{} is missing", self.path(&d.name).display())),
            }
        }
        for g in gone {
            if self.path(g).exists() {
                wrong.push(format!("{} is still there", self.path(g).display()));
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        Err(Error::Deploy {
            lines: vec![format!(
                "after the apply, {} does not hold what was rendered",
                self.unit_dir.display()
            )],
            detail: wrong,
        })
    }

    /// `systemctl is-failed` of the rendered units (a running system only).
    fn warnings(&mut self, desired: &[Desired]) -> Vec<String> {
        if !self.live() || desired.is_empty() {
            return Vec::new();
        }
        let mut args = vec!["is-failed".to_owned(), "--".to_owned()];
        args.extend(desired.iter().map(|d| d.name.clone()));
        // is-failed exits 0 when one of them failed: read its words.
        match process::run(&self.systemctl, &args, &[], BACKSTOP) {
            Ok(ran) => ran
                .stdout
                .lines()
                .zip(desired)
                .filter(|(state, _)| state.trim() == "failed")
                .map(|(_, d)| {
                    format!(
                        "{} has failed; see `systemctl status {}` and `journalctl -u {}`",
                        d.name, d.name, d.name
                    )
                })
                .collect(),
            Err(e) => vec![format!("cannot run systemctl is-failed: {e}")],
        }
    }
}
