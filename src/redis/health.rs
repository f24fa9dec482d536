//! What `/readyz` and the metrics say about Redis: up, down or disabled, and how often that changed; one log line per change.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Redis as the rest of groxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// No `redis.url`: every replica keeps its own state in memory.
    Disabled,
    /// Calls go to Redis: limits, budget and cache are shared.
    Up,
    /// Redis is not called (the breaker is open): local share of every limit, memory cache only.
    Down,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Disabled => "disabled",
            RedisState::Up => "up",
            RedisState::Down => "down",
        }
    }
}

/// Lock-free, so `/readyz` and a metrics scrape never wait on the breaker.
#[derive(Debug, Default)]
pub struct Health {
    down: AtomicBool,
    changes: AtomicU64,
}

impl Health {
    pub fn state(&self) -> RedisState {
        if self.down.load(Ordering::Relaxed) {
            RedisState::Down
        } else {
            RedisState::Up
        }
    }

    /// How many times the state changed since start (for a counter metric).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Records a state change and writes its one log line: a warning going down, info coming back.
    pub fn went_down(&self, redis: &str, reason: &str) {
        if !self.down.swap(true, Ordering::Relaxed) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                redis,
                reason,
                "redis unavailable: limits fall back to this replica's local share, cache to memory only"
            );
        }
    }

    pub fn came_back(&self, redis: &str) {
        if self.down.swap(false, Ordering::Relaxed) {
            self.changes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(redis, "redis reachable again: limits and cache are shared again");
        }
    }
}
