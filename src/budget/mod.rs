//! Upstream-aware admission: Groq's own budget per upstream key and model, learned from its headers, so requests wait for a reset instead of being sent into a certain 429.
//!
//! State per (upstream key, model): remaining requests and tokens with their reset times, as
//! Groq last reported them (or as the configured tier preset says before any report), lowered
//! locally for every request sent since, and a cool-down after a 429. A request takes the first
//! key, in round-robin order, whose budget fits it; when none does, it waits in a first-come
//! first-served queue (per model) for the earliest reset, at most `queue_wait`; when waiting
//! cannot help it is answered 429 at once with Groq's reset time.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::{
    config::LimitSet,
    redis::Redis,
    wire::ratelimit::{Dimension, RateHeaders},
};

#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    /// The whole budget per window, from Groq's `x-ratelimit-limit-*` (or the preset).
    limit: Option<u64>,
    remaining: Option<u64>,
    /// When the current window ends; `None` right after a window rolled over, until Groq
    /// reports the new one.
    reset: Option<Instant>,
}

/// While the state of a spent budget is unknown (a new window whose first answer is still in
/// flight), waiters look again this often.
const RECHECK: Duration = Duration::from_millis(50);

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

impl KeyModel {
    fn from_preset(preset: &LimitSet, now: Instant) -> Self {
        // Groq reports requests per day and tokens per minute; a tier preset says the same.
        let (requests, request_window) = match preset.requests_per_day {
            Some(day) => (Some(day), Duration::from_secs(86_400)),
            None => (preset.requests_per_minute, Duration::from_secs(60)),
        };
        let (tokens, token_window) = match preset.tokens_per_minute {
            Some(minute) => (Some(minute), Duration::from_secs(60)),
            None => (preset.tokens_per_day, Duration::from_secs(86_400)),
        };
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

/// Groq's budget as the other replicas saw it: what each replica learns from Groq's headers
/// (and a 429's cool-down) is published to Redis until its reset, and read back, at most every
/// [`PULL_EVERY`] per model, before a key is picked. Merged with [`Budget::learn`] (within a
/// window the lower remaining wins), so a stale or absent record can only make this replica
/// more careful, never less; without Redis each replica knows what it saw itself.
#[derive(Debug)]
struct SharedBudget {
    redis: Redis,
    /// A short fingerprint per upstream key (never the key): replicas configured with the same
    /// keys in another order still agree on whose budget is whose.
    key_ids: Vec<String>,
    pulled: Mutex<HashMap<Arc<str>, Instant>>,
}

const PULL_EVERY: Duration = Duration::from_millis(100);

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

    /// Shares what this replica learns with the others through `redis`; `key_ids` fingerprints
    /// the upstream keys in index order.
    pub fn with_redis(mut self, redis: Redis, key_ids: Vec<String>) -> Self {
        self.shared = Some(SharedBudget {
            redis,
            key_ids,
            pulled: Mutex::new(HashMap::new()),
        });
        self
    }

    fn shared_key(shared: &SharedBudget, key: usize, model: &str) -> Option<String> {
        let id = shared.key_ids.get(key)?;
        Some(format!("{}ub:{id}:{model}", shared.redis.prefix()))
    }

    /// Reads what the other replicas learned about `model`, unless that was done very recently.
    async fn pull(&self, model: &Arc<str>) {
        let Some(shared) = &self.shared else { return };
        let now = Instant::now();
        {
            let mut pulled = shared.pulled.lock().unwrap_or_else(|p| p.into_inner());
            if pulled.get(model).is_some_and(|at| now.duration_since(*at) < PULL_EVERY) {
                return;
            }
            pulled.insert(model.clone(), now);
        }
        let keys: Vec<String> = (0..self.keys)
            .filter_map(|k| Self::shared_key(shared, k, model))
            .collect();
        if keys.is_empty() {
            return;
        }
        let query = keys.clone();
        let Ok(values) = shared
            .redis
            .call(|mut connection| async move {
                ::redis::cmd("MGET")
                    .arg(&query)
                    .query_async::<Vec<Option<String>>>(&mut connection)
                    .await
            })
            .await
        else {
            return;
        };
        let now = Instant::now();
        let wall = unix_ms();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for (key, value) in values.iter().enumerate() {
            let Some(record) = value.as_deref().and_then(Record::parse) else {
                continue;
            };
            let entry = state
                .entry((key, model.clone()))
                .or_insert_with(|| KeyModel::from_preset(&self.preset, now));
            record.merge_into(entry, now, wall);
        }
    }

    /// Publishes this replica's view of (`key`, `model`) until its reset (best effort, in the background).
    fn publish(&self, key: usize, model: &str, entry: &KeyModel, now: Instant) {
        let Some(shared) = &self.shared else { return };
        let Some(redis_key) = Self::shared_key(shared, key, model) else {
            return;
        };
        let record = Record::of(entry, now, unix_ms());
        let Some(ttl) = record.ttl_ms(unix_ms()) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let redis = shared.redis.clone();
        let text = record.to_text();
        runtime.spawn(async move {
            let _ = redis
                .call(|mut connection| async move {
                    ::redis::cmd("SET")
                        .arg(&redis_key)
                        .arg(&text)
                        .arg("PX")
                        .arg(ttl)
                        .query_async::<()>(&mut connection)
                        .await
                })
                .await;
        });
    }

    /// Picks a key with budget for `tokens` now, spending it locally; else the earliest time one may.
    fn try_pick(&self, model: &Arc<str>, tokens: u64, now: Instant) -> Result<usize, Instant> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut earliest: Option<Instant> = None;
        for offset in 0..self.keys {
            let key = (start + offset) % self.keys;
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

    /// A key for a request of `tokens` to `model`, waiting for Groq's reset if that is soon enough.
    pub async fn acquire(&self, model: &str, tokens: u64) -> Result<usize, BudgetExhausted> {
        let model: Arc<str> = model.into();
        self.pull(&model).await;
        let start = Instant::now();
        let deadline = start + self.queue_wait;
        let available_at = match self.try_pick(&model, tokens, start) {
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
            let now = Instant::now();
            match self.try_pick(&model, tokens, now) {
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

    /// Learns from a Groq response: its rate-limit headers, and a 429's cool-down.
    pub fn observe(&self, key: usize, model: &str, status: StatusCode, headers: &HeaderMap) {
        let now = Instant::now();
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let duration = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::wire::duration::parse)
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let entry = state
            .entry((key, model.into()))
            .or_insert_with(|| KeyModel::from_preset(&self.preset, now));
        if let (Some(remaining), Some(reset)) = (
            number("x-ratelimit-remaining-requests"),
            duration("x-ratelimit-reset-requests"),
        ) {
            entry
                .requests
                .learn(number("x-ratelimit-limit-requests"), remaining, now + reset, now);
        }
        if let (Some(remaining), Some(reset)) = (
            number("x-ratelimit-remaining-tokens"),
            duration("x-ratelimit-reset-tokens"),
        ) {
            entry
                .tokens
                .learn(number("x-ratelimit-limit-tokens"), remaining, now + reset, now);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = headers
                .get("retry-after-ms")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
                .or_else(|| number("retry-after").map(Duration::from_secs))
                .unwrap_or(Duration::from_secs(1));
            entry.cool_until = Some(now + wait);
            tracing::info!(
                key,
                model,
                wait_ms = wait.as_millis() as u64,
                "upstream key rate limited by Groq; resting it"
            );
        }
        let entry = *entry;
        drop(state);
        self.publish(key, model, &entry, now);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A [`KeyModel`] on the wall clock (Instants mean nothing to another process):
/// `limit,remaining,reset;limit,remaining,reset;cool_until`, `-` for unknown, times in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    requests: [Option<u64>; 3],
    tokens: [Option<u64>; 3],
    cool_until: Option<u64>,
}

impl Record {
    fn of(entry: &KeyModel, now: Instant, wall: u64) -> Self {
        let at = |instant: Instant| wall + instant.saturating_duration_since(now).as_millis() as u64;
        let budget = |b: &Budget| [b.limit, b.remaining, b.reset.map(at)];
        Record {
            requests: budget(&entry.requests),
            tokens: budget(&entry.tokens),
            cool_until: entry.cool_until.filter(|c| *c > now).map(at),
        }
    }

    /// Until the last of its times, or `None` if it says nothing still true.
    fn ttl_ms(&self, wall: u64) -> Option<u64> {
        let until = [self.requests[2], self.tokens[2], self.cool_until]
            .into_iter()
            .flatten()
            .max()?;
        (until > wall).then(|| until - wall)
    }

    fn to_text(self) -> String {
        let field = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
        let budget = |b: [Option<u64>; 3]| b.map(field).join(",");
        format!(
            "{};{};{}",
            budget(self.requests),
            budget(self.tokens),
            field(self.cool_until)
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |t: &str| -> Option<Option<u64>> {
            match t {
                "-" => Some(None),
                n => n.parse().ok().map(Some),
            }
        };
        let budget = |t: &str| -> Option<[Option<u64>; 3]> {
            let mut parts = t.split(',');
            let out = [field(parts.next()?)?, field(parts.next()?)?, field(parts.next()?)?];
            parts.next().is_none().then_some(out)
        };
        let mut parts = text.split(';');
        let record = Record {
            requests: budget(parts.next()?)?,
            tokens: budget(parts.next()?)?,
            cool_until: field(parts.next()?)?,
        };
        parts.next().is_none().then_some(record)
    }

    fn merge_into(&self, entry: &mut KeyModel, now: Instant, wall: u64) {
        let at = |ms: u64| (ms > wall).then(|| now + Duration::from_millis(ms - wall));
        for (budget, [limit, remaining, reset]) in
            [(&mut entry.requests, self.requests), (&mut entry.tokens, self.tokens)]
        {
            if let (Some(remaining), Some(reset)) = (remaining, reset.and_then(at)) {
                budget.learn(limit, remaining, reset, now);
            }
        }
        if let Some(cool) = self.cool_until.and_then(at) {
            entry.cool_until = Some(entry.cool_until.map_or(cool, |c| c.max(cool)));
        }
    }
}

struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Teaches the budget what Groq said about one upstream key and model.
pub struct BudgetTap {
    pub budget: Arc<UpstreamBudget>,
    pub key: usize,
    pub model: Arc<str>,
}

impl crate::relay::Tap for BudgetTap {
    fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.budget.observe(self.key, &self.model, status, headers);
    }
}

#[cfg(test)]
mod tests;
