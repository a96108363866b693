//! restic-style snapshot retention (`restic forget --keep-*`), pure: no
//! I/O, no clock. [`decide`] says, for each snapshot, keep (and why) or
//! delete; the EBS step does the deleting.
//!
//! The rules, as restic applies them (internal/restic/snapshot_policy.go):
//! walk the snapshots newest first; each `keep_X: N` rule keeps a snapshot
//! when its period (hour, day, ISO week, month, year, all in UTC; for
//! `keep_last`, every snapshot is its own period) differs from the period of
//! the last snapshot that rule kept, until it has kept N. So each rule keeps
//! the newest snapshot of each of its N newest periods, and a snapshot that
//! any rule keeps is kept.
//!
//! On top of restic, the safety rules from DESIGN.md: only completed
//! snapshots are counted or deleted (a pending one may yet fail, an errored
//! one is not ours to judge), the newest completed one is always kept, and
//! an empty policy, which would delete everything, is refused.

use std::cmp::Ordering;
use std::fmt;

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;

pub use crate::contract::retention::{EmptyPolicy, RetentionPolicy};

/// A snapshot's state, as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// Any other state EC2 may report (`recoverable`, `recovering`, or one
    /// added later); never counted, never deleted.
    Other(String),
}

impl SnapshotState {
    pub fn parse(state: &str) -> SnapshotState {
        match state {
            "pending" => SnapshotState::Pending,
            "completed" => SnapshotState::Completed,
            "error" => SnapshotState::Error,
            other => SnapshotState::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for SnapshotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
            SnapshotState::Other(s) => s,
        })
    }
}

/// What retention needs to know about one snapshot. Ids are unique.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub start_time: Timestamp,
    pub state: SnapshotState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Kept, with every reason (`last 1`, `daily 2026-11-20`, `not
    /// completed (pending)`, ...); never empty.
    Keep(Vec<String>),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub snapshot: Candidate,
    pub action: Action,
}

