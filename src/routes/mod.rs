//! The route table, and nothing else: which path goes to which handler behind which guard.
//!
//! Every path under `/v1` and `/openai/v1` goes to [`api::api`], which matches it against Groq's
//! endpoints ([`table`]); nothing else reaches the upstream. Health probes and `/metrics` need
//! no key; the admin endpoints and the dashboard need the admin key; everything else is
//! Groq's `unknown_url` 404.

mod admin_keys;
mod api;
mod fallback;
mod guard;
mod health;
mod ops;
pub mod table;
mod usage_report;

use axum::{
    Router, middleware,
    routing::{any, get, post},
};

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let mut api = Router::new();
    for prefix in table::API_PREFIXES {
        api = api
            .route(prefix, any(health::unknown_url))
            .route(&format!("{prefix}/{{*rest}}"), any(api::api));
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), guard::authenticate));
    let admin = Router::new()
        .route("/admin/usage", get(ops::usage))
        .route("/admin/stats", get(ops::stats))
        .route("/admin/prices", get(ops::prices))
        .route("/admin/reload", post(ops::reload))
        .route("/admin/keys", get(admin_keys::list).post(admin_keys::create))
        .route(
            "/admin/keys/{id}",
            get(admin_keys::show)
                .patch(admin_keys::update)
                .delete(admin_keys::revoke),
        )
        .route("/admin/keys/{id}/rotate", post(admin_keys::rotate))
        .route("/dashboard", get(ops::dashboard))
        .route("/dashboard/", get(ops::dashboard))
        .route("/dashboard/dashboard.css", get(ops::dashboard_css))
        .route("/dashboard/dashboard.js", get(ops::dashboard_js))
        .route("/dashboard/keys", get(ops::keys_page))
        .route("/dashboard/keys.js", get(ops::keys_js))
        .route_layer(middleware::from_fn_with_state(state.clone(), guard::require_admin));
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
