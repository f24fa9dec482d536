//! The listener: accepting connections under a cap, a deadline on every connection from accept, hyper with a header-read deadline, and the graceful drain.
//!
//! Connections:
//! - From accept, a connection has `server.header_read_timeout` to complete its first request's
//!   headers. hyper's own header timer starts only once it reads a request head, which is after
//!   the HTTP/1-or-2 sniff has seen bytes: without this, a socket that never sends a byte (or an
//!   HTTP/2 preface and nothing after it) would stay open for ever.
//! - A connection with no request open is closed `server.idle_timeout` after its last answer
//!   (HTTP/2: a GOAWAY). hyper starts `header_read_timeout` again after every HTTP/1.1 answer, so
//!   a keep-alive HTTP/1.1 connection is closed at the shorter of the two.
//! - HTTP/2 peers with streams open are PINGed every `server.http2_keep_alive_interval`; one that
//!   does not answer within the same time is gone, and its connection is closed.
//! - At most `server.max_connections` are served. At the cap a new connection closes the one idle
//!   the longest (no request open), so silent sockets cannot lock out `/healthz` or clients; when
//!   every connection has a request open, the new one waits for a slot.
//!
//! Drain, step by step (SIGTERM or Ctrl-C, or the `shutdown` future in tests):
//! 1. `/readyz` turns 503 at once; responses on HTTP/1 carry `Connection: close`.
//! 2. The listener keeps accepting (a load balancer may still send a few requests while it
//!    notices), and everything is served normally, until nothing is in flight or
//!    `server.drain_timeout` has passed.
//! 3. Accepting stops and every connection is closed gracefully: HTTP/1 after its current answer,
//!    HTTP/2 with a GOAWAY. `run` returns once they are all closed.
//! 4. At `server.drain_timeout`, whatever is still open is aborted: streams get one error event and
//!    end, every request without an answer yet gets a 503 `server_shutting_down` (`app.rs`), and
//!    nothing more is sent to Groq (`upstream::forward`). [`ABORT_GRACE`] later `run` returns
//!    regardless.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError},
    time::{Instant, sleep, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    config::ServerConfig,
    lifecycle::{Lifecycle, TrackedBody},
};

/// After the drain deadline, how long the aborted requests get to write their 503 or error event.
const ABORT_GRACE: Duration = Duration::from_millis(500);

/// How long a connection closed for idling gets to say goodbye (an HTTP/2 GOAWAY waits for a
/// PING answer a silent peer never sends) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

pub async fn serve(
    listener: TcpListener,
    router: Router,
    lifecycle: Arc<Lifecycle>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout.0)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(config.http2_keep_alive_interval.0)
        .keep_alive_timeout(config.http2_keep_alive_interval.0);
    let builder = Arc::new(builder);
    lifecycle.bodies().grow(config.max_body_bytes_in_flight.as_usize());
    let connections = Arc::new(Connections::new(config.max_connections));
    let timeouts = Timeouts {
        first: config.header_read_timeout.0,
        idle: config.idle_timeout.0,
    };
    // Cancelled when `serve` returns so no connection outlives the server.
    let closed = CancellationToken::new();
    let _close_on_return = closed.clone().drop_guard();

    let drained = async {
        shutdown.await;
        tracing::info!(in_flight = lifecycle.in_flight(), "shutdown requested: draining");
        lifecycle.start_draining();
        let deadline = Instant::now() + config.drain_timeout.0;
        tokio::select! {
            () = lifecycle.wait_idle() => {}
            () = sleep_until(deadline) => abort(&lifecycle),
        }
        deadline
    };
    tokio::pin!(drained);

    let deadline = loop {
        let (stream, peer) = tokio::select! {
            deadline = &mut drained => break deadline,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept: back off briefly
                    // rather than spin, and keep serving.
                    tracing::warn!(%error, "accept failed");
                    sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let permit = tokio::select! {
            deadline = &mut drained => break deadline,
            permit = connections.slot() => permit,
        };
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::new());
        let registered = connections.register(&watch, permit);
        let builder = Arc::clone(&builder);
        let router = router.clone();
        let closed = closed.clone();
        let connections = Arc::clone(&connections);
        let open = lifecycle.connection_opened();
        tokio::spawn(async move {
            let _open = open;
            let _registered = registered;
            let requests = Arc::clone(&watch);
            let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let router = router.clone();
                let open = OpenRequest::new(&requests);
                async move {
                    let response = router
                        .oneshot(request.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|never| match never {});
                    Ok::<_, Infallible>(response.map(|body| axum::body::Body::new(TrackedBody::new(body, open))))
                }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let grace = tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                    return;
                }
                () = closed.cancelled() => return,
                why = watch.expired(&connections, timeouts) => {
                    tracing::debug!(%peer, why, "closing a connection with no request open");
                    Some(CLOSE_GRACE)
                }
                () = connections.closing.cancelled() => None,
            };
            connection.as_mut().graceful_shutdown();
            let grace = async {
                match grace {
                    Some(grace) => sleep(grace).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closed.cancelled() => {}
                () = grace => {}
            }
        });
    };

    // Nothing in flight, or the drain deadline: close every connection once its answer is out.
    connections.closing.cancel();
    if !lifecycle.is_aborted() {
        tokio::select! {
            () = connections.wait_empty() => {}
            () = sleep_until(deadline) => abort(&lifecycle),
        }
    }
    if lifecycle.is_aborted() {
        let _ = tokio::time::timeout(ABORT_GRACE, connections.wait_empty()).await;
    }
    tracing::info!("stopped");
    Ok(())
}