impl Decision {
    pub fn is_delete(&self) -> bool {
        self.action == Action::Delete
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// The period's label, which is also its identity: two snapshots are
    /// in the same period exactly when their labels are equal. `ordinal`
    /// (1 = newest completed) makes every snapshot its own `last` period.
    fn label(self, time: DateTime, ordinal: usize) -> String {
        match self {
            Period::Last => format!("last {ordinal}"),
            Period::Hourly => format!("hourly {}", time.strftime("%Y-%m-%d %H")),
            Period::Daily => format!("daily {}", time.strftime("%Y-%m-%d")),
            Period::Weekly => {
                let week = time.date().iso_week_date();
                format!("weekly {:04}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => format!("monthly {}", time.strftime("%Y-%m")),
            Period::Yearly => format!("yearly {}", time.strftime("%Y")),
        }
    }
}

struct Rule {
    period: Period,
    remaining: u32,
    last: Option<String>,
}

/// Newest first; equal start times by id, so the result never depends on
/// the order EC2 listed them in.
fn newest_first(a: &Candidate, b: &Candidate) -> Ordering {
    b.start_time
        .cmp(&a.start_time)
        .then_with(|| a.id.cmp(&b.id))
}

/// One decision per snapshot, newest first (ties by id).
pub fn decide(
    snapshots: &[Candidate],
    policy: &RetentionPolicy,
) -> Result<Vec<Decision>, EmptyPolicy> {
    // The contract's rule, applied again where it matters most.
    policy.check()?;
    let mut rules: Vec<Rule> = [
        (Period::Last, policy.keep_last),
        (Period::Hourly, policy.keep_hourly),
        (Period::Daily, policy.keep_daily),
        (Period::Weekly, policy.keep_weekly),
        (Period::Monthly, policy.keep_monthly),
        (Period::Yearly, policy.keep_yearly),
    ]
    .into_iter()
    .filter_map(|(period, count)| {
        count.filter(|&n| n > 0).map(|remaining| Rule {
            period,
            remaining,
            last: None,
        })
    })
    .collect();

    let mut sorted: Vec<&Candidate> = snapshots.iter().collect();
    sorted.sort_by(|a, b| newest_first(a, b));

    let mut completed = 0;
    let decisions = sorted
        .into_iter()
        .map(|snapshot| {
            if snapshot.state != SnapshotState::Completed {
                let why = format!("not completed ({})", snapshot.state);
                return Decision {
                    snapshot: snapshot.clone(),
                    action: Action::Keep(vec![why]),
                };
            }
            completed += 1;
            let time = TimeZone::UTC.to_datetime(snapshot.start_time);
            let mut reasons = Vec::new();
            for rule in rules.iter_mut().filter(|r| r.remaining > 0) {
                let label = rule.period.label(time, completed);
                if rule.last.as_ref() != Some(&label) {
                    reasons.push(label.clone());
                    rule.last = Some(label);
                    rule.remaining -= 1;
                }
            }
            // Every non-empty policy keeps the newest completed snapshot
            // anyway (its first rule has no period yet); this makes the
            // invariant independent of that reasoning.
            if completed == 1 && reasons.is_empty() {
                reasons.push("newest completed".to_owned());
            }
            Decision {
                snapshot: snapshot.clone(),
                action: if reasons.is_empty() {
                    Action::Delete
                } else {
                    Action::Keep(reasons)
                },
            }
        })
        .collect();
    Ok(decisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: &str) -> Timestamp {
        time.parse().unwrap()
    }

    fn done(id: &str, time: &str) -> Candidate {
        Candidate {
            id: id.to_owned(),
            start_time: at(time),
            state: SnapshotState::Completed,
        }
    }

    fn with_state(id: &str, time: &str, state: SnapshotState) -> Candidate {
        Candidate {
            state,
            ..done(id, time)
        }
    }

    /// `(id, reasons)` per decision, an empty list meaning delete.
    fn outcome(snapshots: &[Candidate], policy: &RetentionPolicy) -> Vec<(String, Vec<String>)> {
        decide(snapshots, policy)
            .unwrap()
            .into_iter()
            .map(|d| {
                let reasons = match d.action {
                    Action::Keep(r) => {
                        assert!(!r.is_empty(), "{} kept without a reason", d.snapshot.id);
                        r
                    }
                    Action::Delete => vec![],
                };
                (d.snapshot.id, reasons)
            })
            .collect()
    }

    fn kept(snapshots: &[Candidate], policy: &RetentionPolicy) -> Vec<String> {
        outcome(snapshots, policy)
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(id, _)| id)
            .collect()
    }

    /// One snapshot a day at 00:15 UTC for `days` days up to 2026-11-20.
    fn daily(days: i64) -> Vec<Candidate> {
        let last = at("2026-11-20T00:15:00Z");
        (0..days)
            .map(|i| Candidate {
                id: format!("snap-{i:03}"),
                start_time: last - jiff::SignedDuration::from_hours(24 * i),
                state: SnapshotState::Completed,
            })
            .collect()
    }

    fn policy(f: impl FnOnce(&mut RetentionPolicy)) -> RetentionPolicy {
        let mut p = RetentionPolicy::default();
        f(&mut p);
        p
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let snaps = vec![
            done("a", "2026-11-18T00:00:00Z"),
            done("b", "2026-11-20T00:00:00Z"),
            done("c", "2026-11-19T00:00:00Z"),
            done("d", "2026-11-17T00:00:00Z"),
        ];
        let got = outcome(&snaps, &policy(|p| p.keep_last = Some(2)));
        assert_eq!(
            got,
            vec![
                ("b".into(), vec!["last 1".into()]),
                ("c".into(), vec!["last 2".into()]),
                ("a".into(), vec![]),
                ("d".into(), vec![]),
            ]
        );
    }

    #[test]
    fn each_rule_keeps_the_newest_of_each_period_and_reasons_add_up() {
        // restic's doc example, in spirit: daily snapshots, keep-daily 7,
        // keep-weekly 4, keep-monthly 3.
        let snaps = daily(120);
        let p = policy(|p| {
            p.keep_daily = Some(7);
            p.keep_weekly = Some(4);
            p.keep_monthly = Some(3);
        });
        let got = outcome(&snaps, &p);
        let reasons = |id: &str| got.iter().find(|(i, _)| i == id).unwrap().1.clone();
        // 2026-11-20 is a Friday of ISO week 47.
        assert_eq!(
            reasons("snap-000"),
            vec!["daily 2026-11-20", "weekly 2026-W47", "monthly 2026-11"]
        );
        assert_eq!(reasons("snap-006"), vec!["daily 2026-11-14"]);
        assert_eq!(reasons("snap-007"), Vec::<String>::new());
        // The newest of week 46 is Sunday 2026-11-15 (daily already has it).
        assert_eq!(
            reasons("snap-005"),
            vec!["daily 2026-11-15", "weekly 2026-W46"]
        );
        assert_eq!(reasons("snap-012"), vec!["weekly 2026-W45"]);
        assert_eq!(reasons("snap-019"), vec!["weekly 2026-W44"]);
        // The newest of October and September are their last days.
        assert_eq!(reasons("snap-020"), vec!["monthly 2026-10"]);
        assert_eq!(reasons("snap-051"), vec!["monthly 2026-09"]);
        assert_eq!(
            kept(&snaps, &p),
            [
                "snap-000", "snap-001", "snap-002", "snap-003", "snap-004", "snap-005", "snap-006",
                "snap-012", "snap-019", "snap-020", "snap-051"
            ]
        );
    }

    #[test]
    fn hourly_and_yearly_buckets_are_utc() {
        let snaps = vec![
            done("h1a", "2026-11-20T14:59:59Z"),
            done("h1b", "2026-11-20T14:00:00Z"),
            // 23:30 on Dec 31 in UTC-05:00 is already next year in UTC.
            done("y2027", "2026-12-31T23:30:00-05:00"),
            done("h0", "2026-11-20T13:59:59Z"),
            done("y2025", "2025-06-01T00:00:00Z"),
            done("y2025b", "2025-01-01T00:00:00Z"),
        ];
        let got = outcome(&snaps, &policy(|p| p.keep_hourly = Some(3)));
        assert_eq!(
            got,
            vec![
                ("y2027".into(), vec!["hourly 2027-01-01 04".into()]),
                ("h1a".into(), vec!["hourly 2026-11-20 14".into()]),
                ("h1b".into(), vec![]),
                ("h0".into(), vec!["hourly 2026-11-20 13".into()]),
                ("y2025".into(), vec![]),
                ("y2025b".into(), vec![]),
            ]
        );
        assert_eq!(
            kept(&snaps, &policy(|p| p.keep_yearly = Some(5))),
            ["y2027", "h1a", "y2025"]
        );
    }

    #[test]
    fn iso_weeks_cross_year_boundaries() {
        // 2026-12-31 (Thursday) is in 2026-W53; 2027-01-03 (Sunday) too;
        // 2027-01-04 (Monday) starts 2027-W01. 2024-12-30 is 2025-W01.
        let snaps = vec![
            done("mon", "2027-01-04T00:00:00Z"),
            done("sun", "2027-01-03T23:59:59Z"),
            done("thu", "2026-12-31T12:00:00Z"),
            done("old", "2024-12-30T00:00:00Z"),
        ];
        let got = outcome(&snaps, &policy(|p| p.keep_weekly = Some(10)));
        assert_eq!(
            got,
            vec![
                ("mon".into(), vec!["weekly 2027-W01".into()]),
                ("sun".into(), vec!["weekly 2026-W53".into()]),
                ("thu".into(), vec![]),
                ("old".into(), vec!["weekly 2025-W01".into()]),
            ]
        );
    }

    #[test]
    fn a_rule_stops_after_its_count_of_periods() {
        // Three snapshots a day for five days; keep_daily 2 keeps the newest
        // of the two newest days only.
        let mut snaps = Vec::new();
        for day in 16..=20 {
            for hour in ["01", "09", "17"] {
                snaps.push(done(
                    &format!("d{day}h{hour}"),
                    &format!("2026-11-{day}T{hour}:00:00Z"),
                ));
            }
        }
        assert_eq!(
            kept(&snaps, &policy(|p| p.keep_daily = Some(2))),
            ["d20h17", "d19h17"]
        );
        // keep_last and keep_daily together: the union.
        assert_eq!(
            kept(
                &snaps,
                &policy(|p| {
                    p.keep_last = Some(4);
                    p.keep_daily = Some(3);
                })
            ),
            ["d20h17", "d20h09", "d20h01", "d19h17", "d18h17"]
        );
        // A zero count is no rule at all.
        assert_eq!(
            kept(
                &snaps,
                &policy(|p| {
                    p.keep_last = Some(1);
                    p.keep_daily = Some(0);
                })
            ),
            ["d20h17"]
        );
    }

    #[test]
    fn equal_start_times_are_ordered_by_id() {
        let snaps = vec![
            done("snap-b", "2026-11-20T00:00:00Z"),
            done("snap-c", "2026-11-20T00:00:00Z"),
            done("snap-a", "2026-11-20T00:00:00Z"),
        ];
        let got = outcome(&snaps, &policy(|p| p.keep_daily = Some(1)));
        assert_eq!(
            got,
            vec![
                ("snap-a".into(), vec!["daily 2026-11-20".into()]),
                ("snap-b".into(), vec![]),
                ("snap-c".into(), vec![]),
            ]
        );
        assert_eq!(
            kept(&snaps, &policy(|p| p.keep_last = Some(2))),
            ["snap-a", "snap-b"]
        );
    }

    #[test]
    fn pending_and_errored_snapshots_are_never_counted_or_deleted() {
        let snaps = vec![
            with_state(
                "new-pending",
                "2026-11-20T03:00:00Z",
                SnapshotState::Pending,
            ),
            with_state("new-error", "2026-11-20T02:00:00Z", SnapshotState::Error),
            done("done-1", "2026-11-20T01:00:00Z"),
            done("done-2", "2026-11-19T01:00:00Z"),
            with_state(
                "old-pending",
                "2026-01-01T00:00:00Z",
                SnapshotState::Pending,
            ),
            with_state(
                "archived",
                "2025-01-01T00:00:00Z",
                SnapshotState::Other("recoverable".into()),
            ),
        ];
        let got = outcome(&snaps, &policy(|p| p.keep_last = Some(1)));
        assert_eq!(
            got,
            vec![
                ("new-pending".into(), vec!["not completed (pending)".into()]),
                ("new-error".into(), vec!["not completed (error)".into()]),
                ("done-1".into(), vec!["last 1".into()]),
                ("done-2".into(), vec![]),
                ("old-pending".into(), vec!["not completed (pending)".into()]),
                (
                    "archived".into(),
                    vec!["not completed (recoverable)".into()]
                ),
            ]
        );
    }

    #[test]
    fn all_pending_keeps_everything() {
        let snaps = vec![
            with_state("a", "2026-11-20T00:00:00Z", SnapshotState::Pending),
            with_state("b", "2026-11-19T00:00:00Z", SnapshotState::Pending),
        ];
        assert_eq!(kept(&snaps, &policy(|p| p.keep_last = Some(1))), ["a", "b"]);
        assert_eq!(
            kept(&[], &policy(|p| p.keep_last = Some(1))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let snaps = daily(3);
        assert_eq!(
            decide(&snaps, &RetentionPolicy::default()),
            Err(EmptyPolicy)
        );
        let zeros = policy(|p| {
            p.keep_last = Some(0);
            p.keep_hourly = Some(0);
            p.keep_daily = Some(0);
            p.keep_weekly = Some(0);
            p.keep_monthly = Some(0);
            p.keep_yearly = Some(0);
        });
        assert_eq!(decide(&snaps, &zeros), Err(EmptyPolicy));
        assert_eq!(decide(&[], &zeros), Err(EmptyPolicy));
        assert!(EmptyPolicy.to_string().contains("empty retention policy"));
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_policy(rng: &mut Rng) -> RetentionPolicy {
        let mut count = || match rng.below(3) {
            0 => None,
            _ => Some(rng.below(5) as u32),
        };
        RetentionPolicy {
            keep_last: count(),
            keep_hourly: count(),
            keep_daily: count(),
            keep_weekly: count(),
            keep_monthly: count(),
            keep_yearly: count(),
        }
    }

    fn random_snapshots(rng: &mut Rng) -> Vec<Candidate> {
        let base = at("2024-01-01T00:00:00Z").as_second();
        let n = rng.below(25);
        (0..n)
            .map(|i| {
                // Coarse times over three years, so that ties and shared
                // periods are common.
                let second = base + (rng.below(3 * 365 * 24 * 4) as i64) * 900;
                let state = match rng.below(10) {
                    0 | 1 => SnapshotState::Pending,
                    2 => SnapshotState::Error,
                    _ => SnapshotState::Completed,
                };
                Candidate {
                    id: format!("snap-{:02}", (i * 7) % 25),
                    start_time: Timestamp::from_second(second).unwrap(),
                    state,
                }
            })
            .collect()
    }

    #[test]
    fn invariants_hold_for_generated_inputs() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        let mut deleted_some = 0;
        for case in 0..5000 {
            let snaps = random_snapshots(&mut rng);
            let p = random_policy(&mut rng);
            let result = decide(&snaps, &p);
            if p.check().is_err() {
                assert_eq!(result, Err(EmptyPolicy), "case {case}");
                continue;
            }
            let decisions = result.unwrap();
            // kept + deleted = all, each exactly once.
            let mut ids: Vec<&str> = decisions.iter().map(|d| d.snapshot.id.as_str()).collect();
            let mut want: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
            ids.sort();
            want.sort();
            assert_eq!(ids, want, "case {case}");
            // Never a non-completed one.
            for d in &decisions {
                if d.is_delete() {
                    assert_eq!(d.snapshot.state, SnapshotState::Completed, "case {case}");
                }
            }
            // Never the newest completed.
            let newest = snaps
                .iter()
                .filter(|s| s.state == SnapshotState::Completed)
                .min_by(|a, b| newest_first(a, b));
            if let Some(newest) = newest {
                let d = decisions
                    .iter()
                    .find(|d| d.snapshot.id == newest.id)
                    .unwrap();
                assert!(!d.is_delete(), "case {case}: newest {} deleted", newest.id);
            }
            // keep_last N keeps exactly the N newest completed.
            let completed: Vec<&Decision> = decisions
                .iter()
                .filter(|d| d.snapshot.state == SnapshotState::Completed)
                .collect();
            let n = p.keep_last.unwrap_or(0) as usize;
            for (i, d) in completed.iter().enumerate() {
                let by_last = matches!(&d.action, Action::Keep(r) if r.iter().any(|r| r.starts_with("last ")));
                assert_eq!(by_last, i < n, "case {case}");
            }
            // No rule keeps more than its count.
            for (prefix, count) in [
                ("hourly ", p.keep_hourly),
                ("daily ", p.keep_daily),
                ("weekly ", p.keep_weekly),
                ("monthly ", p.keep_monthly),
                ("yearly ", p.keep_yearly),
            ] {
                let used = decisions
                    .iter()
                    .filter(|d| matches!(&d.action, Action::Keep(r) if r.iter().any(|r| r.starts_with(prefix))))
                    .count();
                assert!(used <= count.unwrap_or(0) as usize, "case {case}: {prefix}");
            }
            // The input order does not matter.
            let mut shuffled = snaps.clone();
            for i in (1..shuffled.len()).rev() {
                shuffled.swap(i, rng.below(i as u64 + 1) as usize);
            }
            assert_eq!(decide(&shuffled, &p).unwrap(), decisions, "case {case}");
            deleted_some += usize::from(decisions.iter().any(Decision::is_delete));
        }
        // The generator is not so kind that nothing is ever deleted.
        assert!(deleted_some > 500, "{deleted_some}");
    }
}
