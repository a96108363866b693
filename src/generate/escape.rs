//! Every systemd quoting rule unitgen relies on, and nowhere else.
//!
//! Values are escaped once, on their way into the model, into types that can
//! only hold an escaped value ([`ExecWord`], [`UnitValue`], [`UnitName`]).
//! Templates only place them. The rules come from systemd.syntax(7),
//! systemd.service(5) "Command lines" and systemd.unit(5) "Specifiers"; the
//! tests in `tests/hostile.rs` check them against systemd's own parser.

use std::fmt;

/// Why a value cannot be written into a unit file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscapeError {
    /// LF, CR and NUL would end the line (or the string) early: a value
    /// holding one could add a directive or a section to the unit.
    #[error("contains {0}, which cannot appear in a unit file")]
    LineBreak(&'static str),
    #[error("contains the control character U+{0:04X}; remove it")]
    Control(u32),
    #[error("ends with a backslash, which systemd reads as a line continuation")]
    TrailingBackslash,
    #[error("has leading or trailing whitespace, which systemd would strip")]
    OuterWhitespace,
    #[error("is empty")]
    Empty,
}

/// Rejects the characters that no unit file value may hold, whatever its context.
pub fn reject_line_breaks(value: &str) -> Result<(), EscapeError> {
    for c in value.chars() {
        match c {
            '\n' => return Err(EscapeError::LineBreak("a line feed (LF)")),
            '\r' => return Err(EscapeError::LineBreak("a carriage return (CR)")),
            '\0' => return Err(EscapeError::LineBreak("a NUL byte")),
            _ => {}
        }
    }
    Ok(())
}

/// `%` starts a specifier wherever systemd resolves them; `%%` is a literal `%`.
pub fn escape_specifiers(value: &str) -> String {
    value.replace('%', "%%")
}

/// A value for a setting that systemd neither unquotes nor C-unescapes, but
/// whose specifiers it resolves (`Description=`, `X-Fleet` values): the text
/// after `=` is taken verbatim, so the value must survive that untouched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct UnitValue(String);

