//! Converting crontab(5) schedules to systemd `OnCalendar=` expressions.
//!
//! Semantics are Vixie cron's (the cron of Debian and most Linux systems;
//! its parser is `load_entry()` and `get_range()` in entry.c), on what it
//! refuses as well as on what it accepts:
//!
//! * five fields: minute, hour, day of month, month, day of week;
//! * each a comma list of `*`, `N` or `N-M`, the last two with an optional
//!   `/STEP` (`*/15`, `1-30/7`); months and weekdays may also be given by
//!   their 3-letter English names, case-insensitively (`strcasecmp`), in
//!   ranges too (`mon-fri`), but not as a step; `N/STEP` without a range,
//!   backwards ranges (`5-3`) and a step of 0 are refused, as Vixie cron
//!   refuses them;
//! * day of week 0 and 7 are both Sunday;
//! * the day of month may be `$`, alone: the month's last day (Vixie cron
//!   4.1's extension; systemd writes it `~01`);
//! * if neither the day-of-month nor the day-of-week field starts with `*`,
//!   a day matches when EITHER matches (`0 0 1 * mon` runs on the 1st and
//!   on every Monday). systemd ANDs all fields, so that takes two
//!   `OnCalendar=` lines. If one of them starts with `*` (even `*/2`), both
//!   must match, as in systemd;
//! * `@yearly`/`@annually`, `@monthly`, `@weekly` (Sunday 00:00),
//!   `@daily`/`@midnight`, `@hourly`, in lowercase only: Vixie cron
//!   compares them with `strcmp`, so `@DAILY` is refused there and here.
//!
//! What a crontab line holds besides its schedule (a command, the user
//! field of /etc/crontab, a `CRON_TZ=` or `MAILTO=` setting, a seconds
//! field from Quartz-style schedulers) is refused with what it is and
//! where it goes in a spec.
//!
//! Deliberate differences: `@reboot` is an error (it is not a calendar
//! event; the timer's `on_boot` is the equivalent); schedules that can
//! never fire (`0 0 30 2 *`) are errors; a step larger than its range
//! (`*/60` in the minutes) is an error, because Vixie cron versions
//! disagree on it (3.0, Debian's, fires at the range's first value only;
//! 4.1 since its 2024 fix for CVE-2024-43688 fires at every value of the
//! range); text glued to a `*` (`*5`), which Vixie cron skips, is an
//! error. Vixie cron's special handling of jobs inside DST changes is not
//! reproduced: the timer follows systemd's rules there.

use std::fmt;

use super::calendar::CalendarSpec;

/// A cron schedule that cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    line: String,
    reason: String,
}

impl CronError {
    fn new(line: &str, reason: impl Into<String>) -> Self {
        CronError {
            line: line.to_string(),
            reason: reason.into(),
        }
    }

    /// The short human reason, without the cron line.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cron schedule `{}`: {}", self.line, self.reason)
    }
}

impl std::error::Error for CronError {}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DOW_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// systemd weekday names, indexed by cron's day of week (0 = Sunday).
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// The most days each month can have (February: in leap years).
const MONTH_DAYS: [u8; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// The five cron fields, in order.
#[derive(Debug, Clone, Copy)]
enum FieldKind {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl FieldKind {
    const ALL: [FieldKind; 5] = [
        FieldKind::Minute,
        FieldKind::Hour,
        FieldKind::DayOfMonth,
        FieldKind::Month,
        FieldKind::DayOfWeek,
    ];

    fn name(self) -> &'static str {
        match self {
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfMonth => "day of month",
            FieldKind::Month => "month",
            FieldKind::DayOfWeek => "day of week",
        }
    }

    /// Allowed values (7 is accepted as Sunday in the day of week).
    fn range(self) -> (u8, u8) {
        match self {
            FieldKind::Minute => (0, 59),
            FieldKind::Hour => (0, 23),
            FieldKind::DayOfMonth => (1, 31),
            FieldKind::Month => (1, 12),
            FieldKind::DayOfWeek => (0, 7),
        }
    }

    /// Names accepted instead of numbers, and the value of the first one.
    fn names(self) -> Option<(&'static [&'static str], u8)> {
        match self {
            FieldKind::Month => Some((&MONTH_NAMES, 1)),
            FieldKind::DayOfWeek => Some((&DOW_NAMES, 0)),
            _ => None,
        }
    }
}

