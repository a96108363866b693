//! systemd calendar expressions ("Calendar Events" in systemd.time(7)).
//!
//! This is a faithful re-implementation of the behaviour of systemd 252's
//! `src/shared/calendarspec.c`, so that [`CalendarSpec::normalized`] prints
//! exactly what `systemd-analyze calendar` shows as "Normalized form", and
//! [`CalendarSpec::next_elapse`] returns exactly the times systemd would fire
//! a timer at. Where systemd's behaviour is surprising, the code keeps it and
//! says so in a comment: the goal is "what will my timer really do", not
//! "what should it ideally do".
//!
//! Grammar (systemd.time(7)):
//!
//! ```text
//! [WEEKDAYS] [[YEAR-]MONTH(-|~)DAY] [HOUR:MINUTE[:SECOND]] [UTC|ZONE]
//! ```
//!
//! or one of the shorthands (`minutely`, `hourly`, `daily`, `weekly`,
//! `monthly`, `quarterly`, `semiannually`, `yearly`, ...), or `@EPOCHSECONDS`.
//! Each numeric field is a comma separated list of `N`, `N..M`, `N/STEP` or
//! `N..M/STEP` items, or `*`.

use std::fmt;
use std::io::Read;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, Zoned};

/// Years outside this range are rejected when parsing, and elapse
/// computation gives up ("never") past `MAX_YEAR`, like systemd.
const MIN_YEAR: i32 = 1970;
const MAX_YEAR: i32 = 2199;

/// The seconds field is stored in microseconds, as systemd does.
const USEC_PER_SEC: i32 = 1_000_000;

/// systemd refuses chains (comma lists) longer than this.
const MAX_COMPONENTS: usize = 241;

/// systemd's safety valve against endless loops in `find_next()`.
const MAX_CALENDAR_ITERATIONS: u32 = 1000;

/// Where the IANA time zone database lives; systemd's `timezone_is_valid()`
/// checks the files there.
const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";

const WEEKDAY_ABBREVIATIONS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Weekday names as systemd matches them: case-insensitive prefixes, the
/// long form first so that `Monday` is not read as `Mon` + garbage.
/// Numbers are systemd's: Monday is 0, Sunday is 6.
const WEEKDAY_NAMES: [(&str, u8); 14] = [
    ("Monday", 0),
    ("Mon", 0),
    ("Tuesday", 1),
    ("Tue", 1),
    ("Wednesday", 2),
    ("Wed", 2),
    ("Thursday", 3),
    ("Thu", 3),
    ("Friday", 4),
    ("Fri", 4),
    ("Saturday", 5),
    ("Sat", 5),
    ("Sunday", 6),
    ("Sun", 6),
];

/// All seven weekday bits set: the same as no weekday restriction.
const ALL_WEEKDAYS: u8 = 0x7f;

/// A calendar expression could not be parsed, or systemd would reject it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarError {
    expr: String,
    reason: String,
}

impl CalendarError {
    fn new(expr: &str, reason: impl Into<String>) -> Self {
        CalendarError {
            expr: expr.to_string(),
            reason: reason.into(),
        }
    }

    /// The short human reason, without the expression.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid calendar expression `{}`: {}",
            self.expr, self.reason
        )
    }
}

impl std::error::Error for CalendarError {}

/// One item of a comma separated field: `start`, `start..stop`,
/// `start/repeat` or `start..stop/repeat`.
///
/// A plain range `a..b` is stored as `a..b/1` (for seconds: `/1.000000`),
/// exactly like systemd, because that is what the matching code expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Component {
    start: i32,
    /// Inclusive end of a range. `None` means "no upper bound": with a
    /// `repeat` the item repeats until the end of the field.
    stop: Option<i32>,
    /// Step; 0 means "just `start`".
    repeat: i32,
}

impl Component {
    fn single(start: i32) -> Self {
        Component {
            start,
            stop: None,
            repeat: 0,
        }
    }

    /// `stop` the way systemd stores it (-1 for none), for the arithmetic
    /// that compares against it.
    fn raw_stop(&self) -> i32 {
        self.stop.unwrap_or(-1)
    }
}

/// A whole field (year, month, ...): the union of its components. An empty
/// chain means `*` (any value), except for the seconds, where systemd writes
/// `*` as `0/1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Chain(Vec<Component>);

impl Chain {
    fn any() -> Self {
        Chain(Vec::new())
    }

    fn constant(value: i32) -> Self {
        Chain(vec![Component::single(value)])
    }

    fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// systemd's `normalize_chain()`: trim ranges to a multiple of their
    /// step, drop steps that cannot fire even once, sort and deduplicate.
    fn normalize(&mut self) {
        for c in &mut self.0 {
            if let Some(stop) = c.stop {
                if stop > c.start && c.repeat > 0 {
                    let trimmed = stop - (stop - c.start) % c.repeat;
                    c.stop = Some(trimmed);
                    if c.start + c.repeat > trimmed {
                        c.repeat = 0;
                        c.stop = None;
                    }
                } else if stop == c.start {
                    c.repeat = 0;
                    c.stop = None;
                }
            }
        }
        // systemd sorts by (start, stop, repeat) with "no stop" as -1,
        // i.e. before any real stop; `Option`'s ordering (None < Some) is
        // the same.
        self.0.sort();
        self.0.dedup();
    }
}

/// Which time zone the expression is evaluated in.
#[derive(Debug, Clone, PartialEq)]
enum SpecZone {
    /// No zone given: the zone of the base time passed to `next_elapse`.
    Local,
    /// A trailing ` UTC` (any case), or an `@EPOCH` timestamp.
    Utc,
    /// A trailing IANA zone name, e.g. `Europe/Berlin`.
    Named { name: String, tz: TimeZone },
}

