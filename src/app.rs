//! The whole HTTP application: the one middleware stack every request passes through, around the route table.
//!
//! Layer order, outermost first (a request reads top to bottom, a response bottom to top):
//! 0. `observe_request`: the request id, the per-request record, metrics and the access line
//!    (outermost, so even a panic's 500 is counted and carries an id).
//! 1. `CatchPanicLayer`: a panic anywhere below becomes an OpenAI-shaped 500, never a dropped
//!    connection; the panic message is logged, not sent.
//! 2. `TraceLayer`: one span per request (method, path; never headers, which carry keys).
//! 3. `track_in_flight`: counts the request until its response body ends (the drain waits on
//!    this) and adds `Connection: close` while draining so keep-alive clients move elsewhere.
//!    At the drain deadline a request that has no answer yet (reading its body, queued, waiting
//!    for Groq's headers) gets a 503 `server_shutting_down` instead of a dropped connection, and
//!    one arriving after it gets the 503 at once, before any step runs.
//! 4. `CorsLayer`: only when `server.cors_allow_origins` is set.
//! 5. The routes (`routes::router`).

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Version, header};
use tower::ServiceBuilder;
use tower_http::{catch_panic::CatchPanicLayer, cors::CorsLayer, trace::TraceLayer};

use crate::{error::GatewayError, lifecycle::TrackedBody, observe, routes, state::AppState};

/// The whole HTTP application, used by `run` and directly by tests.
pub fn app(state: AppState) -> Router {
    let cors = cors_layer(&state.config().server.cors_allow_origins);
    let router = routes::router(state.clone());
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    let observer = Arc::clone(state.observer());
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(observer, observe::observe_request))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
            }))
            .layer(middleware::from_fn_with_state(state, track_in_flight)),
    )
}

async fn track_in_flight(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let lifecycle = state.lifecycle();
    let guard = lifecycle.track();
    let http1 = request.version() <= Version::HTTP_11;
    let abort = lifecycle.abort_token();
    // Dropping the handler at the deadline cancels whatever it waits on (an upstream request
    // included), as a client hanging up would; the client gets the 503 instead.
    let mut response = tokio::select! {
        biased;
        () = abort.cancelled() => GatewayError::ShuttingDown.into_response(),
        response = next.run(request) => response,
    };
    if http1 && lifecycle.is_draining() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.map(|body| Body::new(TrackedBody::new(body, guard)))
}

fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %detail, "handler panicked; answering 500");
    GatewayError::Internal.into_response()
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    use tower_http::cors::{AllowOrigin, Any};
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(Any)
            .allow_headers(Any)
            .expose_headers(Any)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
