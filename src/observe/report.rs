//! The admin documents: usage per key and model (`/admin/usage`) and everything the dashboard draws (`/admin/stats`).

use serde_json::{Value, json};

use super::{
    ledger, metrics,
    observer::{Gauges, Observer, unix_now},
    stats,
};
use crate::error::RefusingLimit;

/// `GET /admin/usage`: requests and tokens per client key and model, for the current minute,
/// the current UTC day and since start.
pub fn usage_document(observer: &Observer) -> Value {
    json!({
        "now": unix_now(),
        "started_at": unix(observer.started_at),
        "windows": {"minute": "current UTC minute", "day": "current UTC day", "total": "since start"},
        "keys": observer.ledger.snapshot(),
    })
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `GET /admin/stats`: everything the dashboard draws, in one document.
pub fn stats_document(observer: &Observer, gauges: Gauges) -> Value {
    let now = unix_now();
    let (series, latency, recent) = observer.stats.snapshot(now);
    let m = &observer.metrics;
    let cache_count = |result: &'static str| -> u64 { m.cache.get_or_create(&metrics::ResultLabels { result }).get() };
    let hits = cache_count("hit");
    let misses = cache_count("miss");
    let limits = RefusingLimit::ALL.map(RefusingLimit::label);
    let mut by_limit = serde_json::Map::new();
    let mut limited_total = 0;
    for limit in limits {
        let n = m.rate_limited.get_or_create(&metrics::LimitLabels { limit }).get();
        if n > 0 {
            by_limit.insert(limit.to_owned(), n.into());
        }
        limited_total += n;
    }
    let usage = observer.ledger.snapshot();
    let by_key: Vec<_> = usage
        .iter()
        .map(|k| {
            json!({"key": k.key, "requests": k.day.requests, "prompt_tokens": k.day.prompt_tokens, "completion_tokens": k.day.completion_tokens})
        })
        .collect();
    let mut models: std::collections::BTreeMap<&str, ledger::Counts> = Default::default();
    for key in &usage {
        for model in &key.models {
            let entry = models.entry(&model.model).or_default();
            entry.requests += model.day.requests;
            entry.prompt_tokens += model.day.prompt_tokens;
            entry.completion_tokens += model.day.completion_tokens;
        }
    }
    let by_model: Vec<_> = models
        .iter()
        .map(|(model, c)| {
            json!({"model": model, "requests": c.requests, "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens})
        })
        .collect();
    let totals = series.iter().fold((0, 0, 0), |acc, p| {
        (acc.0 + p.requests, acc.1 + p.errors, acc.2 + p.rate_limited)
    });
    json!({
        "now": now,
        "started_at": unix(observer.started_at),
        "version": env!("CARGO_PKG_VERSION"),
        "window_seconds": stats::WINDOW_BUCKETS as u64 * stats::BUCKET_SECONDS,
        "bucket_seconds": stats::BUCKET_SECONDS,
        "series": series,
        "latency": latency,
        "totals": {
            "requests": totals.0,
            "errors": totals.1,
            "rate_limited": totals.2,
            "active_streams": m.active_streams.get(),
            "in_flight": gauges.in_flight,
            "connections": gauges.connections,
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "coalesced": cache_count("coalesced"),
            "bypass": cache_count("bypass"),
            "hit_ratio": (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        },
        "rate_limited": {"total": limited_total, "by_limit": by_limit},
        "tokens_today": {"by_key": by_key, "by_model": by_model},
        "upstream_budget": observer.groq_budget.snapshot(),
        "recent": recent,
    })
}