/// A parsed, normalized systemd calendar expression.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarSpec {
    /// Bit `n` set = weekday `n` (Monday = 0) allowed. `None` = any day.
    weekdays: Option<u8>,
    year: Chain,
    month: Chain,
    day: Chain,
    hour: Chain,
    minute: Chain,
    /// Seconds, in microseconds.
    second: Chain,
    /// `~` was used: days count backwards from the end of the month
    /// (`~1` is the last day).
    end_of_month: bool,
    zone: SpecZone,
}

impl fmt::Display for CalendarSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

impl CalendarSpec {
    /// Parses a calendar expression the way systemd 252's
    /// `calendar_spec_from_string()` does, rejecting what it rejects.
    pub fn parse(expr: &str) -> Result<CalendarSpec, CalendarError> {
        let err = |reason: String| CalendarError::new(expr, reason);
        let (body, zone) = split_zone(expr).map_err(err)?;
        if body.is_empty() {
            return Err(CalendarError::new(expr, "empty expression"));
        }
        let mut spec = match shorthand(body) {
            Some(spec) => spec,
            None => Parser::new(body).parse().map_err(|reason| {
                // A last word that looks like `Area/City` but was not taken
                // as a zone is most likely a misspelt zone.
                match body.rsplit_once(' ') {
                    Some((_, word)) if zone.is_none() && word.contains('/') => err(format!(
                        "unknown time zone `{word}` (not found in {ZONEINFO_DIR})"
                    )),
                    _ => err(reason),
                }
            })?,
        };
        if let Some(zone) = zone {
            spec.zone = zone;
        }
        spec.normalize();
        spec.validate().map_err(err)?;
        Ok(spec)
    }

    /// The expression in systemd's normalized form, byte for byte what
    /// `systemd-analyze calendar` prints as "Normalized form".
    pub fn normalized(&self) -> String {
        let mut s = String::new();
        if let Some(bits) = self.weekdays {
            s.push_str(&format_weekdays(bits));
            s.push(' ');
        }
        format_chain(&mut s, &self.year, 4, false);
        s.push('-');
        format_chain(&mut s, &self.month, 2, false);
        s.push(if self.end_of_month { '~' } else { '-' });
        format_chain(&mut s, &self.day, 2, false);
        s.push(' ');
        format_chain(&mut s, &self.hour, 2, false);
        s.push(':');
        format_chain(&mut s, &self.minute, 2, false);
        s.push(':');
        format_chain(&mut s, &self.second, 2, true);
        match &self.zone {
            SpecZone::Local => {}
            SpecZone::Utc => s.push_str(" UTC"),
            SpecZone::Named { name, .. } => {
                s.push(' ');
                s.push_str(name);
            }
        }
        s
    }

    /// The time zone the expression names, if any (`UTC` or an IANA zone).
    pub fn time_zone(&self) -> Option<TimeZone> {
        match &self.zone {
            SpecZone::Local => None,
            SpecZone::Utc => Some(TimeZone::UTC),
            SpecZone::Named { tz, .. } => Some(tz.clone()),
        }
    }

    /// The first time strictly after `after` at which the expression
    /// elapses, as systemd computes it, or `None` if it never does (again).
    ///
    /// The computation happens in the spec's zone if it names one, else in
    /// `after`'s zone (for systemd: the local zone). The result is in that
    /// same zone. Like systemd, precision is microseconds.
    pub fn next_elapse(&self, after: &Zoned) -> Option<Zoned> {
        let tz = self
            .time_zone()
            .unwrap_or_else(|| after.time_zone().clone());
        // systemd works on an unsigned µs clock and starts at base + 1µs.
        let base_us = after.timestamp().as_nanosecond().div_euclid(1000);
        let start_us = i64::try_from(base_us).ok()?.checked_add(1)?;

        let mut clock = Clock::new(&tz);
        let tm = clock.localtime(start_us.div_euclid(USEC_PER_SEC as i64))?;
        let usec = start_us.rem_euclid(USEC_PER_SEC as i64) as i32;

        let (tm, usec) = self.find_next(&mut clock, tm, usec)?;
        let (_, epoch) = clock.mktime(&tm)?;
        let next_us = epoch.checked_mul(USEC_PER_SEC as i64)? + usec as i64;
        Some(Timestamp::from_microsecond(next_us).ok()?.to_zoned(tz))
    }

    /// systemd's `calendar_spec_normalize()`.
    fn normalize(&mut self) {
        if self.weekdays.is_some_and(|b| b == 0 || b >= ALL_WEEKDAYS) {
            self.weekdays = None;
        }
        if self.end_of_month && self.day.is_any() {
            self.end_of_month = false;
        }
        // Two-digit years: 0..69 are 20xx, 70..99 are 19xx.
        for c in &mut self.year.0 {
            c.start = fix_year(c.start);
            c.stop = c.stop.map(fix_year);
        }
        for chain in [
            &mut self.year,
            &mut self.month,
            &mut self.day,
            &mut self.hour,
            &mut self.minute,
            &mut self.second,
        ] {
            chain.normalize();
        }
    }

    /// systemd's `calendar_spec_valid()`, with a reason for the failure.
    fn validate(&self) -> Result<(), String> {
        validate_chain(&self.year, "year", MIN_YEAR, MAX_YEAR, false)?;
        validate_chain(&self.month, "month", 1, 12, false)?;
        validate_chain(&self.day, "day", 1, 31, self.end_of_month)?;
        validate_chain(&self.hour, "hour", 0, 23, false)?;
        validate_chain(&self.minute, "minute", 0, 59, false)?;
        validate_chain(&self.second, "second", 0, 60 * USEC_PER_SEC - 1, false)
    }

