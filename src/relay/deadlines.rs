//! The deadlines of one exchange with Groq, fixed when the request arrives so every later step shares them.

use std::time::Duration;

use tokio::time::Instant;

/// Deadlines for one exchange, fixed when the request arrives so every later step shares them.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// Response headers (and a stream's first bytes) must have arrived by then.
    pub first_byte: Instant,
    /// The whole exchange ends by then.
    pub total: Instant,
    /// Longest allowed silence between body chunks.
    pub idle: Duration,
}

impl Deadlines {
    pub fn first_byte_seconds(&self, started: Instant) -> u64 {
        self.first_byte.saturating_duration_since(started).as_secs().max(1)
    }
}
