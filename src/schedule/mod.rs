//! Timer schedules: systemd calendar expressions and cron conversion.
//!
//! * [`calendar`]: parse, normalize and evaluate `OnCalendar=` expressions
//!   exactly like systemd 252 does (systemd.time(7), "Calendar Events").
//! * [`cron`]: translate crontab schedules into equivalent `OnCalendar=`
//!   expressions.
//! * [`report`]: the `unitgen schedule` subcommand.

pub mod calendar;
pub mod cron;
pub mod report;

pub use calendar::{CalendarError, CalendarSpec};
pub use cron::{CronError, cron_to_on_calendar};