    /// A port of systemd's `find_next()`: starting from the broken-down
    /// local time `tm` (+ `usec`), bump fields from the year downwards until
    /// every field matches, re-normalizing through `mktime()` after every
    /// step exactly like systemd does, so that DST gaps and folds and
    /// impossible dates behave identically.
    fn find_next(&self, clock: &mut Clock, mut c: Tm, mut usec: i32) -> Option<(Tm, i32)> {
        for _ in 0..MAX_CALENDAR_ITERATIONS {
            // Normalize the current date. (systemd ignores errors here.)
            if let Some((normalized, _)) = clock.mktime(&c) {
                c = normalized;
            }

            match find_matching(&self.year, &mut c.year, None) {
                Match::None => return None,
                Match::Changed => {
                    c.month = 1;
                    c.day = 1;
                    c.reset_time();
                    usec = 0;
                }
                Match::Same => {}
            }
            if clock.within_bounds(&mut c) != Bounds::Ok {
                return None;
            }

            let matched = find_matching(&self.month, &mut c.month, None);
            if matched == Match::Changed {
                c.day = 1;
                c.reset_time();
                usec = 0;
            }
            match clock.step_bounds(matched, &mut c) {
                Bounds::Ok => {}
                Bounds::Normalized => continue,
                Bounds::Invalid => {
                    c.year += 1;
                    c.month = 1;
                    c.day = 1;
                    c.reset_time();
                    usec = 0;
                    continue;
                }
            }

            let now = c;
            let eom = self.end_of_month.then_some((&mut *clock, now));
            let matched = find_matching(&self.day, &mut c.day, eom);
            if matched == Match::Changed {
                c.reset_time();
                usec = 0;
            }
            match clock.step_bounds(matched, &mut c) {
                Bounds::Ok => {}
                Bounds::Normalized => continue,
                Bounds::Invalid => {
                    c.month += 1;
                    c.day = 1;
                    c.reset_time();
                    usec = 0;
                    continue;
                }
            }

            if !clock.matches_weekday(self.weekdays, &c) {
                c.day += 1;
                c.reset_time();
                usec = 0;
                continue;
            }

            let matched = find_matching(&self.hour, &mut c.hour, None);
            if matched == Match::Changed {
                c.minute = 0;
                c.second = 0;
                usec = 0;
            }
            match clock.step_bounds(matched, &mut c) {
                Bounds::Ok => {}
                // The hour we set may not exist because of a DST change:
                // start over from the normalized time.
                Bounds::Normalized => continue,
                Bounds::Invalid => {
                    c.day += 1;
                    c.reset_time();
                    usec = 0;
                    continue;
                }
            }

            let matched = find_matching(&self.minute, &mut c.minute, None);
            if matched == Match::Changed {
                c.second = 0;
                usec = 0;
            }
            match clock.step_bounds(matched, &mut c) {
                Bounds::Ok => {}
                Bounds::Normalized => continue,
                Bounds::Invalid => {
                    c.hour += 1;
                    c.minute = 0;
                    c.second = 0;
                    usec = 0;
                    continue;
                }
            }

            let mut sec_us = c.second * USEC_PER_SEC + usec;
            let matched = find_matching(&self.second, &mut sec_us, None);
            usec = sec_us % USEC_PER_SEC;
            c.second = sec_us / USEC_PER_SEC;
            match clock.step_bounds(matched, &mut c) {
                Bounds::Ok => return Some((c, usec)),
                Bounds::Normalized => continue,
                Bounds::Invalid => {
                    c.minute += 1;
                    c.second = 0;
                    usec = 0;
                    continue;
                }
            }
        }
        // systemd logs "Infinite loop in calendar calculation" and fails;
        // for a timer that means it never elapses.
        None
    }
}

fn fix_year(y: i32) -> i32 {
    match y {
        0..=69 => y + 2000,
        70..=99 => y + 1900,
        _ => y,
    }
}

/// systemd's `chain_valid()`.
fn validate_chain(
    chain: &Chain,
    field: &str,
    from: i32,
    to: i32,
    end_of_month: bool,
) -> Result<(), String> {
    let secs = field == "second";
    let show = |v: i32| format_value(v, secs);
    // `~N` counts from the last day; systemd forbids going past ~28.
    let to = if end_of_month { to - 3 } else { to };
    let range = if end_of_month {
        format!("~{from}..~{to} (days from the end of the month)")
    } else {
        format!("{}..{}", show(from), show(to))
    };
    let (what, tilde) = if end_of_month {
        ("day", "~")
    } else {
        (field, "")
    };
    for c in &chain.0 {
        if c.start < from || c.start > to {
            return Err(format!(
                "{what} {tilde}{} is out of range {range}",
                show(c.start)
            ));
        }
        if c.repeat > to - from {
            return Err(format!("{field} step {} is too large", show(c.repeat)));
        }
        match c.stop {
            Some(stop) => {
                if stop < from || stop > to {
                    return Err(format!(
                        "{what} {tilde}{} is out of range {range}",
                        show(stop)
                    ));
                }
                if c.start + c.repeat > stop {
                    return Err(format!(
                        "{field} range {}..{} is empty or goes backwards",
                        show(c.start),
                        show(stop)
                    ));
                }
            }
            // A repetition must be able to fire at least twice.
            None if end_of_month && c.start - c.repeat < from => {
                return Err(format!(
                    "step {} from ~{} would go past the start of the month",
                    c.repeat, c.start
                ));
            }
            None if !end_of_month && c.start + c.repeat > to => {
                return Err(format!(
                    "{field} {}/{} never repeats within {range}",
                    show(c.start),
                    show(c.repeat)
                ));
            }
            None => {}
        }
    }
    Ok(())
}

/// A value for an error message; seconds are stored in µs.
fn format_value(v: i32, usec: bool) -> String {
    if !usec {
        return v.to_string();
    }
    if v % USEC_PER_SEC == 0 {
        (v / USEC_PER_SEC).to_string()
    } else {
        format!("{}.{:06}", v / USEC_PER_SEC, v % USEC_PER_SEC)
    }
}

