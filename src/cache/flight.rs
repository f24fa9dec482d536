//! Single-flight: identical requests in flight share one upstream call; each client reads the shared bytes at its own pace.
//!
//! A flight's driver task reads Groq's response into a shared buffer; every client, the one
//! that started it included, is a reader with its own position. Readers are woken per chunk, so
//! each gets every chunk as soon as it arrives.
//!
//! One reader is *protected*: the one that started the flight, or, once it has gone, the
//! oldest reader left. It is never cut off; instead the driver reads Groq only while the
//! buffer is within its bound ([`Flight::room`]), so the protected reader's pace is the
//! upstream's, with backpressure as in a plain relay, and a lone slow client gets every byte.
//! A joined reader that falls more than the bound behind the protected one is cut off with an
//! error rather than holding the others back, and once the bound has been reached the flight
//! takes no new readers (the start of the body may be gone). The driver cancels the upstream
//! call when the last reader leaves.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderMap, StatusCode};
use tokio::sync::Notify;

use super::key::CacheKey;
use crate::{error::GatewayError, relay::RelayError};

/// The status and headers of the shared response.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

#[derive(Debug, Default)]
struct State {
    head: Option<Head>,
    failed: Option<GatewayError>,
    chunks: Vec<Bytes>,
    /// Index (in the whole body) of `chunks[0]`.
    base: usize,
    kept_bytes: usize,
    total_bytes: usize,
    /// The body ended; `truncated` if the upstream failed mid-body on an opaque (non-SSE) body.
    ended: bool,
    truncated: bool,
    readers: HashMap<u64, usize>,
    next_reader: u64,
    /// The reader never cut off (see the module's doc); `None` only when no reader is left.
    protected: Option<u64>,
    /// Accepts new readers: false once the buffer has reached its bound.
    open: bool,
}

pub struct Flight {
    state: Mutex<State>,
    /// Told when the head, a chunk or the end arrives: readers wait on it.
    changed: Notify,
    /// Told when a reader advances or leaves: the driver waits on it for room, or for the
    /// last reader to go.
    moved: Notify,
    /// Most bytes kept for readers that are behind.
    max_lag: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Flight {
    pub fn new(max_lag: usize) -> Arc<Self> {
        Arc::new(Flight {
            state: Mutex::new(State {
                open: true,
                ..State::default()
            }),
            changed: Notify::new(),
            moved: Notify::new(),
            max_lag,
        })
    }

    /// A new reader from the start of the body, or `None` if the start is gone.
    pub fn join(self: &Arc<Self>) -> Option<Reader> {
        let mut state = lock(&self.state);
        if !state.open {
            return None;
        }
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, 0);
        state.protected.get_or_insert(id);
        Some(Reader {
            flight: Arc::clone(self),
            id,
        })
    }

    pub fn set_head(&self, head: Head) {
        lock(&self.state).head = Some(head);
        self.changed.notify_waiters();
    }

    /// Ends the flight before any response: every reader gets `error`; later requests start
    /// a flight of their own rather than inherit the failure.
    pub fn fail(&self, error: GatewayError) {
        let mut state = lock(&self.state);
        state.failed = Some(error);
        state.ended = true;
        state.open = false;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Adds a chunk for every reader. The driver calls it only after [`Flight::room`], so the
    /// buffer exceeds its bound by at most this one chunk.
    pub fn push(&self, chunk: Bytes) {
        let mut state = lock(&self.state);
        state.total_bytes += chunk.len();
        state.kept_bytes += chunk.len();
        state.chunks.push(chunk);
        if state.kept_bytes > self.max_lag {
            self.trim(&mut state);
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Waits until the buffer is within its bound, so the driver may read Groq again: `true`;
    /// or until no reader is left: `false`. This is where a protected reader that is slow
    /// slows the upstream read instead of being cut off.
    pub async fn room(&self) -> bool {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            {
                let mut state = lock(&self.state);
                if state.readers.is_empty() {
                    return false;
                }
                if state.kept_bytes > self.max_lag {
                    self.trim(&mut state);
                    // A reader cut off here learns it at its next read.
                    self.changed.notify_waiters();
                }
                if state.kept_bytes <= self.max_lag {
                    return true;
                }
            }
            moved.await;
        }
    }

    /// Drops the prefix every reader has passed; cuts off joined readers too far behind the
    /// protected one. Never cuts the protected reader: while it holds the buffer over its
    /// bound, the driver waits in [`Flight::room`].
    fn trim(&self, state: &mut State) {
        state.open = false;
        loop {
            let slowest = state
                .readers
                .values()
                .copied()
                .min()
                .unwrap_or(state.base + state.chunks.len());
            let droppable = slowest.saturating_sub(state.base).min(state.chunks.len());
            for chunk in state.chunks.drain(..droppable) {
                state.kept_bytes -= chunk.len();
            }
            state.base += droppable;
            if state.kept_bytes <= self.max_lag {
                return;
            }
            let protected_at = state
                .protected
                .and_then(|id| state.readers.get(&id).copied())
                .unwrap_or(usize::MAX);
            if slowest >= protected_at {
                return;
            }
            let laggards: Vec<u64> = state
                .readers
                .iter()
                .filter(|(_, pos)| **pos == slowest)
                .map(|(id, _)| *id)
                .collect();
            for id in laggards {
                tracing::warn!(reader = id, "a coalesced reader fell too far behind; cutting it off");
                state.readers.remove(&id);
            }
        }
    }

    pub fn end(&self, truncated: bool) {
        let mut state = lock(&self.state);
        state.ended = true;
        state.truncated = truncated;
        if truncated {
            state.open = false;
        }
        drop(state);
        self.changed.notify_waiters();
    }

    /// Ends the flight with `error` unless it has already ended: for a driver that is dropped
    /// (its task panicked, or the runtime is shutting down) so no reader waits forever.
    pub fn fail_unless_ended(&self, error: GatewayError) {
        let ended = lock(&self.state).ended;
        if !ended {
            self.fail(error);
        }
    }

    /// Resolves when no reader is left.
    pub async fn abandoned(&self) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            if lock(&self.state).readers.is_empty() {
                return;
            }
            moved.await;
        }
    }