/// One parsed field: the set of matching values.
#[derive(Debug, Clone)]
struct Field {
    /// Bit `n` set = value `n` matches.
    bits: u64,
    /// The field starts with `*`; decides between AND and OR of the two
    /// day fields, exactly like Vixie cron's `DOM_STAR`/`DOW_STAR` flags.
    star: bool,
    /// The day of month is `$`: the month's last day (`DOM_LAST`).
    last: bool,
}

impl Field {
    fn values(&self) -> impl Iterator<Item = u8> + '_ {
        (0..64u8).filter(|v| self.bits & (1 << v) != 0)
    }

    fn contains(&self, v: u8) -> bool {
        self.bits & (1 << v) != 0
    }

    fn is_full(&self, (lo, hi): (u8, u8)) -> bool {
        (lo..=hi).all(|v| self.contains(v))
    }
}

/// Converts a 5-field cron schedule or an `@` shorthand to one or two
/// `OnCalendar=` expressions (in systemd's normalized form) whose union
/// fires exactly when cron would.
pub fn cron_to_on_calendar(line: &str) -> Result<Vec<String>, CronError> {
    let err = |reason: String| CronError::new(line, reason);
    let words: Vec<&str> = line.split_whitespace().collect();
    if let Some(first) = words.first()
        && let Some((name, value)) = first.split_once('=')
    {
        return Err(err(setting_reason(name, value, &words[1..])));
    }
    let words: Vec<&str> = match words.first().and_then(|w| w.strip_prefix('@')) {
        Some(name) => {
            let fields = expand_shorthand(name).map_err(err)?;
            if words.len() > 1 {
                return Err(err(after_schedule_reason(1, &words[1..])));
            }
            fields.split(' ').collect()
        }
        None => words,
    };
    if words.len() != 5 {
        if words.len() > 5 {
            return Err(err(after_schedule_reason(5, &words[5..])));
        }
        return Err(err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            words.len()
        )));
    }
    let mut fields = Vec::with_capacity(5);
    for (kind, text) in FieldKind::ALL.into_iter().zip(&words) {
        fields.push(parse_field(kind, text).map_err(err)?);
    }
    let [minute, hour, dom, month, mut dow] = <[Field; 5]>::try_from(fields)
        .map_err(|_| err("internal error: wrong number of fields".into()))?;
    // 7 is another name for Sunday.
    if dow.contains(7) {
        dow.bits = (dow.bits | 1) & !(1 << 7);
    }

    let time = format!(
        "{}:{}:00",
        format_values(&hour, FieldKind::Hour.range()),
        format_values(&minute, FieldKind::Minute.range())
    );
    let months = format_values(&month, FieldKind::Month.range());
    let dom_all = !dom.last && dom.is_full(FieldKind::DayOfMonth.range());
    let dow_all = dow.is_full((0, 6));
    // `$` (the last day) is systemd's `~01`: the first day counted from
    // the month's end.
    let days = match dom.last {
        true => format!("*-{months}~01"),
        false => format!(
            "*-{months}-{}",
            format_values(&dom, FieldKind::DayOfMonth.range())
        ),
    };
    let weekdays = dow
        .values()
        .map(|d| SYSTEMD_DAYS[d as usize])
        .collect::<Vec<_>>()
        .join(",");
    let possible = dom.last || dom_possible(&dom, &month);

    let exprs = if dom.star || dow.star {
        // Both day fields must match: one expression, as in systemd.
        if !possible {
            return Err(err(impossible_reason(&dom, &month)));
        }
        let weekdays = if dow_all {
            String::new()
        } else {
            format!("{weekdays} ")
        };
        vec![format!("{weekdays}{days} {time}")]
    } else if dom_all || dow_all {
        // Either field matches every day, so every day matches.
        vec![format!("*-{months}-* {time}")]
    } else if !possible {
        // The day-of-month half can never fire (`30 2 mon`): only the
        // weekday half is left.
        vec![format!("{weekdays} *-{months}-* {time}")]
    } else {
        // Either day field may match: cron ORs them, systemd ANDs
        // everything, hence one expression per day field.
        vec![
            format!("{weekdays} *-{months}-* {time}"),
            format!("{days} {time}"),
        ]
    };
    exprs
        .iter()
        .map(|e| {
            CalendarSpec::parse(e)
                .map(|spec| spec.normalized())
                .map_err(|e| {
                    err(format!(
                        "internal error: produced an invalid expression: {e}"
                    ))
                })
        })
        .collect()
}

