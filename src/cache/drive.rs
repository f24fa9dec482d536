//! Single flight: a cacheable request that missed the store either joins an identical one on its way to Groq, or leads a new flight whose driver sends it once, feeds every reader and stores a complete answer.

use std::{sync::Arc, time::Duration};

use axum::response::Response;
use http::header;
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::{
    controls::Controls,
    flight::{Flight, Head, Reader, Role},
    key::CacheKey,
    policy::Cache,
    replay::{CacheStatus, compact, from_reader, is_whole_answer},
    store::Entry,
};
use crate::{
    error::GatewayError,
    relay::Taps,
    upstream::{Forward, MODEL_HEADER},
    wire::headers::{GROQ_REQUEST_ID, is_coded, is_event_stream, is_json},
};

/// What a cacheable request that missed the store became.
pub enum Served {
    /// A reader of an identical request in flight: no upstream call of its own.
    Joined(Reader),
    /// The leader of a new flight, to be started with [`Lead::start`].
    Lead(Lead),
}

/// A new flight, not started yet.
pub struct Lead {
    cache: Arc<Cache>,
    key: CacheKey,
    flight: Arc<Flight>,
    reader: Reader,
    /// Registered under `key`, so identical requests can join it (not with `no-cache`).
    registered: bool,
    /// How long to keep the answer; `None` with `no-store`.
    store: Option<Duration>,
}

/// Joins the flight in progress for `key`, or leads a new one. With `no-cache` the request
/// neither joins nor can be joined, but its answer is still stored (unless `no-store`).
pub fn serve_from_flight(cache: &Arc<Cache>, key: CacheKey, controls: &Controls) -> Result<Served, GatewayError> {
    let max_lag = cache.max_entry_bytes();
    let (role, registered) = if controls.no_cache {
        let flight = Flight::new(max_lag);
        let reader = flight.join().ok_or(GatewayError::Internal)?;
        (Role::Leader(flight, reader), false)
    } else {
        (cache.flights.join_or_lead(key, max_lag), true)
    };
    Ok(match role {
        Role::Joined(reader) => Served::Joined(reader),
        Role::Leader(flight, reader) => Served::Lead(Lead {
            cache: Arc::clone(cache),
            key,
            flight,
            reader,
            registered,
            store: (!controls.no_store).then(|| cache.ttl(controls)),
        }),
    })
}

/// A joined flight's answer: its head when the leader has one, then its body at this pace.
pub async fn join(reader: Reader) -> Result<Response, GatewayError> {
    let head = reader.head().await?;
    Ok(from_reader(head, reader, CacheStatus::Coalesced))
}

impl Lead {
    /// Starts the driver (which outlives this client if others read the flight) and answers
    /// this client as the flight's first reader.
    pub async fn start(self, forward: Forward, taps: Taps) -> Result<Response, GatewayError> {
        let Lead {
            cache,
            key,
            flight,
            reader,
            registered,
            store,
        } = self;
        tokio::spawn(drive(cache, key, Arc::clone(&flight), registered, store, forward, taps));
        let head = reader.head().await?;
        Ok(from_reader(head, reader, CacheStatus::Miss))
    }
}

/// A flight's driver: sends the request once, feeds every reader at the pace of the protected
/// one (see `flight`), and stores a complete, successful answer. Stops (cancelling the upstream
/// call) when the last reader leaves.
async fn drive(
    cache: Arc<Cache>,
    key: CacheKey,
    flight: Arc<Flight>,
    registered: bool,
    store: Option<Duration>,
    forward: Forward,
    taps: Taps,
) {
    let _end_for_readers = EndOnDrop(Arc::clone(&flight));
    let finish = || {
        if registered {
            cache.flights.finish(&key, &flight);
        }
    };
    let response = tokio::select! {
        response = forward.send(taps) => response,
        () = flight.abandoned() => {
            finish();
            return;
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            flight.fail(error);
            finish();
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    flight.set_head(Head {
        status: parts.status,
        headers: parts.headers.clone(),
    });
    let complete = loop {
        // The next chunk is read only once the buffer has room: a slow protected reader (the
        // client that started the flight) slows Groq's answer instead of being cut off.
        if !flight.room().await {
            flight.end(true);
            break false;
        }
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        flight.push(data);
                    }
                }
                Some(Err(_)) => {
                    flight.end(true);
                    break false;
                }
                None => {
                    flight.end(false);
                    break true;
                }
            },
            () = flight.abandoned() => {
                flight.end(true);
                break false;
            }
        }
    };
    drop(body);
    if let (true, Some(ttl)) = (complete, store) {
        keep(&cache, key, &flight, &parts, ttl);
    }
    finish();
}

/// Stores a flight's answer if it is one worth replaying: a success, whole, within the entry
/// size, in no content coding (one groxy could not decode: its bytes are opaque and would be
/// replayed without their header), not a fallback model's, and complete by its own framing: a
/// stream that ended with `data: [DONE]` and no error event, or JSON that parses.
fn keep(cache: &Cache, key: CacheKey, flight: &Flight, parts: &http::response::Parts, ttl: Duration) {
    // A fallback's answer stands in for the model asked for only while that one is over capacity.
    if !parts.status.is_success() || is_coded(&parts.headers) || parts.headers.contains_key(MODEL_HEADER) {
        return;
    }
    let Some((chunks, size)) = flight.whole_body() else {
        return;
    };
    let is_sse = is_event_stream(&parts.headers);
    if size > cache.max_entry_bytes() || !is_whole_answer(&chunks, is_sse, is_json(&parts.headers)) {
        return;
    }
    cache.insert(
        key,
        Entry {
            status: parts.status.as_u16(),
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            request_id: parts.headers.get(GROQ_REQUEST_ID).cloned(),
            chunks: compact(&chunks, size),
            size,
            is_sse,
            stored_at: Instant::now(),
            ttl,
        },
    );
}

/// Makes sure a flight's readers hear of its end even if the driver never gets to say it.
struct EndOnDrop(Arc<Flight>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.fail_unless_ended(GatewayError::Internal);
    }
}
