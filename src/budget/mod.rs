//! Upstream-aware admission: Groq's own budget per upstream key and model, learned from its headers, so requests wait for a reset instead of being sent into a certain 429.
//!
//! State per (upstream key, model): remaining requests and tokens with their reset times, as
//! Groq last reported them (or as the configured tier preset says before any report), lowered
//! locally for every request sent since, and a cool-down after a 429. A request takes the first
//! key, in round-robin order, whose budget fits it; when none does, it waits in a first-come
//! first-served queue (per model) for the earliest reset, at most `queue_wait`; when waiting
//! cannot help it is answered 429 at once with Groq's reset time.
//!
//! With Redis the budget is one for every replica ([`shared`]): each pick is one atomic script
//! that takes the request and its tokens from the shared count, and what Groq's headers say is
//! merged there before the answer goes on to the client ([`UpstreamBudget::share`]), so
//! replicas under fast traffic cannot each spend the same remainder. This
//! replica's view above follows what Redis answers, and is what it decides on alone while Redis
//! is down (the breaker open): from what it last saw, lowered by what it sends meanwhile.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, HeaderName, StatusCode};
use tokio::time::Instant;

use crate::{
    config::LimitSet,
    redis::Redis,
    wire::ratelimit::{Dimension, GroqBudgetHeaders, RateHeaders, header_number},
};

mod shared;

use shared::{Granted, Preset, RECHECK, Reported, SharedBudget};

#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    /// The whole budget per window, from Groq's `x-ratelimit-limit-*` (or the preset).
    limit: Option<u64>,
    remaining: Option<u64>,
    /// When the current window ends; `None` right after a window rolled over, until Groq
    /// reports the new one.
    reset: Option<Instant>,
}

impl Budget {
    fn preset(limit: Option<u64>, window: Duration, now: Instant) -> Self {
        Budget {
            limit,
            remaining: limit,
            reset: limit.map(|_| now + window),
        }
    }

    /// A window that is over starts afresh at the known limit.
    fn roll(&mut self, now: Instant) {
        if self.reset.is_some_and(|r| r <= now) {
            self.remaining = self.limit;
            self.reset = None;
        }
    }

    /// `Ok` if `amount` fits; otherwise when to look again.
    fn fits(&mut self, amount: u64, now: Instant) -> Result<(), Instant> {
        self.roll(now);
        // More than the whole budget can never fit: holding it would only delay Groq's own
        // answer (a 413 naming the limit), so it is not ours to refuse.
        if self.limit.is_some_and(|limit| amount > limit) {
            return Ok(());
        }
        match (self.remaining, self.reset) {
            (Some(remaining), _) if remaining >= amount => Ok(()),
            (None, _) => Ok(()),
            (Some(_), Some(reset)) => Err(reset),
            (Some(_), None) => Err(now + RECHECK),
        }
    }

    fn spend(&mut self, amount: u64) {
        self.remaining = self.remaining.map(|r| r.saturating_sub(amount));
    }

