//! `AppState`: what every handler shares, built once at start, and the one place where every background task is started and stopped.
//!
//! Background tasks, all started by [`AppState::start_background`] and stopped by its token:
//! the model catalogue's refresher, the reloader (SIGHUP and the config-file watch), the
//! housekeeping that keeps the per-address and per-scope tables small, the log flusher, and the
//! Redis prober.

use std::{path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use arc_swap::ArcSwap;
use http::HeaderMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Authenticator, Caller},
    budget::UpstreamBudget,
    cache::Cache,
    calendar,
    catalog::CatalogCache,
    config::{Config, ConfigErrors, source::ConfigSource},
    digest::{hex, sha256},
    intake::Intake,
    keyring::Keyring,
    lifecycle::Lifecycle,
    limits::{DaySeed, Limits, SpendSeed},
    observe::{Gauges, Observer},
    prices::PriceTable,
    redis::Redis,
    relay,
    reload::{self, ReloadReport},
    routes::table::{Endpoint, Route},
    store::Store,
    telemetry,
    upstream::{Forward, ForwardBody, Upstream},
    validate::{Call, Gate},
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
    budget: Arc<UpstreamBudget>,
    cache: Arc<Cache>,
    observer: Arc<Observer>,
    source: Option<ConfigSource>,
    /// `None` without `redis.url`: every replica keeps its own state.
    redis: Option<Redis>,
    /// Keys made at run time and the usage ledger.
    store: Store,
    /// The store's keys as the request path sees them (memory only).
    keyring: Arc<Keyring>,
    /// The request bytes under validation (`validation.max_bytes_in_flight`).
    validation: Gate,
    /// When each retired model was last warned about (`models.retired = "remap"`).
    retired: crate::retired::Warnings,
}

impl AppState {
    /// Opens the accounts store (running its migrations), builds the state, and loads the
    /// store's keys, so the first request already knows them.
    pub async fn open(config: Config, lifecycle: Arc<Lifecycle>, source: Option<ConfigSource>) -> Result<Self, String> {
        let store = Store::open(&config.database).await?;
        let database = &config.database;
        let location = match (&database.url, &database.data_dir) {
            (Some(url), _) => url.redacted(),
            (None, Some(dir)) => dir.join("groxy.db").display().to_string(),
            (None, None) => "memory".to_owned(),
        };
        tracing::info!(backend = store.backend().as_str(), %location, "accounts store opened");
        if store.backend() == crate::store::Backend::Memory {
            tracing::warn!(
                "the accounts database is in memory (database.url = \"sqlite::memory:\", or no data directory and no HOME): keys made at run time and the usage ledger are lost at exit"
            );
        }
        let state = Self::new(config, lifecycle, source, store)?;
        if let Err(error) = state.inner.keyring.refresh(&state.inner.store).await {
            tracing::warn!(%error, "the stored keys could not be loaded yet; they will be as soon as the database answers");
        }
        state.load_from_ledger().await;
        Ok(state)
    }

    /// Seeds the per-day limits from the usage ledger's last day (what this replica has
    /// not written yet included), so a restart of groxy or of Redis resets none of them.
    async fn load_from_ledger(&self) {
        let now = calendar::now();
        let store = &self.inner.store;
        let pending = self.observer().pending.snapshot();
        let day = store.usage(
            now - calendar::DAY - calendar::HOUR,
            now + calendar::HOUR,
            calendar::HOUR,
        );
        match day.await {
            Ok(mut rows) => {
                rows.extend(pending.iter().cloned());
                self.inner.limiter.seed(DaySeed::from_rows(&rows, now));
            }
            Err(error) => {
                tracing::warn!(%error, "the usage ledger could not be read: per-day limits start from what this replica sees")
            }
        }
        match store
            .usage(calendar::month_start(now), now + calendar::HOUR, calendar::DAY)
            .await
        {
            Ok(mut rows) => {
                rows.extend(pending);
                self.inner.limiter.seed_spend(SpendSeed::from_rows(&rows, now));
            }
            Err(error) => {
                tracing::warn!(%error, "the usage ledger could not be read: budgets start from what this replica sees")
            }
        }
    }

