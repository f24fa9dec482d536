//! The log of what the simulator received and sent, updated live while requests run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use tokio::sync::watch;

/// One request as the simulator saw it, and what it answered so far.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: http::Method,
    /// HTTP/1.1, or HTTP/2 for h2c.
    pub version: http::Version,
    /// Path and query as received.
    pub path: String,
    pub headers: http::HeaderMap,
    /// The request body; for routes other than chat completions only its first
    /// `RECORDED_BODY_CAP` bytes are kept.
    pub body: Bytes,
    /// The full length of the request body, whatever was kept.
    pub body_len: usize,
    /// When the request head arrived.
    pub received_at: Instant,
    /// Every slice of response body, with the time just before it was handed to hyper.
    pub sent: Vec<(Instant, Bytes)>,
    pub outcome: Outcome,
}

impl Recorded {
    /// A request header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request body parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// All response body bytes sent so far, concatenated.
    pub fn sent_bytes(&self) -> Vec<u8> {
        self.sent.iter().flat_map(|(_, b)| b.iter().copied()).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InProgress,
    /// The simulator finished its reply (for `Reply::Drop` and `StreamEnd::DropConnection`: it
    /// closed the connection as scripted).
    Completed,
    /// The caller hung up (or the simulator shut down) before the reply was finished.
    ClientGone {
        at: Instant,
    },
}

/// Bodies of non-chat routes (uploads) are counted in full but kept only up to this size.
pub const RECORDED_BODY_CAP: usize = 1 << 20;

/// Shared by all connections of one simulator.
pub(crate) struct Recorder {
    /// Off for the standalone binary: nobody can read the log, so keeping it would only leak.
    keep: bool,
    /// Each entry has its own lock so the request that owns it can update it without contending
    /// with readers of the whole log; neither lock is ever held across an `.await`.
    entries: Mutex<Vec<Arc<Mutex<Recorded>>>>,
    /// The number of published requests; `wait_for_requests` waits on it.
    count: watch::Sender<usize>,
}

impl Recorder {
    pub(crate) fn new(keep: bool) -> Recorder {
        Recorder {
            keep,
            entries: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<Recorded> {
        let entries: Vec<_> = lock(&self.entries).clone();
        entries.iter().map(|e| lock(e).clone()).collect()
    }

    pub(crate) fn count(&self) -> usize {
        *self.count.borrow()
    }

    pub(crate) async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> bool {
        let mut rx = self.count.subscribe();
        matches!(tokio::time::timeout(timeout, rx.wait_for(|&c| c >= n)).await, Ok(Ok(_)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The live record of one request. It travels with the work: first in the handler future, then
/// inside the response body. Whoever drops it unfinished has been dropped by hyper, which happens
/// exactly when the client went away, so `Drop` is where `ClientGone` is detected.
pub(crate) struct Track {
    recorder: Arc<Recorder>,
    entry: Option<Arc<Mutex<Recorded>>>,
    published: bool,
    finished: bool,
}

impl Track {
    pub(crate) fn new(recorder: &Arc<Recorder>, parts: &Parts) -> Track {
        let entry = recorder.keep.then(|| {
            Arc::new(Mutex::new(Recorded {
                method: parts.method.clone(),
                version: parts.version,
                path: parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
                headers: parts.headers.clone(),
                body: Bytes::new(),
                body_len: 0,
                received_at: Instant::now(),
                sent: Vec::new(),
                outcome: Outcome::InProgress,
            }))
        });
        Track {
            recorder: recorder.clone(),
            entry,
            published: false,
            finished: false,
        }
    }

    pub(crate) fn set_body(&self, body: Bytes, len: usize) {
        if let Some(e) = &self.entry {
            let mut e = lock(e);
            e.body = body;
            e.body_len = len;
        }
    }

    /// Makes the request visible (and counted): done once its body has been read, so a test that
    /// waited for it always sees the whole body.
    pub(crate) fn publish(&mut self) {
        if std::mem::replace(&mut self.published, true) {
            return;
        }
        if let Some(e) = &self.entry {
            lock(&self.recorder.entries).push(e.clone());
        }
        self.recorder.count.send_modify(|c| *c += 1);
    }

    pub(crate) fn sent(&self, bytes: &Bytes) {
        if let Some(e) = &self.entry {
            lock(e).sent.push((Instant::now(), bytes.clone()));
        }
    }

    pub(crate) fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if let Some(e) = &self.entry {
            lock(e).outcome = Outcome::Completed;
        }
    }
}

impl Drop for Track {
    fn drop(&mut self) {
        if !self.finished {
            if let Some(e) = &self.entry {
                lock(e).outcome = Outcome::ClientGone { at: Instant::now() };
            }
        }
        self.publish();
    }
}