/// The `@` shorthands of Vixie cron, compared as it does: exactly, in
/// lowercase (`strcmp` in entry.c).
fn expand_shorthand(name: &str) -> Result<&'static str, String> {
    match name {
        "yearly" | "annually" => Ok("0 0 1 1 *"),
        "monthly" => Ok("0 0 1 * *"),
        "weekly" => Ok("0 0 * * 0"),
        "daily" | "midnight" => Ok("0 0 * * *"),
        "hourly" => Ok("0 * * * *"),
        "reboot" => Err(
            "`@reboot` runs once at boot, which is not a calendar event; \
             drop `cron` and start the job from the timer instead: \
             `timer: { on_boot: 1min }` (systemd's OnBootSec=)"
                .to_string(),
        ),
        _ if name.bytes().any(|b| b.is_ascii_uppercase())
            && expand_shorthand(&name.to_ascii_lowercase()).is_ok() =>
        {
            Err(format!(
                "cron's shorthands are lowercase (Vixie cron refuses `@{name}`); write `@{}`",
                name.to_ascii_lowercase()
            ))
        }
        _ => Err(format!(
            "unknown shorthand `@{name}` (known: @yearly, @annually, @monthly, @weekly, \
             @daily, @midnight, @hourly, @reboot)"
        )),
    }
}

/// Why a line starting with `NAME=value` is not a schedule: it is a
/// crontab setting (crontab(5), "environment settings"), which a spec
/// says elsewhere.
fn setting_reason(name: &str, value: &str, rest: &[&str]) -> String {
    let setting = format!("`{name}={value}` is a crontab setting, not part of a schedule");
    match name {
        // cronie's, not Vixie cron's; a calendar expression takes a zone.
        "CRON_TZ" | "TZ" => {
            let zone = value.trim_matches(['"', '\'']);
            let converted = cron_to_on_calendar(&rest.join(" "));
            match converted.as_deref() {
                Ok([expr]) if CalendarSpec::parse(&format!("{expr} {zone}")).is_ok() => format!(
                    "{setting}; for a schedule in that time zone, write `schedule: \"{expr} {zone}\"` \
                     instead of `cron`"
                ),
                _ => format!(
                    "{setting}; for a schedule in a time zone, write `schedule:` as a calendar \
                     expression ending in the zone (e.g. `*-*-* 00:15:00 {zone}`) instead of `cron`"
                ),
            }
        }
        "MAILTO" => format!(
            "{setting}; mail on failure is `notify: {{ mail: [ADDRESS] }}`, and `cron` takes \
             only the 5 schedule fields"
        ),
        _ => format!(
            "{setting}; set variables in `environment:`, and give `cron` only the 5 schedule fields"
        ),
    }
}

/// Why words after the schedule (`skip` words: 5, or 1 after an `@`
/// shorthand) do not belong: say what they are.
fn after_schedule_reason(skip: usize, rest: &[&str]) -> String {
    let first = rest[0];
    let ordinal = match skip {
        1 => "second word",
        _ => "sixth field",
    };
    // Quartz, Spring and AWS write seconds first (or a year last), in the
    // same characters as cron's fields.
    let fieldlike = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_digit() || b"*,/-?LW#".contains(&b))
    };
    if skip == 5 && rest.len() <= 2 && rest.iter().all(|w| fieldlike(w)) {
        return format!(
            "{} fields are another scheduler's syntax (Quartz, Spring), where the first field \
             is the seconds and a seventh the year; cron has 5 (minute hour day-of-month month \
             day-of-week): drop the seconds, or write `schedule:` as a calendar expression, \
             which has seconds (`*-*-* 00:15:30`), instead of `cron`",
            5 + rest.len()
        );
    }
    // /etc/crontab and /etc/cron.d have a user field before the command.
    let user = |w: &str| {
        w.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    };
    if rest.len() >= 2 && user(first) {
        return format!(
            "the {ordinal}, `{first}`, is the user field of /etc/crontab and /etc/cron.d, and the \
             rest is the command; `cron` takes only the schedule: run as that user with \
             `service: {{ user: {first} }}` and put the command in `command:`"
        );
    }
    format!(
        "the {ordinal}, `{}`, starts a command; `cron` takes only the schedule, and the command \
         goes in `command:`",
        crate::diag::shown(first)
    )
}

