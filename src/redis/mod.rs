//! The one Redis connection the limiter, the upstream budget and the cache share: every call bounded by `redis.timeout`, behind a circuit breaker, reconnecting by itself.
//!
//! Redis is help, not a single point of failure. Every call either answers within the timeout
//! or counts as failed, and the caller then goes on without Redis (local share of the limits,
//! memory cache). The breaker ([`breaker`]) keeps a dead or paused Redis off the request path;
//! a background prober PINGs it with a growing backoff (brought forward to `probe_interval`
//! when requests want Redis) and, when it answers, calls go to it again. Until Redis first
//! answers (a PING at start or a call), its state is `connecting`, never `up`. The connection is redis-rs's `ConnectionManager`: one multiplexed connection that
//! reconnects after a drop; when a probe fails the prober also starts a fresh manager, so a
//! connection stuck in a bad state cannot outlive the outage. A `rediss://` URL connects with
//! TLS (rustls; the system's roots or `redis.ca_file`), a user name in the URL with `AUTH user
//! password` (Redis 6 ACLs): both are the client's settings, made once in the config.

pub mod breaker;
pub mod health;

use std::{
    future::Future,
    sync::{Arc, Mutex, MutexGuard, RwLock, Weak},
    time::Duration,
};

use ::redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::{sync::Notify, time::Instant};

use breaker::{Breaker, BreakerSettings, Transition};
pub use health::{Health, RedisState};

use crate::config::{RedisConfig, RedisUrl};

/// Why a call did not give an answer. Never shown to a client: callers fall back instead.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis is marked down; not called")]
    Unavailable,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis call failed: {0}")]
    Failed(#[from] ::redis::RedisError),
}

/// Cheap to clone; all clones share the connection, the breaker and the health.
#[derive(Clone)]
pub struct Redis {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.inner.shown)
            .field("state", &self.state())
            .finish()
    }
}

struct Inner {
    client: Client,
    /// Replaced by the prober after a failed probe; requests clone the current one (an `Arc`).
    manager: RwLock<ConnectionManager>,
    timeout: Duration,
    prefix: String,
    /// The URL with its password masked, for log lines.
    shown: String,
    breaker: Mutex<Breaker>,
    health: Health,
    /// Wakes the prober when the breaker opens.
    wake: Arc<Notify>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn manager_config() -> ConnectionManagerConfig {
    // Few, quick reconnect attempts: the breaker and its prober do the long-term retrying.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
}

impl Redis {
    /// The shared Redis of `config`, or `None` when no URL is configured. Never connects here:
    /// the connection is made on first use, so groxy starts (and serves) with Redis down.
    /// Must be called within a tokio runtime; the prober starts with [`Redis::start_prober`].
    pub fn connect(config: &RedisConfig) -> Result<Option<Self>, String> {
        let Some(client) = config.client()? else {
            return Ok(None);
        };
        let shown = config.url.as_ref().map(RedisUrl::redacted).unwrap_or_default();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the Redis connection must be created inside the tokio runtime".to_owned());
        }
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())
            .map_err(|e| format!("redis.url {shown}: {}", e.category()))?;
        let inner = Arc::new(Inner {
            client,
            manager: RwLock::new(manager),
            timeout: config.timeout.0,
            prefix: config.key_prefix.clone(),
            shown,
            breaker: Mutex::new(Breaker::new(BreakerSettings {
                failures_to_open: config.failures_to_open,
                first_backoff: config.probe_interval.0,
                max_backoff: config.max_probe_interval.0,
            })),
            health: Health::default(),
            wake: Arc::new(Notify::new()),
        });
        Ok(Some(Self { inner }))
    }

    /// Starts the task that probes Redis while its breaker is open; it ends with the last
    /// handle to this connection.
    pub fn start_prober(&self) {
        tokio::spawn(probe_loop(Arc::downgrade(&self.inner)));
    }

    pub fn state(&self) -> RedisState {
        self.inner.health.state()
    }

    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Every key groxy writes starts with this.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Runs one Redis operation within the timeout, unless the breaker is open.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = ::redis::RedisResult<T>>,
    {
        {
            let mut breaker = lock(&self.inner.breaker);
            if !breaker.allows_calls() {
                // The prober tries in the background; this request goes on without Redis.
                if breaker.demand(Instant::now()) {
                    self.inner.wake.notify_one();
                }
                return Err(RedisError::Unavailable);
            }
        }
        let connection = self.inner.manager.read().unwrap_or_else(|p| p.into_inner()).clone();
        match tokio::time::timeout(self.inner.timeout, op(connection)).await {
            Ok(Ok(value)) => {
                let mut breaker = lock(&self.inner.breaker);
                breaker.succeeded();
                // Only while closed: a late answer must not say `up` over an open breaker.
                if breaker.allows_calls() && self.inner.health.state() != RedisState::Up {
                    self.inner.health.answered(&self.inner.shown);
                }
                Ok(value)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "redis call failed");
                self.inner.failed(false, &error.to_string());
                Err(RedisError::Failed(error))
            }
            Err(_) => {
                self.inner.failed(true, "timeout");
                Err(RedisError::Timeout(self.inner.timeout))
            }
        }
    }
}