/// Splits off a trailing ` UTC` or ` IANA/Zone`, like the start of
/// `calendar_spec_from_string()`.
///
/// Not supported: systemd also accepts the local zone's abbreviations
/// (`tzname[0]`/`tzname[1]` of the machine's zone, e.g. `CET`/`CEST`) and
/// then forces standard or daylight time. Those depend on the local zone at
/// parse time; `CET`-like names that are also zone files are treated as
/// zone names here.
fn split_zone(expr: &str) -> Result<(&str, Option<SpecZone>), String> {
    // " UTC" is matched case-insensitively (`daily utc` works).
    if let Some(cut) = expr.len().checked_sub(4)
        && expr.is_char_boundary(cut)
        && expr[cut..].eq_ignore_ascii_case(" utc")
    {
        return Ok((&expr[..cut], Some(SpecZone::Utc)));
    }
    if let Some(space) = expr.rfind(' ') {
        let name = &expr[space + 1..];
        if let Some(tz) = load_zone(name)? {
            let zone = SpecZone::Named {
                name: name.to_string(),
                tz,
            };
            return Ok((&expr[..space], Some(zone)));
        }
    }
    Ok((expr, None))
}

/// systemd's `timezone_is_valid()`: a relative path of `[A-Za-z0-9_+-]`
/// words under /usr/share/zoneinfo naming a regular TZif file. Returns
/// `Ok(None)` when `name` is not a zone (it is then parsed as part of the
/// expression, like systemd does).
fn load_zone(name: &str) -> Result<Option<TimeZone>, String> {
    let well_formed = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/'));
    if !well_formed {
        return Ok(None);
    }
    let path = std::path::Path::new(ZONEINFO_DIR).join(name);
    let mut magic = [0u8; 4];
    let is_tzif = std::fs::File::open(&path)
        .and_then(|mut f| {
            if !f.metadata()?.is_file() {
                return Ok(false);
            }
            f.read_exact(&mut magic)?;
            Ok(&magic == b"TZif")
        })
        .unwrap_or(false);
    if !is_tzif {
        return Ok(None);
    }
    jiff::tz::db()
        .get(name)
        .map(Some)
        .map_err(|e| format!("time zone `{name}` could not be loaded: {e}"))
}

/// The shorthands' names, for suggestions (systemd's misspelling
/// `anually` and the `bi-` forms are left out: nobody should be pointed
/// at them).
const SHORTHANDS: [&str; 9] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
];

