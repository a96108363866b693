//! `unitgen watch`: keep rendered units in step with etcd and the spec.
//!
//! Renders once, then watches exactly the etcd keys the spec references
//! (one watch per key on a single stream) and polls the spec file. Changes
//! are applied to the in-memory values as they arrive; after a quiet
//! `--debounce` window the spec is rendered again, only units whose bytes
//! changed are rewritten (atomically), their paths are printed, and
//! `--exec` runs once with them. A lost connection is re-established with
//! backoff and the watch resumes after the last revision seen; a compacted
//! revision means a full re-read. A render that fails (a key was deleted)
//! is reported and the last good units stay.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{EventType, WatchStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, sleep_until};

use crate::cmd::cli::WatchArgs;
use crate::cmd::deploy::Deployer;
use crate::cmd::report::report;
use crate::cmd::settings::{ValueSource, ValuesFile, runtime};
use crate::deploy::Scope;
use crate::error::Error;
use crate::etcd::{Lookup, Need};
use crate::generate::render::UnitFile;
use crate::generate::values::Values;
use crate::generate::{Loaded, load};

const SPEC_POLL: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a deleted secret's key is looked for again. Secret keys are
/// watched for deletions only (a put event would carry the value), so
/// their return is found by asking whether they exist (count-only).
const SECRET_RECHECK: Duration = Duration::from_secs(2);
/// A steady stream of changes still renders at least this often.
const MAX_DELAY_FACTOR: u32 = 10;

pub fn run(args: &WatchArgs) -> Result<(), Error> {
    // Standard input can be read once; a watch reads the spec again each
    // time it changes.
    if crate::generate::source::is_stdin(&args.spec.spec) {
        return Err(Error::Usage(
            "watch re-reads the spec whenever it changes, so it needs a file, not `-f -` \
             (standard input); save the spec to a file and pass its path"
                .into(),
        ));
    }
    let debounce = match crate::contract::timespan::parse(&args.debounce) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err(Error::Usage(
                "--debounce must be a finite time span such as `200ms`".into(),
            ));
        }
        Err(e) => return Err(Error::Usage(format!("--debounce {e}"))),
    };
    let deployer = match args.apply {
        true => Some(Deployer::new(&args.target, &args.wait, &args.output)?),
        false => None,
    };
    runtime()?.block_on(async {
        let mut sigint = signal(SignalKind::interrupt()).map_err(Error::io("SIGINT handler"))?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(Error::io("SIGTERM handler"))?;
        // A boot-time service may start before etcd: the first render
        // waits for it, and a signal still ends the wait.
        let mut watcher = tokio::select! {
            w = Watcher::start(args, debounce, deployer) => w?,
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        };
        watcher.run(sigint, sigterm).await
    })
}

fn note(message: impl std::fmt::Display) {
    crate::cmd::report::note("watch", message);
}

struct Watcher<'a> {
    args: &'a WatchArgs,
    debounce: Duration,
    loaded: Loaded,
    /// What the spec (and a values file) held when last loaded.
    inputs: Vec<Option<Vec<u8>>>,
    source: ValueSource,
    values: Values,
    /// The last etcd revision whose changes are applied.
    revision: i64,
    /// The keys the open watch covers, and how (secrets: deletions only).
    watched: BTreeMap<String, Need>,
    /// Fetch every value again before the next render (spec change,
    /// compaction).
    reread: bool,
    /// `--apply`: how to deploy each batch.
    deployer: Option<Deployer>,
    /// Deploy everything with the next batch (the first one, or after a
    /// full apply failed), else `pending` plus the batch's own jobs.
    deploy_all: bool,
    /// Jobs and removed units whose apply failed, tried again next batch.
    pending: Scope,
    /// An error was reported since the last good render: the next one
    /// says that all is well again.
    failing: bool,
}

