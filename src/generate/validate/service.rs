//! How systemd runs a host `command` (the job's `service:`, systemd.exec(5)):
//! its user and group, working folder, environment files, CPU and I/O
//! priority, and sandbox. Each value is checked against what systemd
//! accepts (a name it would refuse, a relative path, a priority out of
//! range would be dropped with a warning in the journal, and the job run
//! without it) and escaped for its setting on the way into the model.
//!
//! A container job's service runs only the docker CLI: `User=` or
//! `ProtectSystem=` there would constrain docker, not the container, so
//! `service` is refused for them (the container's user and mounts are the
//! image's and `container.volumes`).

use super::Cx;
use crate::contract::lock::HOST_LOCK_DIR;
use crate::diag::{KeyPath, shown};
use crate::generate::escape::{ListWord, UnitValue};
use crate::generate::model::Setting;
use crate::generate::spec::{Job, ProtectSystem, Str};

/// The longest path systemd accepts (PATH_MAX, with its NUL).
const PATH_MAX: usize = 4095;

impl Cx<'_> {
    /// The `[Service]` settings of a host command, in systemd.exec(5)'s
    /// order; `None` after reporting a problem (or meeting a value not
    /// known yet).
    pub(super) fn exec_settings(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<Setting>> {
        let Some(spec) = &job.service else {
            return Some(Vec::new());
        };
        let p = path.key("service");
        let mut out = Vec::new();
        let mut ok = true;

        for (field, key, value) in [
            ("user", "User", &spec.user),
            ("group", "Group", &spec.group),
        ] {
            let Some(value) = value else {
                continue;
            };
            match self.user_or_group(value, &p.key(field)) {
                Some(v) => out.push(Setting::new(key, v)),
                None => ok = false,
            }
        }
        if let Some(user) = &spec.user
            && job.lock.is_some()
            && !matches!(user, Str::Literal(u) if u == "root" || u == "0")
        {
            // flock(1) runs as the job's user and creates the lock file in
            // a folder only root may write.
            self.err(
                &p.key("user"),
                format!(
                    "a host lock is a file in {HOST_LOCK_DIR}, which only root may create files \
                     in, so the job cannot take it as another user; drop `lock` and run \
                     flock(1) inside the command on a file that user may write, or run as root"
                ),
            );
            ok = false;
        }
        if let Some(dir) = &spec.working_directory {
            match self.path(dir, false, &p.key("working_directory")) {
                Some(v) => out.push(Setting::new("WorkingDirectory", v)),
                None => ok = false,
            }
        }
        for (i, file) in spec.environment_files.iter().enumerate() {
            match self.path(file, true, &p.key("environment_files").index(i)) {
                Some(v) => out.push(Setting::new("EnvironmentFile", v)),
                None => ok = false,
            }
        }
        if let Some(nice) = spec.nice {
            match self.in_range(nice, -20, 19, &p.key("nice")) {
                Some(v) => out.push(Setting::new("Nice", v)),
                None => ok = false,
            }
        }
        if let Some(policy) = spec.cpu_scheduling_policy {
            out.push(literal("CPUSchedulingPolicy", policy.as_str()));
        }
        if let Some(class) = spec.io_scheduling_class {
            out.push(literal("IOSchedulingClass", class.as_str()));
        }
        if let Some(priority) = spec.io_scheduling_priority {
            match self.in_range(priority, 0, 7, &p.key("io_scheduling_priority")) {
                Some(v) => out.push(Setting::new("IOSchedulingPriority", v)),
                None => ok = false,
            }
        }
        let flags = [
            ("NoNewPrivileges", spec.no_new_privileges.map(bool_str)),
            ("ProtectSystem", spec.protect_system.map(|m| m.as_str())),
            ("ProtectHome", spec.protect_home.map(|m| m.as_str())),
            ("PrivateTmp", spec.private_tmp.map(bool_str)),
            ("PrivateDevices", spec.private_devices.map(bool_str)),
        ];
        for (key, value) in flags {
            out.extend(value.map(|v| literal(key, v)));
        }
        for (i, value) in spec.read_write_paths.iter().enumerate() {
            match self.list_path(value, &p.key("read_write_paths").index(i)) {
                Some(word) => out.push(Setting::word("ReadWritePaths", word)),
                None => ok = false,
            }
        }
        // `strict` makes all of /run read-only, where flock(1) creates the
        // lock file (the folder itself is made before, with full
        // privileges).
        if spec.protect_system == Some(ProtectSystem::Strict) && job.lock.is_some() {
            let dir = ListWord::new(HOST_LOCK_DIR).expect("a plain path");
            out.push(Setting::word("ReadWritePaths", dir));
        }
        for (i, value) in spec.read_only_paths.iter().enumerate() {
            match self.list_path(value, &p.key("read_only_paths").index(i)) {
                Some(word) => out.push(Setting::word("ReadOnlyPaths", word)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// `User=` or `Group=`: a name or a numeric ID, as systemd's
    /// `valid_user_group_name()` and `parse_uid()` accept them (a name
    /// kept to the portable characters, so no escaping is ever needed).
    fn user_or_group(&mut self, value: &Str, path: &KeyPath) -> Option<UnitValue> {
        let text = self.str(value, path)?;
        if !is_user_name(&text) {
            let what = path.segments().last();
            let what = match what {
                Some(crate::diag::Seg::Key(k)) if k == "group" => "group",
                _ => "user",
            };
            self.err(
                path,
                format!(
                    "`{}` is not a {what} name or numeric ID (up to 32 letters, digits and `_.-`, \
                     starting with a letter or `_`)",
                    shown(&text)
                ),
            );
            return None;
        }
        self.unit_value(&text, path)
    }

    /// An absolute path, as systemd's `path_simplify_and_warn()` takes
    /// it; with `optional`, a leading `-` (a missing file is fine).
    fn path(&mut self, value: &Str, optional: bool, path: &KeyPath) -> Option<UnitValue> {
        let text = self.str(value, path)?;
        let bare = match optional {
            true => text.strip_prefix('-').unwrap_or(&text),
            false => &text,
        };
        if let Err(e) = check_path(bare) {
            self.err(path, e);
            return None;
        }
        self.unit_value(&text, path)
    }

    fn list_path(&mut self, value: &Str, path: &KeyPath) -> Option<ListWord> {
        let text = self.str(value, path)?;
        if let Err(e) = check_path(&text) {
            self.err(path, e);
            return None;
        }
        ListWord::new(&text)
            .map_err(|e| self.err(path, format!("value {e}")))
            .ok()
    }

    fn in_range(&mut self, value: i64, min: i64, max: i64, path: &KeyPath) -> Option<UnitValue> {
        if !(min..=max).contains(&value) {
            self.err(path, format!("{value} is out of range {min}..{max}"));
            return None;
        }
        self.unit_value(&value.to_string(), path)
    }
}

/// A setting whose value is a word unitgen chose (an enum's name).
fn literal(key: &'static str, value: &'static str) -> Setting {
    let value = UnitValue::new(value).expect("a plain word");
    Setting::new(key, value)
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// systemd's user and group names, kept to the portable set (useradd(8)'s
/// default rule), or a numeric ID; 65535 and 4294967295 are the 16- and
/// 32-bit "no user" values systemd refuses.
pub(super) fn is_user_name(name: &str) -> bool {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse::<u32>()
            .is_ok_and(|id| id != 65535 && id != u32::MAX);
    }
    let mut b = name.bytes();
    name.len() <= 32
        && matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// An absolute, normalized path: systemd refuses a relative one and
/// ignores one with `.` or `..` in it ("not normalized").
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "`{}` must be an absolute path (starting with `/`)",
            shown(path)
        ));
    }
    if path.split('/').any(|c| c == "." || c == "..") {
        return Err(format!(
            "`{}` has a `.` or `..` in it, which systemd refuses; write the path without them",
            shown(path)
        ));
    }
    if path.len() > PATH_MAX {
        return Err(format!(
            "is {} bytes, longer than the {PATH_MAX} a path may have",
            path.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        for ok in [
            "backup",
            "_apt",
            "systemd-network",
            "a.b",
            "0",
            "1000",
            "65536",
        ] {
            assert!(is_user_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1x",
            "-u",
            "a b",
            "a:b",
            "a/b",
            "65535",
            "4294967295",
            "4294967296",
            &"u".repeat(33),
        ] {
            assert!(!is_user_name(bad), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_path("/backups").is_ok());
        assert!(check_path("/a b/c").is_ok());
        assert!(check_path("backups").is_err());
        assert!(check_path("/a/../b").is_err());
        assert!(check_path("/a/./b").is_err());
    }
}
