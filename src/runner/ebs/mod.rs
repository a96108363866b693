//! EBS snapshot step: create, wait, prune.
//!
//! [`run`] snapshots the job's volume (tagged at creation, so it is never
//! untagged), waits for it to complete, then applies the retention policy
//! to the snapshots this job made of this volume. The EC2 calls go through
//! [`Ec2Api`]: [`AwsEc2`] in production, moto in the integration tests, and
//! a fake in the unit tests below for what moto cannot show (pending
//! states, pagination, failures).
//!
//! Retention only ever touches a snapshot that carries all three of our
//! tags with exact values ([`TAG_MANAGED_BY`], [`TAG_JOB`], [`TAG_VOLUME`]):
//! the DescribeSnapshots filter asks for them, and every snapshot returned is
//! checked again here, since a filter is a request, not a guarantee.

mod api;
mod aws;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::contract::SnapshotJob;
pub use crate::contract::ebs::{
    MANAGED_BY, TAG_JOB, TAG_MANAGED_BY, TAG_RUN, TAG_VOLUME, ownership_tags,
};
use crate::contract::retention::RetentionPolicy;
use crate::runner::log;
use crate::runner::retention::{self, Action, Candidate, Decision, SnapshotState};
pub use api::{ApiError, Ec2Api, Page, Snapshot};
pub use aws::{AwsEc2, AwsKeys, aws_ec2};

#[derive(Debug, thiserror::Error)]
pub enum EbsError {
    /// The job cannot run as given; nothing was called. The runner exits 2.
    #[error("invalid ebs_snapshot job: {0}")]
    Config(String),
    /// An EC2 call failed; `what` names the operation and its subject.
    #[error("{what} failed: {error}")]
    Api { what: String, error: ApiError },
    #[error("snapshot {snapshot} of {volume} failed (state `error`): {message}")]
    SnapshotFailed {
        snapshot: String,
        volume: String,
        message: String,
    },
    #[error(
        "snapshot {snapshot} of {volume} was still {state} ({progress}) after {waited} (the job's `wait`)"
    )]
    WaitTimeout {
        snapshot: String,
        volume: String,
        state: SnapshotState,
        progress: String,
        waited: String,
    },
    /// Retention could not delete some snapshots; the rest were deleted.
    #[error("retention could not delete {} of the {} snapshots it chose: {}", failed.len(), failed.len() + deleted.len(), list_failures(failed))]
    DeleteFailed {
        failed: Vec<(String, ApiError)>,
        deleted: Vec<String>,
    },
}

fn list_failures(failed: &[(String, ApiError)]) -> String {
    failed
        .iter()
        .map(|(id, e)| format!("{id} ({e})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl EbsError {
    /// A problem with the job itself (exit 2), not with a run of it (exit 1).
    pub fn is_config(&self) -> bool {
        matches!(self, EbsError::Config(_))
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Create and delete nothing; report what retention would delete among
    /// the existing snapshots.
    pub dry_run: bool,
    /// How often to ask EC2 about a pending snapshot.
    pub poll_interval: Duration,
    /// This run's id, tagged on its snapshot ([`TAG_RUN`]).
    pub run_id: String,
    /// After a CreateSnapshot without an answer: when to look for this
    /// run's snapshot (EC2's listings lag), before sending it again.
    pub lookup_delays: Vec<Duration>,
    /// How many CreateSnapshot requests one run may send at most.
    pub create_attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            poll_interval: Duration::from_secs(15),
            run_id: new_run_id(),
            lookup_delays: [0, 2, 5, 10].map(Duration::from_secs).to_vec(),
            create_attempts: 3,
        }
    }
}

/// A run id: the time and the process, unique on one machine and, with
/// the job and volume tags beside it, across a cluster.
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The snapshot this run created; `None` in a dry run.
    pub created: Option<String>,
    /// Retention's decision on each of our snapshots, newest first; empty
    /// without `retention`.
    pub decisions: Vec<Decision>,
    /// The snapshots deleted; empty in a dry run.
    pub deleted: Vec<String>,
}

impl Outcome {
    /// What retention chose to delete (in a dry run: would have deleted).
    pub fn to_delete(&self) -> Vec<&str> {
        self.decisions
            .iter()
            .filter(|d| d.is_delete())
            .map(|d| d.snapshot.id.as_str())
            .collect()
    }
}

/// The job's settings the step needs, from the contract's accessors.
struct Plan<'a> {
    /// `Some(None)`: wait without limit (`infinity`).
    wait: Option<Option<Duration>>,
    retention: Option<&'a RetentionPolicy>,
}

/// The contract has judged the job before the runner got here; a job that
/// breaks a rule anyway (a caller that skipped the check) is refused, and
/// nothing is called.
fn plan<'a>(job: &'a SnapshotJob) -> Result<Plan<'a>, EbsError> {
    if let Some(v) = job.check().into_iter().next() {
        return Err(EbsError::Config(v.to_string()));
    }
    Ok(Plan {
        wait: job.wait_limit().map_err(EbsError::Config)?,
        retention: job.retention.as_ref(),
    })
}

