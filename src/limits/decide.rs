//! The one admission decision, whatever stores the buckets: which limit refuses a request, and the headers that describe the caller's state.
//!
//! The memory store runs it on its live buckets; the Redis store lets its script decide
//! atomically and then runs the same code on the levels the script reports, so both answer
//! with the same `LimitExceeded` and the same `x-ratelimit-*` headers.

use std::time::Duration;

use tokio::time::Instant;

use super::{
    bucket::{Bucket, Refusal},
    plan::Plan,
};
use crate::{
    config::LimitSet,
    error::{Kind, LimitExceeded, Window},
    wire::ratelimit::{Dimension, RateHeaders, Slots},
};

pub(super) const MINUTE: Duration = Duration::from_secs(60);
pub(super) const DAY: Duration = Duration::from_secs(86_400);
pub(super) const WINDOWS: [(Window, Duration); 2] = [(Window::Minute, MINUTE), (Window::Day, DAY)];

/// How long a caller refused for concurrency is told to wait. groxy cannot know when one of
/// the caller's requests in flight will end (a plain answer takes a second or two, a long
/// stream a minute), so this is a back-off, not an estimate: long enough that the OpenAI SDKs'
/// two default retries, which wait exactly this long each, span 10 s instead of 2 s; short
/// enough not to idle a caller whose requests are quick.
pub(super) const CONCURRENCY_RETRY: Duration = Duration::from_secs(5);

/// One scope's buckets (requests and tokens, per minute and per day) and its concurrency.
#[derive(Debug, Default)]
pub(super) struct ScopeState {
    pub requests: [Option<Bucket>; 2],
    pub tokens: [Option<Bucket>; 2],
    pub max_concurrent: Option<u64>,
    pub concurrent: u64,
}

/// The configured limits of a scope's four buckets, in `requests` then `tokens` order.
pub(super) fn bucket_limits(set: &LimitSet) -> [Option<u64>; 4] {
    [
        set.requests_per_minute,
        set.requests_per_day,
        set.tokens_per_minute,
        set.tokens_per_day,
    ]
}

impl ScopeState {
    pub fn new(set: &LimitSet, now: Instant) -> Self {
        let mut state = ScopeState::default();
        state.apply(set, now);
        state
    }

    /// Adopts the limits of `set` (a reloaded config may have changed them): a new limit gets a
    /// full bucket, a removed one is dropped, a changed one keeps what was used.
    pub fn apply(&mut self, set: &LimitSet, now: Instant) {
        let limits = bucket_limits(set);
        let slots = self.requests.iter_mut().chain(self.tokens.iter_mut());
        for ((slot, limit), (_, window)) in slots.zip(limits).zip(WINDOWS.iter().chain(WINDOWS.iter())) {
            match (slot.as_mut(), limit) {
                (Some(bucket), Some(limit)) => bucket.set_limit(limit, now),
                (None, Some(limit)) => *slot = Some(Bucket::new(limit, *window, now)),
                (_, None) => *slot = None,
            }
        }
        self.max_concurrent = set.max_concurrent;
    }

    pub fn is_idle(&mut self, now: Instant) -> bool {
        self.concurrent == 0
            && self
                .requests
                .iter_mut()
                .chain(self.tokens.iter_mut())
                .flatten()
                .all(|b| b.is_idle(now))
    }
}

/// The refusal a request of `tokens` meets in these scopes (the plan's, in its order), if any:
/// one that can never fit wins, else the longest wait.
pub(super) fn check(states: &mut [&mut ScopeState], plan: &Plan, tokens: u64, now: Instant) -> Option<LimitExceeded> {
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
    for (state, planned) in states.iter_mut().zip(&plan.scopes) {
        let scope_model = planned.key.model.clone();
        if let Some(max) = state.max_concurrent {
            if state.concurrent >= max {
                consider(LimitExceeded {
                    kind: Kind::Concurrency,
                    window: Window::Minute,
                    limit: max,
                    used: state.concurrent,
                    requested: 1,
                    wait: Some(CONCURRENCY_RETRY),
                    caller: plan.caller.clone(),
                    model: scope_model.clone(),
                    headers: RateHeaders::default(),
                });
            }
        }
        for (kind, amount) in [(Kind::Requests, 1), (Kind::Tokens, tokens)] {
            let buckets = if kind == Kind::Requests {
                &mut state.requests
            } else {
                &mut state.tokens
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
                        caller: plan.caller.clone(),
                        model: scope_model.clone(),
                        headers: RateHeaders::default(),
                    });
                }
            }
        }
    }
    refused
}

/// Takes one request, `tokens` tokens and a concurrency slot from every scope.
pub(super) fn take(states: &mut [&mut ScopeState], tokens: u64, now: Instant) {
    for state in states.iter_mut() {
        state.concurrent += 1;
        for bucket in state.requests.iter_mut().flatten() {
            bucket.take(1, now);
        }
        for bucket in state.tokens.iter_mut().flatten() {
            bucket.take(tokens, now);
        }
    }
}

/// The binding (least remaining) bucket of each dimension across the scopes.
pub(super) fn headers_of(states: &mut [&mut ScopeState], now: Instant) -> RateHeaders {
    let mut pick = |select: fn(&mut ScopeState) -> &mut [Option<Bucket>; 2]| {
        let mut best: Option<Dimension> = None;
        for state in states.iter_mut() {
            for bucket in select(state).iter_mut().flatten() {
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
    let concurrency = states
        .iter()
        .filter_map(|state| {
            state.max_concurrent.map(|limit| Slots {
                limit,
                remaining: limit.saturating_sub(state.concurrent),
            })
        })
        .min_by_key(|slots| slots.remaining);
    RateHeaders {
        requests,
        tokens,
        concurrency,
    }
}
