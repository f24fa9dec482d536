//! Side taps: observers of one exchange with Groq (limits, budget, cache, observation), which see the bytes the client receives and can never change them.
//!
//! A tap is told, in order: how long the request waited for Groq's budget (`queued`), that it
//! left for Groq (`sent`), Groq's status and headers (`start`), that the answer is ready to go
//! to the client (`ready`), every chunk (`chunk`), and once how it all ended (`end`, with the
//! token usage read from the answer). The usage is read here, once, for every tap. An attempt
//! given up before its answer was relayed is told as `retried`, between its `sent` and the next.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::usage::{Usage, UsageReader};
use crate::{error::GatewayError, wire::ratelimit::GroqBudgetHeaders};

/// How a relayed exchange ended, told to every tap exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body was relayed and the upstream ended it normally.
    Complete,
    /// The upstream failed (before or after the first byte), or groxy cut the response short.
    Failed,
    /// The client went away first.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What every tap learns when an exchange ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// Groq's status; 0 when no answer arrived.
    pub status: u16,
    /// The last usage Groq reported (a stream repeats it; the copies agree).
    pub usage: Option<Usage>,
    /// For an event stream, the completion tokens its content, reasoning and tool-call deltas
    /// carried before Groq's usage arrived (a lower-bound estimate): what a stream cut short
    /// has cost when `usage` never came. `None` for any other answer.
    pub streamed_tokens: Option<u64>,
    /// A stream carried an `{"error":...}` event: the answer is not a complete one.
    pub error_event: bool,
    /// Why the exchange failed before Groq's answer could be relayed, as a metrics label.
    pub upstream_error: Option<&'static str>,
}

/// An attempt given up while nothing of its answer had reached the client, told before the
/// next one is sent (see `upstream::Forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry<'a> {
    /// Why, as a metrics label: `unreachable`, `reset`, `status_503`, …
    pub reason: &'static str,
    /// What the next attempt changes: `same_model`, `on_demand` or `fallback`.
    pub next: &'static str,
    /// The model the next attempt asks for, when it is not the one requested.
    pub model: Option<&'a str>,
}

/// An observer of one exchange. Methods run inline on the relay path, so they must be cheap:
/// anything slow belongs in a task the tap spawns.
pub trait Tap: Send + 'static {
    fn queued(&mut self, _waited: Duration) {}
    /// Once per attempt: one exchange may take several (see [`Tap::retried`]).
    fn sent(&mut self, _upstream_key: Option<usize>) {}
    /// An attempt failed before its answer was relayed and another follows; `start` and the
    /// rest are told of the last attempt only.
    fn retried(&mut self, _retry: &Retry<'_>) {}
    fn start(&mut self, _status: StatusCode, _headers: &HeaderMap) {}
    /// Right after `start`, what the `x-ratelimit-*` headers it was given say, when the
    /// attempt went out on a configured key (read once by the forward path).
    fn budget(&mut self, _seen: &GroqBudgetHeaders) {}
    fn ready(&mut self) {}
    fn chunk(&mut self, _chunk: &Bytes) {}
    fn end(&mut self, _report: &Report) {}
}

/// The taps of one exchange. Dropping it before `end` reports `Cancelled`: a dropped response
/// body or handler future means the client hung up.
#[derive(Default)]
pub struct Taps {
    taps: Vec<Box<dyn Tap>>,
    usage: UsageReader,
    status: u16,
    upstream_error: Option<&'static str>,
    ended: bool,
    /// The budget headers of the last attempt's answer, for `start` to hand on.
    budget: Option<GroqBudgetHeaders>,
}

impl Taps {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, tap: impl Tap) {
        self.taps.push(Box::new(tap));
    }

    pub fn queued(&mut self, waited: Duration) {
        self.taps.iter_mut().for_each(|tap| tap.queued(waited));
    }

    /// The request left for Groq, under a configured key (its index) or the caller's own.
    pub fn sent(&mut self, upstream_key: Option<usize>) {
        self.budget = None;
        self.taps.iter_mut().for_each(|tap| tap.sent(upstream_key));
    }

    /// What the budget headers of the attempt's answer say; told to the taps with `start`
    /// (only the last attempt's answer is started).
    pub fn budget(&mut self, seen: GroqBudgetHeaders) {
        self.budget = Some(seen);
    }

    pub fn retried(&mut self, retry: &Retry<'_>) {
        self.taps.iter_mut().for_each(|tap| tap.retried(retry));
    }

    pub fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = status.as_u16();
        self.usage.start(headers);
        let budget = self.budget.take();
        for tap in &mut self.taps {
            tap.start(status, headers);
            if let Some(seen) = &budget {
                tap.budget(seen);
            }
        }
    }

    pub fn ready(&mut self) {
        self.taps.iter_mut().for_each(|tap| tap.ready());
    }

    pub fn chunk(&mut self, chunk: &Bytes) {
        self.usage.chunk(chunk);
        for tap in &mut self.taps {
            tap.chunk(chunk);
        }
    }

    /// The exchange failed before an answer could be relayed: `error` says why.
    pub fn fail(&mut self, error: &GatewayError) {
        self.upstream_error = error.upstream_kind();
        self.end(Outcome::Failed);
    }

    pub fn end(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let (usage, error_event) = self.usage.finish(outcome == Outcome::Complete);
        let report = Report {
            outcome,
            status: self.status,
            usage,
            streamed_tokens: self.usage.streamed_tokens(),
            error_event,
            upstream_error: self.upstream_error,
        };
        for tap in &mut self.taps {
            tap.end(&report);
        }
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

/// A tap made of one closure run at the end.
#[cfg(test)]
pub struct OnEnd<F: FnOnce(&Report) + Send + 'static>(Option<F>);

#[cfg(test)]
pub fn on_end<F: FnOnce(&Report) + Send + 'static>(f: F) -> OnEnd<F> {
    OnEnd(Some(f))
}