/// Weekday names as suggestions name them.
const WEEKDAY_WORDS: [&str; 14] = [
    "Mon",
    "Tue",
    "Wed",
    "Thu",
    "Fri",
    "Sat",
    "Sun",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The first word of an expression, neither a weekday nor a shorthand.
fn unknown_word(word: &str) -> String {
    format!(
        "unknown weekday or shorthand `{word}`{}",
        did_you_mean(word, SHORTHANDS.iter().chain(&WEEKDAY_WORDS))
    )
}

fn unknown_weekday(word: &str) -> String {
    format!(
        "unknown weekday `{word}`{}",
        did_you_mean(word, WEEKDAY_WORDS.iter())
    )
}

/// ` (did you mean `daily`?)` when one of `candidates` is close to
/// `word` (a typo), else nothing. The same measure and threshold as the
/// spec's unknown keys.
fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a &'a str>) -> String {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| (strsim::jaro_winkler(&word, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// The named shorthands of systemd.time(7), matched case-insensitively
/// against the whole expression (minus the zone).
fn shorthand(body: &str) -> Option<CalendarSpec> {
    let name = body.to_ascii_lowercase();
    // (months, day, hour, minute, weekdays); seconds are always 0.
    let (months, day, hour, minute, weekdays): (&[i32], Option<i32>, Option<i32>, Option<i32>, _) =
        match name.as_str() {
            "minutely" => (&[], None, None, None, None),
            "hourly" => (&[], None, None, Some(0), None),
            "daily" => (&[], None, Some(0), Some(0), None),
            "weekly" => (&[], None, Some(0), Some(0), Some(1)),
            "monthly" => (&[], Some(1), Some(0), Some(0), None),
            // "anually" is a misspelling systemd keeps for compatibility.
            "annually" | "yearly" | "anually" => (&[1], Some(1), Some(0), Some(0), None),
            "quarterly" => (&[1, 4, 7, 10], Some(1), Some(0), Some(0), None),
            "biannually" | "bi-annually" | "semiannually" | "semi-annually" => {
                (&[1, 7], Some(1), Some(0), Some(0), None)
            }
            _ => return None,
        };
    let chain = |v: Option<i32>| v.map_or_else(Chain::any, Chain::constant);
    Some(CalendarSpec {
        weekdays,
        year: Chain::any(),
        month: Chain(months.iter().map(|&m| Component::single(m)).collect()),
        day: chain(day),
        hour: chain(hour),
        minute: chain(minute),
        second: Chain::constant(0),
        end_of_month: false,
        zone: SpecZone::Local,
    })
}

/// Recursive-descent parser over the expression without its zone, mirroring
/// systemd's `parse_weekdays()`, `parse_date()` and `parse_calendar_time()`.
struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.s.as_bytes().get(self.pos + n).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// The word at the cursor, for error messages.
    fn word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest.find([' ', ',', ':']).unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() { rest } else { word }
    }

    fn unexpected(&self, after: &str) -> String {
        match self.rest().chars().next() {
            Some(ch) => format!("unexpected `{ch}` {after} (at `{}`)", self.rest()),
            None => format!("unexpected end of expression {after}"),
        }
    }

    fn parse(mut self) -> Result<CalendarSpec, String> {
        let mut spec = CalendarSpec {
            weekdays: None,
            year: Chain::any(),
            month: Chain::any(),
            day: Chain::any(),
            hour: Chain::any(),
            minute: Chain::any(),
            second: Chain::any(),
            end_of_month: false,
            zone: SpecZone::Local,
        };
        spec.weekdays = self.weekdays()?;
        if !self.date(&mut spec)? {
            self.time(&mut spec)?;
        }
        if self.pos < self.s.len() {
            return Err(self.unexpected("at the end"));
        }
        Ok(spec)
    }

    /// `Mon`, `Mon,Wed..Fri`, `Monday-Friday` (`-` is the legacy range
    /// syntax). Returns the weekday bits, `None` if there is no weekday
    /// part. Ranges cannot wrap (`Sat..Mon` is an error in systemd).
    fn weekdays(&mut self) -> Result<Option<u8>, String> {
        let mut bits: u8 = 0;
        let mut range_start: Option<u8> = None;
        let mut first = true;
        loop {
            let rest = self.rest();
            let found = WEEKDAY_NAMES.iter().find(|(name, _)| {
                rest.len() >= name.len()
                    && rest.is_char_boundary(name.len())
                    && rest[..name.len()].eq_ignore_ascii_case(name)
            });
            let Some(&(name, day)) = found else {
                if first {
                    return Ok(None);
                }
                return Err(unknown_weekday(self.word()));
            };
            self.pos += name.len();
            if !matches!(self.peek(), None | Some(b'-' | b'.' | b',' | b' ')) {
                self.pos -= name.len();
                // `monthy` starts like `Mon`, but as the first word it may
                // as well be a misspelt shorthand.
                if self.pos == 0 {
                    return Err(unknown_word(self.word()));
                }
                return Err(unknown_weekday(self.word()));
            }
            bits |= 1 << day;
            if let Some(from) = range_start {
                if from > day {
                    return Err(format!(
                        "weekday range `{}..{}` goes backwards (ranges cannot wrap around the week; use a list like `Sat,Sun,Mon`)",
                        WEEKDAY_ABBREVIATIONS[from as usize], WEEKDAY_ABBREVIATIONS[day as usize]
                    ));
                }
                for d in from + 1..day {
                    bits |= 1 << d;
                }
            }
            match self.peek() {
                None => return Ok(Some(bits)),
                Some(b' ') => {
                    self.skip_spaces();
                    return Ok(Some(bits));
                }
                Some(b'.') => {
                    if range_start.is_some() {
                        return Err("a weekday range cannot be chained (`Mon..Wed..Fri`)".into());
                    }
                    if self.peek_at(1) != Some(b'.') {
                        return Err(format!(
                            "expected `..` after weekday `{name}`, not a single `.`"
                        ));
                    }
                    range_start = Some(day);
                    self.pos += 2;
                }
                Some(b'-') => {
                    if range_start.is_some() {
                        return Err("a weekday range cannot be chained (`Mon..Wed..Fri`)".into());
                    }
                    range_start = Some(day);
                    self.pos += 1;
                }
                // Only ',' is left: the byte after the name was checked.
                Some(_) => {
                    range_start = None;
                    self.pos += 1;
                }
            }
            // systemd allows a trailing comma, but not an open range.
            if matches!(self.peek(), None | Some(b' ')) {
                self.skip_spaces();
                if range_start.is_some() {
                    return Err("weekday range has no end".into());
                }
                return Ok(Some(bits));
            }
            first = false;
        }
    }

    /// The optional date part. Returns `true` when the whole date+time was
    /// consumed (the `@EPOCH` form), `false` when a time part may follow.
    fn date(&mut self, spec: &mut CalendarSpec) -> Result<bool, String> {
        if self.peek().is_none() {
            return Ok(false);
        }
        if self.peek() == Some(b'@') {
            self.pos += 1;
            self.epoch(spec)?;
            return Ok(true);
        }
        let start = self.pos;
        let first = self.chain(false, "date or time")?;
        // The end, or a ':' next: this was a time, not a date. Re-parse it.
        if matches!(self.peek(), None | Some(b':')) {
            self.pos = start;
            return Ok(false);
        }
        self.date_separator(spec, "after the first date field")?;
        let second = self.chain(false, "month or day")?;
        if matches!(self.peek(), None | Some(b' ')) {
            self.skip_spaces();
            spec.month = first;
            spec.day = second;
            return Ok(false);
        }
        if spec.end_of_month {
            return Err(format!(
                "`~` must come right before the day (at `{}`)",
                self.rest()
            ));
        }
        self.date_separator(spec, "after the month")?;
        let third = self.chain(false, "day")?;
        if !matches!(self.peek(), None | Some(b' ')) {
            return Err(self.unexpected("after the date"));
        }
        self.skip_spaces();
        spec.year = first;
        spec.month = second;
        spec.day = third;
        Ok(false)
    }

    fn date_separator(&mut self, spec: &mut CalendarSpec, context: &str) -> Result<(), String> {
        match self.peek() {
            Some(b'~') => spec.end_of_month = true,
            Some(b'-') => {}
            _ => return Err(self.unexpected(context)),
        }
        self.pos += 1;
        Ok(())
    }

    /// `@SECONDS`: a single point in time, in UTC. Like strtoul(3), leading
    /// whitespace and a `+` are accepted.
    fn epoch(&mut self, spec: &mut CalendarSpec) -> Result<(), String> {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "expected seconds since the epoch after `@`, got `{}`",
                self.rest()
            ));
        }
        let text = &self.rest()[..digits];
        self.pos += digits;
        // Anything past year 9999 is rejected by the year check anyway.
        let secs: i64 = text
            .parse()
            .ok()
            .filter(|&s: &i64| s < 253_402_300_800)
            .ok_or_else(|| format!("timestamp @{text} is out of range"))?;
        let tm = Tm::from_local_seconds(secs);
        spec.zone = SpecZone::Utc;
        spec.year = Chain::constant(tm.year);
        spec.month = Chain::constant(tm.month);
        spec.day = Chain::constant(tm.day);
        spec.hour = Chain::constant(tm.hour);
        spec.minute = Chain::constant(tm.minute);
        spec.second = Chain::constant(tm.second * USEC_PER_SEC);
        Ok(())
    }

    /// `HH:MM[:SS[.ffffff]]`; nothing at all means 00:00:00.
    fn time(&mut self, spec: &mut CalendarSpec) -> Result<(), String> {
        if self.peek().is_none() {
            spec.hour = Chain::constant(0);
            spec.minute = Chain::constant(0);
            spec.second = Chain::constant(0);
            return Ok(());
        }
        spec.hour = self.chain(false, "hour")?;
        if self.peek() != Some(b':') {
            return Err(self.unexpected("after the hour (expected `:`)"));
        }
        self.pos += 1;
        spec.minute = self.chain(false, "minute")?;
        if self.peek().is_none() {
            spec.second = Chain::constant(0);
            return Ok(());
        }
        if self.peek() != Some(b':') {
            return Err(self.unexpected("after the minute"));
        }
        self.pos += 1;
        spec.second = self.chain(true, "second")?;
        Ok(())
    }

    /// `*` or a comma list of components (systemd's `parse_chain()`).
    fn chain(&mut self, usec: bool, field: &str) -> Result<Chain, String> {
        if self.peek() == Some(b'*') {
            self.pos += 1;
            // For seconds, `*` means "every full second".
            return Ok(if usec {
                Chain(vec![Component {
                    start: 0,
                    stop: None,
                    repeat: USEC_PER_SEC,
                }])
            } else {
                Chain::any()
            });
        }
        let mut chain = Vec::new();
        loop {
            if chain.len() == MAX_COMPONENTS {
                return Err(format!("too many comma-separated values in the {field}"));
            }
            chain.push(self.component(usec, field)?);
            if self.peek() != Some(b',') {
                return Ok(Chain(chain));
            }
            self.pos += 1;
        }
    }

    /// `N`, `N..M`, `N/S` or `N..M/S` (systemd's `prepend_component()`).
    fn component(&mut self, usec: bool, field: &str) -> Result<Component, String> {
        let start = self.decimal(usec, field)?;
        let mut stop = None;
        let mut repeat = 0;
        if self.peek() == Some(b'.') && self.peek_at(1) == Some(b'.') {
            self.pos += 2;
            stop = Some(self.decimal(usec, field)?);
            repeat = if usec { USEC_PER_SEC } else { 1 };
        }
        if self.peek() == Some(b'/') {
            self.pos += 1;
            repeat = self.decimal(usec, field)?;
            if repeat == 0 {
                return Err(format!("{field} step must not be zero"));
            }
        } else if usec {
            // A seconds range steps by whole seconds unless told otherwise,
            // so a range shorter than a second is refused.
            if let Some(stop) = stop
                && start.checked_add(repeat).is_none_or(|end| end > stop)
            {
                return Err(format!(
                    "seconds range {}..{} is shorter than its one-second step",
                    format_value(start, true),
                    format_value(stop, true)
                ));
            }
        }
        if !matches!(self.peek(), None | Some(b' ' | b',' | b'-' | b'~' | b':')) {
            return Err(self.unexpected(&format!("in the {field}")));
        }
        Ok(Component {
            start,
            stop,
            repeat,
        })
    }

    /// A decimal number; for seconds also a fraction of up to 6 digits
    /// (rounded at the 7th digit, like systemd's
    /// `parse_fractional_part_u()`), returned in µs.
    fn decimal(&mut self, usec: bool, field: &str) -> Result<i32, String> {
        let digits = self.rest().bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            let word = self.word();
            if word.is_empty() {
                return Err(format!(
                    "expected a number or `*` for the {field}, got nothing"
                ));
            }
            if word.starts_with(|c: char| c.is_ascii_alphabetic()) && self.pos == 0 {
                if shorthand(word).is_some() {
                    return Err(format!(
                        "shorthand `{word}` must stand alone (only a time zone may follow it)"
                    ));
                }
                return Err(unknown_word(word));
            }
            return Err(format!(
                "expected a number or `*` for the {field}, got `{word}`"
            ));
        }
        let text = &self.rest()[..digits];
        self.pos += digits;
        let too_large = || format!("{field} value `{text}` is too large");
        let mut value: i64 = text.parse().map_err(|_| too_large())?;
        if usec {
            value = value
                .checked_mul(USEC_PER_SEC as i64)
                .ok_or_else(too_large)?;
            // One '.' is a decimal point, ".." is a range.
            if self.peek() == Some(b'.') && self.peek_at(1) != Some(b'.') {
                self.pos += 1;
                value += self.fraction()? as i64;
            }
        }
        i32::try_from(value).map_err(|_| too_large())
    }

    fn fraction(&mut self) -> Result<i32, String> {
        let digits = self.rest().as_bytes();
        let n = digits.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return Err(self.unexpected("after the decimal point"));
        }
        let mut value = 0;
        for i in 0..6 {
            value = value * 10
                + digits
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |b| (b - b'0') as i32);
        }
        if n > 6 && digits[6] >= b'5' {
            value += 1;
        }
        self.pos += n;
        Ok(value)
    }
}

