//! The in-memory bucket store: one process's scopes, each behind its own short-held lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use tokio::time::Instant;

use super::{
    bucket::Bucket,
    decide::{self, ScopeState, WINDOWS, bucket_limits},
    plan::{Plan, ScopeKey},
    seed::DaySeed,
};
use crate::{error::LimitExceeded, wire::ratelimit::RateHeaders};

/// The in-memory limiter: the only store without Redis, and each replica's fallback with it.
/// Holds no configuration: every admission brings its [`Plan`], so a reloaded config applies
/// to the next request and the counts carry over.
#[derive(Debug, Default)]
pub struct Limiter {
    scopes: RwLock<HashMap<ScopeKey, Arc<Mutex<ScopeState>>>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Limiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The scope's state; a new one starts its day buckets from `seed` (what the ledger saw).
    fn scope(
        &self,
        key: &ScopeKey,
        now: Instant,
        set: &crate::config::LimitSet,
        seed: impl FnOnce() -> [Option<f64>; 2],
    ) -> Arc<Mutex<ScopeState>> {
        if let Some(found) = self.scopes.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return found.clone();
        }
        let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        scopes
            .entry(key.clone())
            .or_insert_with(|| {
                let mut state = ScopeState::new(set, now);
                let [requests, tokens] = seed();
                for (slot, level) in [(&mut state.requests[1], requests), (&mut state.tokens[1], tokens)] {
                    if let (Some(bucket), Some(level)) = (slot.as_mut(), level) {
                        *bucket = Bucket::at_level(bucket.limit(), WINDOWS[1].1, level, now);
                    }
                }
                Arc::new(Mutex::new(state))
            })
            .clone()
    }

    pub(super) fn admit_plan(
        &self,
        plan: &Plan,
        tokens: u64,
        seed: &DaySeed,
    ) -> Result<(MemoryHold, RateHeaders), Box<LimitExceeded>> {
        let now = Instant::now();
        let secs = crate::calendar::now();
        let scopes: Vec<_> = plan
            .scopes
            .iter()
            .map(|planned| {
                self.scope(&planned.key, now, &planned.set, || {
                    let set = &planned.set;
                    seed.levels(
                        &plan.subject,
                        planned.key.model.as_ref(),
                        set.requests_per_day,
                        set.tokens_per_day,
                        secs,
                    )
                })
            })
            .collect();
        // Always global before per-model (the plan's order), so two requests never wait on
        // each other's locks.
        let mut guards: Vec<MutexGuard<'_, ScopeState>> = scopes.iter().map(|s| lock(s)).collect();
        for (guard, planned) in guards.iter_mut().zip(&plan.scopes) {
            guard.apply(&planned.set, now);
        }
        let mut states: Vec<&mut ScopeState> = guards.iter_mut().map(|g| &mut **g).collect();
        if let Some(mut refused) = decide::check(&mut states, plan, tokens, now) {
            refused.headers = decide::headers_of(&mut states, now);
            return Err(Box::new(refused));
        }
        decide::take(&mut states, tokens, now);
        let headers = decide::headers_of(&mut states, now);
        drop(states);
        drop(guards);
        Ok((MemoryHold(scopes), headers))
    }

    /// Keeps what the shared store said of each scope (`levels`, after an admission by `full`)
    /// as this replica's local share (`share`), so a Redis outage starts from what was used
    /// instead of a full share: the same fraction of every limit is left, and it refills from
    /// there at the share's rate. An `admitted` request also counts as one of this replica's
    /// own in flight until the returned slots are dropped.
    pub(super) fn remember(
        &self,
        full: &Plan,
        share: &Plan,
        levels: &[[Option<f64>; 4]],
        admitted: bool,
    ) -> LocalSlots {
        let now = Instant::now();
        let mut held = Vec::new();
        for ((planned, local), levels) in full.scopes.iter().zip(&share.scopes).zip(levels) {
            let scope = self.scope(&local.key, now, &local.set, || [None, None]);
            {
                let mut state = lock(&scope);
                state.apply(&local.set, now);
                let full_limits = bucket_limits(&planned.set);
                let share_limits = bucket_limits(&local.set);
                let state = &mut *state;
                let slots = state.requests.iter_mut().chain(state.tokens.iter_mut());
                for (i, slot) in slots.enumerate() {
                    if let (Some(whole), Some(part), Some(level)) = (full_limits[i], share_limits[i], levels[i]) {
                        let level = (level * part as f64 / whole.max(1) as f64).min(part as f64);
                        *slot = Some(Bucket::at_level(part, WINDOWS[i % 2].1, level, now));
                    }
                }
                if admitted {
                    state.concurrent += 1;
                }
            }
            if admitted {
                held.push(scope);
            }
        }
        LocalSlots(held)
    }

    /// Drops scopes that carry no state (all buckets full, nothing in flight).
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        scopes.retain(|_, scope| Arc::strong_count(scope) > 1 || !lock(scope).is_idle(now));
    }

    pub fn scope_count(&self) -> usize {
        self.scopes.read().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The scopes an admission holds a slot (and tokens) in.
#[derive(Debug)]
pub(super) struct MemoryHold(Vec<Arc<Mutex<ScopeState>>>);

impl MemoryHold {
    /// Gives back what an admission held: its concurrency slot, and `refund` tokens.
    pub(super) fn settle(self, refund: i64) {
        settle(&self.0, refund);
    }
}

fn settle(scopes: &[Arc<Mutex<ScopeState>>], refund: i64) {
    let now = Instant::now();
    for scope in scopes {
        let mut state = lock(scope);
        state.concurrent = state.concurrent.saturating_sub(1);
        for bucket in state.tokens.iter_mut().flatten() {
            bucket.adjust(refund, now);
        }
    }
}

/// This replica's own requests admitted by Redis, counted in its local share until they end.
#[derive(Debug)]
pub(super) struct LocalSlots(Vec<Arc<Mutex<ScopeState>>>);

impl Drop for LocalSlots {
    fn drop(&mut self) {
        for scope in &self.0 {
            let mut state = lock(scope);
            state.concurrent = state.concurrent.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        auth::Caller,
        config::{LimitSet, RateLimitsConfig},
    };

    #[tokio::test(start_paused = true)]
    async fn the_local_share_starts_from_what_redis_said_was_used_and_counts_own_requests() {
        let config = RateLimitsConfig {
            default: LimitSet {
                requests_per_day: Some(10),
                max_concurrent: Some(4),
                ..LimitSet::default()
            },
            ..RateLimitsConfig::default()
        };
        let caller = Caller {
            name: "carol".into(),
            partition: crate::digest::sha256(b"carol"),
            upstream_authorization: None,
            account: None,
        };
        let full = Plan::new(&config, &caller, None);
        let share = full.local_share(2);
        let limiter = Limiter::new();
        // Redis said 4 of 10 are left after admitting one: this replica's 5 start at 2, and
        // the request it admitted holds one of its 2 concurrency slots.
        let slots = limiter.remember(&full, &share, &[[None, Some(4.0), None, None]], true);
        let (hold, headers) = limiter
            .admit_plan(&share, 0, &DaySeed::default())
            .expect("one left of 2");
        let requests = headers.requests.expect("requests per day");
        assert_eq!((requests.limit, requests.remaining), (5, 1));
        let refused = limiter
            .admit_plan(&share, 0, &DaySeed::default())
            .expect_err("both slots held");
        assert_eq!(refused.kind, crate::error::Kind::Concurrency);
        drop(slots);
        let (_hold, _) = limiter
            .admit_plan(&share, 0, &DaySeed::default())
            .expect("the Redis-held request ended");
        hold.settle(0);
        assert!(
            limiter.admit_plan(&share, 0, &DaySeed::default()).is_err(),
            "2 of the share were all that was left"
        );
    }
}
