//! Diagnostics: where a problem is ([`KeyPath`], [`Location`]), what it is
//! ([`Problem`], [`Kind`]), and the one way every message shows a value
//! ([`shown`]), flattens foreign text ([`flat`]) and an error chain
//! ([`chain`]). Nothing here knows about systemd, etcd or the runner.

use std::fmt;

/// A path into the spec (or into one step, relative to it), such as
/// `jobs.backup.steps[0].rpc.url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_owned()));
        p
    }

    pub fn index(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }

    /// `self` followed by every segment of `rest`.
    pub fn join(&self, rest: &KeyPath) -> Self {
        let mut p = self.clone();
        p.0.extend(rest.0.iter().cloned());
        p
    }

    pub fn parent(&self) -> Option<KeyPath> {
        let mut p = self.clone();
        p.0.pop().map(|_| p)
    }

    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> &[Seg] {
        &self.0
    }

    pub fn push(&mut self, seg: Seg) {
        self.0.push(seg);
    }

    pub fn pop(&mut self) -> Option<Seg> {
        self.0.pop()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                // A key is user text: a line break in it must not break the
                // one-line format of the message it appears in.
                Seg::Key(k) if i == 0 => f.write_str(&escape_controls(k))?,
                Seg::Key(k) => write!(f, ".{}", escape_controls(k))?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column in the spec file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

/// What kind of problem, for tools (`--format json`) and for telling
/// problems apart without reading their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The file is not YAML.
    Syntax,
    /// A key given twice in one map (YAML forbids it).
    DuplicateKey,
    /// A key that the spec format does not have.
    UnknownKey,
    /// A value of the wrong type or shape.
    Type,
    /// A value that is well-formed but not allowed (the usual kind).
    Invalid,
    /// An etcd key the spec references is missing or unusable.
    EtcdKey,
    /// etcd could not be asked at all.
    Etcd,
    /// The output folder holds something unitgen must not overwrite.
    Output,
}

/// One problem in a spec, located at `file:line:col` and its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub location: Option<Location>,
    pub path: KeyPath,
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_controls(&self.file))?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.col)?;
        }
        // A syntax error has no key path; any other top-level problem
        // says so.
        if self.kind != Kind::Syntax {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", escape_controls(&self.message))
    }
}

impl Problem {
    /// The same problem for tools (`--format json`).
    pub fn json(&self) -> ProblemJson<'_> {
        ProblemJson {
            file: Some(&self.file),
            line: self.location.map(|l| l.line),
            column: self.location.map(|l| l.col),
            path: (!self.path.is_root()).then(|| self.path.to_string()),
            kind: Some(self.kind),
            message: &self.message,
            hint: suggestion(&self.message),
        }
    }
}

/// One problem as one JSON object, for CI annotations: every field is
/// always present, `null` where it does not apply (an error that is about
/// no place in the spec, such as an unreadable file, has no `file`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProblemJson<'a> {
    pub file: Option<&'a str>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key path, `jobs.backup.timer.persistent`; `null` at the top level.
    pub path: Option<String>,
    pub kind: Option<Kind>,
    /// The whole message, with what to do, as the text form prints it.
    pub message: &'a str,
    /// The replacement unitgen suggests (`did you mean`), if any.
    pub hint: Option<&'a str>,
}

/// `X` of a message's `(did you mean `X`?)`.
fn suggestion(message: &str) -> Option<&str> {
    let start = message.find("(did you mean `")? + "(did you mean `".len();
    let len = message[start..].find("`?)")?;
    Some(&message[start..start + len])
}

/// Control characters as escapes (`\n`, `\u{1b}`), everything else as is:
/// one problem is always one line.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// At most `max_chars` characters of `text`, with `…` where it was cut.
pub fn cut(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        None => text.into(),
        Some((end, _)) => format!("{}…", &text[..end]).into(),
    }
}

/// A value quoted in a message: cut short (a 10 kB value would bury the
/// message) and escaped, so a line break or a quote in it shows as such.
pub fn shown(value: &str) -> String {
    const MAX: usize = 60;
    cut(value, MAX).escape_debug().to_string()
}