impl UnitValue {
    pub fn new(value: &str) -> Result<Self, EscapeError> {
        if value.is_empty() {
            return Err(EscapeError::Empty);
        }
        reject_line_breaks(value)?;
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Err(EscapeError::Control(c as u32));
        }
        // systemd strips whitespace around the value, so it would not come
        // back as written.
        if value.trim() != value {
            return Err(EscapeError::OuterWhitespace);
        }
        // A value is the rest of the line: a final `\` joins the next line to
        // it. No escape exists for that in a verbatim setting.
        if value.ends_with('\\') {
            return Err(EscapeError::TrailingBackslash);
        }
        Ok(UnitValue(escape_specifiers(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One argument of an `Exec*=` command line, quoted so that systemd's
/// splitter yields exactly the original string as one argv element.
///
/// systemd.service(5): words are split on whitespace, `"` and `'` quote,
/// C-style escapes are honoured in and out of quotes, a lone `;` separates
/// commands, `$NAME`/`${NAME}` expand environment variables (`$$` is a
/// literal `$`), and `%` starts a specifier (`%%` is a literal `%`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ExecWord(String);

impl ExecWord {
    pub fn new(arg: &str) -> Result<Self, EscapeError> {
        reject_line_breaks(arg)?;
        let plain = !arg.is_empty() && arg.bytes().all(is_plain_exec_byte);
        // Single quotes read better for JSON (`'{"a":1}'`); systemd applies
        // the same C escapes inside either kind of quote.
        let quote = match plain {
            true => None,
            false if arg.contains('"') && !arg.contains('\'') => Some('\''),
            false => Some('"'),
        };
        let mut out = String::with_capacity(arg.len() + 2);
        out.extend(quote);
        // A plain word holds nothing to escape but `%` and `$`.
        push_escaped(&mut out, arg, quote.unwrap_or('"'), true);
        out.extend(quote);
        Ok(ExecWord(out))
    }

    /// A word known at compile time to need no quoting (`run`, `--rm`).
    /// Panics on anything else: such a call is a bug, not a user error.
    pub fn literal(word: &'static str) -> Self {
        assert!(
            !word.is_empty() && word.bytes().all(is_plain_exec_byte) && !word.contains(['%', '$']),
            "ExecWord::literal({word:?}) needs quoting"
        );
        ExecWord(word.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// systemd's `%H` specifier, left for systemd to resolve: the host's
    /// name, as the host sees it when it runs the command (systemd.unit(5),
    /// "Specifiers"). Inside a container the host name would be the
    /// container's, so the notifier takes it from its command line. The
    /// one specifier unitgen writes on purpose; no spec value reaches it.
    pub fn host_name_specifier() -> Self {
        ExecWord("%H".to_owned())
    }
}

/// Bytes that systemd's word splitter passes through unchanged outside
/// quotes (after `%` and `$` are doubled). `;` is excluded because a lone
/// `;` separates commands; quoting it is always safe.
fn is_plain_exec_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-+=:,./@%$".contains(&b)
}

/// A whole command line: the executable first, then its arguments, grouped
/// so related words (`--volume /a:/b`) share one physical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecLine {
    groups: Vec<Vec<ExecWord>>,
}

impl ExecLine {
    pub fn new(executable: ExecWord) -> Self {
        ExecLine {
            groups: vec![vec![executable]],
        }
    }

    /// Appends words to the executable's own physical line.
    pub fn inline(mut self, words: impl IntoIterator<Item = ExecWord>) -> Self {
        self.groups[0].extend(words);
        self
    }

    /// The groups, the executable's first.
    pub fn groups(&self) -> &[Vec<ExecWord>] {
        &self.groups
    }

    /// Appends a group of words on a physical line of its own.
    pub fn group(&mut self, words: impl IntoIterator<Item = ExecWord>) {
        let words: Vec<_> = words.into_iter().collect();
        if !words.is_empty() {
            self.groups.push(words);
        }
    }

    /// The setting's value: one group per physical line, joined with systemd's
    /// line continuation (a final `\`, replaced by a space when parsed). No
    /// quoted word ends in a lone `\`, so a continuation can only come from here.
    pub fn render(&self) -> String {
        self.groups
            .iter()
            .map(|g| g.iter().map(ExecWord::as_str).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(" \\\n    ")
    }
}

impl ExecLine {
    /// The command on one physical line. fleet joins continuation lines
    /// before checking its 2048-byte line limit, and old fleet releases
    /// mangle them, so fleet units never use them.
    pub fn render_single(&self) -> String {
        self.groups
            .iter()
            .flatten()
            .map(ExecWord::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One word of a space-separated list that systemd unquotes but does not
/// C-unescape (a `\` takes the next character as it is), then resolves
/// specifiers in: the paths of `ReadWritePaths=` and `ReadOnlyPaths=`
/// (systemd.exec(5), "Sandboxing"). Quoted when it holds anything but
/// plain characters, so a space stays inside the word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListWord(String);

impl ListWord {
    pub fn new(word: &str) -> Result<Self, EscapeError> {
        reject_line_breaks(word)?;
        if let Some(c) = word.chars().find(|c| c.is_control()) {
            return Err(EscapeError::Control(c as u32));
        }
        if word.is_empty() {
            return Err(EscapeError::Empty);
        }
        let plain = word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+=:,./@%".contains(&b));
        let mut out = String::with_capacity(word.len() + 2);
        if !plain {
            out.push('"');
        }
        for c in word.chars() {
            match c {
                '%' => out.push_str("%%"),
                '\\' | '"' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        if !plain {
            out.push('"');
        }
        Ok(ListWord(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `"KEY=value"` for `Environment=`, which unquotes and C-unescapes and
/// resolves specifiers, but never expands `$` (systemd.exec(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvAssignment(String);

impl EnvAssignment {
    pub fn new(key: &str, value: &str) -> Result<Self, EscapeError> {
        assert!(
            is_env_name(key),
            "EnvAssignment::new({key:?}): callers check names first"
        );
        reject_line_breaks(value)?;
        let mut out = format!("\"{key}=");
        push_escaped(&mut out, value, '"', false);
        out.push('"');
        Ok(EnvAssignment(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends `text` as the inside of a systemd string quoted with `quote`:
/// `%` doubled (specifiers), `$` doubled where systemd expands variables,
/// `\`, the quote and control characters C-escaped (systemd.syntax(7)).
fn push_escaped(out: &mut String, text: &str, quote: char, double_dollars: bool) {
    for c in text.chars() {
        match c {
            '%' => out.push_str("%%"),
            '$' if double_dollars => out.push_str("$$"),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            // systemd understands \xNN for bytes and \uNNNN above 0x7f.
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// An environment variable name as both systemd and docker accept it.
pub fn is_env_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The longest unit name systemd accepts, suffix included (UNIT_NAME_MAX).
pub const UNIT_NAME_MAX: usize = 255;

/// Why a string is not a unit name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitNameError {
    #[error("is empty")]
    Empty,
    #[error("contains `{0}`; unit names may use only ASCII letters, digits and `:_.@-`")]
    BadChar(char),
    #[error("has more than one `@`")]
    ManyAts,
    #[error("has an `@` with nothing before it")]
    EmptyPrefix,
    #[error("is a template (ends in `@`); give it an instance name after the `@`")]
    Template,
    #[error("starts with `{0}`, which makes a hidden or option-like file name")]
    BadStart(char),
    #[error("is {len} bytes with its suffix; systemd allows at most {UNIT_NAME_MAX}")]
    TooLong { len: usize },
    #[error("does not end in a unit type suffix such as `.service`")]
    NoSuffix,
}

/// A unit name systemd accepts (systemd.unit(5), "unit_name_is_valid"), also
/// safe as a file name on the command line (`unitgen render | xargs
/// fleetctl submit`: xargs treats `\` and quotes specially, so systemd's
/// `\x2d`-style escapes are not allowed here).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct UnitName(String);

/// Unit types systemd knows, for names written in the spec (`After=` etc.).
const UNIT_SUFFIXES: &[&str] = &[
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

impl UnitName {
    /// A job's base name (no suffix), checked with the longest suffix it gets.
    pub fn job_base(name: &str) -> Result<String, UnitNameError> {
        check_name_body(name, ".service".len())?;
        if name.ends_with('@') {
            return Err(UnitNameError::Template);
        }
        Ok(name.to_owned())
    }

    pub fn with_suffix(base: &str, suffix: &str) -> Result<Self, UnitNameError> {
        check_name_body(base, suffix.len() + 1)?;
        Ok(UnitName(format!("{base}.{suffix}")))
    }

    /// A full unit name written in the spec, such as `bitcoind.service`.
    /// Templates (`foo@.service`) are accepted; callers decide if they fit.
    pub fn parse(name: &str) -> Result<Self, UnitNameError> {
        let (base, suffix) = name.rsplit_once('.').ok_or(UnitNameError::NoSuffix)?;
        if !UNIT_SUFFIXES.contains(&suffix) {
            return Err(UnitNameError::NoSuffix);
        }
        check_name_body(base, suffix.len() + 1)?;
        Ok(UnitName(name.to_owned()))
    }

    pub fn is_template(&self) -> bool {
        self.0
            .rsplit_once('.')
            .is_some_and(|(base, _)| base.ends_with('@'))
    }

    /// Instantiates a template (`foo@.service`) with `instance`.
    pub fn instantiate(&self, instance: &str) -> Result<Self, UnitNameError> {
        let (base, suffix) = self.0.rsplit_once('.').ok_or(UnitNameError::NoSuffix)?;
        let name = format!("{base}{instance}.{suffix}");
        if name.len() > UNIT_NAME_MAX {
            return Err(UnitNameError::TooLong { len: name.len() });
        }
        Ok(UnitName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Job names as a regular expression, for the JSON Schema: what
/// [`UnitName::job_base`] accepts (letters, digits, `:_.@-`; not starting
/// with `.`, `-` or `@`; one `@` at most, not last), the length aside,
/// which the schema gives as `maxLength`. `tests/schema.rs` holds the two
/// to the same names.
pub const JOB_NAME_PATTERN: &str = "^[A-Za-z0-9:_][A-Za-z0-9:_.-]*(@[A-Za-z0-9:_.-]+)?$";

fn check_name_body(base: &str, suffix_len: usize) -> Result<(), UnitNameError> {
    let first = base.chars().next().ok_or(UnitNameError::Empty)?;
    if let Some(c) = base
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ":_.@-".contains(*c)))
    {
        return Err(UnitNameError::BadChar(c));
    }
    if first == '.' || first == '-' {
        return Err(UnitNameError::BadStart(first));
    }
    match base.matches('@').count() {
        0 | 1 => {}
        _ => return Err(UnitNameError::ManyAts),
    }
    if first == '@' {
        return Err(UnitNameError::EmptyPrefix);
    }
    let len = base.len() + suffix_len;
    if len > UNIT_NAME_MAX {
        return Err(UnitNameError::TooLong { len });
    }
    Ok(())
}

/// Suggests a valid job name for an invalid one: invalid characters become
/// `-`, as an operator would likely rename it by hand.
pub fn suggest_job_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ":_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.starts_with(['-', '.']) {
        out.remove(0);
    }
    out.truncate(UNIT_NAME_MAX - ".service".len());
    // `my backup!` reads better as `my-backup` than `my-backup-`.
    while out.len() > 1 && out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_words() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("/usr/bin/docker", "/usr/bin/docker"),
            ("--volume=/a:/b", "--volume=/a:/b"),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("100%", "100%%"),
            ("%%", "%%%%"),
            ("$HOME", "$$HOME"),
            ("$$", "$$$$"),
            ("it's", "\"it's\""),
            ("say \"hi\"", "'say \"hi\"'"),
            ("it's \"x\"", "\"it's \\\"x\\\"\""),
            ("{\"a\":\"%\"}", "'{\"a\":\"%%\"}'"),
            ("trailing\\", "\"trailing\\\\\""),
            (";", "\";\""),
            ("a;b", "\"a;b\""),
            ("tab\there", "\"tab\\there\""),
            ("bell\x07", "\"bell\\x07\""),
            ("ünï", "\"ünï\""),
        ];
        for (input, want) in cases {
            assert_eq!(
                ExecWord::new(input).unwrap().as_str(),
                *want,
                "input {input:?}"
            );
        }
        for bad in ["a\nb", "a\rb", "a\0b"] {
            assert!(
                matches!(ExecWord::new(bad), Err(EscapeError::LineBreak(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unit_values() {
        assert_eq!(UnitValue::new("50% done").unwrap().as_str(), "50%% done");
        assert_eq!(
            UnitValue::new("$HOME \"q\" 'x'").unwrap().as_str(),
            "$HOME \"q\" 'x'"
        );
        assert_eq!(
            UnitValue::new("ends\\"),
            Err(EscapeError::TrailingBackslash)
        );
        assert_eq!(UnitValue::new(" lead"), Err(EscapeError::OuterWhitespace));
        assert_eq!(UnitValue::new(""), Err(EscapeError::Empty));
        assert_eq!(UnitValue::new("a\tb"), Err(EscapeError::Control(9)));
        assert!(matches!(
            UnitValue::new("x\n[Service]"),
            Err(EscapeError::LineBreak(_))
        ));
    }

    #[test]
    fn list_words() {
        let cases: &[(&str, &str)] = &[
            ("/backups", "/backups"),
            ("/srv/100%", "/srv/100%%"),
            ("/a b", "\"/a b\""),
            ("/a\"b", "\"/a\\\"b\""),
            ("/a\\b", "\"/a\\\\b\""),
            ("/a'b", "\"/a'b\""),
            ("/$HOME", "\"/$HOME\""),
        ];
        for (input, want) in cases {
            assert_eq!(ListWord::new(input).unwrap().as_str(), *want, "{input:?}");
        }
        assert_eq!(ListWord::new("/a\tb"), Err(EscapeError::Control(9)));
        assert!(matches!(
            ListWord::new("/a\nb"),
            Err(EscapeError::LineBreak(_))
        ));
    }

    #[test]
    fn environment() {
        assert_eq!(
            EnvAssignment::new("K", "a \"b\" 100% $X \\")
                .unwrap()
                .as_str(),
            "\"K=a \\\"b\\\" 100%% $X \\\\\""
        );
        assert!(is_env_name("AWS_REGION"));
        assert!(is_env_name("_x1"));
        assert!(!is_env_name("1X"));
        assert!(!is_env_name("A-B"));
        assert!(!is_env_name(""));
    }

    #[test]
    fn unit_names() {
        let ok = ["backup", "a:b_c.d-e", "wallet@hot", &"x".repeat(247)];
        for name in ok {
            assert!(UnitName::job_base(name).is_ok(), "{name}");
        }
        let bad: &[(&str, UnitNameError)] = &[
            ("", UnitNameError::Empty),
            ("a b", UnitNameError::BadChar(' ')),
            ("a\\x2d", UnitNameError::BadChar('\\')),
            ("é", UnitNameError::BadChar('é')),
            ("a@b@c", UnitNameError::ManyAts),
            ("@b", UnitNameError::EmptyPrefix),
            ("tmpl@", UnitNameError::Template),
            (".hidden", UnitNameError::BadStart('.')),
            ("-opt", UnitNameError::BadStart('-')),
        ];
        for (name, err) in bad {
            assert_eq!(UnitName::job_base(name).as_ref(), Err(err), "{name:?}");
        }
        assert_eq!(
            UnitName::job_base(&"x".repeat(248)),
            Err(UnitNameError::TooLong { len: 256 })
        );
        assert_eq!(
            UnitName::parse("bitcoind.service").unwrap().as_str(),
            "bitcoind.service"
        );
        assert_eq!(UnitName::parse("bitcoind"), Err(UnitNameError::NoSuffix));
        assert_eq!(
            UnitName::parse("bitcoind.servic"),
            Err(UnitNameError::NoSuffix)
        );
        let tmpl = UnitName::parse("status-mail@.service").unwrap();
        assert!(tmpl.is_template());
        assert_eq!(
            tmpl.instantiate("job.service").unwrap().as_str(),
            "status-mail@job.service.service"
        );
    }

    #[test]
    fn exec_line_groups() {
        let mut line =
            ExecLine::new(ExecWord::literal("/usr/bin/docker")).inline([ExecWord::literal("run")]);
        line.group([ExecWord::literal("--rm")]);
        line.group([
            ExecWord::literal("--volume"),
            ExecWord::new("/a b:/c").unwrap(),
        ]);
        assert_eq!(
            line.render(),
            "/usr/bin/docker run \\\n    --rm \\\n    --volume \"/a b:/c\""
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest_job_name("My Backup!"), "My-Backup");
        assert_eq!(suggest_job_name("..x@y@z"), "x-y-z");
    }
}
