//! Per-client rate limits: requests and tokens per minute and per day, and concurrency, reserved at admission and settled with the real usage.
//!
//! Scopes: every client key has one scope across all models (`rate_limits.default`, or its own
//! `rate_limits.keys.<name>`), and one per model (`rate_limits.per_model`, a preset, or
//! `rate_limits.models."<id>"`). A request must fit every scope that applies to it.
//!
//! Tokens are reserved when a request is admitted (a lower-bound prompt estimate plus the
//! completion it may produce) and settled when the response ends: the unused part is given
//! back, an excess is taken; a failed or cancelled exchange gives everything back.
//!
//! The decision (`decide`) is one; the buckets live in this process (`memory`) or in Redis
//! (`redis_buckets`, shared by every replica). The limits come from the config at each
//! admission ([`Plan`]), so a reloaded config applies to the next request without losing counts.
//! With Redis, a call that fails or times out never fails the request: this replica then decides
//! alone on its local share of every limit ([`Plan::local_share`]).

mod bucket;
mod decide;
mod memory;
mod redis_buckets;
pub mod render;
pub mod upstream_budget;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

pub use bucket::{Bucket, Refusal};
pub use memory::Limiter;
use redis_buckets::{RedisBuckets, RedisHold};
use render::RateHeaders;

use crate::{
    auth::Caller,
    config::{LimitSet, RateLimitsConfig},
    redis::Redis,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
    Concurrency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Day,
}

/// A refused admission, with what the 429 (or 413) must say.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitExceeded {
    pub kind: Kind,
    pub window: Window,
    pub limit: u64,
    pub used: u64,
    pub requested: u64,
    /// `None`: the request is larger than the whole limit, waiting cannot help.
    pub wait: Option<Duration>,
    pub caller: Arc<str>,
    pub model: Option<Arc<str>>,
    pub headers: RateHeaders,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    partition: [u8; 32],
    model: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Planned {
    key: ScopeKey,
    set: LimitSet,
}

/// The limits that apply to one request, resolved from the config at admission time (so a
/// reloaded config applies from the next request on): the caller's scope across models first,
/// then its scope for this model, each only if it has a limit.
#[derive(Debug, Clone)]
pub struct Plan {
    caller: Arc<str>,
    scopes: Vec<Planned>,
}

impl Plan {
    pub fn new(config: &RateLimitsConfig, caller: &Caller, model: &str) -> Plan {
        let global = config
            .keys
            .get(&*caller.name)
            .copied()
            .unwrap_or_default()
            .over(config.default);
        let per_model = config
            .models
            .get(model)
            .copied()
            .unwrap_or_default()
            .over(config.per_model.over(config.preset.per_model()));
        let mut scopes = Vec::with_capacity(2);
        if !global.is_empty() {
            scopes.push(Planned {
                key: ScopeKey {
                    partition: caller.partition,
                    model: None,
                },
                set: global,
            });
        }
        if !per_model.is_empty() {
            scopes.push(Planned {
                key: ScopeKey {
                    partition: caller.partition,
                    model: Some(model.into()),
                },
                set: per_model,
            });
        }
        Plan {
            caller: caller.name.clone(),
            scopes,
        }
    }

    /// No limit applies: nothing to count.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// This replica's share while the replicas cannot coordinate: every limit divided by the
    /// number of replicas, rounded up, at least 1.
    pub fn local_share(&self, replicas: u64) -> Plan {
        let share = |limit: Option<u64>| limit.map(|l| l.div_ceil(replicas.max(1)).max(1));
        let scopes = self
            .scopes
            .iter()
            .map(|planned| Planned {
                key: planned.key.clone(),
                set: LimitSet {
                    requests_per_minute: share(planned.set.requests_per_minute),
                    requests_per_day: share(planned.set.requests_per_day),
                    tokens_per_minute: share(planned.set.tokens_per_minute),
                    tokens_per_day: share(planned.set.tokens_per_day),
                    max_concurrent: share(planned.set.max_concurrent),
                },
            })
            .collect();
        Plan {
            caller: self.caller.clone(),
            scopes,
        }
    }
}

