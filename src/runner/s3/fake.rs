//! An in-memory bucket for the unit tests: what moto cannot show (a part
//! that fails in the middle of a multipart upload, throttling that outlasts
//! the SDK's retries, small pages, failing deletes), and a count of the
//! requests in flight.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::api::{ApiError, Body, Head, Lifecycle, Object, Page, S3Api};

#[derive(Default)]
pub struct Fake {
    pub state: Mutex<State>,
    in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
}

#[derive(Default)]
pub struct State {
    pub objects: BTreeMap<String, Stored>,
    /// Multipart uploads in progress: id -> (key, parts).
    pub uploads: BTreeMap<String, (String, BTreeMap<i32, Vec<u8>>)>,
    /// Every call, in order: `list TOKEN`, `head KEY`, `put KEY`,
    /// `create KEY`, `part KEY N`, `complete KEY`, `abort KEY`,
    /// `delete N`, `get-lifecycle`, `put-lifecycle`.
    pub calls: Vec<String>,
    /// Objects per listing page; 0 is all in one.
    pub page_size: usize,
    /// Always answer this continuation token.
    pub stuck_token: Option<String>,
    /// The part of a key that fails, and how.
    pub fail_part: Option<(String, i32, ApiError)>,
    pub fail_put: BTreeMap<String, ApiError>,
    pub fail_abort: Option<ApiError>,
    pub fail_delete: BTreeMap<String, ApiError>,
    /// How long each upload request takes (to see concurrency).
    pub latency: Duration,
    pub lifecycle: Option<Lifecycle>,
    pub next_upload: u32,
    /// CompleteMultipartUpload assembles the object, then fails.
    pub complete_answer_lost: bool,
    /// CompleteMultipartUpload fails before doing anything.
    pub complete_fails_before: bool,
    /// Part N of any upload raises this flag when it is sent (a SIGTERM
    /// arriving mid-upload).
    pub stop_at_part: Option<(i32, std::sync::Arc<std::sync::atomic::AtomicBool>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub body: Vec<u8>,
    pub metadata: BTreeMap<String, String>,
}

impl Fake {
    pub fn with(f: impl FnOnce(&mut State)) -> Fake {
        let fake = Fake::default();
        f(&mut fake.state());
        fake
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    pub fn keys(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }

    fn call(&self, what: String) {
        self.state().calls.push(what);
    }

    /// Counts a request in flight for as long as the latency lasts.
    async fn busy(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let latency = self.state().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn read(body: Body) -> Result<Vec<u8>, ApiError> {
    match body {
        Body::Bytes(b) => Ok(b),
        Body::File {
            path,
            offset,
            length,
        } => {
            let mut f = std::fs::File::open(&path)
                .map_err(|e| ApiError::other(format!("cannot read {}: {e}", path.display())))?;
            f.seek(SeekFrom::Start(offset)).unwrap();
            let mut out = Vec::new();
            f.take(length).read_to_end(&mut out).unwrap();
            Ok(out)
        }
    }
}

impl S3Api for Fake {
    async fn list_objects(&self, prefix: &str, token: Option<&str>) -> Result<Page, ApiError> {
        let st = {
            let mut st = self.state();
            st.calls.push(format!("list {}", token.unwrap_or("-")));
            let matching: Vec<Object> = st
                .objects
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, o)| Object {
                    key: k.clone(),
                    size: o.body.len() as u64,
                })
                .collect();
            (matching, st.page_size, st.stuck_token.clone())
        };
        let (matching, page_size, stuck) = st;
        if let Some(t) = stuck {
            return Ok(Page {
                objects: matching,
                next_token: Some(t),
            });
        }
        let start: usize = token.map_or(0, |t| t.parse().unwrap());
        let size = if page_size == 0 {
            usize::MAX
        } else {
            page_size
        };
        let end = start.saturating_add(size).min(matching.len());
        Ok(Page {
            objects: matching[start..end].to_vec(),
            next_token: (end < matching.len()).then(|| end.to_string()),
        })
    }

    async fn head_object(&self, key: &str) -> Result<Option<Head>, ApiError> {
        self.call(format!("head {key}"));
        self.busy().await;
        Ok(self.state().objects.get(key).map(|o| Head {
            size: o.body.len() as u64,
            metadata: o.metadata.clone(),
        }))
    }

    async fn put_object(
        &self,
        key: &str,
        body: Body,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), ApiError> {
        self.call(format!("put {key}"));
        self.busy().await;
        if let Some(e) = self.state().fail_put.get(key) {
            return Err(e.clone());
        }
        let body = read(body)?;
        self.state().objects.insert(
            key.to_owned(),
            Stored {
                body,
                metadata: metadata.clone(),
            },
        );
        Ok(())
    }

    async fn create_multipart(
        &self,
        key: &str,
        _metadata: &BTreeMap<String, String>,
    ) -> Result<String, ApiError> {
        let mut st = self.state();
        st.calls.push(format!("create {key}"));
        st.next_upload += 1;
        let id = format!("upload-{}", st.next_upload);
        st.uploads
            .insert(id.clone(), (key.to_owned(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Body,
    ) -> Result<String, ApiError> {
        self.call(format!("part {key} {part_number}"));
        if let Some((n, flag)) = &self.state().stop_at_part
            && *n == part_number
        {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.busy().await;
        if let Some((k, n, e)) = &self.state().fail_part
            && k == key
            && *n == part_number
        {
            return Err(e.clone());
        }
        let body = read(body)?;
        let mut st = self.state();
        let Some((_, parts)) = st.uploads.get_mut(upload_id) else {
            return Err(ApiError::new("NoSuchUpload", "no such upload"));
        };
        parts.insert(part_number, body);
        Ok(format!("\"etag-{part_number}\""))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ApiError> {
        let mut st = self.state();
        st.calls.push(format!("complete {key}"));
        if st.complete_fails_before {
            return Err(ApiError::other("no answer in time from the fake"));
        }
        let Some((_, stored)) = st.uploads.remove(upload_id) else {
            return Err(ApiError::new("NoSuchUpload", "no such upload"));
        };
        let mut body = Vec::new();
        for (n, etag) in parts {
            assert_eq!(etag, &format!("\"etag-{n}\""));
            body.extend_from_slice(&stored[n]);
        }
        st.objects.insert(
            key.to_owned(),
            Stored {
                body,
                metadata: BTreeMap::new(),
            },
        );
        if st.complete_answer_lost {
            // Applied, but the answer never came; the SDK's retry hears
            // that the upload is gone.
            return Err(ApiError::new(
                "NoSuchUpload",
                "The specified upload does not exist.",
            ));
        }
        Ok(())
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ApiError> {
        let mut st = self.state();
        st.calls.push(format!("abort {key}"));
        if let Some(e) = st.fail_abort.clone() {
            return Err(e);
        }
        st.uploads.remove(upload_id);
        Ok(())
    }

    async fn upload_open(&self, _key: &str, upload_id: &str) -> Result<bool, ApiError> {
        let mut st = self.state();
        st.calls.push(format!("list-parts {upload_id}"));
        Ok(st.uploads.contains_key(upload_id))
    }

    async fn delete_objects(&self, keys: &[String]) -> Result<Vec<(String, ApiError)>, ApiError> {
        let mut st = self.state();
        st.calls.push(format!("delete {}", keys.len()));
        let mut failed = Vec::new();
        for k in keys {
            match st.fail_delete.get(k) {
                Some(e) => failed.push((k.clone(), e.clone())),
                None => {
                    st.objects.remove(k);
                }
            }
        }
        Ok(failed)
    }

    async fn get_lifecycle(&self) -> Result<Option<Lifecycle>, ApiError> {
        let mut st = self.state();
        st.calls.push("get-lifecycle".into());
        Ok(st.lifecycle.clone())
    }

    async fn put_lifecycle(&self, config: &Lifecycle) -> Result<(), ApiError> {
        let mut st = self.state();
        st.calls.push("put-lifecycle".into());
        st.lifecycle = Some(config.clone());
        Ok(())
    }
}
