//! Liveness, readiness, and the 404 for paths groxy does not serve.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode, Uri};
use serde_json::json;

use crate::{app::AppState, error::GatewayError};

/// Alive: the process answers. Never depends on Groq, so an upstream outage does not get the
/// container restarted.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Ready to take traffic: false from the moment a drain starts, so a load balancer stops
/// sending new requests while the in-flight ones finish. The body names degraded parts in
/// `degraded` (`catalog`: `loading` or `stale` means model names are not being checked;
/// `draining`), which apart from draining never make groxy unready: Groq being unreachable
/// is not a reason to stop serving.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let catalog = state.catalog().state().as_str();
    let draining = state.lifecycle().is_draining();
    let mut degraded = Vec::new();
    if catalog != "fresh" {
        degraded.push("catalog");
    }
    if draining {
        degraded.push("draining");
    }
    let status = if draining { "draining" } else { "ready" };
    let body = Json(json!({"status": status, "catalog": catalog, "degraded": degraded}));
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