    /// Merges what Groq reported. Within a window the lower remaining wins: requests sent since
    /// the reported one was measured have spent more.
    fn learn(&mut self, limit: Option<u64>, remaining: u64, reset: Instant, now: Instant) {
        if limit.is_some() {
            self.limit = limit;
        }
        let fresh = self.remaining.is_none() || self.reset.is_some_and(|r| r <= now);
        if fresh {
            self.remaining = Some(remaining);
            self.reset = Some(reset);
        } else {
            self.remaining = self.remaining.map(|r| r.min(remaining));
            self.reset = Some(self.reset.map_or(reset, |r| r.max(reset)));
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct KeyModel {
    requests: Budget,
    tokens: Budget,
    cool_until: Option<Instant>,
}

/// A tier preset as (limit, window) for requests and for tokens: Groq reports requests per day
/// and tokens per minute, and a preset says the same.
fn preset_windows(preset: &LimitSet) -> Preset {
    let requests = match preset.requests_per_day {
        Some(day) => (Some(day), Duration::from_secs(86_400)),
        None => (preset.requests_per_minute, Duration::from_secs(60)),
    };
    let tokens = match preset.tokens_per_minute {
        Some(minute) => (Some(minute), Duration::from_secs(60)),
        None => (preset.tokens_per_day, Duration::from_secs(86_400)),
    };
    [requests, tokens]
}

impl KeyModel {
    fn from_preset(preset: &LimitSet, now: Instant) -> Self {
        let [(requests, request_window), (tokens, token_window)] = preset_windows(preset);
        KeyModel {
            requests: Budget::preset(requests, request_window, now),
            tokens: Budget::preset(tokens, token_window, now),
            cool_until: None,
        }
    }

    /// `Ok` if a request of `tokens` fits now; otherwise when to look again.
    fn fits(&mut self, tokens: u64, now: Instant) -> Result<(), Instant> {
        if let Some(until) = self.cool_until {
            if until > now {
                return Err(until);
            }
            self.cool_until = None;
        }
        match (self.requests.fits(1, now), self.tokens.fits(tokens, now)) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(a), Err(b)) => Err(a.max(b)),
            (Err(a), _) | (_, Err(a)) => Err(a),
        }
    }

    fn spend(&mut self, tokens: u64) {
        self.requests.spend(1);
        self.tokens.spend(tokens);
    }
}

/// When no key has budget and waiting cannot help (or the queue is full).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExhausted {
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct UpstreamBudget {
    shared: Option<SharedBudget>,
    keys: usize,
    preset: LimitSet,
    queue_wait: Duration,
    queue_length: usize,
    state: Mutex<HashMap<(usize, Arc<str>), KeyModel>>,
    queues: Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>,
    waiting: AtomicUsize,
    next: AtomicUsize,
}

impl UpstreamBudget {
    pub fn new(keys: usize, preset: LimitSet, queue_wait: Duration, queue_length: usize) -> Self {
        Self {
            shared: None,
            keys: keys.max(1),
            preset,
            queue_wait,
            queue_length,
            state: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// Holds the budget in `redis`, one for every replica; `key_ids` fingerprints the upstream
    /// keys in index order.
    pub fn with_redis(mut self, redis: Redis, key_ids: Vec<String>) -> Self {
        self.shared = Some(SharedBudget::new(redis, key_ids));
        self
    }

    /// The keys in the order to try them: round-robin from the next start, `avoid` (the key
    /// a retried attempt just failed on) last, so a retry goes to another key when one fits.
    fn order(&self, avoid: Option<usize>) -> impl Iterator<Item = usize> + use<> {
        let (keys, start) = (self.keys, self.next.fetch_add(1, Ordering::Relaxed));
        let avoid = avoid.filter(|&key| key < keys && keys > 1);
        (0..keys)
            .map(move |offset| (start + offset) % keys)
            .filter(move |&key| Some(key) != avoid)
            .chain(avoid)
    }

    #[cfg(test)]
    fn try_pick(&self, model: &Arc<str>, tokens: u64, now: Instant) -> Result<usize, Instant> {
        self.try_pick_avoiding(model, tokens, now, None)
    }

    /// Picks a key with budget for `tokens` now, spending it locally; else the earliest time one may.
    fn try_pick_avoiding(
        &self,
        model: &Arc<str>,
        tokens: u64,
        now: Instant,
        avoid: Option<usize>,
    ) -> Result<usize, Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut earliest: Option<Instant> = None;
        for key in self.order(avoid) {
            let entry = state
                .entry((key, model.clone()))
                .or_insert_with(|| KeyModel::from_preset(&self.preset, now));
            match entry.fits(tokens, now) {
                Ok(()) => {
                    entry.spend(tokens);
                    return Ok(key);
                }
                Err(at) => earliest = Some(earliest.map_or(at, |e: Instant| e.min(at))),
            }
        }
        Err(earliest.unwrap_or(now))
    }

    /// Picks a key in the shared budget, this replica's view following what Redis answered;
    /// without an answer from Redis, in this replica's view alone.
    async fn pick(&self, model: &Arc<str>, tokens: u64, avoid: Option<usize>) -> Result<usize, Instant> {
        if let Some(shared) = &self.shared {
            let order: Vec<usize> = self.order(avoid).collect();
            match shared
                .acquire(&order, model, tokens, preset_windows(&self.preset))
                .await
            {
                Ok(granted) => {
                    let now = Instant::now();
                    self.follow(model, &order, &granted, now);
                    return match granted.picked.and_then(|i| order.get(i)) {
                        Some(&key) => Ok(key),
                        None => Err(now + granted.wait),
                    };
                }
                Err(error) => tracing::debug!(%error, "Groq's budget decided on this replica's view"),
            }
        }
        self.try_pick_avoiding(model, tokens, Instant::now(), avoid)
    }

    /// Takes what Redis holds into this replica's view, the way Groq's headers are learned
    /// (within a window the lower remaining wins), so an outage starts from it.
    fn follow(&self, model: &Arc<str>, order: &[usize], granted: &Granted, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (&key, seen) in order.iter().zip(&granted.seen) {
            let entry = state
                .entry((key, model.clone()))
                .or_insert_with(|| KeyModel::from_preset(&self.preset, now));
            for (budget, dim) in [(&mut entry.requests, seen.requests), (&mut entry.tokens, seen.tokens)] {
                if let (Some(remaining), Some(reset)) = (dim.remaining, dim.reset) {
                    budget.learn(dim.limit, remaining, now + reset, now);
                }
            }
            if let Some(cool) = seen.cool {
                let until = now + cool;
                entry.cool_until = Some(entry.cool_until.map_or(until, |c| c.max(until)));
            }
        }
    }

    #[cfg(test)]
    pub async fn acquire(&self, model: &str, tokens: u64) -> Result<usize, BudgetExhausted> {
        self.acquire_avoiding(model, tokens, None).await
    }

    /// A key for a request of `tokens` to `model`, waiting for Groq's reset if that is soon
    /// enough; the key `avoid` only when no other fits, so a retry after a failure on one key
    /// goes to another.
    pub async fn acquire_avoiding(
        &self,
        model: &str,
        tokens: u64,
        avoid: Option<usize>,
    ) -> Result<usize, BudgetExhausted> {
        let model: Arc<str> = model.into();
        let start = Instant::now();
        let deadline = start + self.queue_wait;
        let available_at = match self.pick(&model, tokens, avoid).await {
            Ok(key) => return Ok(key),
            Err(at) => at,
        };
        if available_at > deadline || self.waiting.load(Ordering::SeqCst) >= self.queue_length {
            return Err(BudgetExhausted {
                retry_after: available_at.saturating_duration_since(start),
            });
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _leave = WaitingGuard(&self.waiting);
        let queue = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            queues.entry(model.clone()).or_default().clone()
        };
        // tokio's Mutex is fair: waiters are served in arrival order.
        let Ok(_turn) = tokio::time::timeout_at(deadline, queue.lock()).await else {
            return Err(BudgetExhausted {
                retry_after: self.queue_wait,
            });
        };
        loop {
            let picked = self.pick(&model, tokens, avoid).await;
            let now = Instant::now();
            match picked {
                Ok(key) => return Ok(key),
                Err(at) if at <= deadline => tokio::time::sleep_until(at.max(now + Duration::from_millis(1))).await,
                Err(at) => {
                    return Err(BudgetExhausted {
                        retry_after: at.saturating_duration_since(now),
                    });
                }
            }
        }
    }

    /// Groq's budget for `model` as this replica knows it, as `x-ratelimit-*` headers: summed
    /// over the upstream keys (a request may go to any of them), reset when the first key's
    /// window ends. A dimension no key has a known limit and remaining for is left out.
    pub fn snapshot(&self, model: &str) -> RateHeaders {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut headers = RateHeaders::default();
        let model: Arc<str> = model.into();
        for key in 0..self.keys {
            let Some(entry) = state.get_mut(&(key, model.clone())) else {
                continue;
            };
            for (budget, sum) in [
                (&mut entry.requests, &mut headers.requests),
                (&mut entry.tokens, &mut headers.tokens),
            ] {
                budget.roll(now);
                let (Some(limit), Some(remaining)) = (budget.limit, budget.remaining) else {
                    continue;
                };
                let reset = budget
                    .reset
                    .map_or(Duration::ZERO, |r| r.saturating_duration_since(now));
                *sum = Some(match *sum {
                    None => Dimension {
                        limit,
                        remaining,
                        reset,
                    },
                    Some(d) => Dimension {
                        limit: d.limit.saturating_add(limit),
                        remaining: d.remaining.saturating_add(remaining),
                        reset: d.reset.min(reset),
                    },
                });
            }
        }
        headers
    }

    /// Learns from a Groq response: its rate-limit headers, and a 429's cool-down, in this
    /// replica's view (the shared budget learns it in [`UpstreamBudget::share`], from the
    /// returned report: the headers are read once).
    #[cfg(test)]
    pub fn observe(&self, key: usize, model: &str, status: StatusCode, headers: &HeaderMap) -> Report {
        self.observe_read(key, model, status, headers, &GroqBudgetHeaders::read(headers))
    }

    /// [`UpstreamBudget::observe`] with the `x-ratelimit-*` headers already read (`seen`), so
    /// the operators' report can have the same read.
    pub fn observe_read(
        &self,
        key: usize,
        model: &str,
        status: StatusCode,
        headers: &HeaderMap,
        seen: &GroqBudgetHeaders,
    ) -> Report {
        let now = Instant::now();
        let reported = reported(status, headers, seen);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = state
            .entry((key, model.into()))
            .or_insert_with(|| KeyModel::from_preset(&self.preset, now));
        if let Some((limit, remaining, reset)) = reported.requests {
            entry.requests.learn(limit, remaining, now + reset, now);
        }
        if let Some((limit, remaining, reset)) = reported.tokens {
            entry.tokens.learn(limit, remaining, now + reset, now);
        }
        if let Some(wait) = reported.cool {
            entry.cool_until = Some(now + wait);
            tracing::info!(
                key,
                model,
                wait_ms = wait.as_millis() as u64,
                "upstream key rate limited by Groq; resting it"
            );
        }
        Report(reported)
    }

    /// With Redis, merges what a Groq response said (as [`UpstreamBudget::observe`] read it)
    /// into the shared budget, and returns once it is there (or Redis gave no answer, within
    /// its timeout): called before the answer goes to the client, so whatever the client sends
    /// next, to any replica, is counted against it.
    pub async fn share(&self, key: usize, model: &str, report: Report) {
        let Some(shared) = &self.shared else { return };
        let Report(reported) = report;
        if reported != Reported::default() {
            shared.observe(key, model, reported).await;
        }
    }
}

/// What one Groq response said about its budget, read once for both views.
#[derive(Debug, Clone, Copy)]
pub struct Report(Reported);

const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// What a Groq response says about its budget: `x-ratelimit-*` per dimension (as `seen` read
/// them), and a 429's rest.
fn reported(status: StatusCode, headers: &HeaderMap, seen: &GroqBudgetHeaders) -> Reported {
    let dimension = |i: usize| Some((seen.limit[i], seen.remaining[i]?, seen.reset[i]?));
    let cool = (status == StatusCode::TOO_MANY_REQUESTS).then(|| {
        headers
            .get(RETRY_AFTER_MS)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
            .or_else(|| header_number(headers, &http::header::RETRY_AFTER).map(Duration::from_secs))
            .unwrap_or(Duration::from_secs(1))
    });
    Reported {
        requests: dimension(0),
        tokens: dimension(1),
        cool,
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