fn format_weekdays(bits: u8) -> String {
    let mut out = String::new();
    let mut day = 0;
    while day < 7 {
        if bits & (1 << day) == 0 {
            day += 1;
            continue;
        }
        let mut end = day;
        while end + 1 < 7 && bits & (1 << (end + 1)) != 0 {
            end += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(WEEKDAY_ABBREVIATIONS[day]);
        // Runs of two are written as a list, longer runs as a range.
        match end - day {
            0 => {}
            1 => out.push(','),
            _ => out.push_str(".."),
        }
        if end > day {
            out.push_str(WEEKDAY_ABBREVIATIONS[end]);
        }
        day = end + 1;
    }
    out
}

/// systemd's `format_chain()`, quirks included: a step of `/1` on a range is
/// implied; a fractional step prints as e.g. `/0.250000`.
fn format_chain(out: &mut String, chain: &Chain, width: usize, usec: bool) {
    use std::fmt::Write as _;
    let d = if usec { USEC_PER_SEC } else { 1 };
    let every_second = [Component {
        start: 0,
        stop: None,
        repeat: USEC_PER_SEC,
    }];
    if chain.is_any() || (usec && chain.0 == every_second) {
        out.push('*');
        return;
    }
    for (i, c) in chain.0.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{:0width$}", c.start / d);
        if c.start % d > 0 {
            let _ = write!(out, ".{:06}", c.start % d);
        }
        if let Some(stop) = c.stop {
            let _ = write!(out, "..{:0width$}", stop / d);
            if stop % d > 0 {
                let _ = write!(out, ".{:06}", stop % d);
            }
        }
        if c.repeat > 0 && !(c.stop.is_some() && c.repeat == d) {
            let _ = write!(out, "/{}", c.repeat / d);
        }
        if c.repeat % d > 0 {
            let _ = write!(out, ".{:06}", c.repeat % d);
        }
    }
}

