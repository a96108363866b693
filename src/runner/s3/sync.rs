//! `s3_sync`: upload a folder tree to `s3://bucket/prefix`, rsync-style.
//!
//! 1. Walk `source`: regular files only. Symlinks are never followed (a
//!    link may point anywhere in the container, even outside `source`) and,
//!    like sockets, FIFOs, devices and names that are not UTF-8 (an S3 key
//!    is UTF-8), are skipped with one warning line. A skipped entry still
//!    counts as present, so `delete: true` never deletes its object.
//! 2. List the objects under the prefix (ListObjectsV2, every page).
//! 3. Decide: a file whose object is missing or of another size is
//!    uploaded; with `compare: checksum` a file of the same size is also
//!    uploaded when its SHA-256 differs from the object's
//!    `x-amz-meta-unitgen-sha256` (one HEAD, no download).
//! 4. Upload, at most `concurrency` requests in flight: files under 16 MiB
//!    with one PutObject, larger ones in parts of 8 MiB or more, streamed
//!    from the file (memory stays at about `concurrency` × 256 KiB of
//!    read buffers, whatever the sizes). A multipart upload that fails is
//!    aborted, so no incomplete upload is left to be billed. The first S3
//!    failure stops new uploads; a file that cannot be read fails only
//!    itself.
//! 5. Only if every upload succeeded, and only with `delete: true`:
//!    delete the objects under the prefix that `source` does not have, in
//!    DeleteObjects batches of 1,000 (S3's limit), never a key outside the
//!    prefix, never everything because `source` came up empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::api::{ApiError, Body, S3Api};
use super::{S3Error, human_bytes};
use crate::contract::SyncJob;
use crate::contract::s3::{Compare, MAX_KEY_BYTES, SHA256_METADATA};
use crate::runner::log;

/// Multipart limits: at most 10,000 parts, each at least 5 MiB but the
/// last; <https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>.
pub const MAX_PARTS: u64 = 10_000;
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// DeleteObjects takes at most 1,000 keys.
pub const DELETE_BATCH: usize = 1000;
const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Change nothing; log what would be uploaded and deleted.
    pub dry_run: bool,
    /// Requests in flight at once (PutObject, UploadPart, HeadObject), and
    /// files worked on at once.
    pub concurrency: usize,
    /// Files of at least this many bytes go up in parts.
    pub multipart_threshold: u64,
    /// The part size (grown for files that would need over 10,000 parts).
    pub part_size: u64,
    /// Files up to this many bytes are read into memory in one go.
    pub in_memory_max: u64,
    /// Set from outside (SIGTERM): nothing new starts, parts in flight
    /// finish, and open multipart uploads are aborted before the step
    /// returns.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            dry_run: false,
            concurrency: 8,
            multipart_threshold: 16 * MIB,
            part_size: 8 * MIB,
            cancel: None,
            in_memory_max: MIB,
        }
    }
}

/// What a run did (in a dry run: would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Keys uploaded, in order of their files' paths.
    pub uploaded: Vec<String>,
    pub uploaded_bytes: u64,
    /// Of `uploaded`, those sent in parts.
    pub multipart: Vec<String>,
    /// Files left alone because their object matches.
    pub unchanged: usize,
    pub deleted: Vec<String>,
    /// Entries of `source` that are not uploaded, and why.
    pub skipped: Vec<(String, String)>,
}

/// A regular file below `source`.
#[derive(Debug, Clone)]
struct LocalFile {
    /// Path below `source`, with `/`.
    rel: String,
    path: PathBuf,
    size: u64,
}

#[derive(Debug, Default)]
struct Walk {
    files: Vec<LocalFile>,
    /// Not uploaded, but present: (relative path, why).
    skipped: Vec<(String, String)>,
    /// Folders that could not be read: their files are unknown.
    errors: Vec<String>,
}

