//! The shared second cache tier in Redis: entries another replica stored, looked up after a memory miss and before Groq.
//!
//! An entry is stored as one binary value (a version byte, then status, flags, content type,
//! request id, store time, TTL and the body chunk by chunk, so a stream replays with the same
//! framing on every replica) with Redis's own expiry set to the entry's TTL. Values larger than
//! the cap are not stored. Reads are bounded by the Redis timeout; writes happen in the
//! background. Anything Redis returns that does not decode is a miss.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderValue;
use tokio::time::Instant;

use super::{key::CacheKey, store::Entry};
use crate::redis::Redis;

const VERSION: u8 = 1;
const SSE: u8 = 1;

pub struct RedisTier {
    redis: Redis,
    /// Largest encoded value written.
    max_value_bytes: usize,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn put_field(buffer: &mut BytesMut, value: Option<&HeaderValue>) {
    let bytes = value.map_or(&[][..], HeaderValue::as_bytes);
    buffer.put_u32(bytes.len() as u32);
    buffer.put_slice(bytes);
}

/// The value for `entry`, stored at Unix time `stored_ms`.
pub fn encode(entry: &Entry, stored_ms: u64) -> Bytes {
    let mut buffer = BytesMut::with_capacity(entry.size + 64 + entry.chunks.len() * 4);
    buffer.put_u8(VERSION);
    buffer.put_u16(entry.status);
    buffer.put_u8(if entry.is_sse { SSE } else { 0 });
    put_field(&mut buffer, entry.content_type.as_ref());
    put_field(&mut buffer, entry.request_id.as_ref());
    buffer.put_u64(stored_ms);
    buffer.put_u64(entry.ttl.as_millis() as u64);
    buffer.put_u32(entry.chunks.len() as u32);
    for chunk in &entry.chunks {
        buffer.put_u32(chunk.len() as u32);
        buffer.put_slice(chunk);
    }
    buffer.freeze()
}

fn take(value: &mut Bytes, len: usize) -> Option<Bytes> {
    (value.remaining() >= len).then(|| value.split_to(len))
}

fn take_field(value: &mut Bytes) -> Option<Option<HeaderValue>> {
    if value.remaining() < 4 {
        return None;
    }
    let len = value.get_u32() as usize;
    let bytes = take(value, len)?;
    if bytes.is_empty() {
        return Some(None);
    }
    HeaderValue::from_maybe_shared(bytes).ok().map(Some)
}

/// The entry in `value` as of Unix time `now_ms`, or `None` if it is not one of ours, is
/// malformed, or has expired. The chunks share the value's one allocation.
pub fn decode(mut value: Bytes, now_ms: u64) -> Option<Entry> {
    if value.remaining() < 4 || value.get_u8() != VERSION {
        return None;
    }
    let status = value.get_u16();
    let is_sse = value.get_u8() & SSE != 0;
    let content_type = take_field(&mut value)?;
    let request_id = take_field(&mut value)?;
    if value.remaining() < 20 {
        return None;
    }
    let stored_ms = value.get_u64();
    let ttl = Duration::from_millis(value.get_u64());
    let count = value.get_u32() as usize;
    let mut chunks = Vec::with_capacity(count.min(value.remaining() / 4));
    let mut size = 0usize;
    for _ in 0..count {
        if value.remaining() < 4 {
            return None;
        }
        let len = value.get_u32() as usize;
        let chunk = take(&mut value, len)?;
        size += chunk.len();
        chunks.push(chunk);
    }
    if value.has_remaining() {
        return None;
    }
    let age = Duration::from_millis(now_ms.saturating_sub(stored_ms));
    if age >= ttl {
        return None;
    }
    let now = Instant::now();
    Some(Entry {
        status,
        content_type,
        request_id,
        chunks,
        size,
        is_sse,
        stored_at: now.checked_sub(age).unwrap_or(now),
        ttl,
    })
}

impl RedisTier {
    pub fn new(redis: Redis, max_value_bytes: usize) -> Self {
        Self { redis, max_value_bytes }
    }

    fn key(&self, key: &CacheKey) -> String {
        format!("{}c:{}", self.redis.prefix(), crate::digest::hex(key))
    }

    /// The entry another replica (or this one) stored, within the Redis timeout; else `None`.
    pub async fn get(&self, key: &CacheKey) -> Option<Entry> {
        let redis_key = self.key(key);
        let value = self
            .redis
            .call(|mut connection| async move {
                ::redis::cmd("GET")
                    .arg(&redis_key)
                    .query_async::<Option<Vec<u8>>>(&mut connection)
                    .await
            })
            .await
            .ok()??;
        decode(Bytes::from(value), unix_ms())
    }

    /// Stores `entry` for the rest of its TTL, in the background; skipped if too large.
    pub fn put(&self, key: &CacheKey, entry: &Entry) {
        let age = entry.age();
        let Some(left) = entry.ttl.checked_sub(age).filter(|d| !d.is_zero()) else {
            return;
        };
        let value = encode(entry, unix_ms().saturating_sub(age.as_millis() as u64));
        if value.len() > self.max_value_bytes {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let redis = self.redis.clone();
        let redis_key = self.key(key);
        runtime.spawn(async move {
            let stored = redis
                .call(|mut connection| async move {
                    ::redis::cmd("SET")
                        .arg(&redis_key)
                        .arg(value.as_ref())
                        .arg("PX")
                        .arg(left.as_millis().max(1) as u64)
                        .query_async::<()>(&mut connection)
                        .await
                })
                .await;
            if let Err(error) = stored {
                tracing::debug!(%error, "cache entry not stored in redis");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            status: 200,
            content_type: Some(HeaderValue::from_static("text/event-stream")),
            request_id: Some(HeaderValue::from_static("req_123")),
            chunks: vec![
                Bytes::from_static(b"data: {\"a\""),
                Bytes::from_static(b":1}\n\ndata: [DONE]\n\n"),
            ],
            size: 29,
            is_sse: true,
            stored_at: Instant::now(),
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_round_trip_with_their_chunks_and_age() {
        let value = encode(&entry(), 1_000_000);
        let back = decode(value, 1_003_000).expect("decodes");
        let original = entry();
        assert_eq!(back.chunks, original.chunks, "same bytes, same boundaries");
        assert_eq!(
            (back.status, back.is_sse, back.size, back.ttl),
            (200, true, 29, original.ttl)
        );
        assert_eq!(back.content_type, original.content_type);
        assert_eq!(back.request_id, original.request_id);
        assert_eq!(back.age(), Duration::from_secs(3));
        let plain = Entry {
            content_type: None,
            request_id: None,
            is_sse: false,
            ..entry()
        };
        let back = decode(encode(&plain, 5), 5).expect("decodes");
        assert_eq!((back.content_type, back.request_id, back.is_sse), (None, None, false));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_truncated_and_foreign_values_are_misses() {
        let value = encode(&entry(), 1_000_000);
        assert!(decode(value.clone(), 1_060_000).is_none(), "expired");
        for cut in 0..value.len() {
            assert!(decode(value.slice(..cut), 1_000_000).is_none(), "cut at {cut}");
        }
        let mut extra = BytesMut::from(&value[..]);
        extra.put_u8(0);
        assert!(decode(extra.freeze(), 1_000_000).is_none(), "trailing bytes");
        let mut other_version = BytesMut::from(&value[..]);
        other_version[0] = 9;
        assert!(decode(other_version.freeze(), 1_000_000).is_none());
    }
}