impl<'a> Watcher<'a> {
    /// The first render. etcd that does not answer yet is waited for,
    /// with backoff; any other failure ends the command.
    async fn start(
        args: &'a WatchArgs,
        debounce: Duration,
        deployer: Option<Deployer>,
    ) -> Result<Watcher<'a>, Error> {
        let loaded = load(&args.spec.spec)?;
        let mut source = ValueSource::for_spec(&args.spec, &loaded)?;
        let mut backoff = MIN_BACKOFF;
        let mut waiting = false;
        let values = loop {
            match source.fetch(loaded.refs()).await {
                Ok(values) => break values,
                Err(Error::Etcd(e)) if e.is_unavailable() => {
                    if !waiting {
                        report(&Error::Etcd(e));
                        note("retrying with backoff until etcd answers");
                        waiting = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        };
        if waiting {
            note("etcd answers; rendering");
        }
        let mut watcher = Watcher {
            args,
            debounce,
            loaded,
            inputs: Vec::new(),
            source,
            values,
            revision: 0,
            watched: BTreeMap::new(),
            reread: false,
            deployer,
            deploy_all: true,
            pending: Scope::default(),
            failing: false,
        };
        if let ValueSource::Etcd(e) = &watcher.source {
            watcher.revision = e.revision();
        }
        watcher.inputs = watcher.read_inputs();
        let files = watcher.loaded.render(&watcher.values)?;
        watcher.publish(&files).await?;
        note(watcher.what_is_watched());
        Ok(watcher)
    }

    /// What the watch follows, said once when it starts: the spec, the
    /// values file, or how many etcd keys under which prefixes.
    fn what_is_watched(&self) -> String {
        let spec = self.args.spec.spec.display().to_string();
        let needs = self.loaded.refs().needs();
        let values = self.args.spec.values.as_ref().map(|v| v.display());
        if needs.is_empty() {
            return match values {
                Some(v) => format!("no etcd references: watching {spec} and {v} only"),
                None => format!("no etcd references: watching the spec only ({spec})"),
            };
        }
        let keys = format!(
            "{} etcd key(s) under {}",
            needs.len(),
            prefixes(needs.keys().map(String::as_str))
        );
        match (&self.source, values) {
            (ValueSource::File(..), Some(v)) => {
                format!("watching {spec} and the values file {v}, which stands in for {keys}")
            }
            (ValueSource::Etcd(e), _) => match e.origin() {
                crate::generate::values::Origin::Etcd(endpoints) => {
                    format!("watching {spec} and {keys} at {endpoints}")
                }
                _ => format!("watching {spec} and {keys}"),
            },
            _ => format!("watching {spec}; {keys} have no source"),
        }
    }

    /// Which inputs differ between two reads, for the log line.
    fn changed_inputs(&self, now: &[Option<Vec<u8>>]) -> String {
        let paths = self.input_paths();
        let changed: Vec<String> = paths
            .iter()
            .enumerate()
            .filter(|(i, _)| self.inputs.get(*i) != now.get(*i))
            .map(|(i, p)| match i {
                0 => p.display().to_string(),
                _ => format!("the values file {}", p.display()),
            })
            .collect();
        match changed.is_empty() {
            true => self.args.spec.spec.display().to_string(),
            false => changed.join(" and "),
        }
    }

    fn input_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.args.spec.spec.clone()];
        paths.extend(self.args.spec.values.clone());
        paths
    }

    fn read_inputs(&self) -> Vec<Option<Vec<u8>>> {
        self.input_paths()
            .iter()
            .map(|p| std::fs::read(p).ok())
            .collect()
    }

    /// Renders from the values in memory, fetching them all again first
    /// when asked to. The outer error is etcd's; the inner one the spec's.
    async fn render(&mut self) -> Result<Result<Vec<UnitFile>, Error>, Error> {
        if self.reread {
            self.values = self.source.fetch(self.loaded.refs()).await?;
            if let ValueSource::Etcd(e) = &self.source {
                self.revision = e.revision();
            }
            self.reread = false;
        }
        Ok(self.loaded.render(&self.values))
    }

