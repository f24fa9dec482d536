//! Per-client rate limits: requests and tokens per minute and per day, and concurrency, reserved at admission and settled with the real usage.
//!
//! Scopes: every client key has one scope across all models (`rate_limits.default`, or its own
//! `rate_limits.keys.<name>`), and one per model (`rate_limits.per_model`, a preset, or
//! `rate_limits.models."<id>"`). A request must fit every scope that applies to it.
//!
//! Tokens are reserved when a request is admitted (a lower-bound prompt estimate plus the
//! completion it may produce) and settled when the response ends with what the exchange
//! consumed (see `Admission`): the unused part is given back, an excess is taken.
//!
//! The decision (`decide`) is one; the buckets live in this process (`memory`) or in Redis
//! (`redis_buckets`, shared by every replica). The limits come from the config at each
//! admission ([`Plan`]), so a reloaded config applies to the next request without losing counts.
//! With Redis, a call that fails or times out never fails the request: this replica then decides
//! alone on its local share of every limit ([`Plan::local_share`]). That share starts from what
//! this replica last saw used in Redis (the same fraction of each limit left, and its own
//! requests still in flight), not full: an outage must not hand out a limit already spent.

mod admission;
mod bucket;
mod decide;
mod memory;
mod plan;
mod redis_buckets;
mod seed;

use std::time::Duration;

pub use admission::Admission;
use admission::Hold;
use arc_swap::ArcSwap;
pub use memory::Limiter;
pub use plan::{Plan, reservation};
use redis_buckets::RedisBuckets;
pub use seed::DaySeed;

use crate::{auth::Caller, config::RateLimitsConfig, error::LimitExceeded, redis::Redis};

/// The client limits of this replica: buckets in memory, or in Redis shared by every replica
/// with a memory fallback that enforces this replica's share while Redis cannot answer.
pub struct Limits {
    memory: Limiter,
    shared: Option<Shared>,
    /// The ledger's last day, for day buckets created from now on.
    seed: ArcSwap<DaySeed>,
}

struct Shared {
    buckets: RedisBuckets,
    replicas: u64,
}

impl Limits {
    /// In memory only.
    pub fn in_memory() -> Self {
        Self {
            memory: Limiter::new(),
            shared: None,
            seed: ArcSwap::from_pointee(DaySeed::default()),
        }
    }

    /// In `redis`, shared by `replicas` replicas; `lease` bounds how long a lost settlement can
    /// hold a concurrency slot (the longest a request can take).
    pub fn shared(redis: Redis, replicas: u64, lease: Duration) -> Self {
        Self {
            memory: Limiter::new(),
            shared: Some(Shared {
                buckets: RedisBuckets::new(redis, lease),
                replicas: replicas.max(1),
            }),
            seed: ArcSwap::from_pointee(DaySeed::default()),
        }
    }

    /// Tokens to reserve for a request (see [`reservation`]), within the limits this replica
    /// may have to enforce alone (its local share, when Redis cannot answer).
    pub fn reservation(
        &self,
        config: &RateLimitsConfig,
        caller: &Caller,
        model: Option<&str>,
        prompt_estimate: u64,
        max_completion: Option<u64>,
        model_max: Option<u64>,
    ) -> u64 {
        let mut plan = Plan::new(config, caller, model);
        if let Some(shared) = &self.shared {
            plan = plan.local_share(shared.replicas);
        }
        reservation(config, &plan, prompt_estimate, max_completion, model_max)
    }

    /// Admits a request of `tokens` reserved tokens under `config`, or says which limit
    /// refuses it. With Redis, a Redis that does not answer (within its timeout, or at all
    /// while its breaker is open) never fails the request: this replica decides alone, under
    /// its local share of every limit.
    pub async fn admit(
        &self,
        config: &RateLimitsConfig,
        caller: &Caller,
        model: Option<&str>,
        tokens: u64,
    ) -> Result<Admission, Box<LimitExceeded>> {
        let plan = Plan::new(config, caller, model);
        if plan.is_empty() {
            return Ok(Admission::unlimited());
        }
        let Some(shared) = &self.shared else {
            return self.admit_locally(&plan, tokens);
        };
        let seed = self.seed.load();
        match shared.buckets.admit(&plan, tokens, &seed).await {
            Ok(answer) => {
                let share = plan.local_share(shared.replicas);
                let admitted = answer.decision.is_ok();
                let local = self.memory.remember(&plan, &share, &answer.levels, admitted);
                let (hold, headers) = answer.decision?;
                Ok(Admission::new(Hold::Redis(hold.with_local(local)), tokens, headers))
            }
            Err(error) => {
                tracing::debug!(%error, "rate limit decided locally");
                self.admit_locally(&plan.local_share(shared.replicas), tokens)
            }
        }
    }

    fn admit_locally(&self, plan: &Plan, tokens: u64) -> Result<Admission, Box<LimitExceeded>> {
        let (hold, headers) = self.memory.admit_plan(plan, tokens, &self.seed.load())?;
        Ok(Admission::new(Hold::Memory(hold), tokens, headers))
    }

    /// What the usage ledger says was used over the last day: day buckets created from now on
    /// (a new scope in memory, a key missing in Redis) start from it.
    pub fn seed(&self, seed: DaySeed) {
        self.seed.store(std::sync::Arc::new(seed));
    }

    /// How many scopes this replica holds in memory (a gauge: housekeeping keeps it small).
    pub fn scope_count(&self) -> usize {
        self.memory.scope_count()
    }

    /// Drops in-memory scopes that carry no state.
    pub fn sweep(&self) {
        self.memory.sweep();
    }
}

#[cfg(test)]
mod tests;