/// Runs the step. Config problems are reported before any EC2 call.
pub async fn run<A: Ec2Api>(
    api: &A,
    job_name: &str,
    job: &SnapshotJob,
    opts: &Options,
) -> Result<Outcome, EbsError> {
    if job_name.is_empty() {
        return Err(EbsError::Config("the job name is empty".into()));
    }
    let plan = plan(job)?;
    let volume = job.volume_id.as_str();
    let description = format!("unitgen: {job_name} {volume}");
    // Ours last, so they win (the contract refuses `unitgen:` keys).
    let mut tags = job.tags.clone();
    tags.extend(ownership_tags(job_name, volume));
    let mut this_run = ownership_tags(job_name, volume);
    this_run.insert(TAG_RUN.to_owned(), opts.run_id.clone());
    tags.insert(TAG_RUN.to_owned(), opts.run_id.clone());

    if opts.dry_run {
        log::info(format_args!(
            "dry run: would snapshot {volume} as \"{description}\" with tags {}",
            show_tags(&tags)
        ));
        let Some(policy) = plan.retention else {
            return Ok(Outcome::default());
        };
        let (decisions, deleted) = prune(api, job_name, volume, policy, None, true).await?;
        return Ok(Outcome {
            created: None,
            decisions,
            deleted,
        });
    }

    let (created, unanswered) = create(api, volume, &description, &tags, &this_run, opts).await?;
    log::info(format_args!(
        "created snapshot {} of {volume} ({})",
        created.id,
        describe_state(&created)
    ));
    // Only a request that got no answer can have left a second snapshot.
    if unanswered {
        remove_duplicates(api, volume, &this_run, &created.id).await?;
    }
    let Some(limit) = plan.wait else {
        log::info(format_args!(
            "not waiting for {} to complete (no `wait`)",
            created.id
        ));
        return Ok(Outcome {
            created: Some(created.id),
            ..Outcome::default()
        });
    };
    let done = match wait_completed(api, created, volume, limit, opts.poll_interval).await {
        Ok(done) => done,
        Err(e) => {
            if plan.retention.is_some() {
                log::warn("retention skipped: the new snapshot did not complete");
            }
            return Err(e);
        }
    };
    // Listings lag: a duplicate invisible right after creating may show now.
    if unanswered {
        remove_duplicates(api, volume, &this_run, &done.id).await?;
    }
    let Some(policy) = plan.retention else {
        return Ok(Outcome {
            created: Some(done.id),
            ..Outcome::default()
        });
    };
    let (decisions, deleted) = prune(api, job_name, volume, policy, Some(&done), false).await?;
    Ok(Outcome {
        created: Some(done.id),
        decisions,
        deleted,
    })
}

/// CreateSnapshot, never blindly repeated: it takes no idempotency token,
/// so after a request that got no answer (which EC2 may have carried out)
/// this run's snapshot is looked up by its run tag, a few times since
/// listings lag, and only if it is not there is the request sent again.
/// Returns the snapshot and whether a request went unanswered.
async fn create<A: Ec2Api>(
    api: &A,
    volume: &str,
    description: &str,
    tags: &BTreeMap<String, String>,
    this_run: &BTreeMap<String, String>,
    opts: &Options,
) -> Result<(Snapshot, bool), EbsError> {
    let what = || format!("CreateSnapshot of {volume}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match api.create_snapshot(volume, description, tags).await {
            Ok(created) => return Ok((created, attempt > 1)),
            Err(error) if error.unanswered => error,
            Err(error) => {
                return Err(EbsError::Api {
                    what: what(),
                    error,
                });
            }
        };
        log::warn(format_args!(
            "{} got no answer ({error}); looking for this run's snapshot before sending it again",
            what()
        ));
        for delay in &opts.lookup_delays {
            tokio::time::sleep(*delay).await;
            match run_snapshots(api, this_run).await {
                Ok(found) if !found.is_empty() => {
                    let first = oldest(found);
                    log::info(format_args!(
                        "{} was carried out: found {} by its run tag",
                        what(),
                        first.id
                    ));
                    return Ok((first, true));
                }
                Ok(_) => {}
                // Without a lookup, sending it again could make a second
                // snapshot: stop here instead.
                Err(e) => {
                    log::warn(format_args!("looking for this run's snapshot failed: {e}"));
                    return Err(EbsError::Api {
                        what: what(),
                        error,
                    });
                }
            }
        }
        if attempt >= opts.create_attempts {
            return Err(EbsError::Api {
                what: what(),
                error,
            });
        }
    }
}

/// Snapshots carrying this run's tags.
async fn run_snapshots<A: Ec2Api>(
    api: &A,
    this_run: &BTreeMap<String, String>,
) -> Result<Vec<Snapshot>, ApiError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = api.list_snapshots(this_run, token.as_deref()).await?;
        out.extend(page.snapshots.into_iter().filter(|s| owned(s, this_run)));
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_ref() != Some(&next) => token = Some(next),
            _ => return Ok(out),
        }
    }
}

/// The first of a run's snapshots: the one created first, by start time
/// and then id, so two lookups agree.
fn oldest(mut found: Vec<Snapshot>) -> Snapshot {
    found.sort_by(|a, b| {
        a.start_time
            .cmp(&b.start_time)
            .then_with(|| a.id.cmp(&b.id))
    });
    found.remove(0)
}

