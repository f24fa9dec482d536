//! Configuration and the state every connection of one simulator shares.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::budget::{Budgets, Decision, SimBudget, Usage, usage_in};
use super::fixtures;
use super::record::Recorder;
use super::reply::Reply;

/// How the simulator answers when no reply is scripted.
#[derive(Clone, Default)]
pub struct SimConfig {
    /// If set, every request must carry `Authorization: Bearer <key>`, else 401 as Groq answers.
    pub api_key: Option<String>,
    /// Delay before the first stream frame (headers are sent immediately).
    pub ttft: Duration,
    /// Pause between stream frames.
    pub chunk_interval: Duration,
    /// Delay before a non-streaming response.
    pub json_latency: Duration,
    /// `None`: replay stream-content.sse; `Some(n)`: synthesize `n` content frames in Groq's
    /// format, for the request's model.
    pub stream_chunks: Option<usize>,
    /// `None`: the chat-completion.json fixture; `Some`: this body verbatim.
    pub json_body: Option<Bytes>,
    /// `None`: no rate limits, and the fixed `x-ratelimit-*` headers of headers-ok.json. `Some`:
    /// enforce this budget per key and model on chat completions, and report it (see
    /// [`SimBudget`]).
    pub budget: Option<SimBudget>,
    /// HTTP/2 streams one connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// `None`: hyper's default, 200. A client over the cap waits for a stream to end.
    pub h2_max_concurrent_streams: Option<u32>,
}

/// By hand so the key never lands in a log, even a test's.
impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("ttft", &self.ttft)
            .field("chunk_interval", &self.chunk_interval)
            .field("json_latency", &self.json_latency)
            .field("stream_chunks", &self.stream_chunks)
            .field("json_body", &self.json_body.as_ref().map(|b| b.len()))
            .field("budget", &self.budget)
            .field("h2_max_concurrent_streams", &self.h2_max_concurrent_streams)
            .finish()
    }
}

pub(crate) struct State {
    pub(crate) config: SimConfig,
    /// `Bearer <key>`, compared byte for byte.
    expected_auth: Option<Vec<u8>>,
    pub(crate) json_body: Bytes,
    pub(crate) script: Mutex<VecDeque<Reply>>,
    pub(crate) recorder: Arc<Recorder>,
    /// Makes synthesized ids unique per request.
    seq: AtomicU64,
    /// Only with `config.budget`.
    pub(crate) budget: Option<BudgetState>,
    /// 429 and 413 answers sent, whatever their cause.
    rate_limited: AtomicUsize,
    /// Requests seen per `x-sim-reply` value (and key, with `per-key`), for `first:N`.
    seen: Mutex<HashMap<(String, Vec<u8>), usize>>,
}

/// The most distinct `first:N` counters kept; past it they all start again (a long-running
/// simulator fed ever new values must not grow without bound).
const MAX_COUNTERS: usize = 4096;

/// The budgets, and the usage each canned answer reports (what admitting it costs).
pub(crate) struct BudgetState {
    budgets: Budgets,
    /// `State::json_body`'s usage: chat-completion.json's, or the configured body's.
    pub(crate) json_usage: Usage,
    pub(crate) content_stream_usage: Usage,
    pub(crate) tool_stream_usage: Usage,
}

impl BudgetState {
    /// Admits (and charges) a chat completion against the budget of its key and model.
    pub(crate) fn admit(&self, headers: &HeaderMap, model: &str, usage: Usage) -> Decision {
        let key = headers
            .get(http::header::AUTHORIZATION)
            .map_or(&b""[..], |v| v.as_bytes());
        self.budgets.admit(key, model, usage.cost())
    }
}

impl State {
    pub(crate) fn new(config: SimConfig, keep_records: bool) -> State {
        let json_body = config.json_body.clone().unwrap_or_else(fixtures::chat_completion);
        let budget = config.budget.clone().map(|b| BudgetState {
            budgets: Budgets::new(b),
            json_usage: usage_in(&json_body),
            content_stream_usage: usage_in(&fixtures::stream("content")),
            tool_stream_usage: usage_in(&fixtures::stream("tool-call")),
        });
        State {
            expected_auth: config.api_key.as_ref().map(|k| format!("Bearer {k}").into_bytes()),
            json_body,
            config,
            script: Mutex::new(VecDeque::new()),
            recorder: Arc::new(Recorder::new(keep_records)),
            seq: AtomicU64::new(1),
            budget,
            rate_limited: AtomicUsize::new(0),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn count_if_rate_limited(&self, status: http::StatusCode) {
        if matches!(status.as_u16(), 413 | 429) {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn rate_limited_count(&self) -> usize {
        self.rate_limited.load(Ordering::Relaxed)
    }

    pub(crate) fn authorized(&self, headers: &HeaderMap) -> bool {
        match &self.expected_auth {
            None => true,
            Some(expected) => headers
                .get(http::header::AUTHORIZATION)
                .is_some_and(|v| v.as_bytes() == expected.as_slice()),
        }
    }

    pub(crate) fn push(&self, reply: Reply) {
        self.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(reply);
    }

    pub(crate) fn next_scripted(&self) -> Option<Reply> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// Counts one more request with this `x-sim-reply` value (under this key, if given) and
    /// says whether it is among the first `n`.
    pub(crate) fn among_first(&self, value: &str, key: Option<&[u8]>, n: usize) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_COUNTERS {
            seen.clear();
        }
        let count = seen
            .entry((value.to_owned(), key.unwrap_or_default().to_vec()))
            .or_insert(0);
        *count += 1;
        *count <= n
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }
}

/// headers-ok.json as a `HeaderMap`, built once; each response clones it.
static OK_HEADERS: LazyLock<HeaderMap> = LazyLock::new(|| {
    let mut map = HeaderMap::new();
    for (name, value) in fixtures::ok_headers() {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            map.append(n, v);
        }
    }
    map
});

/// Groq's success headers (rate limits, request id, and the ones a gateway must strip) with
/// this content type.
pub(crate) fn ok_headers(content_type: &'static str) -> HeaderMap {
    let mut map = OK_HEADERS.clone();
    map.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    map
}
