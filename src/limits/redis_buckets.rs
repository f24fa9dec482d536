//! The Redis bucket store: every replica's admissions against the same buckets, one atomic Lua script per admission and one per settlement.
//!
//! Per scope, one hash holds its buckets (level, last update and limit per bucket) and one
//! sorted set its in-flight requests (member: the admission, score: when its lease ends, so a
//! settlement lost with a Redis outage frees its slot at the end of the lease instead of never).
//! The admit script refills every bucket with the same arithmetic as [`super::Bucket`] on
//! Redis's own clock (replicas' clocks may differ), checks all of them and takes from all only
//! if all fit, then reports the levels; [`super::decide`] turns those into the very same
//! refusal and headers the memory store gives. Keys expire when their buckets would be full
//! again, so idle callers cost nothing. A caller's keys share a `{hash tag}`, so a Redis Cluster
//! would keep one admission's keys on one node.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ::redis::Script;
use tokio::time::Instant;

use super::{
    bucket::Bucket,
    decide::{self, ScopeState, WINDOWS, bucket_limits},
    memory::LocalSlots,
    plan::Plan,
    seed::DaySeed,
};
use crate::{
    error::LimitExceeded,
    redis::{Redis, RedisError},
    wire::ratelimit::RateHeaders,
};

const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local member = ARGV[3]
local lease = tonumber(ARGV[4])
local slots = {'rm', 'rd', 'tm', 'td'}
local windows = {60000, 86400000, 60000, 86400000}
local function fmt(x) return string.format('%.17g', x) end
local ok = 1
local levels = {}
local counts = {}
for s = 1, n do
  local key, ckey = KEYS[2 * s - 1], KEYS[2 * s]
  local base = 4 + (s - 1) * 7
  levels[s] = {}
  for i = 1, 4 do
    local limit = tonumber(ARGV[base + i])
    if limit > 0 then
      local f = redis.call('HMGET', key, slots[i] .. 'l', slots[i] .. 't', slots[i] .. 'm')
      local level, ts, m = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
      if level == nil or ts == nil or m == nil then
        level = limit; ts = now; m = limit
        -- A day bucket Redis does not hold (never made, or Redis restarted empty) starts from
        -- what the usage ledger saw over the last day.
        local seed = ''
        if i == 2 then seed = ARGV[base + 6] elseif i == 4 then seed = ARGV[base + 7] end
        if seed ~= '' then level = math.min(tonumber(seed), limit) end
      end
      local elapsed = math.max(now - ts, 0) / 1000
      level = math.min(level + elapsed * (m / (windows[i] / 1000)), m)
      if m ~= limit then level = math.min(limit - (m - level), limit) end
      local amount = tokens
      if i <= 2 then amount = 1 end
      if amount > limit or level < amount then ok = 0 end
      levels[s][i] = level
    end
  end
  counts[s] = 0
  local maxc = tonumber(ARGV[base + 5])
  if maxc > 0 then
    redis.call('ZREMRANGEBYSCORE', ckey, '-inf', now)
    counts[s] = redis.call('ZCARD', ckey)
    if counts[s] >= maxc then ok = 0 end
  end
end
if ok == 1 then
  for s = 1, n do
    local key, ckey = KEYS[2 * s - 1], KEYS[2 * s]
    local base = 4 + (s - 1) * 7
    local keep = 1000
    for i = 1, 4 do
      local limit = tonumber(ARGV[base + i])
      if limit > 0 then
        local amount = tokens
        if i <= 2 then amount = 1 end
        local level = levels[s][i] - amount
        levels[s][i] = level
        redis.call('HSET', key, slots[i] .. 'l', fmt(level), slots[i] .. 't', fmt(now), slots[i] .. 'm', fmt(limit))
        local full_in = math.ceil((limit - level) / (limit / (windows[i] / 1000)) * 1000) + 1000
        if full_in > keep then keep = full_in end
      end
    end
    redis.call('PEXPIRE', key, keep)
    if tonumber(ARGV[base + 5]) > 0 then
      redis.call('ZADD', ckey, now + lease, member)
      redis.call('PEXPIRE', ckey, lease + 1000)
      counts[s] = counts[s] + 1
    end
  end
end
local out = {tostring(ok)}
for s = 1, n do
  for i = 1, 4 do
    local level = levels[s][i]
    if level == nil then table.insert(out, '') else table.insert(out, fmt(level)) end
  end
  table.insert(out, tostring(counts[s]))
end
return out
"#;

const SETTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local n = tonumber(ARGV[1])
local refund = tonumber(ARGV[2])
local member = ARGV[3]
local slots = {'tm', 'td'}
local windows = {60000, 86400000}
local function fmt(x) return string.format('%.17g', x) end
for s = 1, n do
  local key, ckey = KEYS[2 * s - 1], KEYS[2 * s]
  redis.call('ZREM', ckey, member)
  for j = 1, 2 do
    local limit = tonumber(ARGV[3 + (s - 1) * 2 + j])
    if limit > 0 and refund ~= 0 then
      local f = redis.call('HMGET', key, slots[j] .. 'l', slots[j] .. 't', slots[j] .. 'm')
      local level, ts, m = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
      local known = level ~= nil and ts ~= nil and m ~= nil
      if known or refund < 0 then
        if not known then level = limit; ts = now; m = limit end
        local elapsed = math.max(now - ts, 0) / 1000
        level = math.min(level + elapsed * (m / (windows[j] / 1000)), m)
        if m ~= limit then level = math.min(limit - (m - level), limit) end
        level = math.min(level + refund, limit)
        redis.call('HSET', key, slots[j] .. 'l', fmt(level), slots[j] .. 't', fmt(now), slots[j] .. 'm', fmt(limit))
        local full_in = math.ceil((limit - level) / (limit / (windows[j] / 1000)) * 1000) + 1000
        if redis.call('PTTL', key) < full_in then redis.call('PEXPIRE', key, full_in) end
      end
    end
  end
end
return 1
"#;

static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));
static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));

pub(super) struct RedisBuckets {
    redis: Redis,
    /// How long an unsettled admission may hold a concurrency slot.
    lease: Duration,
    /// Makes admission ids unique across replicas without coordination.
    process: u64,
    next: AtomicU64,
}

/// An admission held in Redis: what its settlement must give back.
#[derive(Debug)]
pub(super) struct RedisHold {
    redis: Redis,
    keys: Vec<String>,
    member: String,
    /// Per scope: tokens per minute and per day (0: none).
    token_limits: Vec<[u64; 2]>,
    /// This replica's count of its own requests in flight, for its local share should Redis
    /// go away before they end.
    local: Option<LocalSlots>,
}

/// What one admission script answered: the decision, and each scope's four levels as Redis
/// holds them after it (`None`: no such limit), which this replica keeps as what it knows was used.
pub(super) struct Answer {
    pub decision: Result<(RedisHold, RateHeaders), Box<LimitExceeded>>,
    pub levels: Vec<[Option<f64>; 4]>,
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Uniqueness only matters between replicas; the clock is a fine second choice.
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    u64::from_le_bytes(bytes)
}

/// What the script said: admitted or not, and each scope's four levels and concurrency.
#[derive(Debug, PartialEq)]
struct Reply {
    admitted: bool,
    scopes: Vec<([Option<f64>; 4], u64)>,
}

fn parse_reply(values: &[String], scopes: usize) -> Option<Reply> {
    if values.len() != 1 + scopes * 5 {
        return None;
    }
    let admitted = values[0] == "1";
    let mut parsed = Vec::with_capacity(scopes);
    for chunk in values[1..].chunks(5) {
        let mut levels = [None; 4];
        for (level, text) in levels.iter_mut().zip(chunk) {
            if !text.is_empty() {
                *level = Some(text.parse::<f64>().ok()?);
            }
        }
        parsed.push((levels, chunk[4].parse().ok()?));
    }
    Some(Reply {
        admitted,
        scopes: parsed,
    })
}

impl RedisBuckets {
    pub fn new(redis: Redis, lease: Duration) -> Self {
        Self {
            redis,
            lease,
            process: random_u64(),
            next: AtomicU64::new(0),
        }
    }

    fn keys(&self, plan: &Plan) -> Vec<String> {
        let prefix = self.redis.prefix();
        let mut keys = Vec::with_capacity(plan.scopes.len() * 2);
        for planned in &plan.scopes {
            let tag = crate::digest::hex(&planned.key.partition);
            let scope = match &planned.key.model {
                None => "g".to_owned(),
                Some(model) => format!("m:{model}"),
            };
            keys.push(format!("{prefix}rl:{{{tag}}}:{scope}:b"));
            keys.push(format!("{prefix}rl:{{{tag}}}:{scope}:c"));
        }
        keys
    }

