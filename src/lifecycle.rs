//! Process lifecycle shared by every request: draining on SIGTERM, the in-flight count, the drain deadline, and the bytes of request bodies being read.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

/// Why one struct: readiness, the accept loop and every open stream must agree on the same
/// moment the drain started and the same moment it ran out.
#[derive(Debug, Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    connections: AtomicUsize,
    became_idle: Notify,
    /// Cancelled at the drain deadline: open streams end with an error frame, requests still
    /// without an answer get a 503, and nothing more is sent upstream.
    abort: CancellationToken,
    bodies: BodyBudget,
}

impl Lifecycle {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.became_idle.notify_waiters();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn abort_token(&self) -> CancellationToken {
        self.abort.clone()
    }

    pub fn abort_streams(&self) {
        self.abort.cancel();
    }

    /// Whether the drain deadline has passed.
    pub fn is_aborted(&self) -> bool {
        self.abort.is_cancelled()
    }

    /// The bytes of request bodies being read, across all connections.
    pub fn bodies(&self) -> &BodyBudget {
        &self.bodies
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Counts an open client connection until the guard is dropped (for `groxy_open_connections`).
    pub fn connection_opened(self: &Arc<Self>) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            lifecycle: Arc::clone(self),
        }
    }

    /// Counts a request until the guard is dropped, which for a streamed response is when its
    /// body ends or the client goes away.
    pub fn track(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            lifecycle: Arc::clone(self),
        }
    }

    /// Resolves once no request is in flight.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.became_idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A semaphore of bytes: a JSON body holds its size while it is read, so the bytes buffered at
/// once stay under `server.max_body_bytes_in_flight` however many clients send at once.
/// Empty until the server sizes it at start.
#[derive(Debug)]
pub struct BodyBudget {
    bytes: Semaphore,
    capacity: AtomicUsize,
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self {
            bytes: Semaphore::new(0),
            capacity: AtomicUsize::new(0),
        }
    }
}

impl BodyBudget {
    /// Adds `bytes` to the budget (the server calls it once, at start).
    pub fn grow(&self, bytes: usize) {
        let bytes = bytes.min(Semaphore::MAX_PERMITS - self.capacity.load(Ordering::SeqCst));
        self.capacity.fetch_add(bytes, Ordering::SeqCst);
        self.bytes.add_permits(bytes);
    }

    /// Waits, in arrival order, until `bytes` (at most the whole budget, so it cannot wait
    /// forever) are free, and holds them until the permit is dropped.
    pub async fn reserve(&self, bytes: usize) -> Option<SemaphorePermit<'_>> {
        let bytes = bytes.min(self.capacity.load(Ordering::SeqCst));
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.bytes.acquire_many(bytes).await.ok()
    }
}

#[derive(Debug)]
pub struct ConnectionGuard {
    lifecycle: Arc<Lifecycle>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.lifecycle.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct InFlightGuard {
    lifecycle: Arc<Lifecycle>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.lifecycle.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.lifecycle.became_idle.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds a guard until it ends or is dropped: the in-flight count, so
    /// a drain waits for open streams and not just for handlers to return; or a connection's
    /// open request, so an idle deadline never closes a connection with an answer under way.
    pub struct TrackedBody<B, G = InFlightGuard> {
        #[pin]
        inner: B,
        guard: Option<G>,
    }
}

impl<B, G> TrackedBody<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Self {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: http_body::Body, G> http_body::Body for TrackedBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(None | Some(Err(_))) = &polled {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_idle_returns_when_last_guard_drops() {
        let life = Lifecycle::new();
        let a = life.track();
        let b = life.track();
        let waiter = tokio::spawn({
            let life = Arc::clone(&life);
            async move { life.wait_idle().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("idle in time")
            .expect("join");
    }
}