/// A broken-down local time like C's `struct tm`, but with the real year
/// and a 1-based month. Fields may be out of range (e.g. day 32) until
/// normalized by [`Clock::mktime`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tm {
    year: i32,
    month: i32,
    day: i32,
    hour: i32,
    minute: i32,
    second: i32,
}

impl Tm {
    fn reset_time(&mut self) {
        self.hour = 0;
        self.minute = 0;
        self.second = 0;
    }

    /// Seconds since the epoch of this civil time read as UTC, carrying
    /// out-of-range fields over like mktime(3) does.
    fn local_seconds(&self) -> i64 {
        let months = self.year as i64 * 12 + (self.month as i64 - 1);
        let days = days_from_civil(months.div_euclid(12), months.rem_euclid(12) + 1, 1)
            + (self.day as i64 - 1);
        days * 86_400 + self.hour as i64 * 3600 + self.minute as i64 * 60 + self.second as i64
    }

    fn from_local_seconds(secs: i64) -> Tm {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as i32;
        let (year, month, day) = civil_from_days(days);
        Tm {
            year: year as i32,
            month: month as i32,
            day: day as i32,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// 0 = Monday .. 6 = Sunday (systemd's weekday numbering).
    fn weekday(&self) -> u8 {
        // 1970-01-01 was a Thursday (3).
        (self.local_seconds().div_euclid(86_400) + 3).rem_euclid(7) as u8
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Result of systemd's `find_matching_component()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// The current value matches.
    Same,
    /// The value was moved forward to the next match.
    Changed,
    /// Nothing matches at or after the current value.
    None,
}

/// Result of systemd's `tm_within_bounds()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bounds {
    /// The time exists as written.
    Ok,
    /// mktime() moved the time forward (day 31 of a 30-day month, an hour
    /// in a DST gap, ...); the caller starts over from there.
    Normalized,
    /// Past year 2199, mktime() failed, or normalization went backwards.
    Invalid,
}

/// Finds the earliest value `>= *val` that one of the chain's components
/// allows (systemd's `find_matching_component()`). With `end_of_month`
/// (the clock and current time), day numbers count from the month's end.
fn find_matching(chain: &Chain, val: &mut i32, end_of_month: Option<(&mut Clock, Tm)>) -> Match {
    if chain.is_any() {
        return Match::Same;
    }
    let mut eom = end_of_month;
    let mut best: Option<i32> = None;
    for c in &chain.0 {
        let (mut start, mut stop) = (c.start, c.raw_stop());
        if let Some((clock, tm)) = eom.as_mut() {
            start = clock.end_of_month(tm, start);
            stop = clock.end_of_month(tm, stop);
            // `~7..1` is the 7th-last to the last day: swap to go forward.
            if stop > 0 {
                std::mem::swap(&mut start, &mut stop);
            }
        }
        let candidate = if start >= *val {
            Some(start)
        } else if c.repeat > 0 {
            let k = start + c.repeat * ((*val - start + c.repeat - 1) / c.repeat);
            (stop < 0 || k <= stop).then_some(k)
        } else {
            None
        };
        if let Some(k) = candidate {
            best = Some(best.map_or(k, |b| b.min(k)));
        }
    }
    match best {
        None => Match::None,
        Some(d) if d == *val => Match::Same,
        Some(d) => {
            *val = d;
            Match::Changed
        }
    }
}

/// Emulates the C library time functions systemd's algorithm is built on
/// (`mktime`, `localtime_r`, or their UTC twins) for one time zone.
///
/// glibc's mktime() resolves an ambiguous local time (in a DST fold) using
/// the offset of the previous call as its first guess; systemd's results in
/// folds depend on that, so it is modelled by `last_offset`. A time in a
/// DST gap is moved forward by the size of the gap (glibc prefers the DST
/// side when no `tm_isdst` is requested).
#[derive(Debug)]
struct Clock<'a> {
    tz: &'a TimeZone,
    /// Offset of a fixed-offset zone (e.g. UTC), to skip zone lookups.
    fixed: Option<i64>,
    last_offset: i64,
}

impl<'a> Clock<'a> {
    fn new(tz: &'a TimeZone) -> Self {
        let fixed = tz.to_fixed_offset().ok().map(|o| o.seconds() as i64);
        Clock {
            tz,
            fixed,
            last_offset: fixed.unwrap_or(0),
        }
    }

    /// localtime_r(): epoch seconds to local broken-down time.
    fn localtime(&mut self, epoch: i64) -> Option<Tm> {
        let offset = match self.fixed {
            Some(off) => off,
            None => self
                .tz
                .to_offset(Timestamp::from_second(epoch).ok()?)
                .seconds() as i64,
        };
        self.last_offset = offset;
        Some(Tm::from_local_seconds(epoch + offset))
    }