    /// The whole body, if every byte is still held (for storing it).
    pub fn whole_body(&self) -> Option<(Vec<Bytes>, usize)> {
        let state = lock(&self.state);
        (state.base == 0 && !state.truncated).then(|| (state.chunks.clone(), state.total_bytes))
    }
}

/// One client's view of a flight.
pub struct Reader {
    flight: Arc<Flight>,
    id: u64,
}

impl Drop for Reader {
    /// Leaves the flight; if this was the protected reader, the oldest one left takes over,
    /// so the last reader of a flight is never cut off either.
    fn drop(&mut self) {
        let mut state = lock(&self.flight.state);
        state.readers.remove(&self.id);
        if state.protected == Some(self.id) {
            state.protected = state.readers.keys().min().copied();
        }
        drop(state);
        self.flight.moved.notify_waiters();
    }
}

impl Reader {
    /// Waits for the response head, or the error that ended the flight before one.
    pub async fn head(&self) -> Result<Head, GatewayError> {
        loop {
            let notified = self.flight.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = lock(&self.flight.state);
                if let Some(head) = &state.head {
                    return Ok(head.clone());
                }
                if let Some(error) = &state.failed {
                    return Err(error.clone());
                }
                if state.ended {
                    return Err(GatewayError::UpstreamTruncated);
                }
            }
            notified.await;
        }
    }

    /// The next chunk: `Ok(None)` at the end; an error when cut off or truncated.
    async fn next(&self) -> Result<Option<Bytes>, RelayError> {
        loop {
            let notified = self.flight.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.flight.state);
                let Some(&position) = state.readers.get(&self.id) else {
                    return Err(RelayError(GatewayError::UpstreamTruncated));
                };
                if let Some(chunk) = position
                    .checked_sub(state.base)
                    .and_then(|i| state.chunks.get(i))
                    .cloned()
                {
                    state.readers.insert(self.id, position + 1);
                    drop(state);
                    self.flight.moved.notify_waiters();
                    return Ok(Some(chunk));
                }
                if state.ended {
                    return if state.truncated {
                        Err(RelayError(GatewayError::UpstreamTruncated))
                    } else {
                        Ok(None)
                    };
                }
            }
            notified.await;
        }
    }

    pub fn into_stream(self) -> Pin<Box<dyn Stream<Item = Result<Bytes, RelayError>> + Send>> {
        Box::pin(futures_util::stream::unfold(Some(self), |reader| async move {
            let reader = reader?;
            match reader.next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
                Ok(None) => None,
                Err(error) => Some((Err(error), None)),
            }
        }))
    }
}

/// The flights in progress, by cache key.
#[derive(Default)]
pub struct Flights {
    map: Mutex<HashMap<CacheKey, Arc<Flight>>>,
}

/// What a request became: the reader of an existing flight, or the leader of a new one.
pub enum Role {
    Joined(Reader),
    Leader(Arc<Flight>, Reader),
}

impl Flights {
    pub fn join_or_lead(&self, key: CacheKey, max_lag: usize) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = map.get(&key).and_then(|flight| flight.join()) {
            return Role::Joined(reader);
        }
        let flight = Flight::new(max_lag);
        let reader = flight.join().unwrap_or_else(|| unreachable_reader(&flight));
        map.insert(key, Arc::clone(&flight));
        Role::Leader(flight, reader)
    }

    /// Removes the flight if it is still the one registered under `key`.
    pub fn finish(&self, key: &CacheKey, flight: &Arc<Flight>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            map.remove(key);
        }
    }
}

