//! The response cache: which requests may be answered from it, its key, the store, and single-flight coalescing.
//!
//! A cacheable request (see [`Cache::key_for`]) is answered, in order: from a fresh stored entry
//! (`x-groxy-cache: HIT`, with `age`); by joining an identical request in flight (`COALESCED`);
//! or by starting a flight that others may join and whose complete, successful response is
//! stored (`MISS`). Everything else is relayed directly (`BYPASS`). Stored bodies are the exact
//! bytes Groq sent, chunk by chunk, so a stream replays byte-exact with its framing.
//!
//! With Redis, [`tier`] is a second, shared tier: memory first, then Redis, then Groq; a Redis
//! hit is also kept in memory. Coalescing stays per replica: joining another replica's flight
//! would mean waiting for its whole answer instead of streaming the live tail, and a lock held
//! by a replica that died would stall the others until it expired.

pub mod flight;
pub mod key;
pub mod store;
pub mod tier;

use std::time::Duration;

use axum::{body::Body, response::Response};
use http::{HeaderMap, HeaderValue, header};

pub use flight::{Flight, Flights, Head, Reader, Role};
pub use key::{CacheKey, cache_key};
pub use store::{Entry, Store};

use crate::{
    auth::Caller,
    config::{CacheConfig, CacheMode},
};

/// The request's `Cache-Control`, as far as the cache honours it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controls {
    /// Skip the lookup (and do not join a flight), still store.
    pub no_cache: bool,
    /// Do not store the response.
    pub no_store: bool,
    /// Accept only entries younger than this.
    pub max_age: Option<Duration>,
    /// `x-groxy-cache-ttl`: how long to keep the stored response.
    pub ttl: Option<Duration>,
}

impl Controls {
    pub fn parse(headers: &HeaderMap) -> Self {
        let mut controls = Controls::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(text) = value.to_str() else { continue };
            for directive in text.split(',').map(str::trim) {
                let (name, arg) = directive
                    .split_once('=')
                    .map_or((directive, None), |(n, a)| (n, Some(a)));
                match name.to_ascii_lowercase().as_str() {
                    "no-cache" => controls.no_cache = true,
                    "no-store" => controls.no_store = true,
                    "max-age" => {
                        controls.max_age = arg
                            .and_then(|a| a.trim_matches('"').parse().ok())
                            .map(Duration::from_secs);
                    }
                    _ => {}
                }
            }
        }
        controls.ttl = headers
            .get("x-groxy-cache-ttl")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        controls
    }
}

pub struct Cache {
    /// The policy (mode, TTLs, per-key switches): swapped whole on reload. The store's
    /// capacity is fixed at start.
    config: arc_swap::ArcSwap<CacheConfig>,
    pub store: Store,
    pub flights: Flights,
    tier: Option<tier::RedisTier>,
}

/// Bytes an encoded Redis value may carry beyond the body (headers, chunk lengths).
const TIER_OVERHEAD: usize = 64 * 1024;

impl Cache {
    pub fn new(config: &CacheConfig) -> Self {
        Self {
            store: Store::new(config.max_bytes.0, config.max_entries),
            flights: Flights::default(),
            config: arc_swap::ArcSwap::from_pointee(config.clone()),
            tier: None,
        }
    }

    /// Applies a reloaded policy to requests from now on.
    pub fn reconfigure(&self, config: &CacheConfig) {
        self.config.store(std::sync::Arc::new(config.clone()));
    }

    /// Adds the shared Redis tier under the memory one.
    pub fn with_redis(mut self, redis: crate::redis::Redis) -> Self {
        let cap = self.max_entry_bytes().saturating_add(TIER_OVERHEAD);
        self.tier = Some(tier::RedisTier::new(redis, cap));
        self
    }

    /// After a memory miss: an entry in the shared tier the request accepts, kept in memory
    /// from now on. `None` at once without Redis, and within the Redis timeout with it.
    pub async fn lookup_shared(&self, key: &CacheKey, controls: &Controls) -> Option<std::sync::Arc<Entry>> {
        let tier = self.tier.as_ref()?;
        if controls.no_cache {
            return None;
        }
        let entry = std::sync::Arc::new(tier.get(key).await?);
        self.store.insert_shared(*key, entry.clone());
        match controls.max_age {
            Some(max_age) if entry.age() > max_age => None,
            _ => Some(entry),
        }
    }

    /// Stores a complete answer in memory and (in the background) in the shared tier.
    pub fn insert(&self, key: CacheKey, entry: Entry) {
        if let Some(tier) = &self.tier {
            tier.put(&key, &entry);
        }
        self.store.insert(key, entry);
    }

