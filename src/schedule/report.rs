//! `unitgen schedule`: show how systemd will read calendar expressions (or
//! cron schedules) and when they will next fire, like
//! `systemd-analyze calendar` does.

use std::io::{self, Write};

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{Timestamp, Zoned};
use serde::Serialize;

use super::calendar::CalendarSpec;
use super::cron::cron_to_on_calendar;

/// Arguments of `unitgen schedule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleArgs {
    /// Calendar expressions, or cron schedules with `cron`.
    pub exprs: Vec<String>,
    /// Treat `exprs` as 5-field cron schedules or `@daily`-style shorthands.
    pub cron: bool,
    /// How many elapses to show (systemd-analyze's default is 1).
    pub iterations: usize,
    /// Compute elapses after this time instead of now.
    pub base_time: Option<String>,
    /// One JSON object per expression and line instead of text.
    pub json: bool,
}

impl Default for ScheduleArgs {
    fn default() -> Self {
        ScheduleArgs {
            exprs: Vec::new(),
            cron: false,
            iterations: 1,
            base_time: None,
            json: false,
        }
    }
}

/// One expression's JSON line.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonReport<'a> {
    Valid {
        input: &'a str,
        valid: bool,
        on_calendar: &'a [String],
        normalized: Vec<String>,
        next: Vec<String>,
    },
    Invalid {
        input: &'a str,
        valid: bool,
        error: String,
    },
}

/// An expression that was understood: what to put in `OnCalendar=` and
/// the parsed specs.
struct Analysis {
    on_calendar: Vec<String>,
    specs: Vec<CalendarSpec>,
}

/// Where the text report says that an expression is invalid: not among
/// the results (the command line prints it on stderr, as an error).
pub trait Errors {
    fn invalid(&mut self, message: &str);
}

/// Collects the messages (tests, callers that place them themselves).
impl Errors for Vec<String> {
    fn invalid(&mut self, message: &str) {
        self.push(message.to_owned());
    }
}

/// Writes the report to `out`, and each invalid expression's error to
/// `errors` (with `--json`, the error is in the expression's object
/// instead). Returns `Ok(true)` when every expression is valid, `Ok(false)`
/// if any is not. An unparsable `--base-time` is an `InvalidInput` error.
pub fn run(args: &ScheduleArgs, out: &mut dyn Write, errors: &mut dyn Errors) -> io::Result<bool> {
    let local = TimeZone::system();
    let (base, from_now) = match &args.base_time {
        Some(text) => {
            let base = parse_base_time(text, &local)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            (base, false)
        }
        None => (Zoned::now().with_time_zone(local.clone()), true),
    };
    let mut all_valid = true;
    for (i, input) in args.exprs.iter().enumerate() {
        let analysis = analyze(input, args.cron);
        all_valid &= analysis.is_ok();
        if args.json {
            let line = match &analysis {
                Ok(a) => JsonReport::Valid {
                    input,
                    valid: true,
                    on_calendar: &a.on_calendar,
                    normalized: a.specs.iter().map(CalendarSpec::normalized).collect(),
                    next: next_elapses(&a.specs, &base, args.iterations)
                        .iter()
                        .map(|z| z.timestamp().to_string())
                        .collect(),
                },
                Err(error) => JsonReport::Invalid {
                    input,
                    valid: false,
                    error: error.clone(),
                },
            };
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)?;
        } else {
            // systemd-analyze separates expressions with an empty line,
            // also after one it could not parse (whose error went to
            // stderr).
            if i > 0 {
                writeln!(out)?;
            }
            match &analysis {
                Ok(a) => write_human(out, input, a, &base, args.iterations, from_now)?,
                Err(error) => errors.invalid(error),
            }
        }
    }
    Ok(all_valid)
}