/// A run leaves one snapshot: any other carrying its run tag (a request
/// delivered twice) is deleted, so retention never counts one restore
/// point twice.
async fn remove_duplicates<A: Ec2Api>(
    api: &A,
    volume: &str,
    this_run: &BTreeMap<String, String>,
    keep: &str,
) -> Result<(), EbsError> {
    let found = run_snapshots(api, this_run)
        .await
        .map_err(|error| EbsError::Api {
            what: format!("DescribeSnapshots of this run's snapshots of {volume}"),
            error,
        })?;
    for extra in found.iter().filter(|s| s.id != keep) {
        log::warn(format_args!(
            "deleting {}: a second snapshot of {volume} from this run (a request delivered twice)",
            extra.id
        ));
        api.delete_snapshot(&extra.id)
            .await
            .map_err(|error| EbsError::Api {
                what: format!("DeleteSnapshot of the duplicate {}", extra.id),
                error,
            })?;
    }
    Ok(())
}

fn show_tags(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_state(s: &Snapshot) -> String {
    match &s.progress {
        Some(p) if !p.is_empty() => format!("{}, {p}", s.state),
        _ => s.state.to_string(),
    }
}

/// `1h 2m 3s`, or milliseconds under a second (tests poll that fast).
fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = jiff::SignedDuration::from_secs(d.as_secs() as i64);
    format!("{secs:#}")
}

/// One progress line per poll.
fn progress_line(s: &Snapshot, volume: &str, waited: Duration) -> String {
    format!(
        "snapshot {} of {volume}: {} after {}",
        s.id,
        describe_state(s),
        human(waited)
    )
}

async fn wait_completed<A: Ec2Api>(
    api: &A,
    created: Snapshot,
    volume: &str,
    limit: Option<Duration>,
    poll: Duration,
) -> Result<Snapshot, EbsError> {
    let started = tokio::time::Instant::now();
    let mut current = created;
    loop {
        let waited = started.elapsed();
        match current.state {
            SnapshotState::Completed => {
                log::info(format_args!(
                    "snapshot {} of {volume} completed after {}",
                    current.id,
                    human(waited)
                ));
                return Ok(current);
            }
            SnapshotState::Error => {
                return Err(EbsError::SnapshotFailed {
                    snapshot: current.id,
                    volume: volume.to_owned(),
                    message: current
                        .state_message
                        .unwrap_or_else(|| "EC2 gave no reason".into()),
                });
            }
            _ => {}
        }
        if let Some(limit) = limit
            && waited >= limit
        {
            return Err(EbsError::WaitTimeout {
                progress: current.progress.unwrap_or_else(|| "no progress".into()),
                snapshot: current.id,
                volume: volume.to_owned(),
                state: current.state,
                waited: human(limit),
            });
        }
        // The last nap ends at the deadline, for one last look.
        let nap = limit.map_or(poll, |limit| poll.min(limit - waited));
        tokio::time::sleep(nap).await;
        match api.describe_snapshot(&current.id).await {
            Ok(s) => {
                current = s;
                if current.state != SnapshotState::Completed {
                    log::info(progress_line(&current, volume, started.elapsed()));
                }
            }
            // EC2 is eventually consistent: a snapshot just created may not
            // be visible to DescribeSnapshots yet.
            Err(e) if e.is_snapshot_not_found() => log::info(format_args!(
                "snapshot {} of {volume}: not visible yet after {}",
                current.id,
                human(started.elapsed())
            )),
            Err(error) => {
                return Err(EbsError::Api {
                    what: format!("DescribeSnapshots of {}", current.id),
                    error,
                });
            }
        }
    }
}

/// Whether `s` carries all three of our tags, with exactly our values.
fn owned(s: &Snapshot, expected: &BTreeMap<String, String>) -> bool {
    expected.iter().all(|(k, v)| s.tags.get(k) == Some(v))
}

