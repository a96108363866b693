//! Shared test helpers: the real `unitgen` binary, temp folders systemd's
//! unprivileged test mode can read, and systemd's own parser as the oracle.
#![allow(dead_code)]

pub mod docker;
pub mod etcd;
pub mod etcd_cluster;
pub mod http_recorder;
pub mod litecoind;
pub mod moto;
pub mod smtp;
pub mod systemd_host;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A free loopback port. The kernel hands out a port that is free now;
/// this process also remembers every port it handed out, so two picks in
/// one test binary never collide with each other. A port taken by someone
/// else before the server binds it makes the server fail to start: every
/// caller starts its server again with a new port then.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind a free port")
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free loopback port in 100 tries");
}

pub fn unitgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_unitgen"))
}

pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run unitgen");
    Run {
        status: status.code().expect("exit status"),
        stdout: String::from_utf8(stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(stderr).expect("utf-8 stderr"),
    }
}

/// A temp folder that uid 65534 can read (systemd --test refuses root).
pub fn world_readable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("unitgen-test")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Writes `text` as `dir/unitgen.yaml`, the spec every command reads by
/// default.
pub fn spec_in(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("unitgen.yaml");
    write(&path, text);
    path
}

/// Runs unitgen in `dir` (so paths in messages are relative).
pub fn in_dir(dir: &Path, args: &[&str]) -> Run {
    run(unitgen().args(args).current_dir(dir))
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// Every regular file below `dir`, by relative path.
pub fn read_tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                out.insert(path.strip_prefix(root).unwrap().to_owned(), text);
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn require_tool(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: these tests need systemd's own parser (apt-get install systemd); \
         they never pass without it"
    );
}

/// Units named in `After=`, `Requires=`, `OnFailure=` or `MachineOf=`
/// that `dir` does not hold get a stub in `stubs`, as they would exist on a
/// real host.
fn write_stubs(dir: &Path, stubs: &Path) {
    std::fs::create_dir_all(stubs).unwrap();
    std::fs::set_permissions(stubs, std::fs::Permissions::from_mode(0o755)).unwrap();
    for text in read_tree(dir).values() {
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            if !["After", "Requires", "OnFailure", "MachineOf", "Wants"].contains(&key) {
                continue;
            }
            let name = value.trim();
            if dir.join(name).exists() {
                continue;
            }
            let stub = if name.ends_with(".target") {
                "[Unit]\nDescription=stub\n".to_owned()
            } else {
                "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n".to_owned()
            };
            // A template instance resolves to its template file.
            let file = match name.split_once('@') {
                Some((prefix, rest)) => format!("{prefix}@.{}", rest.rsplit_once('.').unwrap().1),
                None => name.to_owned(),
            };
            std::fs::write(stubs.join(file), stub).unwrap();
        }
    }
}

/// `systemd-analyze verify --man=no` on every unit in `dir`; returns its
/// stderr (systemd reports most problems as warnings with exit status 0).
pub fn systemd_verify(dir: &Path) -> (bool, String) {
    require_tool("/usr/bin/systemd-analyze");
    let stubs = tempfile::tempdir().unwrap();
    write_stubs(dir, stubs.path());
    let mut units: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
        .map(|n| format!("./{n}"))
        .collect();
    units.sort();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .current_dir(dir)
        .env("SYSTEMD_UNIT_PATH", format!("{}:", stubs.path().display()))
        .output()
        .expect("run systemd-analyze");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What systemd's own parser made of each unit loaded through `unit`:
/// `systemd --test` as an unprivileged user dumps every loaded unit.
pub fn systemd_dump(dir: &Path, unit: &str) -> BTreeMap<String, ParsedUnit> {
    require_tool("/lib/systemd/systemd");
    let stubs = world_readable_tempdir();
    write_stubs(dir, stubs.path());
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/lib/systemd/systemd",
        ])
        .args(["--test", "--system", "--no-pager", "--log-target=console"])
        .arg(format!("--unit={unit}"))
        .env(
            "SYSTEMD_UNIT_PATH",
            format!("{}:{}:", dir.display(), stubs.path().display()),
        )
        .output()
        .expect("run systemd --test");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "systemd --test failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dump(&text)
}

