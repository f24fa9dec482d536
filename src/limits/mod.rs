//! Per-client rate limits: requests and tokens per minute and per day, and concurrency, reserved at admission and settled with the real usage.
//!
//! Scopes: every client key has one scope across all models (`rate_limits.default`, or its own
//! `rate_limits.keys.<name>`), and one per model (`rate_limits.per_model`, a preset, or
//! `rate_limits.models."<id>"`). A request must fit every scope that applies to it.
//!
//! Tokens are reserved when a request is admitted (a lower-bound prompt estimate plus the
//! completion it may produce) and settled when the response ends: the unused part is given
//! back, an excess is taken; a failed or cancelled exchange gives everything back.

mod bucket;
pub mod render;
pub mod upstream_budget;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, RwLock},
    time::Duration,
};

use tokio::time::Instant;

pub use bucket::{Bucket, Refusal};
use render::{Dimension, RateHeaders};

use crate::{
    auth::Caller,
    config::{LimitSet, RateLimitsConfig},
};

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

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

#[derive(Debug, Default)]
struct ScopeState {
    requests: [Option<Bucket>; 2],
    tokens: [Option<Bucket>; 2],
    max_concurrent: Option<u64>,
    concurrent: u64,
}

const WINDOWS: [(Window, Duration); 2] = [(Window::Minute, MINUTE), (Window::Day, DAY)];

impl ScopeState {
    fn new(set: &LimitSet, now: Instant) -> Self {
        let bucket = |limit: Option<u64>, window| limit.map(|l| Bucket::new(l, window, now));
        ScopeState {
            requests: [
                bucket(set.requests_per_minute, MINUTE),
                bucket(set.requests_per_day, DAY),
            ],
            tokens: [bucket(set.tokens_per_minute, MINUTE), bucket(set.tokens_per_day, DAY)],
            max_concurrent: set.max_concurrent,
            concurrent: 0,
        }
    }

