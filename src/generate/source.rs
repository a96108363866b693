//! Reading a spec file: YAML parsing, strict decoding that reports every
//! problem (not just the first), and locating each problem at
//! `file:line:col` with its key path.

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diag::{KeyPath, Kind, Location, Problem, Seg, cut};
use crate::error::Error;
use crate::generate::spec::{Job, Spec, SpecOf};

/// The result of decoding: the value, if one could be decoded once the
/// offending keys were removed, and the problems found on the way.
pub struct Decoded<T> {
    pub value: Option<T>,
    pub problems: Vec<Problem>,
    removed: Removed,
}

/// The keys decoding removed to get past a problem, indexed so that asking
/// about one path costs its depth, not the number of problems.
#[derive(Default)]
struct Removed {
    /// The removed paths.
    paths: HashSet<KeyPath>,
    /// Their parents, where those are deeper than a job.
    holders: HashSet<KeyPath>,
    /// Every ancestor of a removed path (and the path itself).
    ancestors: HashSet<KeyPath>,
}

impl Removed {
    fn insert(&mut self, path: KeyPath) {
        match path.parent() {
            Some(holder) if holder.len() >= 2 => {
                self.holders.insert(holder);
            }
            Some(_) => {}
            // A top-level key is its own holder, and shallow.
            None => {}
        }
        let mut p = Some(path.clone());
        while let Some(q) = p {
            p = q.parent();
            self.ancestors.insert(q);
        }
        self.paths.insert(path);
    }
}

impl<T> Decoded<T> {
    /// Whether a later problem at `path` may be a consequence of a removed
    /// key: it is in the struct that held the key (a cross-field check such
    /// as "a user needs a password"), or a job-level (or deeper) ancestor
    /// that now misses it. A real problem hidden this way shows up on the
    /// next run, once the first is fixed.
    pub fn affected(&self, path: &KeyPath) -> bool {
        let r = &self.removed;
        let mut p = Some(path.clone());
        while let Some(q) = p {
            if r.paths.contains(&q) || r.holders.contains(&q) {
                return true;
            }
            p = q.parent();
        }
        path.len() >= 2 && r.ancestors.contains(path)
    }
}

/// A spec file's text, its display name, and where each key and value sits.
pub struct Source {
    pub name: String,
    pub text: String,
    /// Built on first use: a spec without problems never needs it, and for
    /// a large spec it costs more than decoding.
    locations: OnceCell<Locations>,
}

#[derive(Default)]
struct Locations {
    keys: HashMap<KeyPath, Location>,
    values: HashMap<KeyPath, Location>,
}