    /// mktime(): normalize `tm` and convert it to epoch seconds.
    fn mktime(&mut self, tm: &Tm) -> Option<(Tm, i64)> {
        let local = tm.local_seconds();
        let offset = match self.fixed {
            Some(off) => off,
            None => {
                let civil = Tm::from_local_seconds(local);
                let dt = DateTime::new(
                    i16::try_from(civil.year).ok()?,
                    civil.month as i8,
                    civil.day as i8,
                    civil.hour as i8,
                    civil.minute as i8,
                    civil.second as i8,
                    0,
                )
                .ok()?;
                let offset = match self.tz.to_ambiguous_timestamp(dt).offset() {
                    AmbiguousOffset::Unambiguous { offset } => offset,
                    AmbiguousOffset::Gap { before, .. } => before,
                    AmbiguousOffset::Fold { before, after } => {
                        if i64::from(after.seconds()) == self.last_offset {
                            after
                        } else {
                            before
                        }
                    }
                };
                offset.seconds() as i64
            }
        };
        let epoch = local - offset;
        Some((self.localtime(epoch)?, epoch))
    }

    /// systemd's `tm_within_bounds()`: does `tm` exist as written? If
    /// mktime() moves it forward, `tm` is updated (with the smaller fields
    /// reset, so no match in between is skipped).
    fn within_bounds(&mut self, tm: &mut Tm) -> Bounds {
        if tm.year > MAX_YEAR {
            return Bounds::Invalid;
        }
        let Some((mut t, _)) = self.mktime(tm) else {
            return Bounds::Invalid;
        };
        let cmp = if t.year != tm.year {
            t.month = 1;
            t.year.cmp(&tm.year)
        } else if t.month != tm.month {
            t.day = 1;
            t.month.cmp(&tm.month)
        } else if t.day != tm.day {
            t.hour = 0;
            t.day.cmp(&tm.day)
        } else if t.hour != tm.hour {
            t.minute = 0;
            t.hour.cmp(&tm.hour)
        } else if t.minute != tm.minute {
            t.second = 0;
            t.minute.cmp(&tm.minute)
        } else {
            t.second.cmp(&tm.second)
        };
        match cmp {
            std::cmp::Ordering::Less => Bounds::Invalid,
            std::cmp::Ordering::Equal => Bounds::Ok,
            std::cmp::Ordering::Greater => {
                *tm = t;
                Bounds::Normalized
            }
        }
    }

    /// The `if (r < 0 || (r = tm_within_bounds(..)) < 0)` idiom of
    /// `find_next()`: no match counts as out of bounds.
    fn step_bounds(&mut self, matched: Match, tm: &mut Tm) -> Bounds {
        if matched == Match::None {
            Bounds::Invalid
        } else {
            self.within_bounds(tm)
        }
    }

    /// systemd's `matches_weekday()`.
    fn matches_weekday(&mut self, weekdays: Option<u8>, tm: &Tm) -> bool {
        let Some(bits) = weekdays else {
            return true;
        };
        match self.mktime(tm) {
            Some((t, _)) => bits & (1 << t.weekday()) != 0,
            None => false,
        }
    }

    /// systemd's `find_end_of_month()`: the day of month that is `day` days
    /// before the end of `tm`'s month (`~1` = last day), or -1 if that is
    /// not in this month (including `day == -1`, "no value").
    fn end_of_month(&mut self, tm: &Tm, day: i32) -> i32 {
        let mut t = *tm;
        t.month += 1;
        t.day = 1 - day;
        match self.mktime(&t) {
            Some((n, _)) if n.month == tm.month => n.day,
            _ => -1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(expr: &str) -> String {
        match CalendarSpec::parse(expr) {
            Ok(spec) => spec.normalized(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 59, 365, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(19_737), (2024, 1, 15));
    }

    #[test]
    fn normalizes_like_systemd() {
        assert_eq!(norm("Mon..Fri 1:2"), "Mon..Fri *-*-* 01:02:00");
        assert_eq!(norm("sat,sun"), "Sat,Sun *-*-* 00:00:00");
        assert_eq!(norm("Mon-Wed,Fri"), "Mon..Wed,Fri *-*-* 00:00:00");
        assert_eq!(norm("*:0/15"), "*-*-* *:00/15:00");
        assert_eq!(norm("daily utc"), "*-*-* 00:00:00 UTC");
        assert_eq!(norm("quarterly"), "*-01,04,07,10-01 00:00:00");
        assert_eq!(norm("12:00:00.000001"), "*-*-* 12:00:00.000001");
        assert_eq!(norm("*-02~1..7/2 12:00"), "*-02~01..07/2 12:00:00");
        assert_eq!(
            norm("*-*-* 00:00:01.5/0.25"),
            "*-*-* 00:00:01.500000/0.250000"
        );
        assert_eq!(norm("@1700000000"), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn rejects_with_reasons() {
        let err = CalendarSpec::parse("Mon..Fro 00:15").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid calendar expression `Mon..Fro 00:15`: unknown weekday `Fro` (did you mean `Fri`?)"
        );
        let err = CalendarSpec::parse("*:60").unwrap_err();
        assert_eq!(err.reason(), "minute 60 is out of range 0..59");
        assert!(CalendarSpec::parse("Wed..Mon").is_err());
        assert!(CalendarSpec::parse("").is_err());
        assert!(CalendarSpec::parse("*:*/5").is_err());
    }

    #[test]
    fn fraction_rounds_at_seventh_digit() {
        assert_eq!(norm("*:*:1.0000005"), "*-*-* *:*:01.000001");
        assert_eq!(norm("*:*:1.5"), "*-*-* *:*:01.500000");
    }

    #[test]
    fn weekday_formatting() {
        assert_eq!(format_weekdays(0b0000001), "Mon");
        assert_eq!(format_weekdays(0b0000011), "Mon,Tue");
        assert_eq!(format_weekdays(0b0011111), "Mon..Fri");
        assert_eq!(format_weekdays(0b1100101), "Mon,Wed,Sat,Sun");
    }
}