/// Tokens to reserve for a request: the prompt estimate plus the completion it may produce.
pub fn reservation(
    config: &RateLimitsConfig,
    prompt_estimate: u64,
    max_completion: Option<u64>,
    model_max: Option<u64>,
) -> u64 {
    let completion = max_completion.unwrap_or(config.completion_reservation);
    let completion = model_max.map_or(completion, |max| completion.min(max));
    prompt_estimate.saturating_add(completion)
}

/// The client limits of this replica: buckets in memory, or in Redis shared by every replica
/// with a memory fallback that enforces this replica's share while Redis cannot answer.
pub struct Limits {
    memory: Limiter,
    shared: Option<Shared>,
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
        }
    }

    /// Tokens to reserve for a request (see [`reservation`]).
    pub fn reservation(
        &self,
        config: &RateLimitsConfig,
        prompt_estimate: u64,
        max_completion: Option<u64>,
        model_max: Option<u64>,
    ) -> u64 {
        reservation(config, prompt_estimate, max_completion, model_max)
    }

    /// Admits a request of `tokens` reserved tokens under `config`, or says which limit
    /// refuses it. With Redis, a Redis that does not answer (within its timeout, or at all
    /// while its breaker is open) never fails the request: this replica decides alone, under
    /// its local share of every limit.
    pub async fn admit(
        &self,
        config: &RateLimitsConfig,
        caller: &Caller,
        model: &str,
        tokens: u64,
    ) -> Result<Admission, Box<LimitExceeded>> {
        let plan = Plan::new(config, caller, model);
        if plan.is_empty() {
            return Ok(Admission::unlimited());
        }
        let Some(shared) = &self.shared else {
            return self.memory.admit_plan(&plan, tokens);
        };
        match shared.buckets.admit(&plan, tokens).await {
            Ok(Ok((hold, headers))) => Ok(Admission::new(Hold::Redis(hold), tokens, headers)),
            Ok(Err(refused)) => Err(refused),
            Err(error) => {
                tracing::debug!(%error, "rate limit decided locally");
                self.memory.admit_plan(&plan.local_share(shared.replicas), tokens)
            }
        }
    }

    /// Drops in-memory scopes that carry no state.
    pub fn sweep(&self) {
        self.memory.sweep();
    }
}

/// Where an admission's slot and reservation are held.
#[derive(Debug)]
enum Hold {
    None,
    Memory(Vec<Arc<Mutex<decide::ScopeState>>>),
    Redis(RedisHold),
}

/// An admitted request's hold on its scopes: one concurrency slot and the reserved tokens.
/// Settle it with the real usage; dropping it unsettled gives everything back.
#[derive(Debug)]
pub struct Admission {
    hold: Hold,
    reserved: u64,
    pub headers: RateHeaders,
}

impl Admission {
    fn new(hold: Hold, reserved: u64, headers: RateHeaders) -> Self {
        Self {
            hold,
            reserved,
            headers,
        }
    }

    /// An admission for a request no limit applies to.
    pub fn unlimited() -> Self {
        Self::new(Hold::None, 0, RateHeaders::default())
    }

    /// Settles with the tokens the response really used (`None`: nothing was used, e.g. Groq
    /// refused the request or the client went away before it was answered).
    pub fn settle(mut self, used: Option<u64>) {
        self.finish(used);
    }

    fn finish(&mut self, used: Option<u64>) {
        let refund = self.reserved as i64 - used.unwrap_or(0) as i64;
        match std::mem::replace(&mut self.hold, Hold::None) {
            Hold::None => {}
            Hold::Memory(scopes) => memory::settle(&scopes, refund),
            Hold::Redis(hold) => hold.settle(refund),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests;