impl Source {
    /// Reads a spec file (`-` is standard input). A missing or unreadable
    /// file is a usage error.
    pub fn read(path: &Path) -> Result<Source, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadSpec {
            path: path.to_owned(),
            source,
        })?;
        Ok(Source::new(path.display().to_string(), text))
    }

    pub fn new(name: String, text: String) -> Source {
        Source {
            name,
            text,
            locations: OnceCell::new(),
        }
    }

    fn locations(&self) -> &Locations {
        self.locations.get_or_init(|| {
            let mut map = Locator::default();
            // Locations are a convenience: if this parser disagrees with
            // serde_yaml, problems are still reported, just without a position.
            let _ = Parser::new_from_str(&self.text).load(&mut map, false);
            map.found
        })
    }

    /// A problem about the key at `path` (unknown or misplaced keys).
    pub fn at_key(&self, path: &KeyPath, kind: Kind, message: impl Into<String>) -> Problem {
        let loc = self
            .locations()
            .keys
            .get(path)
            .or_else(|| self.locations().values.get(path));
        self.problem(loc.copied(), path, kind, message)
    }

    /// A problem about the value at `path`.
    pub fn at_value(&self, path: &KeyPath, kind: Kind, message: impl Into<String>) -> Problem {
        // The nearest located ancestor, so that a problem in a value built
        // by the decoder (a missing field) still points somewhere useful.
        let mut p = Some(path.clone());
        let loc = loop {
            match p {
                Some(q) => match self
                    .locations()
                    .values
                    .get(&q)
                    .or_else(|| self.locations().keys.get(&q))
                {
                    Some(loc) => break Some(*loc),
                    None => p = q.parent(),
                },
                None => break None,
            }
        };
        self.problem(loc, path, kind, message)
    }

    fn problem(
        &self,
        loc: Option<Location>,
        path: &KeyPath,
        kind: Kind,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: self.name.clone(),
            location: loc,
            path: path.clone(),
            kind,
            message: message.into(),
        }
    }

    /// Parses and strictly decodes the whole spec, collecting every
    /// problem. The top level is decoded with each job left as raw YAML,
    /// then each job on its own: after a decoding error the offending key
    /// is removed and only that part is decoded again, so one mistake does
    /// not hide the next, and 10,000 mistakes cost 10,000 small decodes.
    pub fn decode(&self) -> Decoded<Spec> {
        let mut removed = Removed::default();
        let value: Value = match serde_yaml::from_str(&self.text) {
            Ok(Value::Null) => {
                let problem = self.problem(
                    None,
                    &KeyPath::root(),
                    Kind::Invalid,
                    "the spec is empty; start with `version: 1` and a `jobs:` map",
                );
                return Decoded {
                    value: None,
                    problems: vec![problem],
                    removed,
                };
            }
            Ok(v) => v,
            Err(e) => {
                let problem = self.yaml_syntax_problem(&e);
                return Decoded {
                    value: None,
                    problems: vec![problem],
                    removed,
                };
            }
        };
        let mut problems = Vec::new();
        let top: Option<SpecOf<Value>> =
            self.decode_part(value, &KeyPath::root(), &mut removed, &mut problems);
        let Some(top) = top else {
            return Decoded {
                value: None,
                problems,
                removed,
            };
        };
        let jobs_path = KeyPath::root().key("jobs");
        let mut jobs = BTreeMap::new();
        for (name, raw) in top.jobs {
            // A job that cannot be decoded at all has its problems reported
            // and is left out; the rest of the spec is still validated (a
            // spec with problems never renders).
            let job: Option<Job> =
                self.decode_part(raw, &jobs_path.key(&name), &mut removed, &mut problems);
            jobs.extend(job.map(|job| (name, job)));
        }
        let spec = SpecOf {
            version: top.version,
            etcd: top.etcd,
            defaults: top.defaults,
            jobs,
        };
        Decoded {
            value: Some(spec),
            problems,
            removed,
        }
    }

    /// Decodes `value` (found at `base`) into `T`, removing each offending
    /// key and trying again.
    fn decode_part<T: DeserializeOwned>(
        &self,
        mut value: Value,
        base: &KeyPath,
        removed: &mut Removed,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let mut here: Vec<KeyPath> = Vec::new();
        // Each round removes one node, so this ends; the bound is a backstop.
        for _ in 0..10_000 {
            let err = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(v) => return Some(v),
                Err(err) => err,
            };
            let rel = to_key_path(err.path());
            let message = err.inner().to_string();
            // An error about a node that contained something already removed
            // is a consequence of that removal, not the user's mistake.
            let secondary = here.iter().any(|r| r.starts_with(&rel));
            if !secondary {
                problems.push(self.describe(&base.join(&rel), &message));
            }
            if remove(&mut value, &rel) {
                removed.insert(base.join(&rel));
                here.push(rel);
                continue;
            }
            // A bad sequence element: drop the whole sequence (its later
            // elements go unchecked, everything else is still checked).
            match rel.parent() {
                Some(parent) if remove(&mut value, &parent) => {
                    removed.insert(base.join(&parent));
                    here.push(parent);
                }
                _ => break,
            }
        }
        None
    }

    fn describe(&self, path: &KeyPath, message: &str) -> Problem {
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
            return self.at_key(
                path,
                Kind::UnknownKey,
                unknown_message("key", key, expected),
            );
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            let (name, expected) = rest.split_once('`').unwrap_or((rest, ""));
            return self.at_key(
                path,
                Kind::UnknownKey,
                unknown_message("value", name, expected),
            );
        }
        self.at_value(path, Kind::Type, shorten(message))
    }

    fn yaml_syntax_problem(&self, e: &serde_yaml::Error) -> Problem {
        let message = e.to_string();
        // serde_yaml appends " at line L column C"; the location is printed
        // in front instead, where editors look for it.
        let message = match message.find(" at line ") {
            Some(i) => &message[..i],
            None => &message,
        };
        Problem {
            file: self.name.clone(),
            location: e.location().map(|l| Location {
                line: l.line(),
                col: l.column(),
            }),
            path: KeyPath::root(),
            kind: Kind::Syntax,
            message: format!("not valid YAML: {message}"),
        }
    }
}

/// "unknown key `persistant` (did you mean `persistent`?)", from serde's
/// "unknown field `x`, expected one of `a`, `b`" message.
fn unknown_message(what: &str, name: &str, expected: &str) -> String {
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(name, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match (best, candidates.is_empty()) {
        (Some((_, c)), _) => format!("unknown {what} `{name}` (did you mean `{c}`?)"),
        (None, false) => format!(
            "unknown {what} `{name}`; expected one of: {}",
            candidates.join(", ")
        ),
        (None, true) => format!("unknown {what} `{name}`; nothing is allowed here"),
    }
}

/// Error messages quote the offending value; a 10 kB value would drown the
/// message, so it is cut.
fn shorten(message: &str) -> String {
    cut(message, 200).into_owned()
}

fn to_key_path(path: &serde_path_to_error::Path) -> KeyPath {
    use serde_path_to_error::Segment;
    let mut out = KeyPath::root();
    for seg in path {
        match seg {
            Segment::Seq { index } => out.push(Seg::Index(*index)),
            Segment::Map { key } => out.push(Seg::Key(key.clone())),
            // Externally tagged enums are single-key maps in YAML.
            Segment::Enum { variant } => out.push(Seg::Key(variant.clone())),
            Segment::Unknown => {}
        }
    }
    out
}

/// Removes the node at `path` (a map entry) so decoding can go on past it.
/// Sequence elements are not removed: that would shift the indices of the
/// problems that follow.
fn remove(value: &mut Value, path: &KeyPath) -> bool {
    let Some((last, parents)) = path.segments().split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => {
                match m.iter_mut().find(|(mk, _)| key_text(mk) == *k) {
                    Some((_, v)) => v,
                    None => return false,
                }
            }
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Key(_), Value::Tagged(t)) => &mut t.value,
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => {
            let found = m.keys().find(|mk| key_text(mk) == *k).cloned();
            found.is_some_and(|mk| m.remove(&mk).is_some())
        }
        _ => false,
    }
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim_end()
            .to_owned(),
    }
}