fn parse_field(kind: FieldKind, text: &str) -> Result<Field, String> {
    // Vixie cron 4.1 (entry.c, `DOM_LAST`): a lone `$` is the month's
    // last day; it takes no list, range or step.
    if matches!(kind, FieldKind::DayOfMonth) && text.contains('$') {
        if text != "$" {
            return Err(format!(
                "`$` (the last day of the month) must be the whole day-of-month field, not `{text}`"
            ));
        }
        return Ok(Field {
            bits: 0,
            star: false,
            last: true,
        });
    }
    let mut bits = 0u64;
    for item in text.split(',') {
        bits |= parse_item(kind, item)?;
    }
    Ok(Field {
        bits,
        star: text.starts_with('*'),
        last: false,
    })
}

/// One list item: `*`, `N`, `N-M`, `*/S` or `N-M/S`.
fn parse_item(kind: FieldKind, item: &str) -> Result<u64, String> {
    let field = kind.name();
    let (lo, hi) = kind.range();
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => {
            let step: u32 = match step.bytes().all(|b| b.is_ascii_digit()) {
                true => step.parse().unwrap_or(u32::MAX),
                false => {
                    return Err(format!(
                        "invalid step `{step}` in the {field} field (a number)"
                    ));
                }
            };
            if step == 0 {
                return Err(format!(
                    "step must not be zero in the {field} field (`{item}`)"
                ));
            }
            (range, Some(step))
        }
        None => (item, None),
    };
    // `*` is `lo-hi` for Vixie cron (0-7 for the day of week, 7 being
    // Sunday again); the bits stop at 6 (Saturday) for the day of week.
    let (first, last) = if range == "*" {
        (lo, hi)
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (parse_value(kind, a)?, parse_value(kind, b)?);
        if a > b {
            return Err(format!(
                "range `{range}` in the {field} field goes backwards (cron ranges cannot wrap)"
            ));
        }
        (a, b)
    } else {
        let v = parse_value(kind, range)?;
        if step.is_some() {
            // Vixie cron rejects `5/10`; other crons read it as `5-MAX/10`.
            return Err(format!(
                "`{item}` in the {field} field: a step needs a range or `*` (e.g. `{range}-{hi}/{}`)",
                step.unwrap_or(1)
            ));
        }
        (v, v)
    };
    let step = step.unwrap_or(1);
    // Vixie cron 4.1 sets the whole range when the step is larger than
    // the range's end (counted from the field's lowest value, entry.c's
    // `set_range()`), where 3.0 and Debian's fire at its first value only.
    if step > 1 && step > u32::from(last - lo) {
        return Err(format!(
            "step {step} in `{item}` is larger than the {field} range it steps through \
             ({first}-{last}), and crons disagree on what that means (Debian's runs at \
             {first} only, Vixie cron 4.1 at every value); write `{first}` to run once"
        ));
    }
    let last = match (kind, range) {
        (FieldKind::DayOfWeek, "*") => 6,
        _ => last,
    };
    Ok((first..=last)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v))
}

fn parse_value(kind: FieldKind, text: &str) -> Result<u8, String> {
    let field = kind.name();
    let (lo, hi) = kind.range();
    if let Some((names, first)) = kind.names()
        && let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text))
    {
        return Ok(first + i as u8);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        let names = match kind.names() {
            Some((names, _)) => format!(" or one of {}", names.join(",")),
            None => String::new(),
        };
        // `Monday`, `January`: cron compares names with its 3-letter ones
        // only.
        let short = match kind.names() {
            Some((names, _)) if text.len() > 3 && text.is_char_boundary(3) => names
                .iter()
                .find(|n| n.eq_ignore_ascii_case(&text[..3]))
                .map(|n| format!("; cron takes the first three letters: `{n}`"))
                .unwrap_or_default(),
            _ => String::new(),
        };
        return Err(format!(
            "invalid {field} `{text}` (expected a number {lo}-{hi}{names}){short}"
        ));
    }
    text.parse::<u8>()
        .ok()
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| format!("{field} `{text}` is out of range {lo}-{hi}"))
}

/// Can any selected day of month occur in any selected month?
fn dom_possible(dom: &Field, month: &Field) -> bool {
    month
        .values()
        .any(|m| dom.values().any(|d| d <= MONTH_DAYS[m as usize - 1]))
}

fn impossible_reason(dom: &Field, month: &Field) -> String {
    let days: Vec<String> = dom.values().map(|d| d.to_string()).collect();
    let months: Vec<String> = month
        .values()
        .map(|m| MONTH_NAMES[m as usize - 1].to_string())
        .collect();
    format!(
        "this schedule never fires: day {} does not exist in {}",
        days.join(","),
        months.join(",")
    )
}