fn analyze(input: &str, cron: bool) -> Result<Analysis, String> {
    let on_calendar = if cron {
        cron_to_on_calendar(input).map_err(|e| e.to_string())?
    } else {
        vec![input.to_string()]
    };
    let specs = on_calendar
        .iter()
        .map(|e| CalendarSpec::parse(e).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    Ok(Analysis { on_calendar, specs })
}

/// The first `n` elapses after `base` of any of `specs` (merged, sorted,
/// without duplicates), shown in `base`'s zone.
pub(crate) fn next_elapses(specs: &[CalendarSpec], base: &Zoned, n: usize) -> Vec<Zoned> {
    let mut all: Vec<Timestamp> = Vec::new();
    for spec in specs {
        let mut at = base.clone();
        for _ in 0..n {
            match spec.next_elapse(&at) {
                Some(next) => {
                    all.push(next.timestamp());
                    at = next;
                }
                None => break,
            }
        }
    }
    all.sort();
    all.dedup();
    all.truncate(n);
    all.into_iter()
        .map(|t| t.to_zoned(base.time_zone().clone()))
        .collect()
}

/// The layout of `systemd-analyze calendar`: labels right-aligned to the
/// widest one, "Normalized form:".
fn write_human(
    out: &mut dyn Write,
    input: &str,
    analysis: &Analysis,
    base: &Zoned,
    iterations: usize,
    from_now: bool,
) -> io::Result<()> {
    let normalized: Vec<String> = analysis
        .specs
        .iter()
        .map(CalendarSpec::normalized)
        .collect();
    if normalized.len() != 1 || normalized[0] != input {
        writeln!(out, "{:>16} {input}", "Original form:")?;
    }
    for n in &normalized {
        writeln!(out, "{:>16} {n}", "Normalized form:")?;
    }
    let next = next_elapses(&analysis.specs, base, iterations);
    if next.is_empty() && iterations > 0 {
        writeln!(out, "{:>16} never", "Next elapse:")?;
    }
    let in_utc = base.time_zone().to_fixed_offset().ok() == Some(Offset::UTC);
    let now = Timestamp::now();
    for (i, t) in next.iter().enumerate() {
        let label = if i == 0 {
            "Next elapse:".to_string()
        } else {
            format!("Iter. #{}:", i + 1)
        };
        writeln!(out, "{label:>16} {}", t.strftime("%a %Y-%m-%d %H:%M:%S %Z"))?;
        if !in_utc {
            let utc = t.with_time_zone(TimeZone::UTC);
            writeln!(
                out,
                "{:>16} {}",
                "(in UTC):",
                utc.strftime("%a %Y-%m-%d %H:%M:%S UTC")
            )?;
        }
        if from_now {
            writeln!(out, "{:>16} {}", "From now:", relative(now, t.timestamp()))?;
        }
    }
    Ok(())
}

/// systemd's `format_timestamp_relative()`: "3h 5min left", "2 days ago".
fn relative(now: Timestamp, then: Timestamp) -> String {
    const SEC: i64 = 1_000_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const WEEK: i64 = 7 * DAY;
    const MONTH: i64 = 2_629_800 * SEC;
    const YEAR: i64 = 31_557_600 * SEC;
    let diff = then.as_microsecond() - now.as_microsecond();
    let (d, suffix) = if diff >= 0 {
        (diff, "left")
    } else {
        (-diff, "ago")
    };
    let plural = |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match d {
        d if d >= YEAR => format!(
            "{} {} {suffix}",
            plural(d / YEAR, "year", "years"),
            plural(d % YEAR / MONTH, "month", "months")
        ),
        d if d >= MONTH => format!(
            "{} {} {suffix}",
            plural(d / MONTH, "month", "months"),
            plural(d % MONTH / DAY, "day", "days")
        ),
        d if d >= WEEK => format!(
            "{} {} {suffix}",
            plural(d / WEEK, "week", "weeks"),
            plural(d % WEEK / DAY, "day", "days")
        ),
        d if d >= 2 * DAY => format!("{} days {suffix}", d / DAY),
        d if d >= 25 * HOUR => format!("1 day {}h {suffix}", (d - DAY) / HOUR),
        d if d >= 6 * HOUR => format!("{}h {suffix}", d / HOUR),
        d if d >= HOUR => format!("{}h {}min {suffix}", d / HOUR, d % HOUR / MIN),
        d if d >= 5 * MIN => format!("{}min {suffix}", d / MIN),
        d if d >= MIN => format!("{}min {}s {suffix}", d / MIN, d % MIN / SEC),
        d if d >= SEC => format!("{}s {suffix}", d / SEC),
        d if d >= 1000 => format!("{}ms {suffix}", d / 1000),
        d if d > 0 => format!("{d}us {suffix}"),
        _ => "now".to_string(),
    }
}

/// Parses `--base-time`: RFC 3339 (`2024-01-15T00:00:00Z`), a jiff zoned
/// time (`2024-01-15T00:00[Europe/Berlin]`), `@EPOCH`, or systemd style
/// `YYYY-MM-DD HH:MM[:SS] [UTC|ZONE]` (local time without a zone). The
/// result is in the local zone `local`, which is where elapses of
/// expressions without a zone are computed.
pub(crate) fn parse_base_time(text: &str, local: &TimeZone) -> Result<Zoned, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "invalid base time `{text}` (expected e.g. `2024-01-15T00:00:00Z` or \
             `2024-01-15 00:00:00 [ZONE]`)"
        )
    };
    if let Some(secs) = text.strip_prefix('@') {
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let ts = Timestamp::from_second(secs).map_err(|_| bad())?;
        return Ok(ts.to_zoned(local.clone()));
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts.to_zoned(local.clone()));
    }
    if let Ok(zoned) = text.parse::<Zoned>() {
        return Ok(zoned.with_time_zone(local.clone()));
    }
    // `DATE TIME ZONE`, or `DATE TIME` in the local zone.
    let (civil, zone) = match text.rsplit_once(' ') {
        Some((head, last)) if head.contains(' ') => match last {
            "UTC" => (head, TimeZone::UTC),
            name => (head, TimeZone::get(name).map_err(|_| bad())?),
        },
        _ => (text, local.clone()),
    };
    let dt: DateTime = civil.replacen(' ', "T", 1).parse().map_err(|_| bad())?;
    let zoned = dt.to_zoned(zone).map_err(|_| bad())?;
    Ok(zoned.with_time_zone(local.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_like_systemd() {
        let now = Timestamp::from_second(1_000_000_000).unwrap();
        let at = |s: i64| Timestamp::from_second(1_000_000_000 + s).unwrap();
        assert_eq!(relative(now, at(90)), "1min 30s left");
        assert_eq!(relative(now, at(-3 * 3600 - 300)), "3h 5min ago");
        assert_eq!(relative(now, at(3 * 86_400)), "3 days left");
        assert_eq!(relative(now, at(0)), "now");
    }

    #[test]
    fn base_time_formats() {
        let utc = TimeZone::UTC;
        let want: Timestamp = "2024-01-15T00:00:00Z".parse().unwrap();
        for text in [
            "2024-01-15T00:00:00Z",
            "2024-01-15 00:00:00 UTC",
            "2024-01-15 00:00:00",
            "2024-01-15 01:00:00 Europe/Berlin",
            "@1705276800",
        ] {
            let got = parse_base_time(text, &utc).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(got.timestamp(), want, "{text}");
        }
        assert!(parse_base_time("yesterday-ish", &utc).is_err());
    }
}