#[derive(Debug, Default, Clone)]
pub struct ParsedUnit {
    pub description: String,
    /// `(setting, argv)` for every command, e.g. `("ExecStart", [...])`.
    pub commands: Vec<(String, Vec<String>)>,
    pub environment: Vec<String>,
    /// Every other `Key: value` line of the unit's dump, in order, e.g.
    /// `("User", "backup")`, `("ReadWritePaths", "/a /b")`.
    pub settings: Vec<(String, String)>,
}

impl ParsedUnit {
    /// The value of the first dump line for `key`.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_dump(text: &str) -> BTreeMap<String, ParsedUnit> {
    let mut units = BTreeMap::new();
    let mut current: Option<(String, ParsedUnit)> = None;
    let mut setting = String::new();
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("\t-> Unit ")
            .and_then(|l| l.strip_suffix(':'))
        {
            if let Some((n, u)) = current.take() {
                units.insert(n, u);
            }
            current = Some((name.to_owned(), ParsedUnit::default()));
            continue;
        }
        let Some((_, unit)) = current.as_mut() else {
            continue;
        };
        let trimmed = line.trim_start_matches('\t');
        if let Some(d) = trimmed.strip_prefix("Description: ") {
            if unit.description.is_empty() {
                unit.description = d.to_owned();
            }
        } else if let Some(s) = trimmed
            .strip_prefix("-> ")
            .and_then(|l| l.strip_suffix(':'))
        {
            setting = s.to_owned();
        } else if let Some(cmd) = trimmed.strip_prefix("Command Line: ") {
            unit.commands
                .push((setting.clone(), split_command_line(cmd)));
        } else if let Some(env) = trimmed.strip_prefix("Environment: ") {
            unit.environment.push(env.to_owned());
        } else if line.starts_with("\t\t")
            && !line.starts_with("\t\t\t")
            && let Some((key, value)) = trimmed.split_once(": ")
        {
            unit.settings.push((key.to_owned(), value.to_owned()));
        }
    }
    if let Some((n, u)) = current {
        units.insert(n, u);
    }
    units
}

/// systemd turns `$$` into `$` and expands a lone `$NAME`; a lone `$` is
/// therefore an escaping bug, shown as a marker no spec value contains.
fn expand_dollars(word: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' {
            if chars.peek() == Some(&'$') {
                chars.next();
                out.push('$');
            } else {
                out.push_str("<UNESCAPED $ WOULD BE EXPANDED>");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits the `Command Line:` of systemd's dump: words separated by spaces,
/// quoted ones in `"..."` with C escapes (systemd's quote_command_line).
/// `$` shows as `\$` because the dump precedes variable expansion, so
/// `\$\$` is the literal `$` of the final argv.
fn split_command_line(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut bytes = Vec::new();
        let quoted = c == '"';
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '"' if quoted => break,
                ' ' if !quoted => break,
                '\\' => match chars.next().expect("escape") {
                    'a' => bytes.push(7),
                    'b' => bytes.push(8),
                    'f' => bytes.push(12),
                    'n' => bytes.push(b'\n'),
                    'r' => bytes.push(b'\r'),
                    't' => bytes.push(b'\t'),
                    'v' => bytes.push(11),
                    d @ '0'..='7' => {
                        let mut v = d.to_digit(8).unwrap();
                        for _ in 0..2 {
                            v = v * 8 + chars.next().unwrap().to_digit(8).unwrap();
                        }
                        bytes.push(v as u8);
                    }
                    'x' => {
                        let hex: String = [chars.next().unwrap(), chars.next().unwrap()]
                            .iter()
                            .collect();
                        bytes.push(u8::from_str_radix(&hex, 16).unwrap());
                    }
                    other => {
                        let mut buf = [0; 4];
                        bytes.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                    }
                },
                c => {
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        words.push(expand_dollars(
            &String::from_utf8(bytes).expect("utf-8 argv"),
        ));
    }
    words
}