/// Walks `root` without following symlinks (the root itself may be one:
/// it is the folder the spec names).
fn walk(root: &Path) -> Result<Walk, S3Error> {
    let shown = root.display();
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(S3Error::Source(format!("source `{shown}` is not a folder")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(S3Error::Source(format!(
                "source `{shown}` does not exist in the container; mount it with \
                 `container.volumes`"
            )));
        }
        Err(e) => {
            return Err(S3Error::Source(format!(
                "cannot read source `{shown}`: {e}"
            )));
        }
    }
    let mut out = Walk::default();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                out.errors
                    .push(format!("cannot read folder {}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.errors
                        .push(format!("cannot read folder {}: {e}", dir.display()));
                    continue;
                }
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                out.skipped.push((
                    format!("{rel_dir}{}", name.to_string_lossy()),
                    "its name is not UTF-8, which an S3 key must be".into(),
                ));
                continue;
            };
            let rel = format!("{rel_dir}{name}");
            let kind = match entry.file_type() {
                Ok(k) => k,
                Err(e) => {
                    out.errors.push(format!("cannot read {rel}: {e}"));
                    continue;
                }
            };
            if kind.is_dir() {
                stack.push((entry.path(), format!("{rel}/")));
            } else if kind.is_file() {
                match entry.metadata() {
                    Ok(m) => out.files.push(LocalFile {
                        rel,
                        path: entry.path(),
                        size: m.len(),
                    }),
                    Err(e) => out.errors.push(format!("cannot read {rel}: {e}")),
                }
            } else if kind.is_symlink() {
                out.skipped.push((rel, "a symlink (never followed)".into()));
            } else {
                out.skipped
                    .push((rel, "not a regular file (socket, FIFO or device)".into()));
            }
        }
    }
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    out.skipped.sort();
    Ok(out)
}

/// Why a file is uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    New,
    Size(u64),
    Checksum,
    NoChecksum,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::New => f.write_str("new"),
            Why::Size(remote) => write!(f, "size differs from the object's {remote} bytes"),
            Why::Checksum => f.write_str("content differs (SHA-256)"),
            Why::NoChecksum => f.write_str("the object has no unitgen-sha256 to compare"),
        }
    }
}

#[derive(Debug, Clone)]
struct Upload {
    file: LocalFile,
    key: String,
    why: Why,
    /// Hex SHA-256 of the content (`compare: checksum`), stored in the
    /// object's metadata.
    sha256: Option<String>,
}

/// The hex SHA-256 of a file, read in 1 MiB chunks.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Every object under `prefix`, by key.
async fn list_remote<A: S3Api>(
    api: &A,
    prefix: &str,
    url: &str,
) -> Result<BTreeMap<String, u64>, S3Error> {
    let mut out = BTreeMap::new();
    let mut token: Option<String> = None;
    let what = || format!("ListObjectsV2 of {url}");
    loop {
        let page = api
            .list_objects(prefix, token.as_deref())
            .await
            .map_err(|error| S3Error::Api {
                what: what(),
                error,
            })?;
        for o in page.objects {
            // A listing is a request, not a guarantee: nothing outside the
            // prefix is ever compared or deleted.
            if o.key.starts_with(prefix) {
                out.insert(o.key, o.size);
            }
        }
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(next) if token.as_ref() == Some(&next) => {
                return Err(S3Error::Api {
                    what: what(),
                    error: ApiError::other("S3 returned the same continuation token twice"),
                });
            }
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

/// A problem with one file: its key, why, and whether it is S3's (which
/// stops further uploads) rather than the file's own.
#[derive(Debug)]
struct FileFailure {
    key: String,
    message: String,
    from_s3: bool,
}

impl FileFailure {
    fn local(key: &str, message: impl Into<String>) -> Self {
        FileFailure {
            key: key.to_owned(),
            message: message.into(),
            from_s3: false,
        }
    }

    fn s3(key: &str, what: &str, e: &ApiError) -> Self {
        FileFailure {
            key: key.to_owned(),
            message: format!("{what}: {e}"),
            from_s3: e.code.is_some() || !e.message.starts_with("cannot read "),
        }
    }
}

/// Shared by every task of one run.
struct Cx<A> {
    api: Arc<A>,
    requests: Arc<Semaphore>,
    /// Set on the first S3 failure: nothing new starts, and multipart
    /// uploads in progress are aborted.
    stop: AtomicBool,
    opts: SyncOptions,
}

impl<A> Cx<A> {
    /// Whether to start nothing new: an S3 failure, or a stop from outside.
    fn halted(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.cancelled()
    }

    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::SeqCst))
    }
}

/// The part size for a file of `size` bytes: `base`, grown in whole MiB
/// until 10,000 parts hold the file.
pub fn part_size(size: u64, base: u64) -> u64 {
    let base = base.max(MIN_PART);
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    base.max(needed)
}

