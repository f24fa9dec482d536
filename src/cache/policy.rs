//! The cache's policy: which requests it may answer (mode, per-key switches, tenants, verified callers), under which key, for how long.

use std::{sync::Arc, time::Duration};

use super::{
    controls::Controls,
    flight::Flights,
    key::{CacheKey, cache_key},
    store::{Entry, Store},
    tier,
    verified::VerifiedKeys,
};
use crate::{
    auth::Caller,
    config::{CacheConfig, CacheMode},
    routes::table::Endpoint,
};

pub struct Cache {
    /// The policy (mode, TTLs, per-key switches): swapped whole on reload. The store's
    /// capacity is fixed at start.
    config: arc_swap::ArcSwap<CacheConfig>,
    pub store: Store,
    pub flights: Flights,
    tier: Option<tier::RedisTier>,
    /// Passthrough callers whose key Groq has accepted lately: only they may be answered
    /// from the cache or a flight, so a key Groq refuses never gets another caller's answer.
    pub verified: Arc<VerifiedKeys>,
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
            verified: Arc::new(VerifiedKeys::new()),
        }
    }

    /// Applies a reloaded policy to requests from now on.
    pub fn reconfigure(&self, config: &CacheConfig) {
        self.config.store(Arc::new(config.clone()));
    }

    /// Adds the shared Redis tier under the memory one.
    pub fn with_redis(mut self, redis: crate::redis::Redis) -> Self {
        let cap = self.max_entry_bytes().saturating_add(TIER_OVERHEAD);
        self.tier = Some(tier::RedisTier::new(redis, cap));
        self
    }

    /// A stored answer the request accepts: from memory, then from the shared tier.
    pub async fn stored(&self, key: &CacheKey, controls: &Controls) -> Option<Arc<Entry>> {
        match self.lookup(key, controls) {
            Some(entry) => Some(entry),
            None => self.lookup_shared(key, controls).await,
        }
    }

    /// After a memory miss: an entry in the shared tier the request accepts, kept in memory
    /// from now on. `None` at once without Redis, and within the Redis timeout with it.
    async fn lookup_shared(&self, key: &CacheKey, controls: &Controls) -> Option<Arc<Entry>> {
        let tier = self.tier.as_ref()?;
        if controls.no_cache {
            return None;
        }
        let entry = Arc::new(tier.get(key).await?);
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
    pub fn key_for(
        &self,
        caller: &Caller,
        endpoint: Endpoint,
        request: Option<&crate::validate::Checked>,
    ) -> Option<CacheKey> {
        let request = request?;
        // A caller with its own Groq key is served from the cache only once Groq has accepted
        // that key: until then it goes upstream and gets Groq's verdict.
        if caller.upstream_authorization.is_some() && !self.verified.contains(&caller.partition) {
            return None;
        }
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
        Some(cache_key(tenant, endpoint, request))
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
    fn lookup(&self, key: &CacheKey, controls: &Controls) -> Option<Arc<Entry>> {
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
