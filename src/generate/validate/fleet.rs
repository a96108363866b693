//! fleet: `[X-Fleet]` placement and every limit of fleet's, in one place.
//! fleet (v0.x/v1.0, `api/units.go` ValidateOptions and its scheduling
//! docs) rejects some option combinations, silently ignores malformed
//! metadata, and refuses lines of 2048 bytes or more (go-systemd's unit
//! parser); a timer must run where its service runs (coreos/bugs#227).

use super::{Cx, layered};
use crate::diag::{KeyPath, Kind, Problem, shown};
use crate::generate::escape::{UnitName, UnitValue};
use crate::generate::model::{FleetOption, Model};
use crate::generate::render::UnitFile;
use crate::generate::source::Source;
use crate::generate::spec::{Defaults, Job, OneOrMany, Target};

/// fleet (go-systemd's unit parser) rejects any line of this many bytes or more.
pub const LINE_MAX: usize = 2048;

fn option(key: &'static str, value: &str) -> FleetOption {
    FleetOption {
        key,
        value: UnitValue::new(value).expect("fleet option values are checked words"),
    }
}

impl Cx<'_> {
    /// Both units' `[X-Fleet]` options, or `None` after reporting a problem.
    #[allow(clippy::type_complexity)]
    pub(super) fn fleet(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        target: Target,
        path: &KeyPath,
        service: Option<&UnitName>,
    ) -> Option<(Vec<FleetOption>, Vec<FleetOption>)> {
        let fp = path.key("fleet");
        if target == Target::Systemd {
            if job.fleet.is_some() {
                self.err(&fp, "fleet placement needs `target: fleet`");
                return None;
            }
            return Some((Vec::new(), Vec::new()));
        }
        let dfp = KeyPath::root().key("defaults").key("fleet");
        let (own, default) = (job.fleet.as_ref(), defaults.fleet.as_ref());
        let before = self.problems.len();
        let mut out = Vec::new();
        let (value, id_path) = layered(own, &fp, default, &dfp, "machine_id", |f| {
            f.machine_id.as_ref()
        });
        let machine_id = self.opt_str(value, &id_path);
        if let Some(id) = &machine_id {
            if id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                out.push(option("MachineID", id));
            } else {
                self.err(
                    &id_path,
                    format!(
                        "`{}` is not a machine id: 32 lowercase hex digits, as in /etc/machine-id",
                        shown(id)
                    ),
                );
            }
        }
        let (value, of_path) = layered(own, &fp, default, &dfp, "machine_of", |f| {
            f.machine_of.as_ref()
        });
        let machine_of = value.and_then(|m| self.dependency(m, &of_path));
        if let (Some(m), Some(s)) = (&machine_of, service)
            && m == s
        {
            self.err(&of_path, "a unit cannot be placed with itself");
        }
        if let Some(m) = &machine_of {
            out.push(option("MachineOf", m.as_str()));
        }
        let (value, meta_path) = layered(own, &fp, default, &dfp, "machine_metadata", |f| {
            Some(&f.machine_metadata).filter(|m| !m.is_empty())
        });
        let machine_metadata = value.cloned().unwrap_or_default();
        let (value, conflicts_path) = layered(own, &fp, default, &dfp, "conflicts", |f| {
            Some(&f.conflicts).filter(|c| !c.is_empty())
        });
        let conflict_globs = value.cloned().unwrap_or_default();
        let (value, global_path) =
            layered(own, &fp, default, &dfp, "global", |f| f.global.as_ref());
        let global = value.copied().unwrap_or(false);
        let mut metadata = Vec::new();
        for (key, values) in &machine_metadata {
            let p = meta_path.key(key);
            if !is_metadata_word(key) {
                self.key_err(&p, format!("metadata key `{}` would be silently ignored by fleet; use at most 255 letters, digits and `_.-`", shown(key)));
                continue;
            }
            if values.as_slice().is_empty() {
                self.err(
                    &p,
                    "no values: fleet would ignore this key and place the unit anywhere",
                );
            }
            for (i, v) in values.as_slice().iter().enumerate() {
                let vp = if matches!(values, OneOrMany::Many(_)) {
                    p.index(i)
                } else {
                    p.clone()
                };
                let Some(text) = self.str(v, &vp) else {
                    continue;
                };
                if is_metadata_value(&text) {
                    metadata.push(option("MachineMetadata", &format!("{key}={text}")));
                } else {
                    self.err(&vp, format!("metadata value `{}` would be silently ignored by fleet; use at most 255 letters, digits and `_.:/-`", shown(&text)));
                }
            }
        }
        out.extend(metadata.iter().cloned());
        let mut conflicts = Vec::new();
        for (i, c) in conflict_globs.iter().enumerate() {
            let p = conflicts_path.index(i);
            let Some(text) = self.str(c, &p) else {
                continue;
            };
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":_.@-*?[]".contains(&b))
            {
                self.err(
                    &p,
                    format!(
                        "`{}` is not a unit name glob such as `backup-*.service`",
                        shown(&text)
                    ),
                );
                continue;
            }
            if let Some(m) = &machine_of
                && glob_match(&text, m.as_str())
            {
                self.err(&p, format!("conflicts with `{m}`, the unit named in `machine_of`: fleet can never place this unit"));
            }
            out.push(option("Conflicts", &text));
            conflicts.push(text);
        }
        // Combinations fleet rejects (fleet api/units.go ValidateOptions, and
        // its scheduling docs: Global allows nothing but MachineMetadata).
        if machine_id.is_some() && (machine_of.is_some() || !conflicts.is_empty() || global) {
            self.err(
                &id_path,
                "fleet rejects `machine_id` together with `machine_of`, `conflicts` or `global`",
            );
        }
        if global && (machine_of.is_some() || !conflicts.is_empty()) {
            self.err(
                &global_path,
                "fleet rejects `global: true` with anything but `machine_metadata`",
            );
        }
        if global {
            out.push(option("Global", "true"));
        }
        if self.problems.len() > before {
            return None;
        }
        // The timer must run where its service runs (coreos/bugs#227).
        let timer = if global {
            let mut t = metadata;
            t.push(option("Global", "true"));
            t
        } else {
            vec![option("MachineOf", service?.as_str())]
        };
        Some((out, timer))
    }
}

