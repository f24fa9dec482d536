//! groxy: an OpenAI-compatible gateway for Groq.
//!
//! The modules follow the request path, in layers whose imports point down (see ARCHITECTURE.md;
//! `tests/tidy.rs` keeps the module graph free of cycles):
//!
//! ```text
//! vocabulary      config · error · wire (Go durations, x-ratelimit, SSE, headers) · digest
//! infrastructure  redis · lifecycle · telemetry · catalog
//! steps           routes::table → intake → auth → validate → cache → limits → budget → upstream → relay
//! observation     observe (reads what the steps leave through their taps; never called by them)
//! edge            state (AppState, every background task) · routes · app · reload · server
//! ```
//!
//! The library's surface is narrow: [`run`] / [`run_with`], the [`config`] types, key and
//! digest helpers for the CLI, log setup, and (hidden) what the benchmarks measure.

mod app;
mod auth;
mod budget;
mod cache;
mod calendar;
mod catalog;
pub mod config;
mod deprecations;
mod digest;
mod error;
mod intake;
mod keyring;
mod lifecycle;
mod limits;
pub mod memory;
mod observe;
mod prices;
mod redis;
mod relay;
mod reload;
mod retired;
mod routes;
mod server;
mod state;
mod store;
mod telemetry;
mod upstream;
mod validate;
mod wire;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::new_key;
pub use config::{Config, source::ConfigSource};
pub use digest::{hex, sha256};
pub use telemetry::flush as flush_logs;

/// Keeps OpenTelemetry's exporter alive; dropping it exports what is still queued (bounded by
/// `tracing.export_timeout`).
pub struct Telemetry(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging (and, when `tracing.otlp_endpoint` or the `OTEL_*` variables say so,
/// OpenTelemetry export) for the process. A tracing setup that cannot be built is reported
/// and leaves tracing off; it never stops the gateway.
pub fn init_telemetry(config: &Config, rust_log: Option<&str>) -> Telemetry {
    let (provider, problem) = match telemetry::provider(&config.tracing) {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    telemetry::init(&config.log, rust_log, provider.as_ref().map(telemetry::tracer));
    if let Some(problem) = problem {
        tracing::warn!(%problem, "tracing is off");
    } else if provider.is_some() {
        tracing::info!(sampler = %config.tracing.sampler, ratio = config.tracing.sample_ratio, "exporting traces over OTLP/HTTP");
    }
    Telemetry(provider)
}

/// What the benchmarks and the fuzzer measure directly; not an API.
#[doc(hidden)]
pub mod bench {
    pub use crate::{
        auth::Caller,
        catalog::Catalog,
        limits::Limits,
        observe::{Delta, Pending},
        prices::PriceTable,
        redis::{Redis, RedisState},
        validate::validate_chat,
    };
}

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
    source: Option<ConfigSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let lifecycle = lifecycle::Lifecycle::new();
    let state = state::AppState::open(config, lifecycle.clone(), source).await?;
    let router = app::app(state.clone());
    let stop_background = CancellationToken::new();
    let _stop_background_on_return = stop_background.clone().drop_guard();
    state.start_background(&stop_background);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, upstream = %state.config().upstream.url, "groxy listening");
    }
    let served = server::serve(listener, router, lifecycle, &state.config().server, shutdown)
        .await
        .map_err(|e| format!("server error: {e}"));
    // What the drain left in the ledger's buffer is written before the process goes.
    state.close().await;
    served
}
