//! Checks `unitgen::schedule` against systemd itself.
//!
//! The expected normalized forms and elapse times are not written down
//! here: they are produced by running `systemd-analyze calendar` during the
//! test, so the tables cannot drift from what systemd really does. Without
//! `/usr/bin/systemd-analyze` these tests fail (they never skip silently).
//!
//! Cron conversions are checked by an independent brute-force evaluator of
//! Vixie cron semantics written below, compared with the union of the
//! elapses systemd computes for the emitted `OnCalendar=` expressions.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use unitgen::schedule::report::{ScheduleArgs, run};
use unitgen::schedule::{CalendarSpec, CronError, cron_to_on_calendar};

const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

// ---------------------------------------------------------------------------
// The systemd-analyze oracle
// ---------------------------------------------------------------------------

/// What `systemd-analyze calendar` says about one expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Oracle {
    /// "Failed to parse calendar specification".
    Invalid,
    /// Parsed; its normalized form and the elapses it printed, in epoch
    /// seconds (systemd prints whole seconds).
    Valid { normalized: String, next: Vec<i64> },
    /// Parsed, but computing an elapse failed (systemd gives up on the
    /// expression and prints nothing for it).
    Failed,
}

/// Runs `systemd-analyze calendar` for several expressions at once, in time
/// zone `tz`, from `base` (epoch seconds), and parses its report.
fn systemd_analyze(tz: &str, base: i64, iterations: usize, exprs: &[&str]) -> Vec<Oracle> {
    let output = Command::new(SYSTEMD_ANALYZE)
        .arg("calendar")
        .arg("--no-pager")
        .arg(format!("--iterations={iterations}"))
        .arg(format!("--base-time=@{base}"))
        .arg("--")
        .args(exprs)
        .env("TZ", tz)
        .env("SYSTEMD_COLORS", "0")
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {SYSTEMD_ANALYZE} ({e}); these tests need systemd's own \
                 calendar implementation as the reference: install systemd (apt-get install systemd)"
            )
        });
    let stdout = String::from_utf8(output.stdout).expect("systemd-analyze output is UTF-8");
    let stderr = String::from_utf8(output.stderr).expect("systemd-analyze output is UTF-8");

    // systemd-analyze prints one table per expression, separated by an empty
    // line; an expression that fails prints nothing (its error goes to
    // stderr) but the separator is still printed. Tables have no empty lines.
    let mut lines = stdout.lines();
    exprs
        .iter()
        .map(|expr| {
            let table: Vec<&str> = lines.by_ref().take_while(|l| !l.is_empty()).collect();
            if table.is_empty() {
                let parse_error = format!("Failed to parse calendar specification '{expr}'");
                let next_error = format!("Failed to determine next elapse for '{expr}'");
                if stderr.contains(&parse_error) {
                    Oracle::Invalid
                } else if stderr.contains(&next_error) {
                    Oracle::Failed
                } else {
                    panic!("no output from systemd-analyze for `{expr}`; stderr: {stderr}")
                }
            } else {
                parse_table(expr, &table)
            }
        })
        .collect()
}

fn parse_table(expr: &str, table: &[&str]) -> Oracle {
    let mut normalized = None;
    let mut next = Vec::new();
    for line in table {
        let (label, value) = line
            .trim_start()
            .split_once(": ")
            .unwrap_or_else(|| panic!("unexpected systemd-analyze line `{line}` for `{expr}`"));
        match label {
            "Original form" | "From now" => {}
            "Normalized form" => normalized = Some(value.to_string()),
            "Next elapse" if value == "never" => {}
            // With a non-UTC $TZ the UTC time follows on its own line.
            "(in UTC)" => {
                next.pop();
                next.push(parse_timestamp(value));
            }
            l if l == "Next elapse" || l.starts_with("Iter. #") => {
                next.push(parse_timestamp(value))
            }
            _ => panic!("unexpected systemd-analyze line `{line}` for `{expr}`"),
        }
    }
    Oracle::Valid {
        // An expression that is already normal has no "Original form" line,
        // but always a "Normalized form" one.
        normalized: normalized.expect("a Normalized form line"),
        next,
    }
}