/// Text from elsewhere (a server's error, a file) made fit for one log
/// line: line breaks and tabs become spaces, other control characters
/// `?`, and it is cut at `max_chars`.
pub fn flat(text: &str, max_chars: usize) -> String {
    cut(text, max_chars)
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// An error and its sources as one line, `a: b: c`, skipping a message
/// that the previous one already contains (tonic and the AWS SDK repeat
/// their causes).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    flat(&parts.join(": "), usize::MAX)
}

/// An error in few words: its own message (`head`, as the caller reads it
/// from the error) and its innermost cause, which is the part that says
/// what happened ("tcp connect error: Connection refused (os error 111)").
/// For errors whose middle layers only repeat themselves (tonic's).
pub fn head_and_cause(head: &str, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut innermost = None;
    let mut next = source;
    while let Some(s) = next {
        innermost = Some(s.to_string());
        next = s.source();
    }
    let text = match innermost {
        Some(cause) if !head.contains(&cause) => format!("{head}: {cause}"),
        _ => head.to_owned(),
    };
    flat(&text, usize::MAX)
}

/// serde's words for a value of the wrong type or range, in the terms of
/// a YAML (or JSON) file rather than Rust's: `expected u32` becomes
/// `expected a whole number 0 or more`, `expected struct SpecOf` becomes
/// `expected a map`, `unit value` becomes `null`. Anything else is kept
/// as it is. A trailing ` at line L column C` (serde_yaml's and
/// serde_json's) is kept.
pub fn plain_serde(message: &str) -> String {
    let (message, at) = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message.split_at(i),
        _ => (message, ""),
    };
    if let Some(name) = message.strip_prefix("data did not match any variant of untagged enum ") {
        let expected = match name {
            "OneOrMany" => "one value or a list of them",
            _ => "one of the forms this key allows (`unitgen schema` shows them)",
        };
        return format!("unexpected value, expected {expected}{at}");
    }
    let Some((head, expected)) = message.rsplit_once(", expected ") else {
        return format!("{message}{at}");
    };
    let out_of_range = head.starts_with("invalid value: integer");
    let whole = |lo: &str, hi: &str| match out_of_range {
        true => format!("a whole number from {lo} to {hi}"),
        false if lo == "0" => "a whole number 0 or more".to_owned(),
        false => "a whole number".to_owned(),
    };
    let plain = match expected {
        "u8" => format!("a whole number from 0 to {}", u8::MAX),
        "u16" => format!("a whole number from 0 to {}", u16::MAX),
        "u32" => whole("0", &u32::MAX.to_string()),
        "u64" | "usize" => whole("0", &u64::MAX.to_string()),
        "i8" => format!("a whole number from {} to {}", i8::MIN, i8::MAX),
        "i16" => format!("a whole number from {} to {}", i16::MIN, i16::MAX),
        "i32" => whole(&i32::MIN.to_string(), &i32::MAX.to_string()),
        "i64" | "isize" => whole(&i64::MIN.to_string(), &i64::MAX.to_string()),
        "f32" | "f64" => "a number".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        "a sequence" | "tuple variant" => "a list".to_owned(),
        "a map" | "struct variant" => "a map (`key: value` entries)".to_owned(),
        "newtype variant" => "a value".to_owned(),
        "a Value::Tagged enum" => "one of the names this key allows (a string)".to_owned(),
        e if e.starts_with("struct ") => "a map (`key: value` entries)".to_owned(),
        e if e.starts_with("enum ") => "one of the names this key allows (a string)".to_owned(),
        e if e.starts_with("tuple struct ") || e.starts_with("a tuple") => "a list".to_owned(),
        other => other.to_owned(),
    };
    // What was found, in YAML's words.
    let head = match head.split_once(": ") {
        Some((kind, found)) => {
            let found = match found {
                "unit value" => "null",
                "sequence" => "a list",
                "map" => "a map",
                other => other,
            };
            format!("{kind}: {found}")
        }
        None => head.to_owned(),
    };
    format!("{head}, expected {plain}{at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_speaks_yaml_not_rust() {
        let cases = [
            (
                "invalid type: string \"x\", expected u32",
                "invalid type: string \"x\", expected a whole number 0 or more",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "invalid value: integer `-1`, expected a whole number from 0 to 4294967295",
            ),
            (
                "invalid value: integer `300`, expected u8",
                "invalid value: integer `300`, expected a whole number from 0 to 255",
            ),
            (
                "invalid type: string \"x\", expected i64",
                "invalid type: string \"x\", expected a whole number",
            ),
            (
                "invalid type: string \"x\", expected f64",
                "invalid type: string \"x\", expected a number",
            ),
            (
                "invalid type: string \"maybe\", expected a boolean",
                "invalid type: string \"maybe\", expected `true` or `false`",
            ),
            (
                "invalid type: string \"x\", expected struct SpecOf",
                "invalid type: string \"x\", expected a map (`key: value` entries)",
            ),
            (
                "invalid type: unit value, expected a sequence",
                "invalid type: null, expected a list",
            ),
            (
                "invalid type: sequence, expected a map at line 1 column 1",
                "invalid type: a list, expected a map (`key: value` entries) at line 1 column 1",
            ),
            (
                "invalid type: integer `5`, expected a Value::Tagged enum",
                "invalid type: integer `5`, expected one of the names this key allows (a string)",
            ),
            (
                "data did not match any variant of untagged enum OneOrMany",
                "unexpected value, expected one value or a list of them",
            ),
            ("missing field `method`", "missing field `method`"),
        ];
        for (serde, plain) in cases {
            assert_eq!(plain_serde(serde), plain, "{serde}");
        }
    }

    #[test]
    fn key_paths_print_as_users_write_them() {
        let p = KeyPath::root()
            .key("jobs")
            .key("a")
            .key("steps")
            .index(0)
            .key("rpc");
        assert_eq!(p.to_string(), "jobs.a.steps[0].rpc");
        assert_eq!(KeyPath::root().to_string(), "(top level)");
        assert_eq!(
            KeyPath::root().key("jobs").key("a\nb").to_string(),
            "jobs.a\\nb"
        );
    }

    #[test]
    fn a_problem_is_one_line() {
        let p = Problem {
            file: "s.yaml".into(),
            location: Some(Location { line: 3, col: 3 }),
            path: KeyPath::root().key("jobs").key("x\ny"),
            kind: Kind::Invalid,
            message: "bad\rvalue\u{1b}[2J".into(),
        };
        assert_eq!(
            p.to_string(),
            "s.yaml:3:3: jobs.x\\ny: bad\\rvalue\\u{1b}[2J"
        );
    }

    #[test]
    fn a_problem_for_tools() {
        let p = Problem {
            file: "s.yaml".into(),
            location: Some(Location { line: 5, col: 14 }),
            path: KeyPath::root().key("jobs").key("b").key("persistant"),
            kind: Kind::UnknownKey,
            message: "unknown key `persistant` (did you mean `persistent`?)".into(),
        };
        assert_eq!(
            serde_json::to_string(&p.json()).unwrap(),
            r#"{"file":"s.yaml","line":5,"column":14,"path":"jobs.b.persistant","kind":"unknown_key","message":"unknown key `persistant` (did you mean `persistent`?)","hint":"persistent"}"#
        );
        let top = Problem {
            location: None,
            path: KeyPath::root(),
            kind: Kind::Syntax,
            message: "not valid YAML".into(),
            ..p
        };
        assert_eq!(
            serde_json::to_string(&top.json()).unwrap(),
            r#"{"file":"s.yaml","line":null,"column":null,"path":null,"kind":"syntax","message":"not valid YAML","hint":null}"#
        );
    }

    #[test]
    fn values_are_cut_and_escaped() {
        assert_eq!(shown("a\"b\n"), "a\\\"b\\n");
        let long = "x".repeat(100);
        assert_eq!(shown(&long), format!("{}…", "x".repeat(60)));
        assert_eq!(cut("äöü", 2), "äö…");
        assert_eq!(flat("a\nb\tc\u{7}", 10), "a b c?");
    }

    #[test]
    fn chains_skip_repeated_causes() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "transport error: refused",
            Some(Box::new(E(
                "refused",
                Some(Box::new(E("os error 111", None))),
            ))),
        );
        assert_eq!(chain(&e), "transport error: refused: os error 111");
    }
}