    fn is_idle(&mut self, now: Instant) -> bool {
        self.concurrent == 0
            && self
                .requests
                .iter_mut()
                .chain(self.tokens.iter_mut())
                .flatten()
                .all(|b| b.is_idle(now))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ScopeKey {
    partition: [u8; 32],
    model: Option<Arc<str>>,
}

/// The in-memory limiter. Shared by all requests; each scope has its own short-held lock.
#[derive(Debug)]
pub struct Limiter {
    config: RateLimitsConfig,
    per_model: LimitSet,
    scopes: RwLock<HashMap<ScopeKey, Arc<Mutex<ScopeState>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Limiter {
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self {
            per_model: config.per_model.over(config.preset.per_model()),
            config: config.clone(),
            scopes: RwLock::new(HashMap::new()),
        }
    }

    /// Whether any limit could apply (so callers can skip the work entirely when none does).
    pub fn is_active(&self) -> bool {
        !(self.config.default.is_empty()
            && self.per_model.is_empty()
            && self.config.keys.values().all(LimitSet::is_empty)
            && self.config.models.values().all(LimitSet::is_empty))
    }

    /// Tokens to reserve for a request: the prompt estimate plus the completion it may produce.
    pub fn reservation(&self, prompt_estimate: u64, max_completion: Option<u64>, model_max: Option<u64>) -> u64 {
        let completion = max_completion.unwrap_or(self.config.completion_reservation);
        let completion = model_max.map_or(completion, |max| completion.min(max));
        prompt_estimate.saturating_add(completion)
    }

    fn scope(&self, key: ScopeKey, set: &LimitSet, now: Instant) -> Arc<Mutex<ScopeState>> {
        if let Some(found) = self.scopes.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return found.clone();
        }
        let mut scopes = self.scopes.write().unwrap_or_else(|p| p.into_inner());
        scopes
            .entry(key)
            .or_insert_with(|| Arc::new(Mutex::new(ScopeState::new(set, now))))
            .clone()
    }

    /// Admits a request of `tokens` reserved tokens, or says which limit refuses it.
    pub fn admit(&self, caller: &Caller, model: &str, tokens: u64) -> Result<Admission, Box<LimitExceeded>> {
        let now = Instant::now();
        let global = self
            .config
            .keys
            .get(&*caller.name)
            .copied()
            .unwrap_or_default()
            .over(self.config.default);
        let per_model = self
            .config
            .models
            .get(model)
            .copied()
            .unwrap_or_default()
            .over(self.per_model);
        let model: Arc<str> = model.into();
        let mut scopes = Vec::with_capacity(2);
        if !global.is_empty() {
            scopes.push(self.scope(
                ScopeKey {
                    partition: caller.partition,
                    model: None,
                },
                &global,
                now,
            ));
        }
        if !per_model.is_empty() {
            scopes.push(self.scope(
                ScopeKey {
                    partition: caller.partition,
                    model: Some(model.clone()),
                },
                &per_model,
                now,
            ));
        }
        // Always global before per-model, so two requests never wait on each other's locks.
        let mut guards: Vec<MutexGuard<'_, ScopeState>> = scopes.iter().map(|s| lock(s)).collect();

        let mut refused: Option<LimitExceeded> = None;
        let mut consider = |candidate: LimitExceeded| {
            let worse = match (&refused, candidate.wait) {
                (None, _) => true,
                (Some(_), None) => true,
                (Some(current), Some(wait)) => current.wait.is_some_and(|w| wait > w),
            };
            if worse {
                refused = Some(candidate);
            }
        };
        for (index, guard) in guards.iter_mut().enumerate() {
            let scope_model = (index == 1 || global.is_empty()).then(|| model.clone());
            if let Some(max) = guard.max_concurrent {
                if guard.concurrent >= max {
                    consider(LimitExceeded {
                        kind: Kind::Concurrency,
                        window: Window::Minute,
                        limit: max,
                        used: guard.concurrent,
                        requested: 1,
                        wait: Some(Duration::from_secs(1)),
                        caller: caller.name.clone(),
                        model: scope_model.clone(),
                        headers: RateHeaders::default(),
                    });
                }
            }
            for (kind, amount) in [(Kind::Requests, 1), (Kind::Tokens, tokens)] {
                let buckets = if kind == Kind::Requests {
                    &mut guard.requests
                } else {
                    &mut guard.tokens
                };
                for (slot, (window, _)) in buckets.iter_mut().zip(WINDOWS) {
                    let Some(bucket) = slot else { continue };
                    if let Err(refusal) = bucket.check(amount, now) {
                        let remaining = bucket.remaining(now);
                        consider(LimitExceeded {
                            kind,
                            window,
                            limit: bucket.limit(),
                            used: bucket.limit() - remaining.min(bucket.limit()),
                            requested: amount,
                            wait: match refusal {
                                Refusal::Wait(d) => Some(d),
                                Refusal::Never => None,
                            },
                            caller: caller.name.clone(),
                            model: scope_model.clone(),
                            headers: RateHeaders::default(),
                        });
                    }
                }
            }
        }
        if let Some(mut refused) = refused {
            refused.headers = headers_of(&mut guards, now);
            return Err(Box::new(refused));
        }
        for guard in guards.iter_mut() {
            guard.concurrent += 1;
            for bucket in guard.requests.iter_mut().flatten() {
                bucket.take(1, now);
            }
            for bucket in guard.tokens.iter_mut().flatten() {
                bucket.take(tokens, now);
            }
        }
        let headers = headers_of(&mut guards, now);
        drop(guards);
        Ok(Admission {
            scopes,
            reserved: tokens,
            settled: false,
            headers,
        })
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

/// The binding (least remaining) bucket of each dimension across the scopes.
fn headers_of(guards: &mut [MutexGuard<'_, ScopeState>], now: Instant) -> RateHeaders {
    let mut pick = |select: fn(&mut ScopeState) -> &mut [Option<Bucket>; 2]| {
        let mut best: Option<Dimension> = None;
        for guard in guards.iter_mut() {
            for bucket in select(guard).iter_mut().flatten() {
                let dim = Dimension {
                    limit: bucket.limit(),
                    remaining: bucket.remaining(now),
                    reset: bucket.reset_in(now),
                };
                if best.is_none_or(|b| dim.remaining < b.remaining) {
                    best = Some(dim);
                }
            }
        }
        best
    };
    let requests = pick(|s| &mut s.requests);
    let tokens = pick(|s| &mut s.tokens);
    RateHeaders { requests, tokens }
}

/// An admitted request's hold on its scopes: one concurrency slot and the reserved tokens.
/// Settle it with the real usage; dropping it unsettled gives everything back.
#[derive(Debug)]
pub struct Admission {
    scopes: Vec<Arc<Mutex<ScopeState>>>,
    reserved: u64,
    settled: bool,
    pub headers: RateHeaders,
}

impl Admission {
    /// An admission for a request no limit applies to.
    pub fn unlimited() -> Self {
        Self {
            scopes: Vec::new(),
            reserved: 0,
            settled: true,
            headers: RateHeaders::default(),
        }
    }

    /// Settles with the tokens the response really used (`None`: nothing was used, e.g. Groq
    /// refused the request or the client went away before it was answered).
    pub fn settle(mut self, used: Option<u64>) {
        self.finish(used);
    }

    fn finish(&mut self, used: Option<u64>) {
        let now = Instant::now();
        let refund = self.reserved as i64 - used.unwrap_or(0) as i64;
        for scope in &self.scopes {
            let mut state = lock(scope);
            state.concurrent = state.concurrent.saturating_sub(1);
            for bucket in state.tokens.iter_mut().flatten() {
                bucket.adjust(refund, now);
            }
        }
        self.settled = true;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.settled {
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests;
