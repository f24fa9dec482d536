//! The Prometheus registry: every metric groxy exports, with label values drawn from small, fixed sets.
//!
//! `prometheus-client` rather than the `metrics` facade: its registry is a value, not a process
//! global, so every gateway (and every test's gateway in one process) counts on its own and a
//! scrape shows exactly that instance's traffic.

use std::{
    borrow::Cow,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        exemplar::HistogramWithExemplars,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};

use super::handles::{Handles, Label};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub model: Arc<str>,
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyLabels {
    pub key: Arc<str>,
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KeyTokenLabels {
    pub key: Arc<str>,
    pub model: Arc<str>,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Why the attempt was given up: `unreachable`, `reset`, `status_498`, `status_503`, …
    pub reason: &'static str,
    /// What the next attempt changed: `same_model`, `on_demand`, `fallback`.
    pub next: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    /// `key-1`, `key-2`, … in config order: never the key itself.
    pub upstream_key: Arc<str>,
    pub model: Arc<str>,
    /// `requests` or `tokens`.
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

/// Buckets from 100 µs to 2 min: groxy's overhead sits at the bottom, Groq's long generations at the top.
#[derive(Clone)]
pub struct LatencyBuckets;

const LATENCY_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(LATENCY_BUCKETS)
    }
}

impl MetricConstructor<HistogramWithExemplars<TraceLabels>> for LatencyBuckets {
    fn new_metric(&self) -> HistogramWithExemplars<TraceLabels> {
        HistogramWithExemplars::new(LATENCY_BUCKETS.into_iter())
    }
}

/// An exemplar's label: the trace of one request that landed in a bucket, so a slow bucket
/// leads straight to a trace (only while tracing).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabels {
    pub trace_id: String,
}

/// The most distinct values a free-form label (model, client key name) may take; later ones
/// are reported as `other`, so a stream of made-up model names cannot grow the scrape forever.
pub const MAX_LABEL_VALUES: usize = 64;

/// The longest a free-form name may be wherever groxy keeps or shows it (metric labels, usage
/// rows, the dashboard's tables), in bytes. Groq's model ids are under 64; a client can send any
/// length, and without this bound 64 names of 8 KB made every scrape megabytes long.
pub const MAX_NAME_BYTES: usize = 128;

/// Marks a name cut to [`MAX_NAME_BYTES`].
const CUT: &str = "…";

/// `name` if it fits in [`MAX_NAME_BYTES`]; otherwise its longest prefix that ends at a
/// character boundary and leaves room for `…`, followed by `…`.
pub fn bounded_name(name: &str) -> Cow<'_, str> {
    if name.len() <= MAX_NAME_BYTES {
        return Cow::Borrowed(name);
    }
    let mut end = MAX_NAME_BYTES - CUT.len();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{CUT}", &name[..end]))
}

/// [`bounded_name`] for a shared name: the same `Arc` when it already fits.
pub fn bounded_arc(name: &Arc<str>) -> Arc<str> {
    match bounded_name(name) {
        Cow::Borrowed(_) => name.clone(),
        Cow::Owned(cut) => cut.into(),
    }
}

/// Bounds a label's distinct values, and the length of each; keeps each value's series.
///
/// A scan rather than a hash set: at most [`MAX_LABEL_VALUES`] values, compared by length
/// first, cost less than hashing the name once.
pub struct LabelBound {
    seen: Mutex<Vec<Label>>,
    other: Label,
}

impl Default for LabelBound {
    fn default() -> Self {
        LabelBound {
            seen: Mutex::new(Vec::new()),
            other: Label::new("other".into()),
        }
    }
}

impl LabelBound {
    pub fn get(&self, value: &str) -> Arc<str> {
        self.label(value).name
    }

