//! Liveness, readiness, and the 404 for paths groxy does not serve.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use crate::{app::AppState, error::GatewayError, redis::RedisState};

/// Alive: the process answers. Never depends on Groq, so an upstream outage does not get the
/// container restarted.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready to take traffic: false from the moment a drain starts, so a load balancer stops
/// sending new requests while the in-flight ones finish. The body names degraded parts
/// (`catalog`: `loading` or `stale` means model names are not being checked), which never
/// make groxy unready: Groq being unreachable is not a reason to stop serving. Nor is Redis
/// (`redis`: `up`, `down` or `disabled`): while it is down each replica serves on its local
/// share of the limits and its memory cache.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let catalog = state.catalog().state().as_str();
    let redis = state
        .redis()
        .map_or(RedisState::Disabled, |redis| redis.state())
        .as_str();
    if state.lifecycle().is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining", "catalog": catalog, "redis": redis})),
        )
            .into_response()
    } else {
        Json(json!({"status": "ready", "catalog": catalog, "redis": redis})).into_response()
    }
}

/// Groq's own `unknown_url` shape, so clients see one dialect for a mistyped path.
pub async fn unknown_url(method: Method, uri: Uri) -> GatewayError {
    GatewayError::UnknownUrl {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
