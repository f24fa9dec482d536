//! Passthrough callers' keys that Groq has accepted lately (by hash, for a bounded time and number), so only they are answered from the cache.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::relay::Tap;

/// How long an accepted key stays trusted without Groq seeing it again: a key Groq revokes is
/// answered from the cache at most this long after its last accepted request.
const TRUSTED_FOR: Duration = Duration::from_secs(300);

/// Most keys remembered; past it the least recently used are forgotten (and simply go
/// upstream again, where Groq decides).
const MAX_KEYS: u64 = 100_000;

/// Hashes of caller keys Groq answered with a success, each for [`TRUSTED_FOR`].
pub struct VerifiedKeys {
    keys: moka::sync::Cache<[u8; 32], ()>,
}

impl VerifiedKeys {
    pub fn new() -> Self {
        Self {
            keys: moka::sync::Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_live(TRUSTED_FOR)
                .build(),
        }
    }

    pub fn contains(&self, partition: &[u8; 32]) -> bool {
        self.keys.contains_key(partition)
    }

    /// A tap that learns Groq's verdict on this caller's key from its answer.
    pub fn tap(self: &std::sync::Arc<Self>, partition: [u8; 32]) -> VerdictTap {
        VerdictTap {
            keys: std::sync::Arc::clone(self),
            partition,
        }
    }

    pub fn len(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }
}

impl Default for VerifiedKeys {
    fn default() -> Self {
        Self::new()
    }
}

/// Groq's answer decides: a success trusts the key, a 401 or 403 stops trusting it at once.
pub struct VerdictTap {
    keys: std::sync::Arc<VerifiedKeys>,
    partition: [u8; 32],
}

impl Tap for VerdictTap {
    fn start(&mut self, status: StatusCode, _headers: &HeaderMap) {
        if status.is_success() {
            self.keys.keys.insert(self.partition, ());
        } else if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            self.keys.keys.invalidate(&self.partition);
        }
    }
}