/// Decides, for `compare: checksum`, each file whose object has the same
/// size: one HEAD and one local hash per file, `concurrency` at a time.
/// Every uploaded file gets its hash too, for the object's metadata.
async fn checksum_plan<A: S3Api>(
    cx: &Arc<Cx<A>>,
    todo: Vec<(LocalFile, String, Option<Why>)>,
    failures: &mut Vec<FileFailure>,
) -> (Vec<Upload>, usize) {
    let mut uploads = Vec::new();
    let mut unchanged = 0;
    let mut set = JoinSet::new();
    let mut iter = todo.into_iter();
    loop {
        while set.len() < cx.opts.concurrency {
            let Some((file, key, why)) = iter.next() else {
                break;
            };
            let cx = cx.clone();
            set.spawn(async move {
                let path = file.path.clone();
                let hash = tokio::task::spawn_blocking(move || sha256_file(&path));
                let head = async {
                    if why.is_some() {
                        return Ok(None);
                    }
                    let _permit = cx.requests.acquire().await;
                    cx.api.head_object(&key).await
                };
                let (hash, head) = tokio::join!(hash, head);
                let hash = match hash {
                    Ok(Ok(h)) => h,
                    Ok(Err(e)) => {
                        return Err(FileFailure::local(
                            &key,
                            format!("cannot read {}: {e}", file.rel),
                        ));
                    }
                    Err(e) => {
                        return Err(FileFailure::local(
                            &key,
                            format!("hashing {} failed: {e}", file.rel),
                        ));
                    }
                };
                let why = match (why, head) {
                    (Some(w), _) => Some(w),
                    (None, Err(e)) => return Err(FileFailure::s3(&key, "HeadObject", &e)),
                    (None, Ok(None)) => Some(Why::New),
                    (None, Ok(Some(head))) => match head.metadata.get(SHA256_METADATA) {
                        Some(remote) if *remote == hash => None,
                        Some(_) => Some(Why::Checksum),
                        None => Some(Why::NoChecksum),
                    },
                };
                Ok(why.map(|why| Upload {
                    file,
                    key,
                    why,
                    sha256: Some(hash),
                }))
            });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        match done {
            Ok(Ok(Some(upload))) => uploads.push(upload),
            Ok(Ok(None)) => unchanged += 1,
            Ok(Err(f)) => failures.push(f),
            Err(e) => failures.push(FileFailure::local("?", format!("internal error: {e}"))),
        }
    }
    uploads.sort_by(|a, b| a.file.rel.cmp(&b.file.rel));
    (uploads, unchanged)
}

/// Runs the step.
pub async fn run<A: S3Api>(
    api: Arc<A>,
    job: &SyncJob,
    opts: &SyncOptions,
) -> Result<SyncOutcome, S3Error> {
    if let Some(v) = job.check().into_iter().next() {
        return Err(S3Error::Config(format!("invalid s3_sync step: {v}")));
    }
    let prefix = job.key_prefix().to_owned();
    let url = job.url();
    let source = PathBuf::from(&job.source);
    let walked = tokio::task::spawn_blocking(move || walk(&source))
        .await
        .map_err(|e| S3Error::Source(format!("walking the source failed: {e}")))??;
    let remote = list_remote(&*api, &prefix, &url).await?;

    let mut out = SyncOutcome {
        skipped: walked.skipped.clone(),
        ..SyncOutcome::default()
    };
    if !walked.skipped.is_empty() {
        let (first, why) = &walked.skipped[0];
        log::warn(format_args!(
            "skipped {} entries of {} that are not regular files or cannot be keys (first: {first}: {why})",
            walked.skipped.len(),
            job.source
        ));
    }
    let mut failures: Vec<FileFailure> = walked
        .errors
        .iter()
        .map(|e| FileFailure::local("", e.clone()))
        .collect();

    // Keys that exist locally in any form: never deleted.
    let mut local_keys: BTreeSet<String> = BTreeSet::new();
    let mut sized = Vec::new();
    for (rel, _) in &walked.skipped {
        local_keys.insert(format!("{prefix}{rel}"));
    }
    for file in walked.files {
        let key = format!("{prefix}{}", file.rel);
        local_keys.insert(key.clone());
        if key.len() > MAX_KEY_BYTES {
            failures.push(FileFailure::local(
                &key,
                format!(
                    "the key would be {} bytes; S3 keys are at most {MAX_KEY_BYTES}",
                    key.len()
                ),
            ));
            continue;
        }
        let why = match remote.get(&key) {
            None => Some(Why::New),
            Some(&r) if r != file.size => Some(Why::Size(r)),
            Some(_) => None,
        };
        sized.push((file, key, why));
    }

    let cx = Arc::new(Cx {
        api: api.clone(),
        requests: Arc::new(Semaphore::new(opts.concurrency.max(1))),
        stop: AtomicBool::new(false),
        opts: SyncOptions {
            concurrency: opts.concurrency.max(1),
            ..opts.clone()
        },
    });
    let uploads = match job.compare {
        Compare::Size => {
            let mut uploads = Vec::new();
            for (file, key, why) in sized {
                match why {
                    Some(why) => uploads.push(Upload {
                        file,
                        key,
                        why,
                        sha256: None,
                    }),
                    None => out.unchanged += 1,
                }
            }
            uploads
        }
        Compare::Checksum => {
            let (uploads, unchanged) = checksum_plan(&cx, sized, &mut failures).await;
            out.unchanged = unchanged;
            uploads
        }
    };

    let mut to_delete: Vec<String> = if job.delete {
        remote
            .keys()
            // Folder markers (`a/`, made by consoles) are no file's object.
            .filter(|k| !local_keys.contains(*k) && !k.ends_with('/') && k.starts_with(&prefix))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    if !to_delete.is_empty() && local_keys.is_empty() {
        return Err(S3Error::EmptySource {
            folder: job.source.clone(),
            objects: to_delete.len(),
            url,
        });
    }

    if opts.dry_run {
        for u in &uploads {
            log::info(format_args!(
                "dry run: would upload {} ({}, {})",
                u.key,
                human_bytes(u.file.size),
                u.why
            ));
        }
        if !failures.is_empty() {
            to_delete.clear();
        }
        for k in &to_delete {
            log::info(format_args!("dry run: would delete {k}"));
        }
        out.uploaded_bytes = uploads.iter().map(|u| u.file.size).sum();
        out.multipart = uploads
            .iter()
            .filter(|u| u.file.size >= opts.multipart_threshold)
            .map(|u| u.key.clone())
            .collect();
        out.uploaded = uploads.into_iter().map(|u| u.key).collect();
        out.deleted = to_delete;
        log::info(format_args!(
            "dry run: would upload {} files ({}), skip {} unchanged, delete {}; changed nothing",
            out.uploaded.len(),
            human_bytes(out.uploaded_bytes),
            out.unchanged,
            out.deleted.len()
        ));
        return finish(out, failures, false);
    }

    upload_all(&cx, uploads, &mut out, &mut failures).await;

    let mut deletes_skipped = false;
    if !to_delete.is_empty() {
        if failures.is_empty() {
            delete_all(&*api, &to_delete, &mut out, &mut failures).await;
        } else {
            deletes_skipped = true;
        }
    }
    log::info(format_args!(
        "uploaded {} files ({}), skipped {} unchanged, deleted {}",
        out.uploaded.len(),
        human_bytes(out.uploaded_bytes),
        out.unchanged,
        out.deleted.len()
    ));
    finish(out, failures, deletes_skipped)
}

fn finish(
    out: SyncOutcome,
    failures: Vec<FileFailure>,
    deletes_skipped: bool,
) -> Result<SyncOutcome, S3Error> {
    if failures.is_empty() {
        return Ok(out);
    }
    Err(S3Error::Files {
        failed: failures.into_iter().map(|f| (f.key, f.message)).collect(),
        uploaded: out.uploaded.len(),
        deletes_skipped,
    })
}

async fn upload_all<A: S3Api>(
    cx: &Arc<Cx<A>>,
    uploads: Vec<Upload>,
    out: &mut SyncOutcome,
    failures: &mut Vec<FileFailure>,
) {
    let mut set = JoinSet::new();
    let mut iter = uploads.into_iter();
    let mut done: Vec<(String, u64, bool)> = Vec::new();
    loop {
        while set.len() < cx.opts.concurrency && !cx.halted() {
            let Some(upload) = iter.next() else {
                break;
            };
            let cx = cx.clone();
            set.spawn(async move {
                let key = upload.key.clone();
                let size = upload.file.size;
                upload_one(&cx, upload)
                    .await
                    .map(|multipart| (key, size, multipart))
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        match joined {
            Ok(Ok(ok)) => done.push(ok),
            Ok(Err(f)) => {
                log::warn(format_args!("upload of {} failed: {}", f.key, f.message));
                if f.from_s3 {
                    cx.stop.store(true, Ordering::SeqCst);
                }
                failures.push(f);
            }
            Err(e) => failures.push(FileFailure::local("?", format!("internal error: {e}"))),
        }
    }
    let not_started = iter.count();
    if not_started > 0 {
        let why = if cx.cancelled() {
            "not started: the run was stopped"
        } else {
            "not started after the failure above"
        };
        failures.push(FileFailure::local(&format!("{not_started} more"), why));
    }
    done.sort();
    for (key, size, multipart) in done {
        out.uploaded_bytes += size;
        if multipart {
            out.multipart.push(key.clone());
        }
        out.uploaded.push(key);
    }
}

/// Uploads one file; `Ok(true)` when it went in parts.
async fn upload_one<A: S3Api>(cx: &Arc<Cx<A>>, upload: Upload) -> Result<bool, FileFailure> {
    let mut metadata = BTreeMap::new();
    if let Some(h) = &upload.sha256 {
        metadata.insert(SHA256_METADATA.to_owned(), h.clone());
    }
    let Upload { file, key, .. } = upload;
    if file.size >= cx.opts.multipart_threshold {
        multipart(cx, &file, &key, &metadata).await?;
        return Ok(true);
    }
    let body = if file.size <= cx.opts.in_memory_max {
        let path = file.path.clone();
        let bytes = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| FileFailure::local(&key, format!("internal error: {e}")))?
            .map_err(|e| FileFailure::local(&key, format!("cannot read {}: {e}", file.rel)))?;
        if bytes.len() as u64 != file.size {
            return Err(FileFailure::local(
                &key,
                format!("{} changed while it was being synced; run again", file.rel),
            ));
        }
        Body::Bytes(bytes)
    } else {
        Body::File {
            path: file.path.clone(),
            offset: 0,
            length: file.size,
        }
    };
    let _permit = cx.requests.acquire().await;
    cx.api
        .put_object(&key, body, &metadata)
        .await
        .map_err(|e| FileFailure::s3(&key, "PutObject", &e))?;
    Ok(false)
}

async fn multipart<A: S3Api>(
    cx: &Arc<Cx<A>>,
    file: &LocalFile,
    key: &str,
    metadata: &BTreeMap<String, String>,
) -> Result<(), FileFailure> {
    let part = part_size(file.size, cx.opts.part_size);
    let count = file.size.div_ceil(part);
    let upload_id = {
        let _permit = cx.requests.acquire().await;
        cx.api
            .create_multipart(key, metadata)
            .await
            .map_err(|e| FileFailure::s3(key, "CreateMultipartUpload", &e))?
    };
    let mut etags: Vec<Option<String>> = vec![None; count as usize];
    let mut failure: Option<FileFailure> = None;
    let mut set: JoinSet<(i32, Result<String, ApiError>)> = JoinSet::new();
    let record = |r: Result<(i32, Result<String, ApiError>), tokio::task::JoinError>,
                  etags: &mut Vec<Option<String>>,
                  failure: &mut Option<FileFailure>| match r {
        Ok((n, Ok(etag))) => etags[(n - 1) as usize] = Some(etag),
        Ok((n, Err(e))) => {
            if failure.is_none() {
                *failure = Some(FileFailure::s3(
                    key,
                    &format!("UploadPart {n} of {count}"),
                    &e,
                ));
            }
        }
        Err(e) => {
            if failure.is_none() {
                *failure = Some(FileFailure::local(key, format!("internal error: {e}")));
            }
        }
    };
    for n in 1..=count {
        if failure.is_some() || cx.halted() {
            break;
        }
        // The permit is taken before the part's task exists, so at most
        // `concurrency` parts (of all files) are ever open at once.
        let Ok(permit) = cx.requests.clone().acquire_owned().await else {
            break;
        };
        while let Some(r) = set.try_join_next() {
            record(r, &mut etags, &mut failure);
        }
        // Waiting for the permit may have taken a while: look again.
        if failure.is_some() || cx.halted() {
            break;
        }
        let offset = (n - 1) * part;
        let body = Body::File {
            path: file.path.clone(),
            offset,
            length: part.min(file.size - offset),
        };
        let (api, key, id) = (cx.api.clone(), key.to_owned(), upload_id.clone());
        let number = n as i32;
        set.spawn(async move {
            let _permit = permit;
            (number, api.upload_part(&key, &id, number, body).await)
        });
    }
    while let Some(r) = set.join_next().await {
        record(r, &mut etags, &mut failure);
    }
    let parts: Option<Vec<(i32, String)>> = etags
        .into_iter()
        .enumerate()
        .map(|(i, e)| e.map(|e| (i as i32 + 1, e)))
        .collect();
    let result = match (failure, parts) {
        (Some(f), _) => Err(f),
        (None, None) => Err(FileFailure {
            key: key.to_owned(),
            message: if cx.cancelled() {
                "stopped: the run was stopped".into()
            } else {
                "stopped after another upload failed".into()
            },
            from_s3: false,
        }),
        (None, Some(parts)) => {
            let _permit = cx.requests.acquire().await;
            match cx.api.complete_multipart(key, &upload_id, &parts).await {
                Ok(()) => Ok(()),
                Err(e) if completed_anyway(cx, key, &upload_id, file.size).await => {
                    log::warn(format_args!(
                        "CompleteMultipartUpload of {key} answered `{e}`, yet the upload is \
                         closed and the object has the file's size: taken as uploaded"
                    ));
                    return Ok(());
                }
                Err(e) => Err(FileFailure::s3(key, "CompleteMultipartUpload", &e)),
            }
        }
    };
    if let Err(mut f) = result {
        // An incomplete upload keeps its parts (and their cost) until it
        // is aborted.
        let aborted = {
            let _permit = cx.requests.acquire().await;
            cx.api.abort_multipart(key, &upload_id).await
        };
        match aborted {
            Ok(()) => f.message.push_str(" (the multipart upload was aborted)"),
            Err(e) => f.message.push_str(&format!(
                "; aborting multipart upload {upload_id} failed too ({e}): its parts stay \
                 until a lifecycle rule with `abort_incomplete_uploads_days` removes them"
            )),
        }
        return Err(f);
    }
    Ok(())
}

/// Whether a CompleteMultipartUpload that failed was applied all the same:
/// its answer can be lost after S3 assembled the object (the SDK's retry
/// then hears NoSuchUpload). So: the upload is closed (nothing but
/// completing or aborting closes it, and the step aborts only after this
/// check) and the object has the file's size.
async fn completed_anyway<A: S3Api>(cx: &Cx<A>, key: &str, upload_id: &str, size: u64) -> bool {
    if !matches!(cx.api.upload_open(key, upload_id).await, Ok(false)) {
        return false;
    }
    matches!(cx.api.head_object(key).await, Ok(Some(h)) if h.size == size)
}

async fn delete_all<A: S3Api>(
    api: &A,
    keys: &[String],
    out: &mut SyncOutcome,
    failures: &mut Vec<FileFailure>,
) {
    for batch in keys.chunks(DELETE_BATCH) {
        match api.delete_objects(batch).await {
            Ok(errors) => {
                let failed: BTreeSet<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
                out.deleted.extend(
                    batch
                        .iter()
                        .filter(|k| !failed.contains(k.as_str()))
                        .cloned(),
                );
                for (key, e) in errors {
                    failures.push(FileFailure::s3(&key, "DeleteObjects", &e));
                }
            }
            Err(e) => {
                failures.push(FileFailure::s3(
                    &format!("{} keys from {}", batch.len(), batch[0]),
                    "DeleteObjects",
                    &e,
                ));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_to_fit_ten_thousand() {
        assert_eq!(part_size(20 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(part_size(1 << 30, 8 * MIB), 8 * MIB);
        // 100 GiB in 8 MiB parts would be 12,800 parts.
        let p = part_size(100 << 30, 8 * MIB);
        assert_eq!(p, 11 * MIB);
        assert!((100u64 << 30).div_ceil(p) <= MAX_PARTS);
        // Never under S3's 5 MiB minimum.
        assert_eq!(part_size(20 * MIB, MIB), MIN_PART);
    }

    #[test]
    fn hex_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