    /// The label for `value`, with its series.
    pub fn label(&self, value: &str) -> Label {
        let value = bounded_name(value);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = seen.iter().find(|label| *label.name == *value) {
            return found.clone();
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return self.other.clone();
        }
        let label = Label::new(value.into());
        seen.push(label.clone());
        label
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, HistogramWithExemplars<TraceLabels>, LatencyBuckets>,
    pub overhead: Family<RouteLabels, Histogram, LatencyBuckets>,
    pub upstream_duration: Family<ModelLabels, Histogram, LatencyBuckets>,
    pub upstream_ttft: Family<ModelLabels, Histogram, LatencyBuckets>,
    pub tokens: Family<TokenLabels, Counter>,
    pub key_requests: Family<KeyLabels, Counter>,
    pub key_tokens: Family<KeyTokenLabels, Counter>,
    pub cache: Family<ResultLabels, Counter>,
    pub rate_limited: Family<LimitLabels, Counter>,
    pub upstream_errors: Family<KindLabels, Counter>,
    pub upstream_retries: Family<RetryLabels, Counter>,
    pub active_streams: Gauge,
    pub in_flight: Gauge,
    pub connections: Gauge,
    /// Sizes of the tables client traffic feeds, which housekeeping keeps small.
    pub throttled_addresses: Gauge,
    pub limit_scopes: Gauge,
    pub verified_keys: Gauge,
    pub cache_entries: Gauge,
    pub upstream_remaining: Family<BudgetLabels, Gauge>,
    pub upstream_limit: Family<BudgetLabels, Gauge>,
    pub upstream_reset: Family<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub config_reloads: Family<ResultLabels, Counter>,
    /// Spans by fate: `exported`, `dropped_queue_full`, `dropped_export_failed`.
    pub trace_spans: Family<ResultLabels, Counter>,
    pub redis_up: Gauge,
    pub redis_state_changes: Counter,
    /// What Groq's usage cost, priced with the price table, by model.
    pub cost: Family<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    /// Ledger rows dropped because the buffer was full while the database was down.
    pub ledger_dropped: Counter,
    pub database_up: Gauge,
    pub models: LabelBound,
    pub keys: LabelBound,
    /// The series of requests without a model (the empty `model` label).
    no_model: Label,
    /// `request_duration` and `overhead` by route.
    routes: Handles<&'static str, (HistogramWithExemplars<TraceLabels>, Histogram)>,
    cache_results: Handles<&'static str, Counter>,
    /// Whether per-client-key series exist at all (`metrics.per_key_labels`; fixed at start,
    /// since a registry cannot drop a family once scraped).
    pub per_key: bool,
}

impl Metrics {
    pub fn new(per_key: bool) -> Self {
        let mut registry = Registry::with_prefix("groxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, status and model (model is empty outside chat completions)",
            requests.clone(),
        );
        let request_duration = Family::new_with_constructor(LatencyBuckets);
        registry.register_with_unit(
            "request_duration",
            "End-to-end time from request to the last byte of the response",
            Unit::Seconds,
            request_duration.clone(),
        );
        let overhead = Family::new_with_constructor(LatencyBuckets);
        registry.register_with_unit(
            "overhead",
            "Time groxy itself adds: the whole request minus time spent waiting on Groq (or on a coalesced flight) and in Groq's budget queue, measured to the response head",
            Unit::Seconds,
            overhead.clone(),
        );
        let upstream_duration = Family::new_with_constructor(LatencyBuckets);
        registry.register_with_unit(
            "upstream_duration",
            "Time from sending a request to Groq to the end of its response",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let upstream_ttft = Family::new_with_constructor(LatencyBuckets);
        registry.register_with_unit(
            "upstream_time_to_first_token",
            "Time from sending a request to Groq to its first body bytes (streams) or its response head (JSON)",
            Unit::Seconds,
            upstream_ttft.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens Groq reported in usage, by model and kind (prompt, completion)",
            tokens.clone(),
        );
        let key_requests = Family::<KeyLabels, Counter>::default();
        let key_tokens = Family::<KeyTokenLabels, Counter>::default();
        if per_key {
            registry.register(
                "key_requests",
                "Chat requests by client key name and model",
                key_requests.clone(),
            );
            registry.register(
                "key_tokens",
                "Tokens by client key name, model and kind (prompt, completion)",
                key_tokens.clone(),
            );
        }
        let cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Chat completions by cache result: hit, miss, coalesced (joined a flight in progress), bypass",
            cache.clone(),
        );
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a limit: requests_per_minute, requests_per_day, tokens_per_minute, tokens_per_day, concurrency, upstream_budget, auth_failures",
            rate_limited.clone(),
        );
        let upstream_errors = Family::<KindLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed exchanges with Groq by kind: unreachable, timeout, idle_timeout, total_timeout, truncated, non_json, status_5xx, status_429, stream_broken",
            upstream_errors.clone(),
        );
        let upstream_retries = Family::<RetryLabels, Counter>::default();
        registry.register(
            "upstream_retries",
            "Attempts given up before any byte reached the client and made again, by reason (unreachable, reset, status_498, status_500, status_502, status_503, status_504) and by what the next attempt changed (same_model, on_demand, fallback)",
            upstream_retries.clone(),
        );
        let active_streams = Gauge::default();
        registry.register(
            "active_streams",
            "Event streams being relayed to clients now",
            active_streams.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests whose response has not ended yet",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register("open_connections", "Client connections open now", connections.clone());
        let throttled_addresses = Gauge::default();
        registry.register(
            "auth_failure_addresses",
            "Client addresses the failed-authentication throttle remembers",
            throttled_addresses.clone(),
        );
        let limit_scopes = Gauge::default();
        registry.register(
            "limit_scopes",
            "Rate-limit scopes (key, or key and model) held in this replica's memory",
            limit_scopes.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Answers stored in this replica's memory cache",
            cache_entries.clone(),
        );
        let verified_keys = Gauge::default();
        registry.register(
            "verified_caller_keys",
            "Passthrough callers' key hashes Groq accepted lately (they may be answered from the cache)",
            verified_keys.clone(),
        );
        let upstream_remaining = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "upstream_remaining",
            "Groq's remaining budget per upstream key and model, as its last x-ratelimit-remaining-* headers said",
            upstream_remaining.clone(),
        );
        let upstream_limit = Family::<BudgetLabels, Gauge>::default();
        registry.register(
            "upstream_limit",
            "Groq's budget size per upstream key and model, from x-ratelimit-limit-*",
            upstream_limit.clone(),
        );
        let upstream_reset = Family::<BudgetLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "upstream_reset",
            "Time until Groq's budget resets, as its last x-ratelimit-reset-* headers said (at the time they were seen)",
            Unit::Seconds,
            upstream_reset.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result (applied, rejected)",
            config_reloads.clone(),
        );
        let trace_spans = Family::<ResultLabels, Counter>::default();
        registry.register(
            "trace_spans",
            "OpenTelemetry spans by fate: exported, dropped_queue_full, dropped_export_failed",
            trace_spans.clone(),
        );
        let redis_up = Gauge::default();
        registry.register(
            "redis_up",
            "1 while the shared Redis backend is reachable, 0 while it is not or not configured",
            redis_up.clone(),
        );
        let redis_state_changes = Counter::default();
        registry.register(
            "redis_state_changes",
            "Times the Redis backend went down or came back",
            redis_state_changes.clone(),
        );
        let cost = Family::<ModelLabels, Counter<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "cost_usd",
            "US dollars Groq's reported usage cost, priced with groxy's price table, by model",
            cost.clone(),
        );
        let ledger_dropped = Counter::default();
        registry.register(
            "ledger_dropped_rows",
            "Usage-ledger rows dropped because the buffer was full while the database was unreachable",
            ledger_dropped.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "1 while the accounts database answers, 0 while it does not",
            database_up.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Always 1; the version is in the label", build);
        Self {
            registry,
            requests,
            request_duration,
            overhead,
            upstream_duration,
            upstream_ttft,
            tokens,
            key_requests,
            key_tokens,
            cache,
            rate_limited,
            upstream_errors,
            upstream_retries,
            active_streams,
            in_flight,
            connections,
            throttled_addresses,
            limit_scopes,
            verified_keys,
            cache_entries,
            upstream_remaining,
            upstream_limit,
            upstream_reset,
            config_reloads,
            trace_spans,
            redis_up,
            redis_state_changes,
            cost,
            ledger_dropped,
            database_up,
            models: LabelBound::default(),
            keys: LabelBound::default(),
            no_model: Label::new("".into()),
            routes: Handles::default(),
            cache_results: Handles::default(),
            per_key,
        }
    }

    /// The text exposition format (version 0.0.4, with `# EOF`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// `groxy_requests_total` for one answered request.
    pub fn count_request(&self, route: &'static str, status: u16, model: Option<&Label>) {
        let model = model.unwrap_or(&self.no_model);
        let make = || {
            let labels = RequestLabels {
                route,
                status,
                model: model.name.clone(),
            };
            self.requests.get_or_create(&labels).clone()
        };
        model.series.requests.get((route, status), make).inc();
    }

    /// A request's duration and groxy's overhead, by route.
    pub fn observe_route(&self, route: &'static str, latency: f64, exemplar: Option<TraceLabels>, overhead: f64) {
        let (duration, own) = self.routes.get(route, || {
            let labels = RouteLabels { route };
            let duration = self.request_duration.get_or_create(&labels).clone();
            let own = self.overhead.get_or_create(&labels).clone();
            (duration, own)
        });
        duration.observe(latency, exemplar, None);
        own.observe(overhead);
    }

    pub fn count_cache(&self, result: &'static str) {
        let make = || self.cache.get_or_create(&ResultLabels { result }).clone();
        self.cache_results.get(result, make).inc();
    }

    pub fn upstream_duration(&self, model: &Label, seconds: f64) {
        let labels = || ModelLabels {
            model: model.name.clone(),
        };
        let make = || self.upstream_duration.get_or_create(&labels()).clone();
        model.series.upstream_duration.get_or_init(make).observe(seconds);
    }

    pub fn upstream_ttft(&self, model: &Label, seconds: f64) {
        let labels = || ModelLabels {
            model: model.name.clone(),
        };
        let make = || self.upstream_ttft.get_or_create(&labels()).clone();
        model.series.upstream_ttft.get_or_init(make).observe(seconds);
    }

    pub fn cost(&self, model: &Label, dollars: f64) {
        let labels = || ModelLabels {
            model: model.name.clone(),
        };
        let make = || self.cost.get_or_create(&labels()).clone();
        model.series.cost.get_or_init(make).inc_by(dollars);
    }

    /// Tokens of one kind: 0 `prompt`, 1 `completion`.
    pub fn tokens(&self, model: &Label, kind: usize, count: u64) {
        let (Some(series), Some(&name)) = (model.series.tokens.get(kind), ["prompt", "completion"].get(kind)) else {
            return;
        };
        let make = || {
            let labels = TokenLabels {
                model: model.name.clone(),
                kind: name,
            };
            self.tokens.get_or_create(&labels).clone()
        };
        series.get_or_init(make).inc_by(count);
    }

    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn retry(&self, reason: &'static str, next: &'static str) {
        self.upstream_retries.get_or_create(&RetryLabels { reason, next }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_in_length_and_count() {
        assert_eq!(bounded_name("openai/gpt-oss-20b"), "openai/gpt-oss-20b");
        let exact = "m".repeat(MAX_NAME_BYTES);
        assert_eq!(bounded_name(&exact), exact.as_str());
        let long = "m".repeat(8192);
        let cut = bounded_name(&long);
        assert_eq!(cut.len(), MAX_NAME_BYTES);
        assert!(cut.ends_with('…') && cut.starts_with("mmm"));
        // Multi-byte characters are never split.
        let wide = "é".repeat(100);
        let cut = bounded_name(&wide);
        assert!(cut.len() <= MAX_NAME_BYTES && cut.ends_with('…'), "{cut}");
        let bound = LabelBound::default();
        for i in 0..MAX_LABEL_VALUES + 10 {
            let label = bound.get(&format!("{i}-{long}"));
            assert!(label.len() <= MAX_NAME_BYTES);
        }
        assert_eq!(&*bound.get("one-more"), "other");
    }
}
