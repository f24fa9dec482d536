//! One request's record: filled in by the handlers as the request goes, read once when its response ends.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    cache::CacheStatus,
    relay::{Outcome, usage::Usage},
};

/// The first `chars` characters of `text`, owned: log fields and span attributes are bounded.
/// Most values are short, and a text of at most `chars` bytes has at most `chars` characters,
/// so it is copied whole without walking it.
pub fn clipped(text: &str, chars: usize) -> String {
    if text.len() <= chars {
        return text.to_owned();
    }
    text.chars().take(chars).collect()
}

/// The route label: a small fixed set, so metrics stay bounded whatever paths clients send.
pub fn route_of(path: &str) -> &'static str {
    let api = ["/openai/v1/", "/v1/"].iter().find_map(|p| path.strip_prefix(p));
    if let Some(rest) = api {
        if rest == "chat/completions" {
            return "chat_completions";
        }
        let first = rest.split('/').next().unwrap_or("");
        return match first {
            "models" => "models",
            "audio" => "audio",
            "files" => "files",
            "batches" => "batches",
            "responses" => "responses",
            "embeddings" => "embeddings",
            _ => "api_other",
        };
    }
    match path {
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        p if p == "/dashboard" || p.starts_with("/dashboard/") => "dashboard",
        p if p.starts_with("/admin/") => "admin",
        _ => "unknown",
    }
}

/// Whether a route is API traffic (accounted, on the dashboard, logged at info) rather than
/// an operator's or a probe's (health checks, scrapes, the dashboard itself).
pub fn is_api(route: &'static str) -> bool {
    !matches!(route, "health" | "metrics" | "dashboard" | "admin" | "unknown")
}

#[derive(Debug, Default)]
pub struct Data {
    pub key: Option<Arc<str>>,
    /// Who the persistent ledger counts the request as (see `set_caller`).
    pub subject: Option<Arc<str>>,
    /// Passed admission (the caller's limits and budgets).
    pub admitted: bool,
    /// What Groq's usage cost, in nanodollars, once known.
    pub cost_nanos: Option<u64>,
    pub model: Option<Arc<str>>,
    pub stream: bool,
    pub cache: Option<CacheStatus>,
    pub upstream_key: Option<Arc<str>>,
    pub upstream_request_id: Option<String>,
    pub upstream_status: Option<u16>,
    pub upstream_sent: Option<Instant>,
    /// When Groq's answer was ready to relay: its head (JSON) or its first bytes (streams).
    pub upstream_ready: Option<Instant>,
    /// Time spent waiting for Groq's budget in groxy's queue: not overhead, not Groq's either.
    pub queued: Duration,
    pub usage: Option<Usage>,
    /// How the exchange with Groq ended: a stream Groq cut ends the client's body normally
    /// (after an error event), yet the request failed.
    pub upstream_outcome: Option<Outcome>,
    /// Requests sent to Groq for this one (retries and fallbacks included).
    pub attempts: u32,
    /// The fallback model that answered, when it was not the one requested.
    pub upstream_model: Option<Arc<str>>,
}

/// Shared by the middleware that opens it and every handler and tap that adds to it.
#[derive(Debug)]
pub struct Record {
    pub id: String,
    pub started: Instant,
    pub route: &'static str,
    pub method: http::Method,
    /// Path only: a query string may carry anything.
    pub path: String,
    /// The request's server span, parent of the step spans and the upstream span; disabled
    /// when tracing is off or the request is not sampled.
    pub span: tracing::Span,
    /// Its trace id when sampled, for the access line.
    pub trace_id: Option<String>,
    /// Tracing on, the request not sampled: the context Groq's `traceparent` carries.
    pub unsampled: Option<opentelemetry::Context>,
    data: Mutex<Data>,
}

/// The handle handlers receive (axum extensions must be `Clone`).
#[derive(Debug, Clone)]
pub struct RequestRecord(pub Arc<Record>);