impl Inner {
    /// Health follows the breaker under its lock, so the two never disagree for long.
    fn failed(&self, timed_out: bool, reason: &str) {
        let mut breaker = lock(&self.breaker);
        if breaker.failed(timed_out, Instant::now()) == Some(Transition::Opened) {
            self.health.went_down(&self.shown, reason);
            self.wake.notify_one();
        }
    }

    /// One PING, off the request path, so it may wait longer than a request would.
    async fn ping(&self) -> Result<(), String> {
        let mut connection = self.manager.read().unwrap_or_else(|p| p.into_inner()).clone();
        let wait = self.timeout.max(Duration::from_millis(500));
        match tokio::time::timeout(wait, ::redis::cmd("PING").query_async::<String>(&mut connection)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("timeout".to_owned()),
        }
    }

    async fn probe(&self) {
        match self.ping().await {
            Ok(()) => {
                let mut breaker = lock(&self.breaker);
                if breaker.probe_succeeded() == Some(Transition::Closed) {
                    self.health.answered(&self.shown);
                }
            }
            Err(reason) => {
                tracing::debug!(%reason, "redis probe failed");
                lock(&self.breaker).probe_failed(Instant::now());
                if let Ok(fresh) = ConnectionManager::new_lazy_with_config(self.client.clone(), manager_config()) {
                    *self.manager.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                }
            }
        }
    }
}

/// Checks Redis once at start (so `/readyz` leaves `connecting` before the first request),
/// then probes whenever the breaker is open and its backoff has passed, or sooner when a
/// request brought the probe forward. Ends when the last handle is dropped.
async fn probe_loop(weak: Weak<Inner>) {
    if let Some(inner) = weak.upgrade() {
        match inner.ping().await {
            Ok(()) => {
                let breaker = lock(&inner.breaker);
                if breaker.allows_calls() {
                    inner.health.answered(&inner.shown);
                }
            }
            Err(reason) => inner.failed(true, &reason),
        }
    }
    loop {
        let (wake, probe_at) = {
            let Some(inner) = weak.upgrade() else { return };
            let probe_at = lock(&inner.breaker).probe_at();
            (inner.wake.clone(), probe_at)
        };
        // Woken early when the breaker opens or a request brings the probe forward; bounded,
        // so a dropped handle ends this task within a second.
        let until = Instant::now() + Duration::from_secs(1);
        let until = probe_at.map_or(until, |at| at.min(until));
        let _ = tokio::time::timeout_at(until, wake.notified()).await;
        let Some(inner) = weak.upgrade() else { return };
        if lock(&inner.breaker).probe_at().is_some_and(|at| at <= Instant::now()) {
            inner.probe().await;
        }
    }
}
