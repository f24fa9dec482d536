//! Liveness, readiness, and the 404 for paths groxy does not serve.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use crate::{catalog::CatalogState, error::GatewayError, redis::RedisState, state::AppState, store::StoreState};

/// Alive: the process answers. Never depends on Groq, so an upstream outage does not get the
/// container restarted.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready to take traffic: false from the moment a drain starts, so a load balancer stops
/// sending new requests while the in-flight ones finish. The body names degraded parts in
/// `degraded`, which apart from draining never make groxy unready: `catalog` (`loading` or
/// `stale`: model names are not being checked locally; `off` in passthrough mode without an
/// upstream key is not degraded, Groq checks them; Groq being unreachable is no reason to stop
/// serving), `redis` (`connecting`: not answered yet since start, so nothing is known to be
/// shared; `down`: each replica serves on its local share of the limits and its memory cache),
/// `database` (`down`: known keys keep working, usage is buffered until it is back), `draining`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let catalog = state.catalog().state();
    let redis = state.redis().map_or(RedisState::Disabled, |redis| redis.state());
    let database = state.store().state();
    let draining = state.lifecycle().is_draining();
    let mut degraded = Vec::new();
    if matches!(catalog, CatalogState::Loading | CatalogState::Stale) {
        degraded.push("catalog");
    }
    if matches!(redis, RedisState::Down | RedisState::Connecting) {
        degraded.push("redis");
    }
    if database == StoreState::Down {
        degraded.push("database");
    }
    if draining {
        degraded.push("draining");
    }
    let status = if draining { "draining" } else { "ready" };
    let body = Json(
        json!({"status": status, "catalog": catalog.as_str(), "redis": redis.as_str(), "database": database.as_str(), "degraded": degraded}),
    );
    if draining {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    } else {
        body.into_response()
    }
}

/// Groq's own `unknown_url` shape, so clients see one dialect for a mistyped path.
pub async fn unknown_url(method: Method, uri: Uri) -> GatewayError {
    GatewayError::UnknownUrl {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