/// fleet's line limit, checked on the rendered units of fleet jobs: one
/// problem per unit, at the job.
pub fn line_problems(src: &Source, model: &Model, files: &[UnitFile]) -> Vec<Problem> {
    let fleet_jobs: std::collections::HashSet<&str> = model
        .jobs
        .iter()
        .filter(|j| j.target == Target::Fleet)
        .map(|j| j.name.as_str())
        .collect();
    files
        .iter()
        .filter(|f| fleet_jobs.contains(f.job.as_str()))
        .filter_map(|f| {
            let (line, len) = overlong_line(&f.contents)?;
            Some(src.at_key(
                &KeyPath::root().key("jobs").key(&f.job),
                Kind::Invalid,
                format!(
                    "line {line} of {} would be {len} bytes, but fleet rejects lines of {LINE_MAX} bytes or more; \
                     shorten the values on it, or use `target: systemd`",
                    f.name,
                ),
            ))
        })
        .collect()
}

/// The first line of `contents` that fleet would refuse, as (line number,
/// length). fleet checks physical lines, and again after joining
/// continuations, so logical lines count.
pub fn overlong_line(contents: &str) -> Option<(usize, usize)> {
    let mut logical = 0;
    let mut first = None;
    for (i, line) in contents.lines().enumerate() {
        logical += line.len();
        first.get_or_insert(i + 1);
        if logical >= LINE_MAX {
            return first.map(|n| (n, logical));
        }
        if line.ends_with('\\') {
            continue;
        }
        logical = 0;
        first = None;
    }
    None
}

/// fleet splits machine metadata on `,` and `=` and drops what does not fit
/// without a word, so only plain words are allowed.
fn is_metadata_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn is_metadata_value(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// Go's path.Match, as fleet uses for `Conflicts=`: `*`, `?` and `[...]`.
fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some(b'*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..])),
            Some(b'?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some(b'[') => {
                let Some(end) = p.iter().position(|&c| c == b']') else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some(b'^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let Some(&c) = n.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= (class[i]..=class[i + 2]).contains(&c);
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..])
            }
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("bitcoind*", "bitcoind.service"));
        assert!(glob_match("b?tcoind.service", "bitcoind.service"));
        assert!(glob_match("[ab]*", "backup.service"));
        assert!(!glob_match("[^ab]*", "backup.service"));
        assert!(!glob_match("web*", "bitcoind.service"));
    }

    #[test]
    fn line_limit_counts_continued_lines() {
        let ok = format!("[Unit]\nDescription={}\n", "x".repeat(2000));
        assert_eq!(overlong_line(&ok), None);
        let long = format!("[Unit]\nDescription={}\n", "x".repeat(2040));
        assert_eq!(overlong_line(&long), Some((2, 2052)));
        // 13 + 1102 + 1000 bytes: each physical line is short, the logical one is not.
        let continued = format!(
            "ExecStart=a \\\n{} \\\n{}\n",
            "y".repeat(1100),
            "z".repeat(1000)
        );
        assert_eq!(overlong_line(&continued), Some((1, 2115)));
    }
}
