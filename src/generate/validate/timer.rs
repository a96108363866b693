//! The `.timer`: what starts the job (a calendar expression, checked
//! exactly as systemd parses it, a cron line converted to one, and/or the
//! monotonic timers such as `OnBootSec=`) and the timer options, with
//! `defaults.timer` merged field by field.

use super::{Cx, layered};
use crate::diag::{KeyPath, shown};
use crate::generate::escape::UnitValue;
use crate::generate::model::Setting;
use crate::generate::spec::{Defaults, Job, Str, TimerSpec};
use crate::schedule::{CalendarSpec, cron_to_on_calendar};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// A job's timer settings, validated.
pub(super) struct Timer {
    pub on_calendar: Vec<UnitValue>,
    pub monotonic: Vec<Setting>,
    pub persistent: Option<bool>,
    pub randomized_delay: Option<UnitValue>,
    pub accuracy: Option<UnitValue>,
}

type TimerField = fn(&TimerSpec) -> Option<&Str>;

/// The monotonic timers (systemd.timer(5)), in its order: the spec's key,
/// the setting, and where the spec holds it.
const MONOTONIC: [(&str, &str, TimerField); 5] = [
    ("on_active", "OnActiveSec", |t| t.on_active.as_ref()),
    ("on_boot", "OnBootSec", |t| t.on_boot.as_ref()),
    ("on_startup", "OnStartupSec", |t| t.on_startup.as_ref()),
    ("on_unit_active", "OnUnitActiveSec", |t| {
        t.on_unit_active.as_ref()
    }),
    ("on_unit_inactive", "OnUnitInactiveSec", |t| {
        t.on_unit_inactive.as_ref()
    }),
];

/// The monotonic timers that count from the job's own last run: without
/// a first run from elsewhere they never elapse (systemd's timer.c skips
/// a base that was never set).
const AFTER_A_RUN: [&str; 2] = ["on_unit_active", "on_unit_inactive"];