impl Record {
    pub fn new(id: String, method: http::Method, path: &str, started: Instant, headers: &http::HeaderMap) -> Self {
        let route = route_of(path);
        let path = clipped(path, 256);
        let (span, trace_id, unsampled) = super::trace::server_span(&method, &path, route, headers);
        Self {
            id,
            started,
            route,
            method,
            path,
            trace_id,
            span,
            unsampled,
            data: Mutex::new(Data::default()),
        }
    }

    pub fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key`: the caller's name (logs, metrics); `subject`: who the persistent ledger counts
    /// (a stored key's id, or the name).
    pub fn set_caller(&self, key: Arc<str>, subject: Arc<str>) {
        let mut data = self.data();
        data.key = Some(key);
        data.subject = Some(subject);
    }

    /// The request passed the caller's limits and budgets: it counts as a request in the
    /// ledger (a refused one counts as a refusal).
    pub fn admitted(&self) {
        self.data().admitted = true;
    }

    pub fn set_request(&self, model: Option<Arc<str>>, stream: bool) {
        let mut data = self.data();
        data.model = model;
        data.stream = stream;
    }

    pub fn set_cache(&self, status: CacheStatus) {
        self.data().cache = Some(status);
    }

    pub fn queued(&self, waited: Duration) {
        self.data().queued += waited;
    }

    /// An attempt left for Groq. The first one starts the time spent on Groq: failed attempts
    /// and the waits between them are Groq's share, not groxy's overhead.
    pub fn upstream_sent(&self) {
        let mut data = self.data();
        data.attempts += 1;
        data.upstream_sent.get_or_insert_with(Instant::now);
    }

    pub fn upstream_ready(&self) {
        let mut data = self.data();
        if data.upstream_ready.is_none() {
            data.upstream_ready = Some(Instant::now());
        }
    }

    /// Time this request spent waiting on another's flight counts as waiting on Groq.
    pub fn waited_on_flight(&self, from: Instant, to: Instant) {
        let mut data = self.data();
        data.upstream_sent.get_or_insert(from);
        data.upstream_ready.get_or_insert(to);
    }

    /// Groxy's own share of the time to the response head: everything but waiting on Groq
    /// (or a flight) and on Groq's budget queue.
    pub fn overhead(&self, head: Instant) -> Duration {
        let data = self.data();
        let total = head.saturating_duration_since(self.started);
        let upstream = match (data.upstream_sent, data.upstream_ready) {
            (Some(sent), Some(ready)) => ready.saturating_duration_since(sent),
            (Some(sent), None) => head.saturating_duration_since(sent),
            _ => Duration::ZERO,
        };
        total.saturating_sub(upstream).saturating_sub(data.queued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters_as_before() {
        for (text, chars) in [
            ("", 3),
            ("abc", 3),
            ("abcd", 3),
            ("é", 1),
            ("éé", 1),
            ("aé", 2),
            ("日本語", 2),
            ("日本語", 9),
        ] {
            assert_eq!(
                clipped(text, chars),
                text.chars().take(chars).collect::<String>(),
                "{text} {chars}"
            );
        }
    }

    #[test]
    fn routes_are_a_fixed_set() {
        assert_eq!(route_of("/v1/chat/completions"), "chat_completions");
        assert_eq!(route_of("/openai/v1/chat/completions"), "chat_completions");
        assert_eq!(route_of("/v1/models/openai/gpt-oss-20b"), "models");
        assert_eq!(route_of("/v1/audio/transcriptions"), "audio");
        assert_eq!(route_of("/v1/whatever/x"), "api_other");
        assert_eq!(route_of("/metrics"), "metrics");
        assert_eq!(route_of("/dashboard"), "dashboard");
        assert_eq!(route_of("/admin/usage"), "admin");
        assert_eq!(route_of("/wp-login.php"), "unknown");
    }
}
