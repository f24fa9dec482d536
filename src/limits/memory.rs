//! The in-memory bucket store: one process's scopes, each behind its own short-held lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
};

use tokio::time::Instant;

use super::{
    decide::{self, ScopeState},
    plan::{Plan, ScopeKey},
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

    fn scope(&self, key: &ScopeKey, now: Instant, set: &crate::config::LimitSet) -> Arc<Mutex<ScopeState>> {
        if let Some(found) = self.scopes.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return found.clone();
        }
        let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        scopes
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Mutex::new(ScopeState::new(set, now))))
            .clone()
    }

    pub(super) fn admit_plan(&self, plan: &Plan, tokens: u64) -> Result<(MemoryHold, RateHeaders), Box<LimitExceeded>> {
        let now = Instant::now();
        let scopes: Vec<_> = plan
            .scopes
            .iter()
            .map(|planned| self.scope(&planned.key, now, &planned.set))
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