fn abort(lifecycle: &Lifecycle) {
    tracing::warn!(
        in_flight = lifecycle.in_flight(),
        "drain deadline reached: ending open streams and answering the rest 503"
    );
    lifecycle.abort_streams();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// From accept until the first request is under way.
    first: Duration,
    /// From the end of the last answer while no request is open.
    idle: Duration,
}

/// The open connections: the cap, which one is idle the longest, and the drain's close.
struct Connections {
    slots: Arc<Semaphore>,
    table: Mutex<HashMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
    /// Woken when a connection turns idle or closes: a new connection waiting at the cap may
    /// now have one to replace.
    changed: Notify,
    /// Evictions asked for whose connection has not closed yet. One at a time, so a wait at the
    /// cap never closes more connections than it needs.
    evicting: AtomicUsize,
    /// Woken when the last connection closes.
    emptied: Notify,
    /// Cancelled when the drain closes every connection.
    closing: CancellationToken,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            table: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            evicting: AtomicUsize::new(0),
            emptied: Notify::new(),
            closing: CancellationToken::new(),
        }
    }

    /// A slot for a connection just accepted: a free one, or the one of the connection idle the
    /// longest, which is closed for it; with every connection busy, waits for one to end or
    /// turn idle.
    async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match Arc::clone(&self.slots).try_acquire_owned() {
                Ok(permit) => return permit,
                Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {}
            }
            self.evict_oldest_idle();
            tokio::select! {
                permit = Arc::clone(&self.slots).acquire_owned() => {
                    if let Ok(permit) = permit {
                        return permit;
                    }
                }
                () = changed => {}
            }
        }
    }

    fn evict_oldest_idle(&self) {
        if self.evicting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let table = lock(&self.table);
        let oldest = table
            .values()
            .filter_map(|watch| {
                let state = lock(&watch.state);
                (state.open == 0 && !state.evict).then_some((state.idle_since, watch))
            })
            .min_by_key(|(since, _)| *since);
        if let Some((_, watch)) = oldest {
            let mut state = lock(&watch.state);
            if state.open == 0 {
                state.evict = true;
                self.evicting.fetch_add(1, Ordering::SeqCst);
                drop(state);
                tracing::debug!("at server.max_connections: closing the connection idle the longest");
                watch.wake.notify_one();
            }
        }
    }

    fn register(self: &Arc<Self>, watch: &Arc<Watch>, slot: OwnedSemaphorePermit) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.table).insert(id, Arc::clone(watch));
        Registered {
            connections: Arc::clone(self),
            id,
            slot: Some(slot),
        }
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if lock(&self.table).is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// Keeps a connection in the table, and its slot, until its task ends.
struct Registered {
    connections: Arc<Connections>,
    id: u64,
    slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        // The slot first: whoever `changed` wakes must find it free.
        drop(self.slot.take());
        let connections = &self.connections;
        let (watch, empty) = {
            let mut table = lock(&connections.table);
            (table.remove(&self.id), table.is_empty())
        };
        if let Some(watch) = watch {
            let mut state = lock(&watch.state);
            if state.evict {
                state.evict = false;
                connections.evicting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        connections.changed.notify_waiters();
        if empty {
            connections.emptied.notify_waiters();
        }
    }
}

/// One connection's requests and idle time, shared by its requests, its deadline and the cap.
struct Watch {
    state: Mutex<WatchState>,
    /// Wakes the connection's deadline when its state changes.
    wake: Notify,
}

#[derive(Debug)]
struct WatchState {
    /// Requests whose answers have not ended.
    open: usize,
    /// Accept, or the end of the last answer.
    idle_since: Instant,
    /// Whether a request was ever served (then the idle deadline applies, else the first one).
    answered: bool,
    /// Chosen to make room at the cap.
    evict: bool,
}

impl Watch {
    fn new() -> Self {
        Self {
            state: Mutex::new(WatchState {
                open: 0,
                idle_since: Instant::now(),
                answered: false,
                evict: false,
            }),
            wake: Notify::new(),
        }
    }

    /// Resolves when the connection should close: idle past its deadline, or chosen to make
    /// room at the cap while idle. Never while a request is open.
    async fn expired(&self, connections: &Connections, timeouts: Timeouts) -> &'static str {
        loop {
            let wake = self.wake.notified();
            let deadline = {
                let mut state = lock(&self.state);
                if state.open > 0 {
                    if state.evict {
                        // Busy again before it could close: let the cap pick another.
                        state.evict = false;
                        connections.evicting.fetch_sub(1, Ordering::SeqCst);
                        connections.changed.notify_waiters();
                    }
                    None
                } else if state.evict {
                    return "evicted at server.max_connections";
                } else {
                    // Idle: a connection waiting at the cap may take this one's place.
                    connections.changed.notify_waiters();
                    Some(state.idle_since + if state.answered { timeouts.idle } else { timeouts.first })
                }
            };
            match deadline {
                None => wake.await,
                Some(at) if at <= Instant::now() => return "idle past its deadline",
                Some(at) => {
                    tokio::select! {
                        () = wake => {}
                        () = sleep_until(at) => {}
                    }
                }
            }
        }
    }
}

/// A request counted open on its connection until its answer ends or is dropped.
struct OpenRequest {
    watch: Arc<Watch>,
}

impl OpenRequest {
    fn new(watch: &Arc<Watch>) -> Self {
        lock(&watch.state).open += 1;
        watch.wake.notify_one();
        Self {
            watch: Arc::clone(watch),
        }
    }
}

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let mut state = lock(&self.watch.state);
        state.open = state.open.saturating_sub(1);
        if state.open == 0 {
            state.idle_since = Instant::now();
            state.answered = true;
        }
        drop(state);
        self.watch.wake.notify_one();
    }
}