/// Records where each key and value starts, from the YAML event stream.
#[derive(Default)]
struct Locator {
    stack: Vec<Frame>,
    path: KeyPath,
    found: Locations,
}

enum Frame {
    /// `pending` is the key whose value comes next, if any.
    Map {
        pending: Option<String>,
        role: Role,
    },
    Seq {
        next: usize,
        role: Role,
    },
}

/// Whether a collection is a map key (complex keys) or a value.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Key,
    Value,
}

impl MarkedEventReceiver for Locator {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // yaml-rust2 columns are 0-based (its lines are 1-based).
        let loc = Location {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(text, ..) => self.node(Some(text), loc, None),
            Event::Alias(_) => self.node(None, loc, None),
            Event::MappingStart(..) => self.node(None, loc, Some(true)),
            Event::SequenceStart(..) => self.node(None, loc, Some(false)),
            Event::MappingEnd | Event::SequenceEnd => {
                let role = match self.stack.pop() {
                    Some(Frame::Map { role, .. } | Frame::Seq { role, .. }) => role,
                    None => return,
                };
                if self.stack.is_empty() {
                    return;
                }
                self.path.pop();
                if role == Role::Value
                    && let Some(Frame::Map { pending, .. }) = self.stack.last_mut()
                {
                    *pending = None;
                }
            }
            _ => {}
        }
    }
}

impl Locator {
    /// A node starts. `collection` is `Some(is_map)` for maps and sequences.
    fn node(&mut self, scalar: Option<String>, loc: Location, collection: Option<bool>) {
        let role = match self.stack.last_mut() {
            None => {
                self.found.values.insert(self.path.clone(), loc);
                Role::Value
            }
            Some(Frame::Map {
                pending: pending @ None,
                ..
            }) => {
                let key = scalar.unwrap_or_else(|| "<complex key>".to_owned());
                self.found.keys.insert(self.path.key(&key), loc);
                *pending = Some(key.clone());
                if collection.is_none() {
                    return;
                }
                self.path.push(Seg::Key(key));
                Role::Key
            }
            Some(Frame::Map {
                pending: Some(key), ..
            }) => {
                let key = key.clone();
                self.path.push(Seg::Key(key));
                self.found.values.insert(self.path.clone(), loc);
                if collection.is_none() {
                    self.path.pop();
                    if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
                        *pending = None;
                    }
                    return;
                }
                Role::Value
            }
            Some(Frame::Seq { next, .. }) => {
                self.path.push(Seg::Index(*next));
                *next += 1;
                self.found.values.insert(self.path.clone(), loc);
                if collection.is_none() {
                    self.path.pop();
                    return;
                }
                Role::Value
            }
        };
        match collection {
            Some(true) => self.stack.push(Frame::Map {
                pending: None,
                role,
            }),
            Some(false) => self.stack.push(Frame::Seq { next: 0, role }),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_values() {
        let text = "version: 1\njobs:\n  a:\n    steps:\n      - rpc:\n          url: x\n    after: [b, c]\n";
        let src = Source::new("s.yaml".into(), text.into());
        let job = KeyPath::root().key("jobs").key("a");
        let url = job.key("steps").index(0).key("rpc").key("url");
        assert_eq!(src.locations().keys[&url], Location { line: 6, col: 11 });
        assert_eq!(src.locations().values[&url], Location { line: 6, col: 16 });
        assert_eq!(
            src.locations().values[&job.key("after").index(1)],
            Location { line: 7, col: 16 }
        );
        assert_eq!(
            src.locations().keys[&KeyPath::root().key("version")],
            Location { line: 1, col: 1 }
        );
        assert_eq!(url.to_string(), "jobs.a.steps[0].rpc.url");
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown_message(
                "key",
                "persistant",
                "expected one of `persistent`, `accuracy`"
            ),
            "unknown key `persistant` (did you mean `persistent`?)"
        );
        assert_eq!(
            unknown_message("key", "zzz", "expected one of `persistent`, `accuracy`"),
            "unknown key `zzz`; expected one of: persistent, accuracy"
        );
    }
}