/// Lists our snapshots, decides, and (unless `dry_run`) deletes. Returns
/// the decisions and the ids deleted.
async fn prune<A: Ec2Api>(
    api: &A,
    job_name: &str,
    volume: &str,
    policy: &RetentionPolicy,
    created: Option<&Snapshot>,
    dry_run: bool,
) -> Result<(Vec<Decision>, Vec<String>), EbsError> {
    let ours = ownership_tags(job_name, volume);
    let mut found: BTreeMap<String, Snapshot> = BTreeMap::new();
    let mut foreign = 0;
    let mut token: Option<String> = None;
    loop {
        let page = api
            .list_snapshots(&ours, token.as_deref())
            .await
            .map_err(|error| EbsError::Api {
                what: format!("DescribeSnapshots of job {job_name}'s snapshots of {volume}"),
                error,
            })?;
        for s in page.snapshots {
            if owned(&s, &ours) {
                found.insert(s.id.clone(), s);
            } else {
                foreign += 1;
            }
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_ref() == Some(&next) => {
                return Err(EbsError::Api {
                    what: format!("DescribeSnapshots of job {job_name}'s snapshots of {volume}"),
                    error: ApiError::other("EC2 returned the same NextToken twice"),
                });
            }
            Some(next) => token = Some(next),
            None => break,
        }
    }
    if foreign > 0 {
        log::warn(format_args!(
            "left alone {foreign} snapshots that EC2 listed without all of the tags {}",
            show_tags(&ours)
        ));
    }
    // The listing may lag behind (eventual consistency) or show a stale
    // state; what the wait saw is authoritative for our own snapshot.
    if let Some(c) = created {
        found.insert(c.id.clone(), c.clone());
    }
    let mut candidates = Vec::new();
    for s in found.values() {
        match s.start_time {
            Some(start_time) => candidates.push(Candidate {
                id: s.id.clone(),
                start_time,
                state: s.state.clone(),
            }),
            None => log::warn(format_args!("left alone {}: EC2 gave no start time", s.id)),
        }
    }
    let mut decisions =
        retention::decide(&candidates, policy).map_err(|e| EbsError::Config(e.to_string()))?;
    // Never delete what this run just made, even if a clock put an older
    // snapshot after it.
    if let Some(c) = created {
        for d in decisions.iter_mut().filter(|d| d.snapshot.id == c.id) {
            if d.is_delete() {
                d.action = Action::Keep(vec!["created by this run".into()]);
            }
        }
    }

    let prefix = if dry_run { "dry run: " } else { "" };
    for d in &decisions {
        let when = d.snapshot.start_time;
        match &d.action {
            Action::Keep(reasons) => log::info(format_args!(
                "{prefix}keep {} ({when}): {}",
                d.snapshot.id,
                reasons.join(", ")
            )),
            Action::Delete if dry_run => log::info(format_args!(
                "dry run: would delete {} ({when})",
                d.snapshot.id
            )),
            Action::Delete => {}
        }
    }
    let kept = decisions.iter().filter(|d| !d.is_delete()).count();
    let doomed: Vec<&Decision> = decisions.iter().filter(|d| d.is_delete()).collect();
    if dry_run {
        log::info(format_args!(
            "dry run: would keep {kept} and delete {} of {} snapshots; deleted nothing",
            doomed.len(),
            decisions.len()
        ));
        return Ok((decisions, Vec::new()));
    }

    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for d in doomed {
        let id = &d.snapshot.id;
        match api.delete_snapshot(id).await {
            Ok(()) => {
                log::info(format_args!(
                    "deleted snapshot {id} ({})",
                    d.snapshot.start_time
                ));
                deleted.push(id.clone());
            }
            Err(e) => {
                log::warn(format_args!("could not delete snapshot {id}: {e}"));
                failed.push((id.clone(), e));
            }
        }
    }
    log::info(format_args!(
        "retention kept {kept} and deleted {} of {} snapshots",
        deleted.len(),
        decisions.len()
    ));
    if !failed.is_empty() {
        return Err(EbsError::DeleteFailed { failed, deleted });
    }
    Ok((decisions, deleted))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use jiff::Timestamp;

    use super::*;
    use crate::contract::aws::Credentials;

    /// An in-memory EC2 for what moto cannot show: snapshots that stay
    /// pending, fail or vanish for a while, pages, failing deletes, and a
    /// tag filter that does not filter.
    #[derive(Default)]
    struct Fake(Mutex<State>);

    #[derive(Default)]
    struct State {
        snapshots: BTreeMap<String, Stored>,
        /// Every call, in order: `create VOL`, `describe ID`, `list TOKEN`,
        /// `delete ID`.
        calls: Vec<String>,
        created: u32,
        /// The next created snapshot: pending for this many describes ...
        pending_polls: u32,
        /// ... then `error` instead of `completed`.
        ends_in_error: bool,
        /// Describes answering InvalidSnapshot.NotFound first.
        invisible_polls: u32,
        /// A listing leaves out what was created (eventual consistency).
        list_hides_created: bool,
        /// Snapshots per page; 0 is all in one.
        page_size: usize,
        /// Return every snapshot, whatever the filter says.
        ignore_filter: bool,
        /// Always answer this NextToken.
        stuck_token: Option<String>,
        delete_errors: BTreeMap<String, ApiError>,
        create_error: Option<ApiError>,
        /// CreateSnapshot does the work but its answer is lost this many
        /// times (a timeout after EC2 acted).
        lost_answers: u32,
        /// This many listings leave out what was created (a lagging index).
        lagging_lists: u32,
    }

    struct Stored {
        snapshot: Snapshot,
        polls_left: u32,
        invisible_left: u32,
        ends_in_error: bool,
        created_here: bool,
    }

    const VOL: &str = "vol-0123abcd";
    const JOB: &str = "wallet";
    /// The fake's clock: snapshots created by `run` start here.
    const NOW: &str = "2026-11-20T00:15:00Z";

    impl Fake {
        fn with(f: impl FnOnce(&mut State)) -> Fake {
            let fake = Fake::default();
            f(&mut fake.0.lock().unwrap());
            fake
        }

        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        fn calls(&self) -> Vec<String> {
            self.state().calls.clone()
        }

        fn count(&self, prefix: &str) -> usize {
            self.calls()
                .iter()
                .filter(|c| c.starts_with(prefix))
                .count()
        }

        fn ids(&self) -> Vec<String> {
            self.state().snapshots.keys().cloned().collect()
        }
    }

    impl State {
        fn add(
            &mut self,
            id: &str,
            start: &str,
            state: SnapshotState,
            tags: &BTreeMap<String, String>,
        ) {
            let snapshot = Snapshot {
                id: id.to_owned(),
                volume_id: Some(VOL.to_owned()),
                state,
                progress: Some("100%".into()),
                start_time: Some(start.parse().unwrap()),
                state_message: None,
                tags: tags.clone(),
            };
            self.snapshots.insert(
                id.to_owned(),
                Stored {
                    snapshot,
                    polls_left: 0,
                    invisible_left: 0,
                    ends_in_error: false,
                    created_here: false,
                },
            );
        }

        /// `n` completed snapshots of ours, one a day before NOW, ids
        /// `snap-old-01` (newest) to `snap-old-NN`.
        fn add_ours(&mut self, n: u32) {
            let now: Timestamp = NOW.parse().unwrap();
            for i in 1..=n {
                let start = now - jiff::SignedDuration::from_hours(24 * i64::from(i));
                self.add(
                    &format!("snap-old-{i:02}"),
                    &start.to_string(),
                    SnapshotState::Completed,
                    &ownership_tags(JOB, VOL),
                );
            }
        }
    }

    impl Ec2Api for Fake {
        async fn create_snapshot(
            &self,
            volume_id: &str,
            description: &str,
            tags: &BTreeMap<String, String>,
        ) -> Result<Snapshot, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("create {volume_id} {description}"));
            if let Some(e) = st.create_error.clone() {
                return Err(e);
            }
            let lost = st.lost_answers > 0;
            st.lost_answers = st.lost_answers.saturating_sub(1);
            st.created += 1;
            let id = format!("snap-new-{}", st.created);
            let done = st.pending_polls == 0 && !st.ends_in_error;
            let snapshot = Snapshot {
                id: id.clone(),
                volume_id: Some(volume_id.to_owned()),
                state: if done {
                    SnapshotState::Completed
                } else {
                    SnapshotState::Pending
                },
                progress: Some(if done { "100%" } else { "0%" }.into()),
                start_time: Some(NOW.parse().unwrap()),
                state_message: None,
                tags: tags.clone(),
            };
            let stored = Stored {
                snapshot: snapshot.clone(),
                polls_left: st.pending_polls,
                invisible_left: st.invisible_polls,
                ends_in_error: st.ends_in_error,
                created_here: true,
            };
            st.snapshots.insert(id, stored);
            if lost {
                return Err(ApiError::unanswered(
                    "no answer within the step's `request_timeout`",
                ));
            }
            Ok(snapshot)
        }

        async fn describe_snapshot(&self, snapshot_id: &str) -> Result<Snapshot, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("describe {snapshot_id}"));
            let Some(s) = st.snapshots.get_mut(snapshot_id) else {
                return Err(ApiError::new(
                    "InvalidSnapshot.NotFound",
                    "no such snapshot",
                ));
            };
            if s.invisible_left > 0 {
                s.invisible_left -= 1;
                return Err(ApiError::new(
                    "InvalidSnapshot.NotFound",
                    format!("The snapshot '{snapshot_id}' does not exist."),
                ));
            }
            if s.polls_left > 0 {
                s.polls_left -= 1;
                s.snapshot.progress = Some(format!("{}%", 90 / (s.polls_left + 1)));
            } else if s.ends_in_error {
                s.snapshot.state = SnapshotState::Error;
                s.snapshot.state_message = Some("volume went away".into());
            } else {
                s.snapshot.state = SnapshotState::Completed;
                s.snapshot.progress = Some("100%".into());
            }
            Ok(s.snapshot.clone())
        }

        async fn list_snapshots(
            &self,
            tags: &BTreeMap<String, String>,
            next_token: Option<&str>,
        ) -> Result<Page, ApiError> {
            let mut st = self.state();
            st.calls.push(format!("list {}", next_token.unwrap_or("-")));
            let lagging = st.lagging_lists > 0;
            st.lagging_lists = st.lagging_lists.saturating_sub(1);
            let matching: Vec<Snapshot> = st
                .snapshots
                .values()
                .filter(|s| !((st.list_hides_created || lagging) && s.created_here))
                .filter(|s| st.ignore_filter || owned(&s.snapshot, tags))
                .map(|s| s.snapshot.clone())
                .collect();
            if let Some(token) = &st.stuck_token {
                return Ok(Page {
                    snapshots: matching,
                    next_token: Some(token.clone()),
                });
            }
            let start: usize = next_token.map_or(0, |t| t.parse().unwrap());
            let size = if st.page_size == 0 {
                usize::MAX
            } else {
                st.page_size
            };
            let end = start.saturating_add(size).min(matching.len());
            Ok(Page {
                snapshots: matching[start..end].to_vec(),
                next_token: (end < matching.len()).then(|| end.to_string()),
            })
        }

        async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), ApiError> {
            let mut st = self.state();
            st.calls.push(format!("delete {snapshot_id}"));
            if let Some(e) = st.delete_errors.get(snapshot_id) {
                return Err(e.clone());
            }
            st.snapshots
                .remove(snapshot_id)
                .map(|_| ())
                .ok_or_else(|| ApiError::new("InvalidSnapshot.NotFound", "gone"))
        }
    }

    fn job(wait: Option<&str>, retention: Option<RetentionPolicy>) -> SnapshotJob {
        SnapshotJob {
            volume_id: VOL.into(),
            region: "us-east-1".into(),
            credentials: Credentials::DefaultChain,
            tags: BTreeMap::from([("app".to_owned(), "bitcoind".to_owned())]),
            wait: wait.map(str::to_owned),
            retention,
            endpoint: None,
            request_timeout: None,
        }
    }

    fn keep_last(n: u32) -> Option<RetentionPolicy> {
        Some(RetentionPolicy {
            keep_last: Some(n),
            ..RetentionPolicy::default()
        })
    }

    fn fast() -> Options {
        Options {
            dry_run: false,
            poll_interval: Duration::from_millis(2),
            run_id: "run-1".into(),
            lookup_delays: vec![Duration::ZERO, Duration::from_millis(1)],
            create_attempts: 3,
        }
    }

    fn dry() -> Options {
        Options {
            dry_run: true,
            ..fast()
        }
    }

    fn kept_ids(outcome: &Outcome) -> Vec<&str> {
        outcome
            .decisions
            .iter()
            .filter(|d| !d.is_delete())
            .map(|d| d.snapshot.id.as_str())
            .collect()
    }

    #[tokio::test]
    async fn creates_a_tagged_snapshot_and_polls_until_completed() {
        let fake = Fake::with(|s| s.pending_polls = 3);
        let j = job(Some("10min"), None);
        let mut forged = j.clone();
        forged.tags.insert(TAG_JOB.into(), "forged".into());
        // The contract refuses `unitgen:` tag keys, here as in render.
        let err = run(&fake, JOB, &forged, &fast()).await.unwrap_err();
        assert!(
            err.is_config() && err.to_string().contains("reserved"),
            "{err}"
        );
        assert!(fake.calls().is_empty());
        let out = run(&fake, JOB, &j, &fast()).await.unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert!(out.decisions.is_empty());
        // Pending on three describes, completed on the fourth.
        assert_eq!(fake.count("describe snap-new-1"), 4);
        assert_eq!(
            fake.calls()[0],
            format!("create {VOL} unitgen: {JOB} {VOL}")
        );
        let st = fake.state();
        let tags = &st.snapshots["snap-new-1"].snapshot.tags;
        assert_eq!(
            show_tags(tags),
            format!(
                "app=bitcoind, unitgen:job={JOB}, unitgen:managed-by=unitgen, unitgen:run=run-1, unitgen:volume={VOL}"
            )
        );
    }

    #[test]
    fn progress_lines_show_state_percent_and_time() {
        let s = Snapshot {
            id: "snap-1".into(),
            volume_id: None,
            state: SnapshotState::Pending,
            progress: Some("42%".into()),
            start_time: None,
            state_message: None,
            tags: BTreeMap::new(),
        };
        assert_eq!(
            progress_line(&s, VOL, Duration::from_secs(90)),
            "snapshot snap-1 of vol-0123abcd: pending, 42% after 1m 30s"
        );
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(3723)), "1h 2m 3s");
    }

    #[tokio::test]
    async fn a_snapshot_not_yet_visible_is_polled_again() {
        let fake = Fake::with(|s| {
            s.invisible_polls = 2;
            s.pending_polls = 1;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert_eq!(fake.count("describe"), 4);
    }

    #[tokio::test]
    async fn an_errored_snapshot_fails_the_step_and_skips_retention() {
        let fake = Fake::with(|s| {
            s.add_ours(3);
            s.pending_polls = 1;
            s.ends_in_error = true;
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        assert_eq!(
            err.to_string(),
            "snapshot snap-new-1 of vol-0123abcd failed (state `error`): volume went away"
        );
        assert_eq!(fake.count("list"), 0);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn a_wait_timeout_names_the_snapshot_and_the_limit() {
        let fake = Fake::with(|s| {
            s.add_ours(3);
            s.pending_polls = u32::MAX;
        });
        let started = std::time::Instant::now();
        let err = run(
            &fake,
            JOB,
            &job(Some("300ms"), keep_last(1)),
            &Options {
                poll_interval: Duration::from_millis(200),
                ..fast()
            },
        )
        .await
        .unwrap_err();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(matches!(err, EbsError::WaitTimeout { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("snapshot snap-new-1 of vol-0123abcd was still pending ("),
            "{text}"
        );
        assert!(text.ends_with("after 300ms (the job's `wait`)"), "{text}");
        // 200 + 100 ms: the last nap ends at the deadline, for a last look.
        assert_eq!(fake.count("describe"), 2);
        assert_eq!(fake.count("list"), 0);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn every_page_is_read_and_the_newest_completed_kept() {
        let fake = Fake::with(|s| {
            s.add_ours(7);
            s.page_size = 2;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(2)), &fast())
            .await
            .unwrap();
        // 8 snapshots in pages of 2: tokens -, 2, 4, 6.
        assert_eq!(
            fake.calls()
                .iter()
                .filter(|c| c.starts_with("list"))
                .collect::<Vec<_>>(),
            ["list -", "list 2", "list 4", "list 6"]
        );
        assert_eq!(out.decisions.len(), 8);
        assert_eq!(kept_ids(&out), ["snap-new-1", "snap-old-01"]);
        assert_eq!(fake.ids(), ["snap-new-1", "snap-old-01"]);
        assert_eq!(out.deleted.len(), 6);
    }

    #[tokio::test]
    async fn a_dry_run_over_pages_keeps_the_newest_even_on_the_last_page() {
        // Ids sort the newest snapshot onto the last page.
        let fake = Fake::with(|s| {
            s.page_size = 2;
            let tags = ownership_tags(JOB, VOL);
            s.add(
                "snap-a",
                "2026-11-01T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-b",
                "2026-11-02T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-c",
                "2026-11-03T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
            s.add(
                "snap-d",
                "2026-11-04T00:00:00Z",
                SnapshotState::Pending,
                &tags,
            );
            s.add(
                "snap-e",
                "2026-11-05T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &dry())
            .await
            .unwrap();
        assert_eq!(out.created, None);
        assert!(out.deleted.is_empty());
        assert_eq!(out.to_delete(), ["snap-c", "snap-b", "snap-a"]);
        assert_eq!(kept_ids(&out), ["snap-e", "snap-d"]);
        // Nothing created, nothing deleted; only listed.
        assert_eq!(fake.calls(), ["list -", "list 2", "list 4"]);
        assert_eq!(fake.ids().len(), 5);
    }

    #[tokio::test]
    async fn a_failed_delete_does_not_stop_the_others_but_fails_the_step() {
        let fake = Fake::with(|s| {
            s.add_ours(5);
            s.delete_errors.insert(
                "snap-old-03".into(),
                ApiError::new(
                    "InvalidSnapshot.InUse",
                    "The snapshot snap-old-03 is currently in use by ami-1",
                ),
            );
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(2)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        assert_eq!(
            err.to_string(),
            "retention could not delete 1 of the 4 snapshots it chose: snap-old-03 \
             (InvalidSnapshot.InUse: The snapshot snap-old-03 is currently in use by ami-1)"
        );
        let EbsError::DeleteFailed { deleted, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(deleted, &["snap-old-02", "snap-old-04", "snap-old-05"]);
        // The one after the failure was still tried and deleted.
        assert_eq!(fake.ids(), ["snap-new-1", "snap-old-01", "snap-old-03"]);
    }

    #[tokio::test]
    async fn snapshots_a_wrong_filter_returns_are_left_alone() {
        let fake = Fake::with(|s| {
            s.ignore_filter = true;
            s.add_ours(2);
            let old = "2020-01-01T00:00:00Z";
            let mut tags = ownership_tags(JOB, VOL);
            tags.remove(TAG_MANAGED_BY);
            s.add("foreign-no-owner", old, SnapshotState::Completed, &tags);
            s.add(
                "foreign-other-volume",
                old,
                SnapshotState::Completed,
                &ownership_tags(JOB, "vol-other"),
            );
            s.add(
                "foreign-other-job",
                old,
                SnapshotState::Completed,
                &ownership_tags("other", VOL),
            );
            s.add(
                "foreign-job-prefix",
                old,
                SnapshotState::Completed,
                &ownership_tags("wallet2", VOL),
            );
            let mut tags = ownership_tags(JOB, VOL);
            tags.remove(TAG_JOB);
            s.add("foreign-no-job", old, SnapshotState::Completed, &tags);
            let mut tags = ownership_tags(JOB, VOL);
            tags.insert(TAG_MANAGED_BY.into(), "someone-else".into());
            s.add("foreign-other-owner", old, SnapshotState::Completed, &tags);
            s.add(
                "foreign-untagged",
                old,
                SnapshotState::Completed,
                &BTreeMap::new(),
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.deleted, ["snap-old-01", "snap-old-02"]);
        assert_eq!(out.decisions.len(), 3);
        let left = fake.ids();
        assert_eq!(
            left.iter().filter(|id| id.starts_with("foreign-")).count(),
            7
        );
        assert!(left.contains(&"snap-new-1".to_owned()));
    }

    #[tokio::test]
    async fn pending_and_errored_snapshots_are_never_deleted() {
        let fake = Fake::with(|s| {
            let tags = ownership_tags(JOB, VOL);
            s.add(
                "old-pending",
                "2020-01-01T00:00:00Z",
                SnapshotState::Pending,
                &tags,
            );
            s.add(
                "old-error",
                "2020-01-02T00:00:00Z",
                SnapshotState::Error,
                &tags,
            );
            s.add(
                "old-done",
                "2020-01-03T00:00:00Z",
                SnapshotState::Completed,
                &tags,
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(out.deleted, ["old-done"]);
        assert_eq!(fake.ids(), ["old-error", "old-pending", "snap-new-1"]);
    }

    #[tokio::test]
    async fn the_new_snapshot_counts_even_when_the_listing_lags() {
        let fake = Fake::with(|s| {
            s.add_ours(2);
            s.list_hides_created = true;
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert_eq!(kept_ids(&out), ["snap-new-1"]);
        assert_eq!(fake.ids(), ["snap-new-1"]);
    }

    #[tokio::test]
    async fn the_new_snapshot_is_kept_even_behind_a_future_dated_one() {
        let fake = Fake::with(|s| {
            s.add(
                "snap-future",
                "2030-01-01T00:00:00Z",
                SnapshotState::Completed,
                &ownership_tags(JOB, VOL),
            );
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap();
        assert!(out.deleted.is_empty());
        assert_eq!(
            out.decisions[1].action,
            Action::Keep(vec!["created by this run".into()])
        );
    }

    #[tokio::test]
    async fn a_repeated_next_token_stops_the_listing() {
        let fake = Fake::with(|s| {
            s.add_ours(2);
            s.stuck_token = Some("again".into());
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("the same NextToken twice"),
            "{err}"
        );
        assert_eq!(fake.count("list"), 2);
        assert_eq!(fake.count("delete"), 0);
    }

    #[tokio::test]
    async fn a_lost_answer_is_looked_up_and_never_sent_blindly_again() {
        // EC2 made the snapshot but the answer never came: one snapshot.
        let fake = Fake::with(|s| s.lost_answers = 1);
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(3)), &fast())
            .await
            .unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert_eq!(fake.count("create "), 1, "{:?}", fake.calls());
        assert_eq!(fake.ids(), ["snap-new-1"]);
        let tags = fake.state().snapshots["snap-new-1"].snapshot.tags.clone();
        assert_eq!(tags.get(TAG_RUN).map(String::as_str), Some("run-1"));
    }

    #[tokio::test]
    async fn a_second_snapshot_of_one_run_is_removed_and_never_counted() {
        // The first answer is lost and the listing lags through every
        // lookup, so the request is sent again; once the listing catches
        // up, the run's first snapshot shows as a duplicate.
        let fake = Fake::with(|s| {
            s.lost_answers = 1;
            s.lagging_lists = 2;
            s.add_ours(4);
        });
        let out = run(&fake, JOB, &job(Some("1min"), keep_last(3)), &fast())
            .await
            .unwrap();
        assert_eq!(fake.count("create "), 2, "{:?}", fake.calls());
        assert_eq!(out.created.as_deref(), Some("snap-new-2"));
        assert!(fake.calls().contains(&"delete snap-new-1".to_owned()));
        let ids = fake.ids();
        assert!(!ids.contains(&"snap-new-1".to_owned()), "{ids:?}");
        // keep_last 3 counts real restore points: the new one and two old.
        assert_eq!(kept_ids(&out), ["snap-new-2", "snap-old-01", "snap-old-02"]);
    }

    #[tokio::test]
    async fn requests_that_never_get_an_answer_fail_after_the_attempts() {
        let fake = Fake::with(|s| {
            s.lost_answers = 10;
            s.lagging_lists = 100;
        });
        let err = run(&fake, JOB, &job(Some("1min"), None), &fast())
            .await
            .unwrap_err();
        assert_eq!(fake.count("create "), 3);
        assert!(!err.is_config());
        assert!(
            err.to_string()
                .starts_with("CreateSnapshot of vol-0123abcd failed: no answer"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_wait_it_returns_after_creating() {
        let fake = Fake::with(|s| s.pending_polls = 5);
        let out = run(&fake, JOB, &job(None, None), &fast()).await.unwrap();
        assert_eq!(out.created.as_deref(), Some("snap-new-1"));
        assert_eq!(fake.calls().len(), 1);
    }

    #[tokio::test]
    async fn a_dry_run_without_retention_calls_nothing() {
        let fake = Fake::default();
        let out = run(&fake, JOB, &job(Some("1min"), None), &dry())
            .await
            .unwrap();
        assert_eq!(out, Outcome::default());
        assert!(fake.calls().is_empty());
    }

    #[tokio::test]
    async fn config_errors_are_reported_before_any_call() {
        let empty = Some(RetentionPolicy {
            keep_last: Some(0),
            ..RetentionPolicy::default()
        });
        let mut no_volume = job(Some("1min"), None);
        no_volume.volume_id = String::new();
        let cases = [
            (JOB, job(None, keep_last(3)), "needs `wait`"),
            (
                JOB,
                job(Some("1min"), empty.clone()),
                "empty retention policy",
            ),
            (JOB, job(None, empty), "empty retention policy"),
            (
                JOB,
                job(Some("10 parsecs"), None),
                "`wait`: `10 parsecs` is not a time span",
            ),
            ("", job(Some("1min"), None), "the job name is empty"),
            (JOB, no_volume, "is not an EBS volume id"),
        ];
        for (name, j, want) in cases {
            for opts in [fast(), dry()] {
                let fake = Fake::default();
                let err = run(&fake, name, &j, &opts).await.unwrap_err();
                assert!(err.is_config(), "{err:?}");
                assert!(
                    err.to_string().starts_with("invalid ebs_snapshot job: "),
                    "{err}"
                );
                assert!(err.to_string().contains(want), "{err} lacks {want}");
                assert!(fake.calls().is_empty(), "{want}: {:?}", fake.calls());
            }
        }
    }

    #[tokio::test]
    async fn auth_failures_hint_at_the_credentials() {
        let fake = Fake::with(|s| {
            s.create_error = Some(ApiError::new(
                "AuthFailure",
                "AWS was not able to validate the provided access credentials",
            ));
        });
        let err = run(&fake, JOB, &job(Some("1min"), keep_last(1)), &fast())
            .await
            .unwrap_err();
        assert!(!err.is_config());
        let text = err.to_string();
        assert!(
            text.starts_with(
                "CreateSnapshot of vol-0123abcd failed: AuthFailure: AWS was not able to validate \
                 the provided access credentials (check the AWS credentials: the etcd keys"
            ),
            "{text}"
        );
        assert!(ApiError::new("UnauthorizedOperation", "no").is_auth());
        assert!(ApiError::new("InvalidClientTokenId", "no").is_auth());
        let other = ApiError::new(
            "InvalidVolume.NotFound",
            "The volume 'vol-0123abcd' does not exist.",
        );
        assert!(!other.is_auth());
        assert_eq!(
            other.to_string(),
            "InvalidVolume.NotFound: The volume 'vol-0123abcd' does not exist."
        );
    }
}
