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
mod spend;
mod spend_hold;
mod spend_redis;

use std::time::Duration;

pub use admission::Admission;
use admission::Hold;
use arc_swap::ArcSwap;
pub use memory::Limiter;
pub use plan::{Plan, reservation};
use redis_buckets::RedisBuckets;
pub use seed::DaySeed;
pub use spend::SpendSeed;
use spend::{Caps, LocalSpend};
use spend_hold::Held;
pub use spend_hold::SpendHold;
use spend_redis::{Reserved, SharedSpend};
use std::sync::Arc;

use crate::{
    auth::Caller,
    calendar,
    config::{BudgetsConfig, RateLimitsConfig},
    error::{BudgetRefusal, LimitExceeded},
    prices::Price,
    redis::Redis,
};

/// The client limits of this replica: buckets in memory, or in Redis shared by every replica
/// with a memory fallback that enforces this replica's share while Redis cannot answer.
pub struct Limits {
    memory: Limiter,
    shared: Option<Shared>,
    /// The ledger's last day, for day buckets created from now on.
    seed: ArcSwap<DaySeed>,
    /// Budget counters of this replica (all of them without Redis; its share with it).
    spend: Arc<LocalSpend>,
    /// Budget counters in Redis.
    shared_spend: Option<SharedSpend>,
    /// What the ledger says was spent today and this month, for counters created from now on.
    spend_seed: ArcSwap<SpendSeed>,
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
            spend: Arc::default(),
            shared_spend: None,
            spend_seed: ArcSwap::from_pointee(SpendSeed::default()),
        }
    }

    /// In `redis`, shared by `replicas` replicas; `lease` bounds how long a lost settlement can
    /// hold a concurrency slot (the longest a request can take).
    pub fn shared(redis: Redis, replicas: u64, lease: Duration) -> Self {
        let spend: Arc<LocalSpend> = Arc::default();
        Self {
            memory: Limiter::new(),
            shared_spend: Some(SharedSpend::new(redis.clone(), Arc::clone(&spend), replicas)),
            shared: Some(Shared {
                buckets: RedisBuckets::new(redis, lease),
                replicas: replicas.max(1),
            }),
            seed: ArcSwap::from_pointee(DaySeed::default()),
            spend,
            spend_seed: ArcSwap::from_pointee(SpendSeed::default()),
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

    /// Drops in-memory scopes that carry no state, and budget counters of periods that are over.
    pub fn sweep(&self) {
        self.memory.sweep();
        self.spend.sweep();
    }

    /// What the usage ledger says each key (and the gateway) spent today and this month:
    /// budget counters created from now on start from it.
    pub fn seed_spend(&self, seed: SpendSeed) {
        self.spend_seed.store(Arc::new(seed));
    }

    /// Reserves `worst` nanodollars (the request's worst-case cost at `price`) against every
    /// budget that applies to `caller`: its own (a stored key's, or `budgets.keys.<name>`) and
    /// the gateway's, per day and per month. `Ok(None)`: no budget applies. The hold settles
    /// with the real cost as a tap; `prompt` and `stream` price an exchange cut short.
    pub async fn reserve_spend(
        &self,
        budgets: &BudgetsConfig,
        caller: &Caller,
        price: Price,
        worst: u64,
        prompt: u64,
        stream: bool,
    ) -> Result<Option<SpendHold>, Box<BudgetRefusal>> {
        let nanos = |usd: Option<f64>| usd.map(|v| (v * 1e9).round().max(0.0) as u64);
        let own = match &caller.account {
            Some(account) => Caps {
                daily: account.daily_budget_nanos,
                monthly: account.monthly_budget_nanos,
            },
            None => budgets.keys.get(&*caller.name).map_or_else(Caps::default, |set| Caps {
                daily: nanos(set.daily_usd),
                monthly: nanos(set.monthly_usd),
            }),
        };
        let gateway = Caps {
            daily: nanos(budgets.daily_usd),
            monthly: nanos(budgets.monthly_usd),
        };
        let lines = self
            .spend_seed
            .load()
            .lines(Some((caller.subject(), &caller.name, own)), gateway, calendar::now());
        if lines.is_empty() {
            return Ok(None);
        }
        let held = match &self.shared_spend {
            None => {
                self.spend.reserve(&lines, worst, 1.0)?;
                Held::Local(Arc::clone(&self.spend))
            }
            Some(shared) => match shared.reserve(&lines, worst).await? {
                Reserved::Shared => Held::Redis(shared.clone()),
                Reserved::Local => Held::Local(Arc::clone(&self.spend)),
            },
        };
        Ok(Some(SpendHold::new(held, lines, worst, price, prompt, stream)))
    }
}

#[cfg(test)]
mod tests;
