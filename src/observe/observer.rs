//! The observer: what one finished request adds to the metrics, the usage ledger, the dashboard's figures and the access log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use tokio::time::Instant;

use arc_swap::ArcSwap;

use super::{
    access,
    groq_budget::GroqBudget,
    ledger::{self, Ledger},
    metrics::{self, Metrics, ResultLabels, bounded_arc},
    persist::{Delta, Pending},
    record::{Record, is_api},
    stats::{self, Stats},
};
use crate::{
    cache::CacheStatus,
    error::RefusingLimit,
    prices::PriceTable,
    relay::{Outcome, usage::Usage},
};

pub struct Observer {
    pub metrics: Metrics,
    pub ledger: Ledger,
    pub stats: Stats,
    pub groq_budget: GroqBudget,
    pub started_at: SystemTime,
    /// The persistent ledger's rows not written yet.
    pub pending: Pending,
    /// Prices Groq's usage is costed at (replaced on reload).
    pub prices: ArcSwap<PriceTable>,
}

/// Gauges read at scrape time rather than counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub in_flight: usize,
    pub connections: usize,
    pub throttled_addresses: usize,
    pub limit_scopes: usize,
    pub verified_keys: usize,
    pub cache_entries: usize,
}

/// What the middleware knows when the response head leaves.
pub struct Head {
    pub status: StatusCode,
    pub at: Instant,
    pub refused_by: Option<RefusingLimit>,
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
    pub fn new(per_key_metrics: bool, ledger_rows: usize, prices: PriceTable) -> Self {
        Self {
            metrics: Metrics::new(per_key_metrics),
            ledger: Ledger::default(),
            stats: Stats::default(),
            groq_budget: GroqBudget::default(),
            started_at: SystemTime::now(),
            pending: Pending::new(ledger_rows),
            prices: ArcSwap::from_pointee(prices),
        }
    }

