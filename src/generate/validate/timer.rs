//! The `.timer`: the schedule (a calendar expression, checked exactly as
//! systemd parses it, or a cron line converted to one) and the timer
//! options, with `defaults.timer` merged field by field.

use super::{Cx, layered};
use crate::diag::KeyPath;
use crate::generate::escape::UnitValue;
use crate::generate::spec::{Defaults, Job, Str, TimerSpec};
use crate::schedule::{CalendarSpec, cron_to_on_calendar};

/// A job's timer settings, validated.
pub(super) struct Timer {
    pub on_calendar: Vec<UnitValue>,
    pub persistent: Option<bool>,
    pub randomized_delay: Option<UnitValue>,
    pub accuracy: Option<UnitValue>,
}

impl Cx<'_> {
    pub(super) fn timer(
        &mut self,
        job: &Job,
        defaults: &Defaults,
        path: &KeyPath,
    ) -> Option<Timer> {
        let on_calendar = self.schedule(job, path);
        let defaults_path = KeyPath::root().key("defaults");
        let timer_layer = |field, get: fn(&TimerSpec) -> Option<&Str>| {
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
        let persistent = job
            .timer
            .as_ref()
            .and_then(|t| t.persistent)
            .or(defaults.timer.as_ref().and_then(|t| t.persistent));
        Some(Timer {
            on_calendar: on_calendar?,
            persistent,
            randomized_delay,
            accuracy,
        })
    }

    /// `OnCalendar=` values: the spec's calendar expression as written
    /// (after checking it parses exactly as systemd would), or the one or
    /// two expressions equivalent to a cron line.
    fn schedule(&mut self, job: &Job, path: &KeyPath) -> Option<Vec<UnitValue>> {
        let (p, exprs) = match (&job.schedule, &job.cron) {
            (Some(s), None) => {
                let p = path.key("schedule");
                let text = self.str(s, &p)?;
                let text = text.trim().to_owned();
                if let Err(e) = CalendarSpec::parse(&text) {
                    // A suggestion is the fix; without one, the grammar is.
                    // (`unitgen schedule` would print this same error.)
                    let hint = match e.reason().contains("(did you mean") {
                        true => "",
                        false => "; see \"Calendar Events\" in `man systemd.time`",
                    };
                    self.err(&p, format!("{e}{hint}"));
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
            (None, None) => {
                self.key_err(
                    path,
                    "missing `schedule` (a calendar expression such as `*-*-* 00:15:00`) or `cron`",
                );
                return None;
            }
        };
        exprs.iter().map(|e| self.unit_value(e, &p)).collect()
    }
}
