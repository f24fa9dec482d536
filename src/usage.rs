//! Reading token usage from Groq's responses as they pass: the finish chunk of a stream, or the JSON body.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::{
    relay::{Outcome, Tap},
    sse::{LineSplitter, data_payload},
};

/// Token counts as Groq reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// What a finished exchange reports to whoever accounts for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    pub outcome: Outcome,
    pub status: u16,
    /// The last usage seen (a stream repeats it in `x_groq.usage`, `usage` and the
    /// `include_usage` chunk; they agree).
    pub usage: Option<Usage>,
    /// A stream carried an `{"error":...}` event: the answer is not a complete one.
    pub error_event: bool,
}

#[derive(Deserialize)]
struct Carrier {
    usage: Option<Usage>,
    x_groq: Option<XGroq>,
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct XGroq {
    usage: Option<Usage>,
}

/// Longest SSE line or JSON body examined; usage lives in small frames, so longer ones are skipped.
const MAX_INSPECTED: usize = 1 << 20;

/// A tap that finds the usage and calls `report` once when the exchange ends.
pub struct UsageTap<F: FnOnce(UsageReport) + Send + 'static> {
    sse: bool,
    status: u16,
    lines: LineSplitter,
    json: Vec<u8>,
    json_overflow: bool,
    usage: Option<Usage>,
    error_event: bool,
    report: Option<F>,
}

impl<F: FnOnce(UsageReport) + Send + 'static> UsageTap<F> {
    pub fn new(report: F) -> Self {
        Self {
            sse: false,
            status: 0,
            lines: LineSplitter::new(MAX_INSPECTED),
            json: Vec::new(),
            json_overflow: false,
            usage: None,
            error_event: false,
            report: Some(report),
        }
    }
}

/// Records the usage or error a JSON document carries. Only documents that can carry one are
/// parsed, so content deltas cost a substring search and nothing else.
fn inspect(json: &[u8], usage: &mut Option<Usage>, error_event: &mut bool) {
    let interesting = memchr::memmem::find(json, b"\"usage\"").is_some() || json.starts_with(b"{\"error\"");
    if !interesting {
        return;
    }
    if let Ok(carrier) = serde_json::from_slice::<Carrier>(json) {
        if let Some(found) = carrier.usage.or(carrier.x_groq.and_then(|x| x.usage)) {
            *usage = Some(found);
        }
        if carrier.error.is_some() {
            *error_event = true;
        }
    }
}

impl<F: FnOnce(UsageReport) + Send + 'static> Tap for UsageTap<F> {
    fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = status.as_u16();
        self.sse = crate::upstream::headers::is_event_stream(headers);
    }

    fn chunk(&mut self, chunk: &Bytes) {
        if self.sse {
            let Self {
                lines,
                usage,
                error_event,
                ..
            } = self;
            lines.feed(chunk, |line| {
                if let Some(payload) = data_payload(line) {
                    inspect(payload, usage, error_event);
                }
            });
        } else if !self.json_overflow {
            if self.json.len() + chunk.len() > MAX_INSPECTED {
                self.json_overflow = true;
                self.json = Vec::new();
            } else {
                self.json.extend_from_slice(chunk);
            }
        }
    }

    fn end(&mut self, outcome: Outcome) {
        if !self.sse && outcome == Outcome::Complete && !self.json_overflow {
            inspect(&self.json, &mut self.usage, &mut self.error_event);
        }
        if let Some(report) = self.report.take() {
            report(UsageReport {
                outcome,
                status: self.status,
                usage: self.usage,
                error_event: self.error_event,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::HeaderValue;

    use super::*;
    use crate::relay::Taps;

    fn run(content_type: &'static str, body: &[u8], slice: usize, outcome: Outcome) -> UsageReport {
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        let mut taps = Taps::new();
        taps.push(UsageTap::new(move |r| {
            if let Ok(mut g) = sink.lock() {
                *g = Some(r);
            }
        }));
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        taps.start(StatusCode::OK, &headers);
        for piece in body.chunks(slice) {
            taps.chunk(&Bytes::copy_from_slice(piece));
        }
        taps.end(outcome);
        let report = *got.lock().expect("lock");
        report.expect("reported")
    }

    #[test]
    fn finds_usage_in_streams_however_they_are_cut() {
        let stream = include_bytes!("../tests/fixtures/groq/stream-include-usage.sse");
        for slice in [1, 3, 17, 64, 100_000] {
            let r = run("text/event-stream", stream, slice, Outcome::Complete);
            assert_eq!(r.usage.map(|u| u.total_tokens), Some(76), "slice {slice}");
            assert!(!r.error_event);
        }
        let content = include_bytes!("../tests/fixtures/groq/stream-content.sse");
        assert!(run("text/event-stream", content, 7, Outcome::Complete).usage.is_some());
        let broken = include_bytes!("../tests/fixtures/groq/stream-midstream-error.sse");
        let r = run("text/event-stream", broken, 5, Outcome::Complete);
        assert!(r.error_event);
        assert_eq!(r.usage, None);
    }

    #[test]
    fn finds_usage_in_json_bodies() {
        let body = include_bytes!("../tests/fixtures/groq/chat-completion.json");
        let r = run("application/json", body, 10, Outcome::Complete);
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 16,
                completion_tokens: 19,
                total_tokens: 35
            })
        );
        let r = run("application/json", body, 10, Outcome::Cancelled);
        assert_eq!(r.outcome, Outcome::Cancelled);
        assert_eq!(r.usage, None);
    }
}