    /// `Ok`: what the script decided; `Err`: Redis gave no answer.
    pub async fn admit(&self, plan: &Plan, tokens: u64, seed: &DaySeed) -> Result<Answer, RedisError> {
        let secs = crate::calendar::now();
        let keys = self.keys(plan);
        let member = format!(
            "{:016x}{:016x}",
            self.process,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let mut invocation = ADMIT_SCRIPT.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        invocation
            .arg(plan.scopes.len())
            .arg(tokens)
            .arg(&member)
            .arg(self.lease.as_millis() as u64);
        for planned in &plan.scopes {
            for limit in bucket_limits(&planned.set) {
                invocation.arg(limit.unwrap_or(0));
            }
            invocation.arg(planned.set.max_concurrent.unwrap_or(0));
            let set = &planned.set;
            let levels = seed.levels(
                &plan.subject,
                planned.key.model.as_ref(),
                set.requests_per_day,
                set.tokens_per_day,
                secs,
            );
            for level in levels {
                invocation.arg(level.map_or_else(String::new, |l| format!("{l:.6}")));
            }
        }
        let values: Vec<String> = self
            .redis
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        let reply = parse_reply(&values, plan.scopes.len()).ok_or_else(|| {
            RedisError::Failed(::redis::RedisError::from((
                ::redis::ErrorKind::Parse,
                "unexpected reply from the admission script",
            )))
        })?;
        let now = Instant::now();
        let mut states: Vec<ScopeState> = plan
            .scopes
            .iter()
            .zip(&reply.scopes)
            .map(|(planned, (levels, concurrent))| snapshot(&planned.set, levels, *concurrent, now))
            .collect();
        let levels = reply.scopes.iter().map(|(levels, _)| *levels).collect();
        let mut views: Vec<&mut ScopeState> = states.iter_mut().collect();
        if reply.admitted {
            let headers = decide::headers_of(&mut views, now);
            let token_limits = plan
                .scopes
                .iter()
                .map(|p| [p.set.tokens_per_minute.unwrap_or(0), p.set.tokens_per_day.unwrap_or(0)])
                .collect();
            let hold = RedisHold {
                redis: self.redis.clone(),
                keys,
                member,
                token_limits,
                local: None,
            };
            return Ok(Answer {
                decision: Ok((hold, headers)),
                levels,
            });
        }
        match decide::check(&mut views, plan, tokens, now) {
            Some(mut refused) => {
                refused.headers = decide::headers_of(&mut views, now);
                Ok(Answer {
                    decision: Err(Box::new(refused)),
                    levels,
                })
            }
            None => Err(RedisError::Failed(::redis::RedisError::from((
                ::redis::ErrorKind::Parse,
                "the admission script refused a request its levels admit",
            )))),
        }
    }
}

/// A scope as the script reported it, as buckets the shared decision can read.
fn snapshot(set: &crate::config::LimitSet, levels: &[Option<f64>; 4], concurrent: u64, now: Instant) -> ScopeState {
    let limits = bucket_limits(set);
    let bucket = |i: usize| {
        let window = WINDOWS[i % 2].1;
        match (limits[i], levels[i]) {
            (Some(limit), Some(level)) => Some(Bucket::at_level(limit, window, level, now)),
            (Some(limit), None) => Some(Bucket::new(limit, window, now)),
            (None, _) => None,
        }
    };
    ScopeState {
        requests: [bucket(0), bucket(1)],
        tokens: [bucket(2), bucket(3)],
        max_concurrent: set.max_concurrent,
        concurrent,
    }
}

impl RedisHold {
    /// Counts this request in this replica's local share too, until it settles.
    pub fn with_local(mut self, local: LocalSlots) -> Self {
        self.local = Some(local);
        self
    }

    /// Frees the concurrency slot and gives back `refund` tokens (negative: takes more), in the
    /// background: the response is already on its way. Lost if Redis is down, which errs on
    /// the safe side (the reservation stays spent; the slot frees at the end of its lease).
    pub fn settle(mut self, refund: i64) {
        drop(self.local.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hold = Arc::new(self);
        runtime.spawn(async move {
            let mut invocation = SETTLE_SCRIPT.prepare_invoke();
            for key in &hold.keys {
                invocation.key(key);
            }
            invocation.arg(hold.token_limits.len()).arg(refund).arg(&hold.member);
            for [minute, day] in &hold.token_limits {
                invocation.arg(*minute).arg(*day);
            }
            let result: Result<i64, RedisError> = hold
                .redis
                .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await;
            if let Err(error) = result {
                tracing::debug!(%error, "rate-limit settlement not recorded in redis");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_strictly() {
        let values: Vec<String> = ["1", "9", "", "1.5", "", "2"].map(str::to_owned).to_vec();
        assert_eq!(
            parse_reply(&values, 1),
            Some(Reply {
                admitted: true,
                scopes: vec![([Some(9.0), None, Some(1.5), None], 2)]
            })
        );
        assert_eq!(parse_reply(&values, 2), None);
        let garbage: Vec<String> = ["0", "x", "", "", "", "0"].map(str::to_owned).to_vec();
        assert_eq!(parse_reply(&garbage, 1), None);
    }
}