    /// `source` is where the config came from, so a reload can read it again.
    pub fn new(
        config: Config,
        lifecycle: Arc<Lifecycle>,
        source: Option<ConfigSource>,
        store: Store,
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
        let observer = Arc::new(Observer::new(
            config.metrics.per_key_labels,
            config.database.max_buffered_rows,
            PriceTable::new(&config.prices),
        ));
        let redis = Redis::connect(&config.redis)?;
        let limiter = match &redis {
            None => Limits::in_memory(),
            Some(redis) => {
                let key_ids = config
                    .upstream_keys()
                    .iter()
                    .map(|key| hex(&sha256(key.expose().as_bytes()))[..16].to_owned())
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
                budget: Arc::new(budget),
                cache: Arc::new(cache),
                observer,
                source,
                redis,
                store,
                keyring: Arc::new(Keyring::new()),
                validation: Gate::default(),
                retired: Default::default(),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The prices requests are costed at now.
    pub fn prices(&self) -> Arc<PriceTable> {
        self.observer().prices.load_full()
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Writes what is left to write and closes the database (after the drain).
    pub async fn close(&self) {
        if let Err(error) = self.observer().pending.flush(&self.inner.store).await {
            tracing::warn!(%error, rows = self.observer().pending.len(), "the last usage rows could not be written");
        }
        self.inner.store.close().await;
    }

    /// Writes the usage ledger's buffer to the store every `database.flush_interval`, in one
    /// transaction per batch; a batch the database refuses stays buffered for the next round.
    ///
    /// After a batch is written (and at least every minute) it reloads the ledger's last day and
    /// this month's spend for the per-day limits and budgets, so a Redis restarted empty while
    /// groxy runs starts from what the team used, within one flush interval.
    fn spawn_ledger_writer(&self, stop: CancellationToken) {
        let state = self.clone();
        let observer = Arc::clone(&self.inner.observer);
        let store = self.inner.store.clone();
        let every = self.config().database.flush_interval.0;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut reported = 0;
            let mut seeded = Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let wrote = match observer.pending.flush(&store).await {
                            Ok(rows) => rows > 0,
                            Err(error) => {
                                tracing::debug!(%error, rows = observer.pending.len(), "usage rows kept for the next flush");
                                false
                            }
                        };
                        // What was just written (and, every minute, what other replicas
                        // wrote) is where a bucket or budget Redis lost starts again.
                        if wrote || seeded.elapsed() >= Duration::from_secs(60) {
                            seeded = Instant::now();
                            state.load_from_ledger().await;
                        }
                        let dropped = observer.pending.dropped();
                        observer.metrics.ledger_dropped.inc_by(dropped - reported);
                        reported = dropped;
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// The current config and authenticator; hold the `Arc` for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.inner.runtime.load_full()
    }

    /// The current config (see [`AppState::runtime`]).
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.inner.runtime.load().config)
    }

    /// Limits are read from the config at each admission, so a reload needs no new limiter.
    pub fn limiter(&self) -> &Limits {
        &self.inner.limiter
    }

    pub fn observer(&self) -> &Arc<Observer> {
        &self.inner.observer
    }

    /// The shared Redis, if configured: its `state()` is what `/readyz` reports.
    pub fn redis(&self) -> Option<&Redis> {
        self.inner.redis.as_ref()
    }

    pub fn validation(&self) -> &Gate {
        &self.inner.validation
    }

    pub fn retired_warnings(&self) -> &crate::retired::Warnings {
        &self.inner.retired
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    pub fn catalog(&self) -> &Arc<CatalogCache> {
        &self.inner.catalog
    }

    pub fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }

    /// Everything the forward path needs to send `call` to Groq for `caller`.
    pub fn forward(
        &self,
        route: &Route,
        caller: &Caller,
        headers: HeaderMap,
        call: &Call,
        upload: Intake,
        started: Instant,
    ) -> Forward {
        let config = self.config();
        let body = match upload {
            Intake::Streamed(body) => ForwardBody::Streamed(body),
            Intake::Json(_) | Intake::Empty => ForwardBody::Whole(call.body.clone()),
        };
        Forward {
            upstream: self.inner.upstream.clone(),
            budget: config
                .rate_limits
                .upstream_aware
                .then(|| Arc::clone(&self.inner.budget)),
            abort: self.inner.lifecycle.abort_token(),
            method: route.method.clone(),
            path: route.upstream_path.clone(),
            headers,
            body,
            caller_key: caller.upstream_authorization.clone(),
            model: call.model.clone(),
            // Groq's budget is asked for the prompt and the completion the request itself caps,
            // not for groxy's default reservation, which is only a guess for the caller's limits.
            upstream_tokens: call.prompt_estimate.saturating_add(call.max_completion.unwrap_or(0)),
            started,
            span: tracing::Span::current(),
            alternatives: Default::default(),
            dialect: match route.endpoint {
                Endpoint::Responses => relay::Dialect::Responses,
                _ => relay::Dialect::Chat,
            },
        }
    }

    /// Reads the config again and installs it if it is valid; otherwise keeps the old one and
    /// logs every problem. Without a source (a config built in code), there is nothing to read.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let Some(source) = &self.inner.source else {
            return Err(ConfigErrors(vec![
                "this groxy was started without a config source to reload from".to_owned(),
            ]));
        };
        let result = source.load().map(|new| {
            let (new, report) = reload::plan(&self.config(), new);
            if report.applied.contains(&"cache") {
                self.inner.cache.reconfigure(&new.cache);
            }
            let auth = Authenticator::new(&new.auth);
            self.observer().prices.store(Arc::new(PriceTable::new(&new.prices)));
            self.inner.runtime.store(Arc::new(Runtime {
                config: Arc::new(new),
                auth,
            }));
            report
        });
        self.observer().reloaded(match &result {
            Ok(report) => Ok((&report.applied, &report.restart_required)),
            Err(errors) => Err(&errors.0),
        });
        result
    }