    /// Token usage Groq reported for a request: counted when it is known, which for a flight
    /// whose client left may be after that client's access line.
    pub fn usage(&self, record: &Record, usage: Usage) {
        // Tokens count, and cost, for the model that spent them: a fallback's, after one.
        let spent_by = {
            let data = record.data();
            data.upstream_model.clone().or_else(|| data.model.clone())
        };
        let price = spent_by.as_deref().and_then(|m| self.prices.load().get(m));
        let cost = price.map(|p| p.cost(usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens));
        let (key, model, subject) = {
            let mut data = record.data();
            data.usage = Some(usage);
            data.cost_nanos = cost;
            (data.key.clone(), spent_by, data.subject.clone())
        };
        if let Some(subject) = &subject {
            self.pending.add(
                subject,
                &model.as_ref().map_or_else(|| "".into(), bounded_arc),
                Delta {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    cached_tokens: usage.cached_tokens,
                    cost_nanos: cost.unwrap_or(0),
                    ..Delta::default()
                },
            );
        }
        let m = &self.metrics;
        let label = m.models.label(model.as_deref().unwrap_or(""));
        if let Some(cost) = cost {
            m.cost(&label, cost as f64 / 1e9);
        }
        m.tokens(&label, 0, usage.prompt_tokens);
        m.tokens(&label, 1, usage.completion_tokens);
        let model = label.name;
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
    pub fn finish(&self, record: &Record, head: &Head, end: Outcome) {
        let end = match (end, record.data().upstream_outcome) {
            (Outcome::Complete, Some(Outcome::Failed)) => Outcome::Failed,
            _ => end,
        };
        let now = Instant::now();
        let latency = now.saturating_duration_since(record.started);
        let overhead = record.overhead(head.at);
        let data = record.data();
        let m = &self.metrics;
        let route = record.route;
        let api = is_api(route);
        let label = data.model.as_deref().map(|name| m.models.label(name));
        let status = head.status.as_u16();
        m.count_request(route, status, label.as_ref());
        let model = label.map(|label| label.name);
        let exemplar = record
            .trace_id
            .clone()
            .map(|trace_id| metrics::TraceLabels { trace_id });
        m.observe_route(route, latency.as_secs_f64(), exemplar, overhead.as_secs_f64());
        if let Some(cache) = data.cache {
            m.count_cache(cache.label());
        }
        if let Some(limit) = head.refused_by {
            m.rate_limited
                .get_or_create(&metrics::LimitLabels { limit: limit.label() })
                .inc();
        }
        // A request Groq refused for its key (401) is no one's usage: in passthrough mode a
        // client could otherwise grow the ledger by a row per made-up key per hour.
        let refused_key = data.upstream_status == Some(401);
        if let (Some(subject), true, false) = (&data.subject, api, refused_key) {
            let admitted = data.admitted && head.refused_by.is_none();
            if admitted || head.refused_by.is_some() {
                self.pending.add(
                    subject,
                    &data.model.as_ref().map_or_else(|| "".into(), bounded_arc),
                    Delta {
                        requests: u64::from(admitted),
                        refusals: u64::from(head.refused_by.is_some()),
                        ..Delta::default()
                    },
                );
            }
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
                    cached: matches!(data.cache, Some(CacheStatus::Hit | CacheStatus::Coalesced)),
                    rate_limited: head.refused_by.is_some(),
                    usage: None,
                },
            );
        }
        super::trace::end_server_span(
            &record.span,
            status,
            end,
            data.cache.map(CacheStatus::as_str),
            head.refused_by.map(RefusingLimit::label),
        );
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
                    error: (status >= 400 && status != 429) || end == Outcome::Failed,
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
                    cache: data.cache.map(CacheStatus::as_str),
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
            cache: data.cache.map(CacheStatus::as_str),
            latency_ms,
            overhead_ms,
            upstream_ms,
            queued_ms: (!data.queued.is_zero()).then(|| ms(data.queued)),
            prompt_tokens: usage.map(|u| u.prompt_tokens),
            completion_tokens: usage.map(|u| u.completion_tokens),
            cost_usd: data.cost_nanos.map(|nanos| nanos as f64 / 1e9),
            upstream_key: data.upstream_key.as_deref(),
            upstream_status: data.upstream_status,
            upstream_request_id: data.upstream_request_id.as_deref(),
            attempts: (data.attempts > 0).then_some(data.attempts),
            upstream_model: data.upstream_model.as_deref(),
            limit: head.refused_by.map(RefusingLimit::label),
            outcome: end.as_str(),
            trace_id: record.trace_id.as_deref(),
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
                    cost_usd = line.cost_usd,
                    upstream_key = line.upstream_key,
                    upstream_status = line.upstream_status,
                    upstream_request_id = line.upstream_request_id,
                    attempts = line.attempts,
                    upstream_model = line.upstream_model,
                    limit = line.limit,
                    outcome = line.outcome,
                    trace_id = line.trace_id,
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
    pub fn render_metrics(&self, gauges: Gauges) -> String {
        let m = &self.metrics;
        let set = |gauge: &prometheus_client::metrics::gauge::Gauge, value: usize| {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&m.in_flight, gauges.in_flight);
        set(&m.connections, gauges.connections);
        set(&m.throttled_addresses, gauges.throttled_addresses);
        set(&m.limit_scopes, gauges.limit_scopes);
        set(&m.verified_keys, gauges.verified_keys);
        set(&m.cache_entries, gauges.cache_entries);
        let spans = crate::telemetry::span_counts();
        for (result, total) in [
            ("exported", spans.exported),
            ("dropped_queue_full", spans.dropped_queue_full),
            ("dropped_export_failed", spans.dropped_export_failed),
        ] {
            let counter = m.trace_spans.get_or_create(&ResultLabels { result });
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        m.render()
    }

    /// Counts and logs a reload: what applied and what waits for a restart, or every problem
    /// of a rejected file.
    /// `Ok((applied, restart_required))`, or `Err(problems)`.
    pub fn reloaded(&self, result: Result<(&[&'static str], &[&'static str]), &[String]>) {
        let outcome = |result| ResultLabels { result };
        match result {
            Ok((applied, restart_required)) => {
                self.metrics.config_reloads.get_or_create(&outcome("applied")).inc();
                tracing::info!(?applied, ?restart_required, "config reloaded");
                if !restart_required.is_empty() {
                    tracing::warn!(
                        settings = ?restart_required,
                        "these settings changed but apply only after a restart; the old values stay in effect"
                    );
                }
            }
            Err(problems) => {
                self.metrics.config_reloads.get_or_create(&outcome("rejected")).inc();
                for problem in problems {
                    tracing::error!(problem = %problem, "config reload rejected; the old config stays in effect");
                }
            }
        }
    }
}