/// Parses systemd's `Mon 2024-01-15 00:15:00 UTC`. Local (non-UTC) times
/// are always followed by an `(in UTC)` line that replaces them, so only
/// the UTC case needs to be right.
fn parse_timestamp(value: &str) -> i64 {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, date, time, zone] = parts[..] else {
        panic!("unexpected timestamp `{value}`");
    };
    let dt: DateTime = format!("{date}T{time}").parse().expect("systemd timestamp");
    if zone == "UTC" {
        dt.to_zoned(TimeZone::UTC).unwrap().timestamp().as_second()
    } else {
        // Replaced by the following "(in UTC)" value.
        i64::MIN
    }
}

/// What our engine says, in the same shape.
fn ours(expr: &str, tz: &TimeZone, base: i64, iterations: usize) -> Oracle {
    let spec = match CalendarSpec::parse(expr) {
        Ok(spec) => spec,
        Err(_) => return Oracle::Invalid,
    };
    let mut next = Vec::new();
    let mut at = Timestamp::from_second(base).unwrap().to_zoned(tz.clone());
    while next.len() < iterations {
        let Some(n) = spec.next_elapse(&at) else {
            break;
        };
        assert!(n.timestamp() > at.timestamp(), "`{expr}` went backwards");
        next.push(n.timestamp().as_second());
        at = n.with_time_zone(tz.clone());
    }
    Oracle::Valid {
        normalized: spec.normalized(),
        next,
    }
}

/// Epoch seconds of a civil time in `tz` (the earlier one if ambiguous), or
/// of an RFC 3339 UTC time ending in `Z`.
fn epoch(civil: &str, tz: &str) -> i64 {
    if civil.ends_with('Z') {
        return civil.parse::<Timestamp>().unwrap().as_second();
    }
    let dt: DateTime = civil.parse().unwrap();
    dt.to_zoned(TimeZone::get(tz).unwrap())
        .unwrap()
        .timestamp()
        .as_second()
}

fn fmt_times(times: &[i64]) -> String {
    let list: Vec<String> = times
        .iter()
        .map(|&t| Timestamp::from_second(t).unwrap().to_string())
        .collect();
    list.join(", ")
}

fn describe(o: &Oracle) -> String {
    match o {
        Oracle::Invalid => "invalid".to_string(),
        Oracle::Failed => "elapse computation failed".to_string(),
        Oracle::Valid { normalized, next } => format!("`{normalized}` next [{}]", fmt_times(next)),
    }
}