#[cfg(test)]
impl<F: FnOnce(&Report) + Send + 'static> Tap for OnEnd<F> {
    fn end(&mut self, report: &Report) {
        if let Some(f) = self.0.take() {
            f(report);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::HeaderValue;

    use super::*;

    struct Log(Arc<Mutex<Vec<String>>>);

    impl Tap for Log {
        fn chunk(&mut self, chunk: &Bytes) {
            self.0
                .lock()
                .map(|mut v| v.push(format!("chunk {}", chunk.len())))
                .unwrap_or(());
        }
        fn end(&mut self, report: &Report) {
            self.0
                .lock()
                .map(|mut v| v.push(format!("{:?}", report.outcome)))
                .unwrap_or(());
        }
    }

    #[test]
    fn ends_once_and_reports_a_drop_as_cancelled() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut taps = Taps::new();
        taps.push(Log(log.clone()));
        taps.chunk(&Bytes::from_static(b"abc"));
        drop(taps);
        let mut taps = Taps::new();
        taps.push(Log(log.clone()));
        taps.end(Outcome::Complete);
        taps.end(Outcome::Failed);
        drop(taps);
        assert_eq!(*log.lock().expect("lock"), ["chunk 3", "Cancelled", "Complete"]);
    }

    fn run(content_type: &'static str, body: &[u8], slice: usize, outcome: Outcome) -> Report {
        let got = Arc::new(Mutex::new(None));
        let sink = got.clone();
        let mut taps = Taps::new();
        taps.push(on_end(move |r: &Report| {
            if let Ok(mut g) = sink.lock() {
                *g = Some(*r);
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
        let stream = include_bytes!("../../tests/fixtures/groq/stream-include-usage.sse");
        for slice in [1, 3, 17, 64, 100_000] {
            let r = run("text/event-stream", stream, slice, Outcome::Complete);
            assert_eq!(r.usage.map(|u| u.total_tokens), Some(76), "slice {slice}");
            assert!(!r.error_event);
        }
        let content = include_bytes!("../../tests/fixtures/groq/stream-content.sse");
        assert!(run("text/event-stream", content, 7, Outcome::Complete).usage.is_some());
        let cut = run(
            "text/event-stream",
            &content[..content.len() / 2],
            7,
            Outcome::Cancelled,
        );
        assert_eq!(cut.usage, None);
        assert!(cut.streamed_tokens.is_some_and(|n| n > 0), "{cut:?}");
        let broken = include_bytes!("../../tests/fixtures/groq/stream-midstream-error.sse");
        let r = run("text/event-stream", broken, 5, Outcome::Complete);
        assert!(r.error_event);
        assert_eq!(r.usage, None);
    }

    #[test]
    fn counts_the_completion_a_cut_stream_carried() {
        let content = include_bytes!("../../tests/fixtures/groq/stream-content.sse");
        // The first 18 of its 22 events: the reasoning (6 pieces) and 16 content deltas (20).
        let cut = memchr::memmem::find_iter(content, b"\n\n").nth(17).expect("18 events") + 2;
        for slice in [1, 5, 64, 100_000] {
            let r = run("text/event-stream", &content[..cut], slice, Outcome::Cancelled);
            assert_eq!((r.usage, r.streamed_tokens), (None, Some(26)), "slice {slice}");
        }
        let whole = run("text/event-stream", content, 9, Outcome::Complete);
        assert_eq!(whole.usage.map(|u| u.total_tokens), Some(99));
        let json = include_bytes!("../../tests/fixtures/groq/chat-completion.json");
        assert_eq!(
            run("application/json", json, 10, Outcome::Cancelled).streamed_tokens,
            None
        );
    }

    #[test]
    fn finds_usage_in_json_bodies() {
        let body = include_bytes!("../../tests/fixtures/groq/chat-completion.json");
        let r = run("application/json", body, 10, Outcome::Complete);
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 16,
                completion_tokens: 19,
                total_tokens: 35,
                cached_tokens: 0,
            })
        );
        let r = run("application/json", body, 10, Outcome::Cancelled);
        assert_eq!(r.outcome, Outcome::Cancelled);
        assert_eq!(r.usage, None);
    }
}
