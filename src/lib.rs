//! groxy: an OpenAI-compatible gateway for Groq.
//!
//! The request path, one module per step (see ARCHITECTURE.md for the invariants):
//!
//! ```text
//! client ─► server (accept cap, header deadline, drain) ─► app (panic guard, trace, in-flight)
//!        ─► routes::{chat, passthrough, health} ─► body (size limits) ─► validate (chat only)
//!        ─► upstream (pooled client, key injection, header allowlist, first-byte deadline)
//!        ─► relay (status + allowed headers, body streamed chunk by chunk, error frames)
//! ```
//!
//! - [`config`]: defaults → TOML file → environment, every problem reported at once.
//! - [`error`]: the one error enum and the only place a status code is chosen.
//! - [`validate`]: Groq's request rules, aliases and OpenAI-compatibility rewrites; [`catalog`]: the model list.
//! - [`limits`] and [`cache`]: client limits and the response cache, in memory or shared between
//!   replicas through [`redis`] (bounded calls, a circuit breaker, never a failed request).

pub mod app;
pub mod auth;
pub mod body;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod error;
pub mod lifecycle;
pub mod limits;
pub mod observe;
pub mod redis;
pub mod relay;
pub mod reload;
pub mod routes;
pub mod server;
pub mod sse;
pub mod telemetry;
pub mod upstream;
pub mod usage;
pub mod validate;

use std::future::Future;

use tokio::net::TcpListener;

pub use app::{AppState, app};
pub use config::Config;

/// Serves on `listener` until `shutdown` resolves and the drain completes.
///
/// Takes a bound listener (not an address) so tests can bind port 0 and learn the port first.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    run_with(listener, config, None, shutdown).await
}

/// [`run`], plus where the config came from: with a source, SIGHUP (and `POST /admin/reload`)
/// read it again and swap it in.
pub async fn run_with(
    listener: TcpListener,
    config: Config,
    source: Option<reload::ConfigSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let lifecycle = lifecycle::Lifecycle::new();
    let state = AppState::with_source(config, lifecycle.clone(), source)?;
    let router = app(state.clone());
    let stop_background = tokio_util::sync::CancellationToken::new();
    let _stop_background_on_return = stop_background.clone().drop_guard();
    state
        .catalog()
        .spawn_refresher(state.upstream().clone(), stop_background.clone());
    state.spawn_reloader(stop_background.clone());
    telemetry::spawn_flusher(stop_background);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, upstream = %state.config().upstream.url, "groxy listening");
    }
    server::serve(listener, router, lifecycle, &state.config().server, shutdown)
        .await
        .map_err(|e| format!("server error: {e}"))
}
