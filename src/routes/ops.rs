//! The operator's endpoints: `/metrics` for Prometheus, and behind the admin key `/admin/usage`, `/admin/stats`, `/admin/reload` and the `/dashboard` page.

use std::net::SocketAddr;

use axum::{
    Json,
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use base64::Engine;
use http::{HeaderMap, HeaderValue, header};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{
    app::AppState,
    auth::{hex, sha256},
    error::GatewayError,
    observe::{self, stats},
};

/// `GET /metrics`: Prometheus text format. Open like a health check (it carries key *names*
/// at most, never keys), unless `metrics.enabled = false`.
pub async fn metrics(State(state): State<AppState>, method: http::Method, uri: http::Uri) -> Response {
    if !state.config().metrics.enabled {
        return GatewayError::UnknownUrl {
            method: method.to_string(),
            path: uri.path().to_owned(),
        }
        .into_response();
    }
    let lifecycle = state.lifecycle();
    let observer = state.observer();
    if let Some(redis) = state.redis() {
        let m = &observer.metrics;
        m.redis_up.set(i64::from(redis.state() == crate::redis::RedisState::Up));
        let changes = redis.health().changes();
        let counted = m.redis_state_changes.get();
        if changes > counted {
            m.redis_state_changes.inc_by(changes - counted);
        }
    }
    let body = observer.render_metrics(lifecycle.in_flight(), lifecycle.connections());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// The admin key from `Authorization: Bearer <key>` or HTTP Basic (any user name, the key as
/// password: what a browser sends after its login prompt, so the dashboard needs no login page).
fn presented_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (_, password) = text.split_once(':')?;
        return Some(password.to_owned());
    }
    None
}

/// Route layer for everything behind the admin key. Failures count against the same
/// per-address throttle as client keys, so the admin key cannot be brute-forced either.
pub async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let runtime = state.runtime();
    let Some(expected) = runtime.config.admin.key_sha256.as_deref() else {
        return GatewayError::AdminDisabled.into_response();
    };
    let presented = presented_key(request.headers()).map(|key| hex(&sha256(key.as_bytes())));
    let matches = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.to_ascii_lowercase().as_bytes())));
    if matches {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    runtime.auth.admin_failed(peer).into_response()
}

/// `GET /admin/usage`: requests and tokens per client key and model, for the current minute,
/// the current UTC day and since start.
pub async fn usage(State(state): State<AppState>) -> Response {
    let observer = state.observer();
    Json(json!({
        "now": observe::unix_now(),
        "started_at": unix(observer.started_at),
        "windows": {"minute": "current UTC minute", "day": "current UTC day", "total": "since start"},
        "keys": observer.ledger.snapshot(),
    }))
    .into_response()
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `GET /admin/stats`: everything the dashboard draws, in one document.
pub async fn stats(State(state): State<AppState>) -> Response {
    let observer = state.observer();
    let now = observe::unix_now();
    let (series, latency, recent) = observer.stats.snapshot(now);
    let m = &observer.metrics;
    let cache_count =
        |result: &'static str| -> u64 { m.cache.get_or_create(&observe::metrics::ResultLabels { result }).get() };
    let hits = cache_count("hit");
    let misses = cache_count("miss");
    let limits = [
        "requests_per_minute",
        "requests_per_day",
        "tokens_per_minute",
        "tokens_per_day",
        "concurrency",
        "upstream_budget",
        "auth_failures",
    ];
    let mut by_limit = serde_json::Map::new();
    let mut limited_total = 0;
    for limit in limits {
        let n = m
            .rate_limited
            .get_or_create(&observe::metrics::LimitLabels { limit })
            .get();
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
    let mut models: std::collections::BTreeMap<&str, observe::ledger::Counts> = Default::default();
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
    let lifecycle = state.lifecycle();
    Json(json!({
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
            "in_flight": lifecycle.in_flight(),
            "connections": lifecycle.connections(),
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
    }))
    .into_response()
}

/// `POST /admin/reload`: the same as SIGHUP, with the outcome in the answer.
pub async fn reload(State(state): State<AppState>) -> Response {
    match state.reload() {
        Ok(report) => {
            Json(json!({"status": "reloaded", "applied": report.applied, "restart_required": report.restart_required}))
                .into_response()
        }
        Err(errors) => GatewayError::ConfigRejected(errors.0).into_response(),
    }
}

const INDEX: &str = include_str!("../dashboard/index.html");
const CSS: &str = include_str!("../dashboard/dashboard.css");
const JS: &str = include_str!("../dashboard/dashboard.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
                ),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        body,
    )
        .into_response()
}

pub async fn dashboard() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn dashboard_css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

pub async fn dashboard_js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
