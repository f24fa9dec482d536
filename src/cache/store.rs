//! The in-memory response store (moka): bounded by bytes and entries, each entry with its own TTL.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::HeaderValue;
use moka::{Expiry, sync::Cache};
use tokio::time::Instant;

use super::key::CacheKey;

/// A complete, successful response exactly as Groq sent it.
#[derive(Debug)]
pub struct Entry {
    pub status: u16,
    pub content_type: Option<HeaderValue>,
    pub request_id: Option<HeaderValue>,
    /// The body as it arrived, chunk by chunk, so a stream replays with its framing.
    pub chunks: Vec<Bytes>,
    pub size: usize,
    pub is_sse: bool,
    /// On tokio's clock, so TTL and `age` follow a paused clock in tests.
    pub stored_at: Instant,
    pub ttl: Duration,
}

impl Entry {
    pub fn age(&self) -> Duration {
        self.stored_at.elapsed()
    }

    pub fn is_fresh(&self) -> bool {
        self.age() < self.ttl
    }
}

/// Per-entry expiry for moka's own eviction; freshness on read is checked with [`Entry::is_fresh`].
struct PerEntryTtl;

impl Expiry<CacheKey, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(&self, _key: &CacheKey, value: &Arc<Entry>, _now: std::time::Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Bytes a stored entry costs beyond its body (key, headers, bookkeeping): so that many tiny
/// entries still count against `max_bytes`.
const ENTRY_OVERHEAD: usize = 256;

pub struct Store {
    cache: Cache<CacheKey, Arc<Entry>>,
    entries: Cache<CacheKey, ()>,
}

impl Store {
    pub fn new(max_bytes: u64, max_entries: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, entry: &Arc<Entry>| {
                u32::try_from(entry.size + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        // moka bounds one cache by weight or by count, not both: a second, weightless index
        // bounds the count, and evicting from it evicts the entry.
        let bodies = cache.clone();
        let entries = Cache::builder()
            .max_capacity(max_entries)
            .eviction_listener(move |key: Arc<CacheKey>, _: (), _cause| bodies.invalidate(&*key))
            .build();
        Self { cache, entries }
    }

    /// A fresh entry, or `None` (an expired one is removed).
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let entry = self.cache.get(key)?;
        if entry.is_fresh() {
            Some(entry)
        } else {
            self.cache.invalidate(key);
            None
        }
    }

    pub fn insert(&self, key: CacheKey, entry: Entry) {
        self.insert_shared(key, Arc::new(entry));
    }

    pub fn insert_shared(&self, key: CacheKey, entry: Arc<Entry>) {
        self.entries.insert(key, ());
        self.cache.insert(key, entry);
    }

    /// Settles moka's pending evictions (tests and metrics want exact counts).
    pub fn sync(&self) {
        self.entries.run_pending_tasks();
        self.cache.run_pending_tasks();
    }

    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    #[cfg(test)]
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize, ttl: Duration) -> Entry {
        Entry {
            status: 200,
            content_type: None,
            request_id: None,
            chunks: vec![Bytes::from(vec![b'x'; size])],
            size,
            is_sse: false,
            stored_at: Instant::now(),
            ttl,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_their_ttl() {
        let store = Store::new(1 << 20, 100);
        store.insert([1; 32], entry(10, Duration::from_secs(60)));
        store.insert([2; 32], entry(10, Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(store.get(&[1; 32]).is_some());
        assert!(store.get(&[2; 32]).is_none(), "past its own TTL");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(store.get(&[1; 32]).is_none());
    }

    #[test]
    fn total_bytes_are_bounded() {
        let store = Store::new(100_000, 1_000);
        for i in 0..100u8 {
            store.insert([i; 32], entry(10_000, Duration::from_secs(60)));
        }
        store.sync();
        assert!(store.weighted_size() <= 100_000, "{}", store.weighted_size());
        assert!(store.entry_count() < 100);
    }

    #[test]
    fn the_entry_count_is_bounded() {
        let store = Store::new(u64::MAX, 10);
        for i in 0..50u8 {
            store.insert([i; 32], entry(1, Duration::from_secs(60)));
            store.sync();
        }
        store.sync();
        assert!(store.entry_count() <= 10, "{}", store.entry_count());
    }
}