    /// The key for a request the cache may answer, or `None` for one it must not touch:
    /// cache off (globally or for this key), or a request not meant to repeat in
    /// `deterministic` mode (no `temperature: 0` and no `seed`).
    pub fn key_for(&self, caller: &Caller, request: &serde_json::Map<String, serde_json::Value>) -> Option<CacheKey> {
        let config = self.config.load();
        let enabled = match config.mode {
            CacheMode::Off => false,
            CacheMode::All => true,
            CacheMode::Deterministic => {
                let zero_temperature = request.get("temperature").and_then(|t| t.as_f64()) == Some(0.0);
                let seeded = request.get("seed").is_some_and(|s| !s.is_null());
                zero_temperature || seeded
            }
        };
        if !enabled || config.keys.get(&*caller.name) == Some(&false) {
            return None;
        }
        let tenant = (!config.shared).then_some(&caller.partition);
        Some(cache_key(tenant, request))
    }

    /// The TTL for a new entry: the request's, capped, or the default.
    pub fn ttl(&self, controls: &Controls) -> Duration {
        let config = self.config.load();
        controls.ttl.map_or(config.ttl.0, |t| t.min(config.max_ttl.0))
    }

    pub fn max_entry_bytes(&self) -> usize {
        self.config.load().max_entry_bytes.as_usize()
    }

    /// A stored entry the request accepts (fresh, and young enough for its `max-age`).
    pub fn lookup(&self, key: &CacheKey, controls: &Controls) -> Option<std::sync::Arc<Entry>> {
        if controls.no_cache {
            return None;
        }
        let entry = self.store.get(key)?;
        match controls.max_age {
            Some(max_age) if entry.age() > max_age => None,
            _ => Some(entry),
        }
    }
}

/// `x-groxy-cache` values.
pub const HIT: HeaderValue = HeaderValue::from_static("HIT");
pub const MISS: HeaderValue = HeaderValue::from_static("MISS");
pub const BYPASS: HeaderValue = HeaderValue::from_static("BYPASS");
pub const COALESCED: HeaderValue = HeaderValue::from_static("COALESCED");

/// Replays a stored entry: the same status, content type, request id and body chunks.
pub fn replay(entry: &Entry) -> Response {
    let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = entry.chunks.iter().cloned().map(Ok).collect();
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    *response.status_mut() = http::StatusCode::from_u16(entry.status).unwrap_or(http::StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(ct) = &entry.content_type {
        headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    if let Some(id) = &entry.request_id {
        headers.insert(crate::upstream::headers::GROQ_REQUEST_ID, id.clone());
    }
    if entry.is_sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    headers.insert("x-groxy-cache", HIT);
    headers.insert(header::AGE, HeaderValue::from(entry.age().as_secs()));
    response
}

/// A flight reader's response: the shared head, then the shared body at this reader's pace.
pub fn from_reader(head: Head, reader: Reader, cache_status: HeaderValue) -> Response {
    let mut response = Response::new(Body::from_stream(reader.into_stream()));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response.headers_mut().insert("x-groxy-cache", cache_status);
    response
}

/// Copies the chunks into one allocation of exactly `size` bytes, keeping their boundaries.
///
/// Why: chunks read from a socket are slices of larger read buffers; stored as they are, a
/// 200-byte chunk could keep a 16 KiB buffer alive. Compacted, a cached byte costs one byte.
pub fn compact(chunks: &[bytes::Bytes], size: usize) -> Vec<bytes::Bytes> {
    let mut buffer = bytes::BytesMut::with_capacity(size);
    let mut bounds = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let start = buffer.len();
        buffer.extend_from_slice(chunk);
        bounds.push(start..buffer.len());
    }
    let buffer = buffer.freeze();
    bounds.into_iter().map(|range| buffer.slice(range)).collect()
}

/// Whether an SSE body carries an error event (Groq's mid-stream error, or groxy's truncation
/// frame): such a stream is never stored.
pub fn has_error_event(chunks: &[bytes::Bytes]) -> bool {
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    joined.starts_with(b"data: {\"error\"") || memchr::memmem::find(&joined, b"\ndata: {\"error\"").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives() {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=30"));
        h.insert("x-groxy-cache-ttl", HeaderValue::from_static("120"));
        let c = Controls::parse(&h);
        assert_eq!(
            c,
            Controls {
                no_cache: false,
                no_store: true,
                max_age: Some(Duration::from_secs(30)),
                ttl: Some(Duration::from_secs(120))
            }
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("No-Cache"));
        assert!(Controls::parse(&h).no_cache);
    }

    #[test]
    fn compacting_keeps_bytes_and_boundaries() {
        let big = bytes::Bytes::from(vec![7u8; 16_384]);
        let chunks = vec![big.slice(0..3), bytes::Bytes::from_static(b"abcd"), big.slice(100..102)];
        let compacted = compact(&chunks, 9);
        assert_eq!(compacted, chunks);
        assert_eq!(compacted.iter().map(|c| c.len()).collect::<Vec<_>>(), [3, 4, 2]);
    }

    #[test]
    fn error_events_are_found_wherever_they_are() {
        let ok = [bytes::Bytes::from_static(b"data: {\"x\":1}\n\ndata: [DONE]\n\n")];
        assert!(!has_error_event(&ok));
        let err = [
            bytes::Bytes::from_static(b"data: {\"x\":1}\n"),
            bytes::Bytes::from_static(b"\ndata: {\"error\":{}}\n\n"),
        ];
        assert!(has_error_event(&err));
    }
}