/// A set of values as a systemd field: `*` when complete, otherwise a list
/// where every run of 3+ equally spaced values becomes `a..b/step` (`a..b`
/// for step 1).
fn format_values(field: &Field, (lo, hi): (u8, u8)) -> String {
    let values: Vec<u8> = field.values().filter(|v| (lo..=hi).contains(v)).collect();
    if values.len() == usize::from(hi - lo) + 1 {
        return "*".to_string();
    }
    let mut items = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let a = values[i];
        if i + 2 < values.len() {
            let step = values[i + 1] - a;
            let mut j = i + 1;
            while j + 1 < values.len() && values[j + 1] - values[j] == step {
                j += 1;
            }
            if j - i >= 2 {
                let b = values[j];
                // Always with an explicit end: systemd 252 mishandles an
                // open-ended repetition that overflows into the next larger
                // unit when that also rolls over the unit above it
                // (`*:0/7` skips 00:00 every midnight, `*-*-1/7` skips
                // January 1st), but with an end it moves on cleanly.
                items.push(match step {
                    1 => format!("{a}..{b}"),
                    _ => format!("{a}..{b}/{step}"),
                });
                i = j + 1;
                continue;
            }
        }
        items.push(a.to_string());
        i += 1;
    }
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(line: &str) -> Vec<String> {
        cron_to_on_calendar(line).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn converts_common_schedules() {
        assert_eq!(conv("*/15 * * * *"), ["*-*-* *:00..45/15:00"]);
        assert_eq!(conv("30 2 * * 1-5"), ["Mon..Fri *-*-* 02:30:00"]);
        assert_eq!(conv("@weekly"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(conv("0 0 * * 7"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(conv("1-30/7 * * * *"), ["*-*-* *:01..29/7:00"]);
        assert_eq!(conv("0 9 * JAN,jul mon"), ["Mon *-01,07-* 09:00:00"]);
    }

    #[test]
    fn the_last_day_of_the_month() {
        assert_eq!(conv("0 0 $ * *"), ["*-*~01 00:00:00"]);
        assert_eq!(conv("0 0 $ 2 *"), ["*-02~01 00:00:00"]);
        assert_eq!(
            conv("0 0 $ * fri"),
            ["Fri *-*-* 00:00:00", "*-*~01 00:00:00"]
        );
        assert_eq!(conv("0 0 $ * */2"), ["Tue,Thu,Sat,Sun *-*~01 00:00:00"]);
    }

    #[test]
    fn steps_as_vixie_cron_agrees_on() {
        // The step reaches the range's end: 0 and 59 in both versions.
        assert_eq!(conv("*/59 * * * *"), ["*-*-* *:00,59:00"]);
        // Larger than the range, not than the field: 50 only, everywhere.
        assert_eq!(conv("50-55/10 * * * *"), ["*-*-* *:50:00"]);
        assert_eq!(conv("0 0 * * */7"), ["Sun *-*-* 00:00:00"]);
    }

    #[test]
    fn ors_the_day_fields() {
        assert_eq!(
            conv("0 0 1 * mon"),
            ["Mon *-*-* 00:00:00", "*-*-01 00:00:00"]
        );
        // A `*` start means AND, even with a step.
        assert_eq!(conv("0 0 */2 * mon"), ["Mon *-*-01..31/2 00:00:00"]);
        // Feb 30 never happens; only the Mondays of February remain.
        assert_eq!(conv("0 0 30 2 mon"), ["Mon *-02-* 00:00:00"]);
    }

    #[test]
    fn rejects_clearly() {
        let e = cron_to_on_calendar("@reboot").unwrap_err();
        assert!(e.reason().contains("OnBootSec="), "{e}");
        let e = cron_to_on_calendar("0 0 30 2 *").unwrap_err();
        assert!(e.reason().contains("never fires"), "{e}");
        let e = cron_to_on_calendar("0 0 31 4,6 *").unwrap_err();
        assert!(e.reason().contains("never fires"), "{e}");
        for bad in [
            "60 * * * *",
            "* * * *",
            "5/10 * * * *",
            "* * * foo *",
            "10-5 * * * *",
            "*/60 * * * *",
            "0 0 */31 * *",
            "0 0 * * */8",
            "0-5/10 * * * *",
            "*5 * * * *",
            "0 0 $,15 * *",
            "@DAILY",
            "@daily /usr/bin/true",
        ] {
            assert!(cron_to_on_calendar(bad).is_err(), "{bad}");
        }
    }
}