    /// Writes what changed, prints it, runs the hook: rewritten units are
    /// its arguments (`"$@"`, files that exist); removed units are only in
    /// `UNITGEN_REMOVED`, so a hook never mistakes one for the other.
    async fn publish(&mut self, files: &[UnitFile]) -> Result<(), Error> {
        let written = crate::generate::output::write(&self.args.output, files)?;
        let mut out = std::io::stdout().lock();
        for path in &written.changed {
            let _ = writeln!(out, "{}", path.display());
        }
        let _ = out.flush();
        drop(out);
        for path in &written.removed {
            note(format!("removed {}", path.display()));
        }
        let lines = |paths: &[PathBuf]| {
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.deploy(files, &written).await;
        let nothing = written.changed.is_empty() && written.removed.is_empty();
        if let (Some(cmd), false) = (&self.args.exec, nothing) {
            let status = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(cmd)
                .arg("unitgen-watch")
                .args(&written.changed)
                .env("UNITGEN_CHANGED", lines(&written.changed))
                .env("UNITGEN_REMOVED", lines(&written.removed))
                .status()
                .await;
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => note(format!("--exec failed ({s})")),
                Err(e) => note(format!("--exec could not start: {e}")),
            }
        }
        Ok(())
    }

    /// `--apply`: deploys the first render in full, then each batch's jobs
    /// (and what failed before). A failure is reported; the watch goes on.
    async fn deploy(&mut self, files: &[UnitFile], written: &crate::generate::output::Written) {
        let Some(deployer) = self.deployer.clone() else {
            return;
        };
        let scope = if self.deploy_all {
            None
        } else {
            let mut scope = crate::cmd::deploy::scope(written, files);
            scope.jobs.extend(self.pending.jobs.iter().cloned());
            scope.removed.extend(self.pending.removed.iter().cloned());
            if scope.jobs.is_empty() && scope.removed.is_empty() {
                return;
            }
            Some(scope)
        };
        let target = match deployer.target_for(&self.loaded) {
            Ok(t) => t,
            Err(e) => {
                report(&e);
                return;
            }
        };
        let targets = crate::cmd::deploy::job_targets(&self.loaded);
        let files = files.to_vec();
        let task_scope = scope.clone();
        // fleetctl and systemctl are waited for synchronously, off the
        // runtime's thread. A signal meanwhile asks the apply to stop at
        // its next step (putting back a timer it stopped); the watch loop
        // sees the same signal afterwards and ends.
        let mut sigint = signal(SignalKind::interrupt()).ok();
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut task = tokio::task::spawn_blocking(move || {
            let mut say = |line: &str| note(line);
            let mut warn = |line: &str| note(line);
            deployer.deploy(
                target,
                &files,
                &targets,
                crate::cmd::deploy::Deploy::Written(task_scope.as_ref()),
                &mut say,
                &mut warn,
            )
        });
        let recv = |s: &mut Option<tokio::signal::unix::Signal>| {
            let s = s.take();
            async move {
                match s {
                    Some(mut s) => s.recv().await,
                    None => std::future::pending().await,
                }
            }
        };
        let result = tokio::select! {
            r = &mut task => r,
            _ = recv(&mut sigint) => { crate::deploy::request_stop(); task.await }
            _ = recv(&mut sigterm) => { crate::deploy::request_stop(); task.await }
        };
        match result {
            Ok(Ok(())) => {
                self.deploy_all = false;
                self.pending = Scope::default();
            }
            Ok(Err(e)) => {
                report(&e);
                note(
                    "the apply failed; the watch goes on and applies these jobs again with the next change",
                );
                if let Some(scope) = scope {
                    self.pending = scope;
                }
            }
            Err(e) => {
                note(format!("the apply stopped: {e}"));
                if let Some(scope) = scope {
                    self.pending = scope;
                }
            }
        }
    }

    /// Renders again after changes; a failure keeps the last good units.
    async fn rerender(&mut self) -> Result<(), Error> {
        match self.render().await {
            Err(e) => Err(e),
            Ok(Err(e)) => {
                report(&e);
                note(format!(
                    "keeping the last good units in {}",
                    self.args.output.display()
                ));
                self.failing = true;
                Ok(())
            }
            Ok(Ok(files)) => {
                match self.publish(&files).await {
                    Err(e) => {
                        report(&e);
                        self.failing = true;
                    }
                    Ok(()) if self.failing => {
                        self.failing = false;
                        note(format!(
                            "ok again, {} unit(s) in {}",
                            files.len(),
                            self.args.output.display()
                        ));
                    }
                    Ok(()) => {}
                }
                Ok(())
            }
        }
    }

