//! What groxy tells its operator: Prometheus metrics, one access-log line per request, usage per client key, and the dashboard's figures.
//!
//! Everything is fed from one place per request: the [`Record`] the outermost middleware opens,
//! handlers fill in, and [`Observer::finish`] reads when the response body ends (or the client
//! leaves). Token usage arrives separately, from the relay's usage tap, because a coalesced
//! flight may outlive the client that started it.

pub mod access;
mod groq_budget;
mod layer;
pub mod ledger;
pub mod metrics;
mod record;
pub mod request_id;
pub mod stats;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

pub use groq_budget::{BudgetRow, GroqBudget};
pub use layer::observe_request;
pub use ledger::Ledger;
pub use metrics::Metrics;
pub use record::{Record, RequestRecord, is_api, route_of};
pub use stats::Stats;

use crate::{
    relay::{Outcome, Tap},
    usage::Usage,
};

/// A (client or upstream key name, model) pair: the rows of usage and budget tables.
type KeyModel = (Arc<str>, Arc<str>);

/// Left in a response's extensions by `GatewayError` when a limit refused the request.
#[derive(Debug, Clone, Copy)]
pub struct RefusedBy(pub &'static str);

pub struct Observer {
    pub metrics: Metrics,
    pub ledger: Ledger,
    pub stats: Stats,
    pub groq_budget: GroqBudget,
    pub started_at: SystemTime,
}

/// How a response ended, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Complete,
    /// The body failed mid-way (an upstream error after the head).
    Failed,
    /// The client went away before the end.
    Cancelled,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Complete => "complete",
            End::Failed => "failed",
            End::Cancelled => "cancelled",
        }
    }
}

