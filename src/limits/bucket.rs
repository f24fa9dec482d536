//! A token bucket on tokio's clock that can be refunded: the shape of every groxy rate limit.
//!
//! Why not `governor`: token limits reserve an estimate and later give back what the response
//! did not use (or take the excess), and governor's GCRA cells cannot be refunded; and tests
//! drive these limits with `tokio::time::pause`, which governor's clock does not follow. For
//! request counts the bucket behaves exactly like GCRA: a burst of `limit`, then one request
//! every `window / limit`.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Bucket {
    limit: u64,
    window: Duration,
    /// May go below zero: a response that used more than was reserved leaves a debt that
    /// delays the next admissions, as Groq's own accounting would.
    level: f64,
    updated: Instant,
}

/// Why an admission failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Retry after this long.
    Wait(Duration),
    /// The amount is larger than the whole limit: waiting cannot help.
    Never,
}

impl Bucket {
    pub fn new(limit: u64, window: Duration, now: Instant) -> Self {
        Self {
            limit,
            window,
            level: limit as f64,
            updated: now,
        }
    }

    /// A bucket as another store (Redis) reported it at `now`, so the same methods render it.
    pub fn at_level(limit: u64, window: Duration, level: f64, now: Instant) -> Self {
        Self {
            limit,
            window,
            level,
            updated: now,
        }
    }

    /// Adopts a changed limit (a reloaded config) keeping what was used: 8 used of 10 is 8
    /// used of 20 (12 left) or of 5 (a debt of 3).
    pub fn set_limit(&mut self, limit: u64, now: Instant) {
        if limit == self.limit {
            return;
        }
        self.refill(now);
        let used = self.limit as f64 - self.level;
        self.limit = limit;
        self.level = (limit as f64 - used).min(limit as f64);
    }

    fn rate_per_sec(&self) -> f64 {
        self.limit as f64 / self.window.as_secs_f64().max(1e-9)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + elapsed * self.rate_per_sec()).min(self.limit as f64);
        self.updated = now;
    }

    /// How long until `amount` fits, without taking it.
    pub fn check(&mut self, amount: u64, now: Instant) -> Result<(), Refusal> {
        if amount > self.limit {
            return Err(Refusal::Never);
        }
        self.refill(now);
        let missing = amount as f64 - self.level;
        if missing <= 0.0 {
            Ok(())
        } else {
            Err(Refusal::Wait(Duration::from_secs_f64(missing / self.rate_per_sec())))
        }
    }

    pub fn take(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.level -= amount as f64;
    }

    /// Gives back `amount` (negative: takes more), never above the limit.
    pub fn adjust(&mut self, amount: i64, now: Instant) {
        self.refill(now);
        self.level = (self.level + amount as f64).min(self.limit as f64);
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        self.level.max(0.0).floor() as u64
    }

    /// Until the bucket is full again.
    pub fn reset_in(&mut self, now: Instant) -> Duration {
        self.refill(now);
        let missing = self.limit as f64 - self.level;
        Duration::from_secs_f64((missing / self.rate_per_sec()).max(0.0))
    }

    /// Full and so carrying no information: such state can be dropped.
    pub fn is_idle(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.limit as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_then_refills_at_the_limit_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, Duration::from_secs(60), t0);
        for _ in 0..10 {
            assert_eq!(b.check(1, t0), Ok(()));
            b.take(1, t0);
        }
        assert_eq!(b.check(1, t0), Err(Refusal::Wait(Duration::from_secs(6))));
        assert_eq!(b.remaining(t0), 0);
        assert_eq!(b.reset_in(t0), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.check(1, Instant::now()), Ok(()));
        assert_eq!(b.check(11, Instant::now()), Err(Refusal::Never));
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_limit_keeps_what_was_used() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, Duration::from_secs(60), t0);
        b.take(8, t0);
        b.set_limit(20, t0);
        assert_eq!((b.limit(), b.remaining(t0)), (20, 12));
        b.set_limit(5, t0);
        assert_eq!((b.limit(), b.remaining(t0)), (5, 0));
        assert!(matches!(b.check(1, t0), Err(Refusal::Wait(_))), "a debt of 3");
    }

    #[tokio::test(start_paused = true)]
    async fn refunds_and_debts() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000, Duration::from_secs(60), t0);
        b.take(800, t0);
        assert_eq!(b.remaining(t0), 200);
        b.adjust(500, t0); // the response used 300 of the 800 reserved
        assert_eq!(b.remaining(t0), 700);
        b.adjust(5000, t0);
        assert_eq!(b.remaining(t0), 1000, "never above the limit");
        b.take(1000, t0);
        b.adjust(-500, t0); // used 500 more than reserved: a debt
        assert_eq!(b.remaining(t0), 0);
        assert!(matches!(b.check(1, t0), Err(Refusal::Wait(d)) if d > Duration::from_secs(30)));
    }
}