fn calendar_cases() -> Vec<String> {
    let text = include_str!("schedule/calendar_cases.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// Calendar expressions
// ---------------------------------------------------------------------------

#[test]
fn calendar_expressions_match_systemd_analyze() {
    let cases = calendar_cases();
    let exprs: Vec<&str> = cases.iter().map(String::as_str).collect();
    // (TZ, base time): plain dates, a leap year's February, and the hours
    // around the DST changes of Europe, North America and Lord Howe (30 min
    // shift). Local civil times, or UTC instants (`Z`) for bases inside the
    // repeated hour of a fall-back (02:20 CET and 01:20 EST, second time).
    let contexts = [
        ("UTC", "2024-01-15T00:00:00"),
        ("UTC", "2023-02-27T23:59:59"),
        ("UTC", "2024-02-28T12:00:00"),
        ("UTC", "2024-12-31T23:30:00"),
        ("Europe/Berlin", "2024-03-31T01:20:00"),
        ("Europe/Berlin", "2024-10-27T01:40:00"),
        ("America/New_York", "2024-03-10T01:10:00"),
        ("America/New_York", "2024-11-03T00:50:00"),
        ("Europe/Berlin", "2024-10-27T01:20:00Z"),
        ("America/New_York", "2024-11-03T06:20:00Z"),
        ("Australia/Lord_Howe", "2024-04-06T23:00:00"),
    ];
    let iterations = 6;
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut valid = 0;
    for (tz_name, civil) in contexts {
        let base = epoch(civil, tz_name);
        let tz = TimeZone::get(tz_name).unwrap();
        let expected = systemd_analyze(tz_name, base, iterations, &exprs);
        for (expr, want) in exprs.iter().zip(&expected) {
            let got = ours(expr, &tz, base, iterations);
            compared += 1;
            let same = match (want, &got) {
                // systemd gave up computing; the expression must still parse.
                (Oracle::Failed, Oracle::Valid { .. }) => true,
                (w, g) => w == g,
            };
            if matches!(want, Oracle::Valid { .. }) {
                valid += 1;
            }
            if !same {
                failures.push(format!(
                    "TZ={tz_name} base={civil} `{expr}`:\n  systemd: {}\n  ours:    {}",
                    describe(want),
                    describe(&got)
                ));
            }
        }
    }
    println!(
        "{} expressions x {} contexts: {compared} comparisons ({valid} valid), {} mismatches",
        exprs.len(),
        contexts.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches with systemd-analyze:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn calendar_errors_are_explained() {
    let err = CalendarSpec::parse("Mon..Fro 00:15").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid calendar expression `Mon..Fro 00:15`: unknown weekday `Fro` (did you mean `Fri`?)"
    );
    for expr in ["bogus", "*:60", "*-*-32", "Wed..Mon", "12:00 Foo/Bar", ""] {
        let err = CalendarSpec::parse(expr).unwrap_err();
        assert!(!err.reason().is_empty(), "`{expr}` needs a reason");
        println!("{err}");
    }
}

#[test]
fn next_elapse_is_in_the_spec_zone_or_the_base_zone() {
    let base: Zoned = "2024-01-15T00:00:00[America/New_York]".parse().unwrap();
    let berlin = CalendarSpec::parse("Mon 12:00 Europe/Berlin").unwrap();
    let next = berlin.next_elapse(&base).unwrap();
    assert_eq!(next.to_string(), "2024-01-15T12:00:00+01:00[Europe/Berlin]");
    let local = CalendarSpec::parse("Mon 12:00").unwrap();
    let next = local.next_elapse(&base).unwrap();
    assert_eq!(
        next.to_string(),
        "2024-01-15T12:00:00-05:00[America/New_York]"
    );
    let never = CalendarSpec::parse("*-02-30").unwrap();
    assert_eq!(never.next_elapse(&base), None);
}

// ---------------------------------------------------------------------------
// Cron: an independent brute-force Vixie cron evaluator
// ---------------------------------------------------------------------------

/// A crontab schedule as Vixie cron stores it: one flag per value, plus
/// whether each day field started with `*` (its DOM_STAR/DOW_STAR flags).
struct Vixie {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    month: Vec<bool>,
    dow: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
    /// The day of month is `$`: the last day (Vixie cron 4.1's DOM_LAST).
    dom_last: bool,
}

impl Vixie {
    fn parse(line: &str) -> Vixie {
        let line = match line {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "{line}");
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        let mut dow = field(f[4], 0, 7, &DAYS, 0);
        dow[0] |= dow[7]; // 7 is Sunday too
        let dom_last = f[2] == "$";
        Vixie {
            minute: field(f[0], 0, 59, &[], 0),
            hour: field(f[1], 0, 23, &[], 0),
            dom: match dom_last {
                true => vec![false; 32],
                false => field(f[2], 1, 31, &[], 0),
            },
            month: field(f[3], 1, 12, &MONTHS, 1),
            dow,
            dom_star: f[2].starts_with('*'),
            dow_star: f[4].starts_with('*'),
            dom_last,
        }
    }

    /// Vixie cron's test (`find_jobs()` in cron.c), split in its day and
    /// time parts: a minute fires when both match. Minute, hour and month
    /// must match; the two day fields are ANDed if either starts with `*`,
    /// ORed otherwise.
    fn day_fires(&self, date: Date) -> bool {
        let wd = date.weekday().to_sunday_zero_offset() as usize;
        let last = date.tomorrow().unwrap().day() == 1;
        let dom = self.dom[date.day() as usize] || (self.dom_last && last);
        let dow = self.dow[wd];
        self.month[date.month() as usize]
            && if self.dom_star || self.dow_star {
                dom && dow
            } else {
                dom || dow
            }
    }

    fn time_fires(&self, hour: usize, minute: usize) -> bool {
        self.minute[minute] && self.hour[hour]
    }

    /// The first `limit` firing minutes strictly after `base` (UTC), looking
    /// at most `days` days ahead.
    fn firings(&self, base: i64, days: i64, limit: usize) -> Vec<i64> {
        let mut date = Timestamp::from_second(base)
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .date();
        let mut out = Vec::new();
        for _ in 0..days {
            if !self.day_fires(date) {
                date = date.tomorrow().unwrap();
                continue;
            }
            let midnight = date
                .to_zoned(TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second();
            for hour in 0..24 {
                for minute in 0..60 {
                    let secs = midnight + (hour * 60 + minute) as i64 * 60;
                    if secs > base && self.time_fires(hour, minute) {
                        out.push(secs);
                        if out.len() == limit {
                            return out;
                        }
                    }
                }
            }
            date = date.tomorrow().unwrap();
        }
        out
    }
}

/// A field's flags, indexed by value: `*`, `N`, `N-M`, with `/STEP`.
fn field(text: &str, lo: i8, hi: i8, names: &[&str], first: i8) -> Vec<bool> {
    let value = |s: &str| -> i8 {
        match names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            Some(i) => first + i as i8,
            None => s.parse().unwrap(),
        }
    };
    let mut bits = vec![false; hi as usize + 1];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<usize>().unwrap()),
            None => (item, 1),
        };
        let (a, b) = match range.split_once('-') {
            _ if range == "*" => (lo, hi),
            Some((a, b)) => (value(a), value(b)),
            None => (value(range), value(range)),
        };
        for v in (a..=b).step_by(step) {
            bits[v as usize] = true;
        }
    }
    bits
}