/// What the middleware knows when the response head leaves.
pub struct Head {
    pub status: StatusCode,
    pub at: Instant,
    pub refused_by: Option<&'static str>,
    pub stream: bool,
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Observer {
    pub fn new(per_key_metrics: bool) -> Self {
        Self {
            metrics: Metrics::new(per_key_metrics),
            ledger: Ledger::default(),
            stats: Stats::default(),
            groq_budget: GroqBudget::default(),
            started_at: SystemTime::now(),
        }
    }

    /// Token usage Groq reported for a request: counted when it is known, which for a flight
    /// whose client left may be after that client's access line.
    pub fn usage(&self, record: &Record, usage: Usage) {
        let (key, model) = {
            let mut data = record.data();
            data.usage = Some(usage);
            (data.key.clone(), data.model.clone())
        };
        let model = self.metrics.models.get(model.as_deref().unwrap_or(""));
        let m = &self.metrics;
        for (kind, count) in [("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)] {
            m.tokens
                .get_or_create(&metrics::TokenLabels {
                    model: model.clone(),
                    kind,
                })
                .inc_by(count);
        }
        if let Some(key) = key {
            if m.per_key {
                let key = m.keys.get(&key);
                for (kind, count) in [("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens)] {
                    m.key_tokens
                        .get_or_create(&metrics::KeyTokenLabels {
                            key: key.clone(),
                            model: model.clone(),
                            kind,
                        })
                        .inc_by(count);
                }
            }
            self.ledger.record(
                &key,
                &model,
                ledger::Event {
                    usage: Some(usage),
                    ..ledger::Event::default()
                },
            );
        }
    }

    /// Called once per request when its response ends, fails, or is abandoned by the client.
    pub fn finish(&self, record: &Record, head: &Head, end: End) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(record.started);
        let overhead = record.overhead(head.at);
        let data = record.data();
        let m = &self.metrics;
        let route = record.route;
        let api = is_api(route);
        let model = data.model.as_deref().map(|name| m.models.get(name));
        let status = head.status.as_u16();
        m.requests
            .get_or_create(&metrics::RequestLabels {
                route,
                status,
                model: model.clone().unwrap_or_else(|| "".into()),
            })
            .inc();
        let route_labels = metrics::RouteLabels { route };
        m.request_duration
            .get_or_create(&route_labels)
            .observe(latency.as_secs_f64());
        m.overhead.get_or_create(&route_labels).observe(overhead.as_secs_f64());
        if let Some(cache) = data.cache {
            m.cache
                .get_or_create(&metrics::ResultLabels {
                    result: cache_label(cache),
                })
                .inc();
        }
        if let Some(limit) = head.refused_by {
            m.rate_limited.get_or_create(&metrics::LimitLabels { limit }).inc();
        }
        if let (Some(key), Some(model), "chat_completions") = (&data.key, &model, route) {
            if m.per_key {
                m.key_requests
                    .get_or_create(&metrics::KeyLabels {
                        key: m.keys.get(key),
                        model: model.clone(),
                    })
                    .inc();
            }
            self.ledger.record(
                key,
                model,
                ledger::Event {
                    request: true,
                    cached: matches!(data.cache, Some("HIT" | "COALESCED")),
                    rate_limited: head.refused_by.is_some(),
                    usage: None,
                },
            );
        }
        let latency_ms = ms(latency);
        let overhead_ms = ms(overhead);
        let upstream_ms = match (data.upstream_sent, data.upstream_ready) {
            (Some(sent), Some(ready)) => Some(ms(ready.saturating_duration_since(sent))),
            _ => None,
        };
        if api {
            let now_secs = unix_now();
            self.stats.add(
                stats::Sample {
                    now_secs,
                    latency_ms,
                    overhead_ms: Some(overhead_ms),
                    error: (status >= 400 && status != 429) || end == End::Failed,
                    rate_limited: status == 429,
                },
                Some(stats::Recent {
                    time: now_secs,
                    request_id: record.id.clone(),
                    key: data.key.clone(),
                    model: data.model.clone(),
                    route,
                    status,
                    latency_ms,
                    prompt_tokens: data.usage.map(|u| u.prompt_tokens),
                    completion_tokens: data.usage.map(|u| u.completion_tokens),
                    cache: data.cache,
                    stream: head.stream,
                }),
            );
        }
        let usage = data.usage;
        let line = access::Line {
            request_id: &record.id,
            method: record.method.as_str(),
            path: &record.path,
            route,
            status,
            key: data.key.as_deref(),
            model: data.model.as_deref(),
            stream: head.stream,
            cache: data.cache,
            latency_ms,
            overhead_ms,
            upstream_ms,
            queued_ms: (!data.queued.is_zero()).then(|| ms(data.queued)),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            upstream_key: data.upstream_key.as_deref(),
            upstream_status: data.upstream_status,
            upstream_request_id: data.upstream_request_id.as_deref(),
            limit: head.refused_by,
            outcome: end.as_str(),
        };
        if access::write_json(&line, api) {
            return;
        }
        macro_rules! access {
            ($level:ident) => {
                tracing::$level!(
                    target: "groxy::access",
                    request_id = line.request_id,
                    method = line.method,
                    path = line.path,
                    route = line.route,
                    status = line.status,
                    key = line.key,
                    model = line.model,
                    stream = line.stream,
                    cache = line.cache,
                    latency_ms = line.latency_ms,
                    overhead_ms = line.overhead_ms,
                    upstream_ms = line.upstream_ms,
                    queued_ms = line.queued_ms,
                    prompt_tokens = line.prompt_tokens,
                    completion_tokens = line.completion_tokens,
                    upstream_key = line.upstream_key,
                    upstream_status = line.upstream_status,
                    upstream_request_id = line.upstream_request_id,
                    limit = line.limit,
                    outcome = line.outcome,
                    "request"
                )
            };
        }
        if api {
            access!(info);
        } else {
            access!(debug);
        }
    }

    /// Sets the gauges that are read rather than counted, then renders the exposition.
    pub fn render_metrics(&self, in_flight: usize, connections: usize) -> String {
        self.metrics.in_flight.set(in_flight as i64);
        self.metrics.connections.set(connections as i64);
        self.metrics.render()
    }
}

fn cache_label(status: &'static str) -> &'static str {
    match status {
        "HIT" => "hit",
        "MISS" => "miss",
        "COALESCED" => "coalesced",
        _ => "bypass",
    }
}

/// Watches one exchange with Groq: its request id and budget headers at the start, its
/// duration, time to first byte and failure kind at the end.
pub struct UpstreamTap {
    pub observer: Arc<Observer>,
    pub record: Arc<Record>,
    /// `key-1`, … for configured keys; `None` for a caller's own key (passthrough), whose
    /// budget is theirs, not the team's.
    pub key: Option<Arc<str>>,
    pub model: Arc<str>,
    pub sent: Instant,
    status: Option<StatusCode>,
}

impl UpstreamTap {
    pub fn new(observer: Arc<Observer>, record: Arc<Record>, key: Option<Arc<str>>, model: Arc<str>) -> Self {
        Self {
            observer,
            record,
            key,
            model,
            sent: Instant::now(),
            status: None,
        }
    }
}

impl Tap for UpstreamTap {
    fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        {
            let mut data = self.record.data();
            data.upstream_status = Some(status.as_u16());
            data.upstream_key = self.key.clone();
            data.upstream_request_id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(128).collect());
        }
        let m = &self.observer.metrics;
        if status.is_server_error() {
            m.upstream_error("status_5xx");
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            m.upstream_error("status_429");
        }
        if let Some(key) = &self.key {
            let model = m.models.get(&self.model);
            self.observer.groq_budget.observe(m, key.clone(), model, headers);
        }
    }

    fn end(&mut self, outcome: Outcome) {
        let m = &self.observer.metrics;
        let model = m.models.get(&self.model);
        let elapsed = self.sent.elapsed().as_secs_f64();
        if let Some(status) = self.status {
            m.upstream_duration
                .get_or_create(&metrics::ModelLabels { model: model.clone() })
                .observe(elapsed);
            if outcome == Outcome::Failed && status.is_success() {
                m.upstream_error("stream_broken");
            }
        }
        let first_byte = self.record.data().upstream_ready;
        if let (Some(ready), true) = (first_byte, self.status.is_some_and(|s| s.is_success())) {
            m.upstream_ttft
                .get_or_create(&metrics::ModelLabels { model })
                .observe(ready.saturating_duration_since(self.sent).as_secs_f64());
        }
    }
}
