//! The route table, and nothing else: which path goes to which thin handler.

mod chat;
mod health;
mod ops;
mod passthrough;

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{ConnectInfo, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};

use crate::{app::AppState, observe::RequestRecord};

/// Groq serves its API under `/openai/v1`; OpenAI SDKs configured with `base_url=.../v1` use
/// `/v1`. Both prefixes reach the same handlers.
pub const API_PREFIXES: [&str; 2] = ["/v1", "/openai/v1"];

/// Every API route requires a caller (see `authenticate`); health checks never do.
pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for prefix in API_PREFIXES {
        api = api
            .route(&format!("{prefix}/chat/completions"), post(chat::chat_completions))
            .route(&format!("{prefix}/{{*rest}}"), any(passthrough::passthrough));
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let admin = Router::new()
        .route("/admin/usage", get(ops::usage))
        .route("/admin/stats", get(ops::stats))
        .route("/admin/reload", post(ops::reload))
        .route("/dashboard", get(ops::dashboard))
        .route("/dashboard/", get(ops::dashboard))
        .route("/dashboard/dashboard.css", get(ops::dashboard_css))
        .route("/dashboard/dashboard.js", get(ops::dashboard_js))
        .route_layer(middleware::from_fn_with_state(state.clone(), ops::require_admin));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(ops::metrics))
        .merge(admin)
        .merge(api)
        .fallback(health::unknown_url)
        .method_not_allowed_fallback(health::unknown_url)
        .with_state(state)
}

/// Resolves the caller and puts it in the request's extensions, or answers 401 (429 for an
/// address that keeps failing). The client's key is never echoed or logged.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    match state.runtime().auth.authenticate(request.headers(), peer) {
        Ok(caller) => {
            if let Some(record) = request.extensions().get::<RequestRecord>() {
                record.0.set_caller(caller.name.clone());
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// The path below the API prefix (`chat/completions`, `models/openai/gpt-oss-20b`), with the
/// query, or `None` when the path is outside the API or tries to climb out of it with `..`.
pub fn upstream_path(uri: &http::Uri) -> Option<String> {
    let path = uri.path();
    let rest = API_PREFIXES
        .iter()
        .rev()
        .find_map(|prefix| path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')))?;
    let climbs = rest.split('/').any(|segment| {
        let lowered = segment.to_ascii_lowercase().replace("%2e", ".");
        lowered == "." || lowered == ".."
    });
    if rest.is_empty() || climbs {
        return None;
    }
    Some(match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Option<&str>) {
        let uri: http::Uri = uri.parse().expect("uri");
        assert_eq!(upstream_path(&uri).as_deref(), expected, "{uri}");
    }

    #[test]
    fn upstream_paths() {
        check("/v1/chat/completions", Some("chat/completions"));
        check(
            "/openai/v1/models/openai/gpt-oss-20b",
            Some("models/openai/gpt-oss-20b"),
        );
        check("/v1/files?purpose=batch", Some("files?purpose=batch"));
        check("/v1/", None);
        check("/v1", None);
        check("/v2/models", None);
        check("/v1/../admin", None);
        check("/v1/files/%2E%2E/x", None);
        check("/openai/v1x/models", None);
    }
}
