//! What Groq last said about its budget, per upstream key and model, from its `x-ratelimit-*` headers.
//!
//! Kept apart from the limiter's own upstream-budget state: this is a report for operators (the
//! dashboard and the `groxy_upstream_*` gauges), read-only and never used to admit anything.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, atomic::AtomicU64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::metrics::{BudgetLabels, Metrics};
use crate::wire::ratelimit::GroqBudgetHeaders;

/// A (client or upstream key name, model) pair: the rows of the table.
type KeyModel = (Arc<str>, Arc<str>);

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

/// The six gauges of one (upstream key, model), created once so an update is six stores.
struct Gauges {
    remaining: [Gauge; 2],
    limit: [Gauge; 2],
    reset: [Gauge<f64, AtomicU64>; 2],
}

impl Gauges {
    fn new(metrics: &Metrics, key: &Arc<str>, model: &Arc<str>) -> Self {
        let labels = |resource| BudgetLabels {
            upstream_key: key.clone(),
            model: model.clone(),
            resource,
        };
        // One call each: a family's guard lives to the end of the statement that takes it, and
        // a second `get_or_create` on the same family within that statement would deadlock.
        let gauge = |family: &prometheus_client::metrics::family::Family<BudgetLabels, Gauge>, resource| {
            family.get_or_create(&labels(resource)).clone()
        };
        let reset = |resource| metrics.upstream_reset.get_or_create(&labels(resource)).clone();
        let remaining_requests = gauge(&metrics.upstream_remaining, "requests");
        let remaining_tokens = gauge(&metrics.upstream_remaining, "tokens");
        let limit_requests = gauge(&metrics.upstream_limit, "requests");
        let limit_tokens = gauge(&metrics.upstream_limit, "tokens");
        let reset_requests = reset("requests");
        let reset_tokens = reset("tokens");
        Self {
            remaining: [remaining_requests, remaining_tokens],
            limit: [limit_requests, limit_tokens],
            reset: [reset_requests, reset_tokens],
        }
    }
}

#[derive(Default)]
pub struct GroqBudget {
    seen: Mutex<BTreeMap<KeyModel, (Seen, Gauges)>>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl GroqBudget {
    /// Records the budget headers of one Groq response (read once, by the forward path);
    /// responses without them change nothing.
    pub fn observe(&self, metrics: &Metrics, key: Arc<str>, model: Arc<str>, headers: &GroqBudgetHeaders) {
        let [remaining_requests, remaining_tokens] = headers.remaining;
        if remaining_requests.is_none() && remaining_tokens.is_none() {
            return;
        }
        let seen = Seen {
            remaining_requests,
            limit_requests: headers.limit[0],
            reset_requests: headers.reset[0],
            remaining_tokens,
            limit_tokens: headers.limit[1],
            reset_tokens: headers.reset[1],
            at: Some(SystemTime::now()),
        };
        let mut table = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let id = (key, model);
        if !table.contains_key(&id) {
            let gauges = Gauges::new(metrics, &id.0, &id.1);
            table.insert(id.clone(), (Seen::default(), gauges));
        }
        let Some((slot, gauges)) = table.get_mut(&id) else {
            return;
        };
        let pairs = [
            (seen.remaining_requests, seen.limit_requests, seen.reset_requests),
            (seen.remaining_tokens, seen.limit_tokens, seen.reset_tokens),
        ];
        for (i, (remaining, limit, reset)) in pairs.into_iter().enumerate() {
            if let Some(remaining) = remaining {
                gauges.remaining[i].set(remaining as i64);
            }
            if let Some(limit) = limit {
                gauges.limit[i].set(limit as i64);
            }
            if let Some(reset) = reset {
                gauges.reset[i].set(reset.as_secs_f64());
            }
        }
        *slot = seen;
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
            .map(|((key, model), (seen, _))| BudgetRow {
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
