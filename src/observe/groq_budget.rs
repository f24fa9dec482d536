//! What Groq last said about its budget, per upstream key and model, from its `x-ratelimit-*` headers.
//!
//! Kept apart from the limiter's own upstream-budget state: this is a report for operators (the
//! dashboard and the `groxy_upstream_*` gauges), read-only and never used to admit anything.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::HeaderMap;
use serde::Serialize;

use super::metrics::{BudgetLabels, Metrics};
use crate::limits::upstream_budget::parse_go_duration;

#[derive(Debug, Clone, Default)]
struct Seen {
    remaining_requests: Option<u64>,
    limit_requests: Option<u64>,
    reset_requests: Option<Duration>,
    remaining_tokens: Option<u64>,
    limit_tokens: Option<u64>,
    reset_tokens: Option<Duration>,
    at: Option<SystemTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetRow {
    pub key: Arc<str>,
    pub model: Arc<str>,
    pub remaining_requests: Option<u64>,
    pub limit_requests: Option<u64>,
    /// Seconds from now (not from when the headers were seen), never below zero.
    pub reset_requests_seconds: Option<f64>,
    pub remaining_tokens: Option<u64>,
    pub limit_tokens: Option<u64>,
    pub reset_tokens_seconds: Option<f64>,
    pub observed_at: Option<f64>,
}

#[derive(Default)]
pub struct GroqBudget {
    seen: Mutex<BTreeMap<super::KeyModel, Seen>>,
}

fn number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn duration(headers: &HeaderMap, name: &str) -> Option<Duration> {
    parse_go_duration(headers.get(name)?.to_str().ok()?.trim())
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl GroqBudget {
    /// Records the headers of one Groq response; responses without budget headers change nothing.
    pub fn observe(&self, metrics: &Metrics, key: Arc<str>, model: Arc<str>, headers: &HeaderMap) {
        let seen = Seen {
            remaining_requests: number(headers, "x-ratelimit-remaining-requests"),
            limit_requests: number(headers, "x-ratelimit-limit-requests"),
            reset_requests: duration(headers, "x-ratelimit-reset-requests"),
            remaining_tokens: number(headers, "x-ratelimit-remaining-tokens"),
            limit_tokens: number(headers, "x-ratelimit-limit-tokens"),
            reset_tokens: duration(headers, "x-ratelimit-reset-tokens"),
            at: Some(SystemTime::now()),
        };
        if seen.remaining_requests.is_none() && seen.remaining_tokens.is_none() {
            return;
        }
        for (resource, remaining, limit, reset) in [
            (
                "requests",
                seen.remaining_requests,
                seen.limit_requests,
                seen.reset_requests,
            ),
            ("tokens", seen.remaining_tokens, seen.limit_tokens, seen.reset_tokens),
        ] {
            let labels = BudgetLabels {
                upstream_key: key.clone(),
                model: model.clone(),
                resource,
            };
            if let Some(remaining) = remaining {
                metrics.upstream_remaining.get_or_create(&labels).set(remaining as i64);
            }
            if let Some(limit) = limit {
                metrics.upstream_limit.get_or_create(&labels).set(limit as i64);
            }
            if let Some(reset) = reset {
                metrics.upstream_reset.get_or_create(&labels).set(reset.as_secs_f64());
            }
        }
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((key, model), seen);
    }

    pub fn snapshot(&self) -> Vec<BudgetRow> {
        let now = SystemTime::now();
        let left = |reset: Option<Duration>, at: Option<SystemTime>| {
            let reset = reset?;
            let elapsed = at.and_then(|at| now.duration_since(at).ok()).unwrap_or_default();
            Some((reset.saturating_sub(elapsed).as_secs_f64() * 1000.0).round() / 1000.0)
        };
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((key, model), seen)| BudgetRow {
                key: key.clone(),
                model: model.clone(),
                remaining_requests: seen.remaining_requests,
                limit_requests: seen.limit_requests,
                reset_requests_seconds: left(seen.reset_requests, seen.at),
                remaining_tokens: seen.remaining_tokens,
                limit_tokens: seen.limit_tokens,
                reset_tokens_seconds: left(seen.reset_tokens, seen.at),
                observed_at: seen.at.map(unix),
            })
            .collect()
    }
}
