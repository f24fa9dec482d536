//! Shared state and the one middleware stack every request passes through.
//!
//! Layer order, outermost first (a request reads top to bottom, a response bottom to top):
//! 0. `observe_request`: the request id, the per-request record, metrics and the access line
//!    (outermost, so even a panic's 500 is counted and carries an id).
//! 1. `CatchPanicLayer`: a panic anywhere below becomes an OpenAI-shaped 500, never a dropped
//!    connection; the panic message is logged, not sent.
//! 2. `TraceLayer`: one span per request (method, path; never headers, which carry keys).
//! 3. `track_in_flight`: counts the request until its response body ends (the drain waits on
//!    this) and adds `Connection: close` while draining so keep-alive clients move elsewhere.
//! 4. `CorsLayer`: only when `server.cors_allow_origins` is set.
//! 5. The routes (`routes::router`).

use std::sync::Arc;

use arc_swap::ArcSwap;

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

use crate::{
    auth::Authenticator,
    cache::Cache,
    catalog::CatalogCache,
    config::Config,
    error::GatewayError,
    lifecycle::{Lifecycle, TrackedBody},
    limits::{Limits, upstream_budget::UpstreamBudget},
    observe::{self, Observer},
    redis::Redis,
    reload::ConfigSource,
    routes,
    upstream::Upstream,
};

/// Cheap to clone: one `Arc` shared by every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

/// What a reload replaces as one unit: a request reads it once and keeps that snapshot, so it
/// never sees half an old config and half a new one.
pub struct Runtime {
    pub config: Arc<Config>,
    pub auth: Authenticator,
}

struct Shared {
    runtime: ArcSwap<Runtime>,
    upstream: Upstream,
    lifecycle: Arc<Lifecycle>,
    catalog: Arc<CatalogCache>,
    limiter: Limits,
    budget: UpstreamBudget,
    cache: Cache,
    observer: Arc<Observer>,
    source: Option<ConfigSource>,
    /// `None` without `redis.url`: every replica keeps its own state.
    redis: Option<Redis>,
}

impl AppState {
    pub fn new(config: Config, lifecycle: Arc<Lifecycle>) -> Result<Self, String> {
        Self::with_source(config, lifecycle, None)
    }

    /// `source` is where the config came from, so a reload can read it again.
    pub fn with_source(
        config: Config,
        lifecycle: Arc<Lifecycle>,
        source: Option<ConfigSource>,
    ) -> Result<Self, String> {
        let upstream = Upstream::new(&config.upstream)?;
        let catalog = CatalogCache::new(config.models.refresh_interval.0);
        let auth = Authenticator::new(&config.auth);
        let limits = &config.rate_limits;
        let mut budget = UpstreamBudget::new(
            upstream.key_count(),
            limits.preset.per_model(),
            limits.queue_wait.0,
            limits.queue_length,
        );
        let mut cache = Cache::new(&config.cache);
        let observer = Arc::new(Observer::new(config.metrics.per_key_labels));
        let redis = Redis::connect(&config.redis)?;
        let limiter = match &redis {
            None => Limits::in_memory(),
            Some(redis) => {
                let key_ids = config
                    .upstream_keys()
                    .iter()
                    .map(|key| crate::auth::hex(&crate::auth::sha256(key.expose().as_bytes()))[..16].to_owned())
                    .collect();
                budget = budget.with_redis(redis.clone(), key_ids);
                cache = cache.with_redis(redis.clone());
                // A lost settlement holds a concurrency slot at most as long as a request can last.
                let lease = config.upstream.total_timeout.0 + config.server.drain_timeout.0;
                Limits::shared(redis.clone(), config.redis.replicas, lease)
            }
        };
        Ok(Self {
            inner: Arc::new(Shared {
                runtime: ArcSwap::from_pointee(Runtime {
                    config: Arc::new(config),
                    auth,
                }),
                upstream,
                lifecycle,
                catalog,
                limiter,
                budget,
                cache,
                observer,
                source,
                redis,
            }),
        })
    }

    /// The current config and authenticator; hold the `Arc` for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// Installs a new runtime for requests that start from now on.
    pub(crate) fn swap_runtime(&self, runtime: Runtime) {
        self.inner.runtime.store(Arc::new(runtime));
    }

    /// Limits are read from the config at each admission, so a reload needs no new limiter.
    pub fn limiter(&self) -> &Limits {
        &self.inner.limiter
    }

    pub fn observer(&self) -> &Arc<Observer> {
        &self.inner.observer
    }

    pub fn config_source(&self) -> Option<&ConfigSource> {
        self.inner.source.as_ref()
    }

    /// The shared Redis, if configured: its `state()` is what `/readyz` reports.
    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_ref()
    }

    pub fn budget(&self) -> &UpstreamBudget {
        &self.inner.budget
    }

    pub fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    /// Keeps the limiter's and the auth throttle's tables small: drops state that carries no
    /// information any more. Runs until `stop`.
    pub fn spawn_housekeeping(&self, stop: tokio_util::sync::CancellationToken) {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        state.limiter().sweep();
                        state.runtime().auth.forget_idle();
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    pub fn catalog(&self) -> &Arc<CatalogCache> {
        &self.inner.catalog
    }

    /// The current config (see [`AppState::runtime`]).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.inner.runtime.load().config)
    }

    pub fn upstream(&self) -> &Upstream {
        &self.inner.upstream
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }
}

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
    let mut response = next.run(request).await;
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