    /// Opens one watch stream covering every referenced key, resuming
    /// after the last revision applied.
    async fn open(&mut self) -> Result<Option<WatchStream>, Error> {
        let keys = self.loaded.refs().needs().clone();
        let ValueSource::Etcd(source) = &mut self.source else {
            return Ok(None);
        };
        self.watched = keys.clone();
        if keys.is_empty() {
            return Ok(None);
        }
        let etcd = source.connect().await?;
        // A secret's key (Need::Exists) is watched for deletions only: a
        // put event would carry its value into this process.
        let keys: Vec<(&str, Need)> = keys.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        Ok(Some(etcd.watch(&keys, self.revision + 1).await?))
    }

    /// Secret keys the last render found missing (deleted).
    fn missing_secrets(&self) -> Vec<String> {
        self.watched
            .iter()
            .filter(|(k, n)| **n == Need::Exists && self.values.lookup(k) == Some(&Lookup::Missing))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Asks whether deleted secret keys are back (count-only: their value
    /// is never read); returns whether one is.
    async fn recheck_secrets(&mut self) -> Result<bool, Error> {
        let missing = self.missing_secrets();
        let ValueSource::Etcd(source) = &mut self.source else {
            return Ok(false);
        };
        if missing.is_empty() {
            return Ok(false);
        }
        let etcd = source.connect().await?;
        let mut back = false;
        for key in missing {
            if etcd.lookup(&key, Need::Exists).await?.0 == Lookup::Exists {
                back |= self.values.apply(&key, Some(""));
            }
        }
        Ok(back)
    }

    fn is_etcd(&self) -> bool {
        matches!(self.source, ValueSource::Etcd(_))
    }

    /// Applies a watch response; returns whether a referenced value changed.
    fn apply(&mut self, response: &etcd_client::WatchResponse) -> Applied {
        if response.compact_revision() > 0 {
            return Applied::Compacted;
        }
        if response.canceled() {
            return Applied::Lost(format!("watch canceled: {}", response.cancel_reason()));
        }
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = std::str::from_utf8(kv.key()) else {
                continue;
            };
            self.revision = self.revision.max(kv.mod_revision());
            let value = match event.event_type() {
                EventType::Delete => None,
                EventType::Put => match std::str::from_utf8(kv.value()) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        note(format!("etcd key `{key}` does not hold UTF-8 text"));
                        None
                    }
                },
            };
            changed |= self.values.apply(key, value);
        }
        if changed {
            Applied::Changed
        } else {
            Applied::Nothing
        }
    }

    async fn run(
        &mut self,
        mut sigint: tokio::signal::unix::Signal,
        mut sigterm: tokio::signal::unix::Signal,
    ) -> Result<(), Error> {
        let mut stream: Option<WatchStream> = None;
        let mut backoff = MIN_BACKOFF;
        let mut retry_at: Option<Instant> = self.is_etcd().then(Instant::now);
        let mut lost = false;
        // When to render: after the debounce window, but no later than
        // MAX_DELAY_FACTOR windows after the first pending change.
        let mut render_at: Option<Instant> = None;
        let mut first_pending: Option<Instant> = None;
        let mut recheck = tokio::time::interval(SECRET_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(SPEC_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = || Instant::now() + Duration::from_secs(86_400);

        loop {
            if stream.is_none() && retry_at.is_some_and(|t| t <= Instant::now()) {
                match self.open().await {
                    Ok(s) => {
                        if lost {
                            note("etcd is back; resuming the watch");
                            lost = false;
                        }
                        if s.is_some() {
                            note(format!(
                                "watching {} etcd key(s) from revision {}",
                                self.watched.len(),
                                self.revision + 1
                            ));
                        }
                        stream = s;
                        retry_at = None;
                        backoff = MIN_BACKOFF;
                    }
                    Err(e) => {
                        if !lost {
                            report(&e);
                            note("retrying with backoff; the units stay as they are");
                            lost = true;
                        }
                        if let ValueSource::Etcd(s) = &mut self.source {
                            s.disconnect();
                        }
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }

            let debounce = self.debounce;
            let schedule = |render_at: &mut Option<Instant>, first: &mut Option<Instant>| {
                let now = Instant::now();
                let first = *first.get_or_insert(now);
                let latest = first + debounce * MAX_DELAY_FACTOR;
                *render_at = Some((now + debounce).min(latest));
            };

            tokio::select! {
                _ = sigint.recv() => return Ok(()),
                _ = sigterm.recv() => return Ok(()),
                _ = poll.tick() => {
                    let inputs = self.read_inputs();
                    if inputs != self.inputs {
                        let what = self.changed_inputs(&inputs);
                        self.inputs = inputs;
                        match load(&self.args.spec.spec) {
                            Ok(loaded) => {
                                note(format!("{what} changed; rendering again"));
                                self.loaded = loaded;
                                if let Some(path) = &self.args.spec.values {
                                    match ValuesFile::read(path) {
                                        Ok(file) => self.source = ValueSource::File(file, path.clone()),
                                        Err(e) => {
                                            report(&e);
                                            self.failing = true;
                                        }
                                    }
                                }
                                self.reread = true;
                                schedule(&mut render_at, &mut first_pending);
                            }
                            Err(e) => {
                                report(&e);
                                self.failing = true;
                            }
                        }
                    }
                }
                _ = recheck.tick(), if stream.is_some() => {
                    // A lost etcd shows on the stream; an error here adds nothing.
                    if let Ok(true) = self.recheck_secrets().await {
                        schedule(&mut render_at, &mut first_pending);
                    }
                }
                message = next(&mut stream) => {
                    let outcome = match message {
                        Ok(Some(response)) => self.apply(&response),
                        Ok(None) => Applied::Lost("the watch stream ended".into()),
                        Err(e) => Applied::Lost(crate::etcd::reason(&e)),
                    };
                    match outcome {
                        Applied::Nothing => {}
                        Applied::Changed => schedule(&mut render_at, &mut first_pending),
                        Applied::Compacted => {
                            note("etcd compacted past the last revision seen; reading every key again");
                            self.reread = true;
                            stream = None;
                            render_at = Some(Instant::now());
                        }
                        Applied::Lost(why) => {
                            note(format!("lost the etcd watch ({}); reconnecting", why.replace('\n', " ")));
                            lost = true;
                            stream = None;
                            if let ValueSource::Etcd(s) = &mut self.source {
                                s.disconnect();
                            }
                            retry_at = Some(Instant::now() + backoff);
                        }
                    }
                }
                _ = sleep_until(render_at.unwrap_or_else(far)), if render_at.is_some() => {
                    render_at = None;
                    first_pending = None;
                    match self.rerender().await {
                        Ok(()) => {
                            if self.is_etcd() && (*self.loaded.refs().needs() != self.watched || stream.is_none()) {
                                stream = None;
                                retry_at = Some(Instant::now());
                            }
                        }
                        Err(e) => {
                            report(&e);
                            self.failing = true;
                            note("will render again once etcd answers");
                            if let ValueSource::Etcd(s) = &mut self.source {
                                s.disconnect();
                            }
                            stream = None;
                            lost = true;
                            retry_at = Some(Instant::now() + backoff);
                            render_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                _ = sleep_until(retry_at.unwrap_or_else(far)), if stream.is_none() && retry_at.is_some() => {}
            }
        }
    }
}

/// The folders of `keys` (`/aws/`, `/vol/`), a few of them, for a log line.
fn prefixes<'k>(keys: impl Iterator<Item = &'k str>) -> String {
    const SHOWN: usize = 5;
    let folders: std::collections::BTreeSet<&str> = keys
        .map(|k| match k.rfind('/') {
            Some(i) if i > 0 => &k[..=i],
            _ => k,
        })
        .collect();
    let mut shown: Vec<String> = folders
        .iter()
        .take(SHOWN)
        .map(|f| crate::diag::shown(f))
        .collect();
    if folders.len() > SHOWN {
        shown.push(format!("and {} more", folders.len() - SHOWN));
    }
    shown.join(", ")
}

enum Applied {
    Nothing,
    Changed,
    Compacted,
    Lost(String),
}

async fn next(
    stream: &mut Option<WatchStream>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match stream {
        Some(s) => s.message().await,
        None => std::future::pending().await,
    }
}
