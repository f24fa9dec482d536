//! The operator's endpoints: `/metrics` for Prometheus, and behind the admin key `/admin/usage`, `/admin/stats`, `/admin/reload` and the `/dashboard` page.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use serde_json::json;

use crate::{error::GatewayError, observe, state::AppState};

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
    let database_up = state.store().state() == crate::store::StoreState::Up;
    observer.metrics.database_up.set(i64::from(database_up));
    let body = observer.render_metrics(state.gauges());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// `GET /admin/usage`: without parameters, this replica's live counters per client key and
/// model (the current minute, the current UTC day, since start); with `from`, `to`, `group`
/// or `format`, the persistent ledger over that range ([`super::usage_report`]).
pub async fn usage(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, GatewayError> {
    if super::usage_report::wants_ledger(&query) {
        return super::usage_report::report(&state, &query).await;
    }
    Ok(Json(observe::usage_document(state.observer())).into_response())
}

/// `GET /admin/prices`: the prices requests are costed at (dollars per million tokens), and
/// when the shipped ones were taken.
pub async fn prices(State(state): State<AppState>) -> Response {
    let table = state.prices();
    let models: serde_json::Map<String, serde_json::Value> = table
        .per_million()
        .into_iter()
        .map(|(model, [input, cached_input, output])| {
            (
                model.to_owned(),
                json!({"input": input, "cached_input": cached_input, "output": output}),
            )
        })
        .collect();
    Json(json!({"taken": table.taken, "source": table.source, "unit": "USD per million tokens", "models": models}))
        .into_response()
}

/// `GET /admin/stats`: everything the dashboard draws, in one document.
pub async fn stats(State(state): State<AppState>) -> Response {
    Json(observe::stats_document(state.observer(), state.gauges())).into_response()
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
const KEYS_PAGE: &str = include_str!("../dashboard/keys.html");
const KEYS_JS: &str = include_str!("../dashboard/keys.js");

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

/// `GET /dashboard/keys`: the keys page (list, create, revoke, edit; spend per key and model).
pub async fn keys_page() -> Response {
    asset("text/html; charset=utf-8", KEYS_PAGE)
}

pub async fn keys_js() -> Response {
    asset("text/javascript; charset=utf-8", KEYS_JS)
}