/// A fresh flight is always open; this only keeps the signature total without a panic.
fn unreachable_reader(flight: &Arc<Flight>) -> Reader {
    let mut state = lock(&flight.state);
    state.open = true;
    let id = state.next_reader;
    state.next_reader += 1;
    state.readers.insert(id, 0);
    state.protected.get_or_insert(id);
    Reader {
        flight: Arc::clone(flight),
        id,
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn readers_get_every_chunk_at_their_own_pace() {
        let flight = Flight::new(1 << 20);
        let a = flight.join().expect("open");
        flight.set_head(Head {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        });
        flight.push(Bytes::from_static(b"one "));
        let b = flight.join().expect("still open");
        flight.push(Bytes::from_static(b"two"));
        flight.end(false);
        for reader in [a, b] {
            assert_eq!(reader.head().await.expect("head").status, StatusCode::OK);
            let chunks: Vec<_> = reader.into_stream().collect().await;
            let body: Vec<u8> = chunks.into_iter().flat_map(|c| c.expect("chunk").to_vec()).collect();
            assert_eq!(body, b"one two");
        }
    }

    #[tokio::test]
    async fn a_joined_reader_too_far_behind_is_cut_off_and_the_others_go_on() {
        let flight = Flight::new(10);
        let leader = flight.join().expect("open");
        let slow = flight.join().expect("open");
        let mut leader_stream = leader.into_stream();
        for _ in 0..5 {
            assert!(flight.room().await, "the leader keeps up: room every time");
            flight.push(Bytes::from_static(b"abcd"));
            assert!(leader_stream.next().await.expect("chunk").is_ok());
        }
        flight.end(false);
        assert!(leader_stream.next().await.is_none());
        let mut slow_stream = slow.into_stream();
        assert!(
            slow_stream.next().await.expect("an error").is_err(),
            "cut off, not silently short"
        );
        assert!(flight.join().is_none(), "the start is gone: no new readers");
        assert!(flight.whole_body().is_none());
    }

    #[tokio::test]
    async fn a_slow_leader_is_never_cut_off_it_holds_the_driver_back() {
        let flight = Flight::new(10);
        let leader = flight.join().expect("open");
        let fast = flight.join().expect("open");
        let mut fast_stream = fast.into_stream();
        let mut pushed = 0;
        // The driver's loop, with the leader not reading: room runs out at the bound.
        while tokio::time::timeout(std::time::Duration::from_millis(50), flight.room())
            .await
            .is_ok()
        {
            flight.push(Bytes::from_static(b"abcd"));
            pushed += 1;
            assert!(fast_stream.next().await.expect("chunk").is_ok());
        }
        assert_eq!(pushed, 3, "12 bytes kept: over the bound of 10, so the driver waits");
        let mut leader_stream = leader.into_stream();
        assert!(leader_stream.next().await.expect("chunk").is_ok(), "not cut off");
        assert!(flight.room().await, "reading made room");
        flight.push(Bytes::from_static(b"abcd"));
        flight.end(false);
        let rest: Vec<_> = leader_stream.collect().await;
        assert_eq!(rest.len(), 3);
        assert!(rest.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn when_the_leader_leaves_the_oldest_joiner_is_protected() {
        let flight = Flight::new(4);
        let leader = flight.join().expect("open");
        let joiner = flight.join().expect("open");
        drop(leader);
        assert!(flight.room().await);
        flight.push(Bytes::from_static(b"abcdefgh"));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), flight.room())
                .await
                .is_err(),
            "the lone joiner is now protected: the driver waits for it"
        );
        let mut stream = joiner.into_stream();
        assert!(stream.next().await.expect("chunk").is_ok(), "not cut off");
        drop(stream);
        assert!(!flight.room().await, "no reader left");
    }

    #[tokio::test]
    async fn a_failed_flight_tells_its_readers_and_takes_no_new_ones() {
        let flights = Flights::default();
        let Role::Leader(flight, reader) = flights.join_or_lead([9; 32], 100) else {
            panic!("first is the leader")
        };
        flight.fail_unless_ended(GatewayError::UpstreamUnreachable);
        assert!(matches!(reader.head().await, Err(GatewayError::UpstreamUnreachable)));
        assert!(
            matches!(flights.join_or_lead([9; 32], 100), Role::Leader(..)),
            "a new flight, not the failure"
        );
    }

    #[tokio::test]
    async fn the_flight_is_abandoned_when_the_last_reader_leaves() {
        let flight = Flight::new(100);
        let a = flight.join().expect("open");
        let b = flight.join().expect("open");
        let waiter = tokio::spawn({
            let flight = Arc::clone(&flight);
            async move { flight.abandoned().await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("in time")
            .expect("join");
    }
}