/// Cron lines that must convert, each checked against the brute-force
/// evaluator.
const CRON_CASES: &[&str] = &[
    "* * * * *",
    "*/1 * * * *",
    "*/15 * * * *",
    "0 * * * *",
    "5 4 * * *",
    "1-30/7 * * * *",
    "15,45 */4 * * *",
    "*/59 * * * *",
    "*/45 */13 * * *",
    "0,30 8-18 * * 1-5",
    "0 9-17 * * mon-fri",
    "0 9-17/2 * * MON-FRI",
    "30 2 * * 1-5",
    "0 0 * * 0",
    "0 0 * * 7",
    "0 0 * * 0,7",
    "0 0 * * 5-7",
    "0 0 * * sun,sat",
    "0 0 * * */2",
    "0 0 1 * *",
    "0 0 1,15 * *",
    "0 0 */7 * *",
    "0 12 */2 * *",
    "0 0 31 * *",
    "0 0 29,30 * *",
    "0 0 29 2 *",
    "59 23 31 12 *",
    "0 0 1-7 * 1",
    "0 0 13 * fri",
    "0 0 */2 * 1",
    "0 0 $ * *",
    "0 0 $ 2 *",
    "30 4 $ 1,3 mon-fri",
    "0 0 $ * */2",
    "0 12 $ */3 sun",
    "*/59 * * * *",
    "50-55/10 * * * *",
    "0 0 * * */7",
    "0 0 * * 0-7/3",
    "0 0 1-31/30 * *",
    "0 0 * JaN-mAr MoN",
    "0 0 1 * */2",
    "0 0 30 2 1",
    "0 0 1-31 * 1",
    "0 0 15 * 0-6",
    "0 0 15 * 1-7",
    "0 0 * jan,jul *",
    "0 0 1 */3 *",
    "0 0 1 JAN-MAR,Oct *",
    "*/20 */6 1,15 * *",
    "7 7 7 7 7",
    "0 6 1,10-12,20 2 wed",
    "0 0 31 1-12/2 *",
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

#[test]
fn cron_conversions_fire_exactly_when_cron_would() {
    const LIMIT: usize = 120;
    const DAYS: i64 = 4 * 366 + 1;
    let bases = [
        epoch("2024-01-15T00:00:00", "UTC"),
        epoch("2023-02-26T22:59:00", "UTC"),
        epoch("2024-02-28T12:34:00", "UTC"),
        epoch("2025-12-31T23:30:00", "UTC"),
    ];
    let converted: Vec<(&str, Vec<String>)> = CRON_CASES
        .iter()
        .map(|line| {
            let exprs = cron_to_on_calendar(line).unwrap_or_else(|e| panic!("{e}"));
            assert!(matches!(exprs.len(), 1 | 2), "{line}: {exprs:?}");
            (*line, exprs)
        })
        .collect();
    // Every distinct expression once per systemd-analyze run.
    let unique: BTreeSet<&str> = converted
        .iter()
        .flat_map(|(_, exprs)| exprs.iter().map(String::as_str))
        .collect();
    let unique: Vec<&str> = unique.into_iter().collect();
    let mut failures = Vec::new();
    for base in bases {
        let results = systemd_analyze("UTC", base, LIMIT, &unique);
        let by_expr: BTreeMap<&str, &Oracle> = unique.iter().copied().zip(&results).collect();
        for (line, exprs) in &converted {
            let mut union = BTreeSet::new();
            for expr in exprs {
                match by_expr[expr.as_str()] {
                    Oracle::Valid { normalized, next } => {
                        assert_eq!(normalized, expr, "emitted expressions are normalized");
                        union.extend(next.iter().copied());
                    }
                    other => panic!("{line}: systemd says `{expr}` is {other:?}"),
                }
            }
            // Each expression gave its first LIMIT elapses, so the union's
            // first LIMIT are exact.
            let systemd: Vec<i64> = union.into_iter().take(LIMIT).collect();
            let cron = Vixie::parse(line).firings(base, DAYS, LIMIT);
            let window_end = base + DAYS * 86_400 - 86_400;
            let systemd: Vec<i64> = if cron.len() < LIMIT {
                // The brute force stopped at its window: compare within it.
                systemd.into_iter().filter(|&t| t <= window_end).collect()
            } else {
                systemd
            };
            if systemd != cron {
                let first_diff = systemd.iter().zip(&cron).position(|(a, b)| a != b);
                failures.push(format!(
                    "`{line}` -> {exprs:?} from {}: first difference at #{first_diff:?}\n  systemd: {}\n  cron:    {}",
                    Timestamp::from_second(base).unwrap(),
                    fmt_times(&systemd[..systemd.len().min(5)]),
                    fmt_times(&cron[..cron.len().min(5)]),
                ));
            }
        }
    }
    println!(
        "{} cron lines x {} base times compared ({} distinct OnCalendar expressions)",
        CRON_CASES.len(),
        bases.len(),
        unique.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cron_rejects_with_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("@reboot", "OnBootSec="),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6 *", "never fires"),
        ("0 0 31 2,4,6,9,11 *", "never fires"),
        ("60 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 0 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("* * * * 8", "out of range"),
        ("*/0 * * * *", "zero"),
        ("5/10 * * * *", "needs a range"),
        ("* * * *", "expected 5 fields"),
        (
            "* * * * * /usr/bin/true",
            "the sixth field, `/usr/bin/true`, starts a command",
        ),
        (
            "15 00 * * * root /usr/bin/flock",
            "the user field of /etc/crontab",
        ),
        ("0 15 0 * * *", "the first field is the seconds"),
        (
            "CRON_TZ=UTC 0 0 * * *",
            "`schedule: \"*-*-* 00:00:00 UTC\"`",
        ),
        ("MAILTO=me@me.biz", "`notify: { mail: [ADDRESS] }`"),
        // Vixie cron compares the shorthands with strcmp(3).
        ("@DAILY", "write `@daily`"),
        ("@Weekly", "write `@weekly`"),
        ("@daily /usr/bin/true", "starts a command"),
        // Vixie cron 3.0 and 4.1 disagree on these.
        ("*/60 * * * *", "larger than the minute range"),
        ("0 0 */31 * *", "larger than the day of month range"),
        ("0 0 * * */8", "larger than the day of week range"),
        ("0-5/10 * * * *", "larger than the minute range"),
        // Refused by Vixie cron's get_number()/set_range().
        ("*/mon * * * *", "invalid step"),
        ("0 0 * * mon-sun", "backwards"),
        ("0 0 * * Monday", "the first three letters: `mon`"),
        ("0 0 $,15 * *", "must be the whole day-of-month field"),
        ("0 0 * $ *", "invalid month"),
        ("10-5 * * * *", "backwards"),
        ("* * * foo *", "invalid month"),
        ("* * * * funday", "invalid day of week"),
        ("@every 5m", "unknown shorthand"),
    ];
    for (line, needle) in cases {
        let err: CronError = cron_to_on_calendar(line).expect_err(line);
        let text = err.to_string();
        assert!(
            text.contains(needle),
            "`{line}`: `{text}` should mention `{needle}`"
        );
        assert!(
            text.starts_with(&format!("invalid cron schedule `{line}`: ")),
            "{text}"
        );
    }
}

// ---------------------------------------------------------------------------
// `unitgen schedule` report
// ---------------------------------------------------------------------------

fn report(args: &ScheduleArgs) -> (bool, String) {
    let mut out = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let ok = run(args, &mut out, &mut errors).expect("report");
    (ok, String::from_utf8(out).unwrap())
}

#[test]
fn report_json_lines() {
    let args = ScheduleArgs {
        exprs: vec!["Mon..Fri *-*-* 00:15".into(), "Mon..Fro 00:15".into()],
        cron: false,
        iterations: 2,
        base_time: Some("2024-01-15T00:00:00Z".into()),
        json: true,
    };
    let (ok, text) = report(&args);
    assert!(!ok);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({
            "input": "Mon..Fri *-*-* 00:15",
            "valid": true,
            "on_calendar": ["Mon..Fri *-*-* 00:15"],
            "normalized": ["Mon..Fri *-*-* 00:15:00"],
            "next": ["2024-01-15T00:15:00Z", "2024-01-16T00:15:00Z"],
        })
    );
    assert_eq!(lines[1]["valid"], false);
    assert_eq!(
        lines[1]["error"],
        "invalid calendar expression `Mon..Fro 00:15`: unknown weekday `Fro` (did you mean `Fri`?)"
    );
}

#[test]
fn report_cron_merges_elapses() {
    let args = ScheduleArgs {
        exprs: vec!["0 0 1 * mon".into(), "@reboot".into()],
        cron: true,
        iterations: 3,
        base_time: Some("2024-01-15 00:00:00 UTC".into()),
        json: true,
    };
    let (ok, text) = report(&args);
    assert!(!ok);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first["on_calendar"],
        serde_json::json!(["Mon *-*-* 00:00:00", "*-*-01 00:00:00"])
    );
    assert_eq!(
        first["next"],
        serde_json::json!([
            "2024-01-22T00:00:00Z",
            "2024-01-29T00:00:00Z",
            "2024-02-01T00:00:00Z"
        ])
    );
    assert!(text.lines().nth(1).unwrap().contains("OnBootSec="));
}

#[test]
fn report_human_output_matches_systemd_analyze_layout() {
    let args = ScheduleArgs {
        exprs: vec!["Mon..Fri *-*-* 00:15".into(), "*-*-* 00:00:00".into()],
        cron: false,
        iterations: 2,
        base_time: Some("@1705276800".into()),
        json: false,
    };
    // The layout is systemd-analyze's minus the "From now" lines (which
    // depend on the real clock), when the local zone is UTC.
    let (ok, text) = report(&args);
    assert!(ok);
    if TimeZone::system().to_fixed_offset().ok() == Some(jiff::tz::Offset::UTC) {
        let exprs = ["Mon..Fri *-*-* 00:15", "*-*-* 00:00:00"];
        let output = Command::new(SYSTEMD_ANALYZE)
            .args([
                "calendar",
                "--iterations=2",
                "--base-time=@1705276800",
                "--",
            ])
            .args(exprs)
            .env("SYSTEMD_COLORS", "0")
            .output()
            .expect("systemd-analyze");
        let systemd: String = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("From now:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(text, systemd);
    }
    assert!(text.contains("Normalized form: Mon..Fri *-*-* 00:15:00"));
}