    /// Starts every background task; they all stop when `stop` is cancelled.
    pub fn start_background(&self, stop: &CancellationToken) {
        self.spawn_catalog_refresher(stop.clone());
        self.spawn_reloader(stop.clone());
        self.spawn_housekeeping(stop.clone());
        telemetry::spawn_flusher(stop.clone());
        self.spawn_keyring_poller(stop.clone());
        self.spawn_ledger_writer(stop.clone());
        if let Some(redis) = &self.inner.redis {
            redis.start_prober();
        }
    }

    /// Fetches Groq's model list now and every `models.refresh_interval`, retrying failures
    /// with a backoff from 1 s to 60 s. Never on the request path.
    fn spawn_catalog_refresher(&self, stop: CancellationToken) {
        let catalog = Arc::clone(&self.inner.catalog);
        if self.inner.upstream.key_count() == 0 {
            // Passthrough mode with no key of groxy's own: fetching Groq's list would mean
            // spending a caller's key on groxy's business. Groq checks model names instead.
            tracing::info!(
                "no upstream key configured (passthrough mode): the model catalogue is off; Groq checks model names and token caps"
            );
            catalog.turn_off();
            return;
        }
        let upstream = self.inner.upstream.clone();
        tokio::spawn(async move {
            let mut retry = Duration::from_secs(1);
            loop {
                let loaded = match upstream.fetch("models").await {
                    Ok(bytes) => catalog.load(&bytes),
                    Err(error) => Err(error),
                };
                let wait = match loaded {
                    Ok(models) => {
                        tracing::info!(models, "model catalogue loaded");
                        retry = Duration::from_secs(1);
                        catalog.refresh_interval()
                    }
                    Err(error) => {
                        tracing::warn!(%error, "model catalogue not loaded; model names are not validated until it loads");
                        let wait = retry;
                        retry = (retry * 2).min(Duration::from_secs(60));
                        wait
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// Every `database.poll_interval`, asks the store whether any key changed (one tiny query)
    /// and swaps in the new table when one did: how a key revoked on another replica stops
    /// working here. Never on the request path; a database that is down leaves the last table.
    fn spawn_keyring_poller(&self, stop: CancellationToken) {
        let keyring = Arc::clone(&self.inner.keyring);
        let store = self.inner.store.clone();
        let every = self.config().database.poll_interval.0;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(error) = keyring.refresh(&store).await {
                            tracing::debug!(%error, "stored keys not refreshed");
                        }
                    }
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    /// Keeps the auth throttle's per-address table and the limiter's scopes small: drops what
    /// carries no information any more, every `server.housekeeping_interval`.
    fn spawn_housekeeping(&self, stop: CancellationToken) {
        let state = self.clone();
        let every = self.config().server.housekeeping_interval.0;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
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

    /// Reloads on SIGHUP and, when `admin.watch_config` is on, when the file's modification
    /// time changes (polled every 2 s).
    fn spawn_reloader(&self, stop: CancellationToken) {
        let Some(source) = &self.inner.source else {
            return;
        };
        let state = self.clone();
        let watch = self.config().admin.watch_config;
        let file = source.file();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /admin/reload");
                    None
                }
            };
            let modified = |path: &Option<PathBuf>| -> Option<SystemTime> {
                std::fs::metadata(path.as_ref()?).and_then(|m| m.modified()).ok()
            };
            let mut last_seen = modified(&file);
            let mut poll = tokio::time::interval(Duration::from_secs(2));
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hangups.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = hangup => {
                        tracing::info!("SIGHUP: reloading the config");
                        let _ = state.reload();
                        last_seen = modified(&file);
                    }
                    _ = poll.tick(), if watch && file.is_some() => {
                        let now = modified(&file);
                        if now != last_seen {
                            last_seen = now;
                            tracing::info!("config file changed: reloading");
                            let _ = state.reload();
                        }
                    }
                }
            }
        });
    }

    /// The gauges read at scrape time rather than counted: in-flight work and the sizes of the
    /// tables that client traffic feeds (housekeeping keeps them small).
    pub fn gauges(&self) -> Gauges {
        let lifecycle = self.lifecycle();
        Gauges {
            in_flight: lifecycle.in_flight(),
            connections: lifecycle.connections(),
            throttled_addresses: self.runtime().auth.throttled_addresses(),
            limit_scopes: self.limiter().scope_count(),
            verified_keys: usize::try_from(self.cache().verified.len()).unwrap_or(usize::MAX),
            cache_entries: {
                let store = &self.cache().store;
                store.sync();
                usize::try_from(store.entry_count()).unwrap_or(usize::MAX)
            },
        }
    }
}
