//! Observation's tap on the exchange with Groq: its timings, request id, budget headers, failure kind and token usage, read as they pass.

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::{
    handles::Label,
    observer::Observer,
    record::{Record, clipped},
    trace,
};
use crate::{
    relay::{Outcome, Report, Retry, Tap},
    wire::ratelimit::GroqBudgetHeaders,
};

/// Groq's own request id (a name built once: a `&str` is parsed on every lookup).
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// `key-1`, `key-2`, …: a configured key's name in metrics and logs (no formatting for the
/// first ones).
fn key_label(index: usize) -> Arc<str> {
    const NAMES: [&str; 8] = ["key-1", "key-2", "key-3", "key-4", "key-5", "key-6", "key-7", "key-8"];
    match NAMES.get(index) {
        Some(name) => Arc::from(*name),
        None => format!("key-{}", index + 1).into(),
    }
}

/// Watches one exchange with Groq on behalf of one request's record: the wait for Groq's
/// budget, when the request left and its answer was ready (groxy's overhead is the rest), Groq's
/// status, request id and budget headers, the failure kind, the duration, and the token usage.
pub struct ExchangeTap {
    observer: Arc<Observer>,
    record: Arc<Record>,
    /// The upstream client span (disabled when tracing is off).
    span: tracing::Span,
    facts: trace::ResponseFacts,
    first_chunk_seen: bool,
    /// `key-1`, … for configured keys; `None` for a caller's own key (passthrough), whose
    /// budget is theirs, not the team's.
    key: Option<Arc<str>>,
    sent: Option<Instant>,
    status: Option<StatusCode>,
}

impl ExchangeTap {
    pub fn new(observer: Arc<Observer>, record: Arc<Record>, span: tracing::Span) -> Self {
        Self {
            observer,
            record,
            span,
            facts: trace::ResponseFacts::default(),
            first_chunk_seen: false,
            key: None,
            sent: None,
            status: None,
        }
    }

    /// The model that answered (a fallback's, after one) as a label.
    fn model(&self) -> Label {
        let model = {
            let data = self.record.data();
            data.upstream_model.clone().or_else(|| data.model.clone())
        };
        self.observer.metrics.models.label(model.as_deref().unwrap_or(""))
    }
}

impl Tap for ExchangeTap {
    fn queued(&mut self, waited: Duration) {
        // A retry's wait for Groq's budget falls within the time already counted as Groq's.
        if self.sent.is_none() {
            self.record.queued(waited);
        }
        trace::queued(&self.span, waited);
    }

    fn retried(&mut self, retry: &Retry<'_>) {
        self.observer.metrics.retry(retry.reason, retry.next);
        if let Some(model) = retry.model {
            self.record.data().upstream_model = Some(model.into());
        }
    }

    fn sent(&mut self, upstream_key: Option<usize>) {
        self.key = upstream_key.map(key_label);
        self.sent = Some(Instant::now());
        self.record.upstream_sent();
    }

    fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        {
            let mut data = self.record.data();
            data.upstream_status = Some(status.as_u16());
            data.upstream_key = self.key.clone();
            data.upstream_request_id = headers
                .get(X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(|v| clipped(v, 128));
        }
        let m = &self.observer.metrics;
        if status.is_server_error() {
            m.upstream_error("status_5xx");
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            m.upstream_error("status_429");
        }
        trace::upstream_status(&self.span, status.as_u16(), self.key.as_deref());
    }

    fn budget(&mut self, seen: &GroqBudgetHeaders) {
        if let Some(key) = &self.key {
            let model = self.model();
            let observer = &self.observer;
            observer
                .groq_budget
                .observe(&observer.metrics, key.clone(), model.name, seen);
        }
    }

    fn ready(&mut self) {
        self.record.upstream_ready();
    }

    fn chunk(&mut self, chunk: &bytes::Bytes) {
        if self.span.is_disabled() {
            return;
        }
        if !std::mem::replace(&mut self.first_chunk_seen, true) && self.record.data().stream {
            trace::first_token(&self.span);
        }
        read_facts(chunk, &mut self.facts);
    }

    fn end(&mut self, report: &Report) {
        self.record.data().upstream_outcome = Some(report.outcome);
        trace::end_upstream_span(&self.span, report, &self.facts);
        if let Some(usage) = report.usage {
            self.observer.usage(&self.record, usage);
        }
        let m = &self.observer.metrics;
        let ready = self.record.data().upstream_ready;
        // A failure before the answer could be relayed counts by its kind; one after the
        // client had the head is a broken stream, whatever broke it.
        match (report.outcome, ready, report.upstream_error) {
            (Outcome::Failed, None, Some(kind)) => m.upstream_error(kind),
            (Outcome::Failed, Some(_), _) if self.status.is_some_and(|s| s.is_success()) => {
                m.upstream_error("stream_broken")
            }
            _ => {}
        }
        let (Some(sent), Some(status)) = (self.sent, self.status) else {
            return;
        };
        let model = self.model();
        m.upstream_duration(&model, sent.elapsed().as_secs_f64());
        if let (Some(ready), true) = (ready, status.is_success()) {
            m.upstream_ttft(&model, ready.saturating_duration_since(sent).as_secs_f64());
        }
    }
}

/// The answer's id, model and finish reasons, found in the bytes as they pass (best effort: a
/// field split across two chunks is missed). Only runs while tracing.
fn read_facts(chunk: &[u8], facts: &mut trace::ResponseFacts) {
    fn string_after<'a>(haystack: &'a [u8], key: &[u8]) -> Option<&'a str> {
        let start = memchr::memmem::find(haystack, key)? + key.len();
        let rest = &haystack[start..];
        let end = memchr::memchr(b'"', rest)?;
        std::str::from_utf8(&rest[..end]).ok()
    }
    if facts.id.is_none() {
        facts.id = string_after(chunk, b"\"id\":\"").map(|id| clipped(id, 128));
    }
    if facts.model.is_none() {
        facts.model = string_after(chunk, b"\"model\":\"").map(|m| clipped(m, 128));
    }
    let key = b"\"finish_reason\":\"";
    let mut rest = chunk;
    while let Some(at) = memchr::memmem::find(rest, key) {
        rest = &rest[at + key.len()..];
        if let Some(end) = memchr::memchr(b'"', rest) {
            if let Ok(reason) = std::str::from_utf8(&rest[..end]) {
                if facts.finish_reasons.len() < 8 && !facts.finish_reasons.iter().any(|r| r == reason) {
                    facts.finish_reasons.push(reason.to_owned());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_labels_count_from_one() {
        for (index, name) in [(0, "key-1"), (7, "key-8"), (8, "key-9"), (99, "key-100")] {
            assert_eq!(&*key_label(index), name);
        }
    }
}