impl Cx<'_> {
    pub(super) fn timer(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        path: &KeyPath,
    ) -> Option<Timer> {
        let on_calendar = self.schedule(job, path);
        let defaults_path = KeyPath::root().key("defaults");
        let timer_layer = |field, get: TimerField| {
            layered(
                job.timer.as_ref(),
                &path.key("timer"),
                defaults.timer.as_ref(),
                &defaults_path.key("timer"),
                field,
                get,
            )
        };
        let (value, p) = timer_layer("randomized_delay", |t| t.randomized_delay.as_ref());
        let randomized_delay = self.timespan(value, &p);
        let (value, p) = timer_layer("accuracy", |t| t.accuracy.as_ref());
        let accuracy = self.timespan(value, &p);

        let mut monotonic = Vec::new();
        // Which monotonic timers are given, and where.
        let mut given: Vec<(&str, KeyPath)> = Vec::new();
        let mut ok = true;
        for (field, key, get) in MONOTONIC {
            let (value, p) = timer_layer(field, get);
            let Some(value) = value else {
                continue;
            };
            given.push((field, p.clone()));
            match self.finite_timespan(value, &p) {
                Some(value) => monotonic.push(Setting::new(key, value)),
                None => ok = false,
            }
        }
        // `None`: a schedule was given but is not valid (reported).
        let on_calendar = on_calendar?;
        if on_calendar.is_empty() && given.is_empty() {
            self.key_err(
                path,
                "nothing starts this job: give `schedule` (a calendar expression such as \
                 `*-*-* 00:15:00`), `cron`, or a start in `timer` such as `on_boot: 15min`",
            );
            return None;
        }
        let first_run =
            !on_calendar.is_empty() || given.iter().any(|(field, _)| !AFTER_A_RUN.contains(field));
        if !first_run && let Some((field, p)) = given.first() {
            self.err(
                p,
                format!(
                    "`{field}` counts from the job's last run, but nothing starts a first one, \
                     so the timer would never fire; add `on_boot` (e.g. `on_boot: 15min`), \
                     `schedule` or `cron`"
                ),
            );
            return None;
        }

        // Persistent= applies to OnCalendar= only (systemd.timer(5)): on a
        // job without one it would do nothing. A job's own setting is a
        // mistake to report; one from `defaults` just does not apply.
        let own = job.timer.as_ref().and_then(|t| t.persistent);
        let persistent = match own {
            Some(_) if on_calendar.is_empty() => {
                self.err(
                    &path.key("timer").key("persistent"),
                    "`persistent` catches up on `schedule` or `cron` runs missed while the \
                     host was down (systemd's Persistent= applies to calendar timers only), \
                     and this job has neither; remove it",
                );
                return None;
            }
            Some(p) => Some(p),
            None if on_calendar.is_empty() => None,
            None => defaults.timer.as_ref().and_then(|t| t.persistent),
        };
        ok.then_some(Timer {
            on_calendar,
            monotonic,
            persistent,
            randomized_delay,
            accuracy,
        })
    }

    /// A time span that ends: a monotonic timer set to `infinity` never
    /// elapses.
    fn finite_timespan(&mut self, value: &Str, path: &KeyPath) -> Option<UnitValue> {
        let text = self.str(value, path)?;
        match crate::contract::timespan::parse(&text) {
            Ok(Some(_)) => self.unit_value(text.trim(), path),
            Ok(None) => {
                self.err(
                    path,
                    "`infinity` never comes, so the timer would never fire; give a time span \
                     such as `15min`",
                );
                None
            }
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    /// `OnCalendar=` values: the spec's calendar expression as written
    /// (after checking it parses exactly as systemd would), or the one or
    /// two expressions equivalent to a cron line; none when the job has
    /// neither. `None` after reporting a problem.
    fn schedule(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<UnitValue>> {
        let (p, exprs) = match (&job.schedule, &job.cron) {
            (Some(s), None) => {
                let p = path.key("schedule");
                let text = self.str(s, &p)?;
                let text = text.trim().to_owned();
                let spec = match CalendarSpec::parse(&text) {
                    Ok(spec) => spec,
                    Err(e) => {
                        // A suggestion is the fix; without one, the grammar
                        // is. (`unitgen schedule` would print this same
                        // error.)
                        let hint = match e.reason().contains("(did you mean") {
                            true => "",
                            false => "; see \"Calendar Events\" in `man systemd.time`",
                        };
                        self.err(&p, format!("{e}{hint}"));
                        return None;
                    }
                };
                if let Some(why) = never_fires(&spec, self.now) {
                    self.err(&p, format!("`{}` {why}", shown(&text)));
                    return None;
                }
                (p, vec![text])
            }
            (None, Some(c)) => {
                let p = path.key("cron");
                let text = self.str(c, &p)?;
                match cron_to_on_calendar(&text) {
                    Ok(exprs) => (p, exprs),
                    Err(e) => {
                        self.err(&p, e.to_string());
                        return None;
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.err(
                    &path.key("cron"),
                    "give either `schedule` or `cron`, not both",
                );
                return None;
            }
            // Monotonic timers may start the job instead (see `timer`).
            (None, None) => return Some(Vec::new()),
        };
        exprs.iter().map(|e| self.unit_value(e, &p)).collect()
    }
}

/// Why a calendar expression never fires, if it never does: no date
/// matches it (`*-02-30`), or every date it matches has passed (a one-off
/// `2001-01-01`). Either way the timer is dead, and a backup that never
/// runs must fail validation rather than pass CI. Cron lines need no such
/// check: their conversion refuses impossible days itself.
///
/// "Passed" is judged against the render time minus a day, in UTC: an
/// expression without a zone fires in the host's zone, which may be up to
/// 14 hours behind UTC, so a date is refused only once it is over
/// everywhere. This makes validation depend on the clock, on purpose: a
/// one-off date that validated before it came fails after, exactly when
/// the timer stops doing anything.
fn never_fires(spec: &CalendarSpec, now: Timestamp) -> Option<&'static str> {
    let since = |t: Timestamp| t.to_zoned(TimeZone::UTC);
    let recent = now
        .checked_sub(SignedDuration::from_hours(24))
        .unwrap_or(now);
    if spec.next_elapse(&since(recent)).is_some() {
        return None;
    }
    match spec.next_elapse(&since(Timestamp::UNIX_EPOCH)) {
        Some(_) => Some("never fires again: every date it matches has passed"),
        None => Some("never fires: no date matches it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(expr: &str, now: &str) -> Option<&'static str> {
        let spec = CalendarSpec::parse(expr).unwrap();
        never_fires(&spec, now.parse().unwrap())
    }

    #[test]
    fn schedules_that_never_fire() {
        let now = "2026-11-20T12:00:00Z";
        assert_eq!(why("daily", now), None);
        assert_eq!(why("*-02-29", now), None);
        assert_eq!(why("*-02-30", now), Some("never fires: no date matches it"));
        assert_eq!(
            why("2023-02-29", now),
            Some("never fires: no date matches it")
        );
        assert_eq!(
            why("2001-01-01", now),
            Some("never fires again: every date it matches has passed")
        );
        assert_eq!(why("2030-01-01 UTC", now), None);
        // A date is over only when it is over in every zone.
        assert_eq!(why("2026-11-20 00:00", now), None);
        assert_eq!(
            why("2026-11-19 00:00", now),
            Some("never fires again: every date it matches has passed")
        );
    }
}
