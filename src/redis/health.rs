//! What `/readyz` and the metrics say about Redis: connecting, up, down or disabled, and how often that changed; one log line per change.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// Redis as the rest of groxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    /// No `redis.url`: every replica keeps its own state in memory.
    Disabled,
    /// Redis has not answered yet since start: nothing says the state is shared, so this is
    /// not `up` (a replica that never reaches Redis must not look healthy for a moment).
    Connecting,
    /// Calls go to Redis: limits, budget and cache are shared.
    Up,
    /// Redis is not called (the breaker is open): local share of every limit, memory cache only.
    Down,
}

impl RedisState {
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Disabled => "disabled",
            RedisState::Connecting => "connecting",
            RedisState::Up => "up",
            RedisState::Down => "down",
        }
    }
}

const CONNECTING: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Lock-free, so `/readyz` and a metrics scrape never wait on the breaker.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    changes: AtomicU64,
}

impl Health {
    pub fn state(&self) -> RedisState {
        match self.state.load(Ordering::Relaxed) {
            CONNECTING => RedisState::Connecting,
            UP => RedisState::Up,
            _ => RedisState::Down,
        }
    }

    /// How many times Redis went down or came back since start (for a counter metric); the
    /// first answer after start, or the first failure, ends `connecting` and is not counted.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Records a state change and writes its one log line: a warning going down, info coming back.
    pub fn went_down(&self, redis: &str, reason: &str) {
        let before = self.state.swap(DOWN, Ordering::Relaxed);
        if before != DOWN {
            if before == UP {
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(
                redis,
                reason,
                "redis unavailable: limits fall back to this replica's local share, cache to memory only"
            );
        }
    }

    /// Redis answered: up from `connecting` quietly, from `down` with a log line.
    pub fn answered(&self, redis: &str) {
        if self.state.load(Ordering::Relaxed) == UP {
            return;
        }
        match self.state.swap(UP, Ordering::Relaxed) {
            DOWN => {
                self.changes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(redis, "redis reachable again: limits and cache are shared again");
            }
            CONNECTING => tracing::debug!(redis, "redis reachable"),
            _ => {}
        }
    }
}
