//! Groq's budget held once for every replica in Redis: one atomic script reserves a request and its tokens from the first upstream key whose shared budget fits, another merges what Groq's headers said.
//!
//! Per (upstream key, model), one hash: for requests and for tokens the limit, what is left and
//! when the window resets (`rl rr rt`, `tl tr tt`), and the end of a 429's cool-down (`cu`),
//! times in milliseconds on Redis's own clock (replicas' clocks may differ). The acquire script
//! does what [`super::UpstreamBudget`] does in memory — a window that is over starts afresh at
//! the known limit, a request larger than the whole limit is left to Groq, an unknown budget
//! fits — but for every replica at once: two replicas can never both spend the last request.
//! The observe script merges a response's headers the way the memory view learns them: within
//! a window the lower remaining wins (requests sent since were counted already), a window that
//! is over is replaced. Keys expire a minute after the last time they know of. The keys of one
//! model share a `{hash tag}`, so a Redis Cluster would keep one script's keys on one node.

use std::{sync::LazyLock, time::Duration};

use ::redis::Script;

use crate::redis::{Redis, RedisError};

const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local amounts = {1, tonumber(ARGV[1])}
local presets = {{tonumber(ARGV[2]), tonumber(ARGV[3])}, {tonumber(ARGV[4]), tonumber(ARGV[5])}}
local recheck = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local names = {{'rl', 'rr', 'rt'}, {'tl', 'tr', 'tt'}}
local function fmt(x) if x == nil then return '' end return string.format('%.0f', x) end
local picked = 0
local earliest = nil
local states = {}
for k = 1, #KEYS do
  local f = redis.call('HMGET', KEYS[k], 'rl', 'rr', 'rt', 'tl', 'tr', 'tt', 'cu')
  local fresh = true
  for i = 1, 7 do if f[i] then fresh = false end end
  local s = {dims = {}, cool = tonumber(f[7]), dirty = false}
  for d = 1, 2 do
    local limit, remaining, reset = tonumber(f[3 * d - 2]), tonumber(f[3 * d - 1]), tonumber(f[3 * d])
    if fresh and presets[d][1] > 0 then
      limit = presets[d][1]; remaining = limit; reset = now + presets[d][2]; s.dirty = true
    end
    if reset ~= nil and reset <= now then remaining = limit; reset = nil; s.dirty = true end
    s.dims[d] = {limit, remaining, reset}
  end
  if s.cool ~= nil and s.cool <= now then s.cool = nil; s.dirty = true end
  states[k] = s
  if picked == 0 then
    local wait = s.cool
    for d = 1, 2 do
      local limit, remaining, reset = s.dims[d][1], s.dims[d][2], s.dims[d][3]
      local amount = amounts[d]
      local fits = (limit ~= nil and amount > limit) or remaining == nil or remaining >= amount
      if not fits then
        local at = reset or (now + recheck)
        if wait == nil or at > wait then wait = at end
      end
    end
    if wait == nil then
      picked = k
      for d = 1, 2 do
        if s.dims[d][2] ~= nil then s.dims[d][2] = math.max(s.dims[d][2] - amounts[d], 0) end
      end
      s.dirty = true
    elseif earliest == nil or wait < earliest then
      earliest = wait
    end
  end
end
local out = {tostring(picked), fmt(earliest and math.max(earliest - now, 0) or 0)}
for k = 1, #KEYS do
  local s = states[k]
  local set, del, last = {}, {}, now
  for d = 1, 2 do
    for j = 1, 3 do
      local v = s.dims[d][j]
      if v == nil then table.insert(del, names[d][j]) else table.insert(set, names[d][j]); table.insert(set, fmt(v)) end
    end
    local reset = s.dims[d][3]
    if reset ~= nil and reset > last then last = reset end
    table.insert(out, fmt(s.dims[d][1]))
    table.insert(out, fmt(s.dims[d][2]))
    table.insert(out, reset and fmt(reset - now) or '')
  end
  if s.cool == nil then table.insert(del, 'cu') else
    table.insert(set, 'cu'); table.insert(set, fmt(s.cool))
    if s.cool > last then last = s.cool end
  end
  table.insert(out, s.cool and fmt(s.cool - now) or '')
  if s.dirty then
    if #del > 0 then redis.call('HDEL', KEYS[k], unpack(del)) end
    if #set > 0 then
      redis.call('HSET', KEYS[k], unpack(set))
      redis.call('PEXPIRE', KEYS[k], last - now + keep)
    end
  end
end
return out
"#;

const OBSERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep = tonumber(ARGV[8])
local names = {{'rl', 'rr', 'rt'}, {'tl', 'tr', 'tt'}}
local function fmt(x) return string.format('%.0f', x) end
local f = redis.call('HMGET', KEYS[1], 'rl', 'rr', 'rt', 'tl', 'tr', 'tt', 'cu')
local set, last = {}, now
for d = 1, 2 do
  local limit, remaining, reset = tonumber(f[3 * d - 2]), tonumber(f[3 * d - 1]), tonumber(f[3 * d])
  local said_limit, said, said_reset = tonumber(ARGV[3 * d - 2]), tonumber(ARGV[3 * d - 1]), tonumber(ARGV[3 * d])
  if said ~= nil and said_reset ~= nil then
    said_reset = now + said_reset
    if said_limit ~= nil then limit = said_limit end
    if remaining == nil or (reset ~= nil and reset <= now) then
      remaining = said; reset = said_reset
    else
      remaining = math.min(remaining, said)
      if reset == nil or said_reset > reset then reset = said_reset end
    end
    if limit ~= nil then table.insert(set, names[d][1]); table.insert(set, fmt(limit)) end
    table.insert(set, names[d][2]); table.insert(set, fmt(remaining))
    table.insert(set, names[d][3]); table.insert(set, fmt(reset))
  end
  if reset ~= nil and reset > last then last = reset end
end
local cool = tonumber(f[7])
local said_cool = tonumber(ARGV[7])
if said_cool ~= nil then
  said_cool = now + said_cool
  if cool == nil or said_cool > cool then cool = said_cool end
  table.insert(set, 'cu'); table.insert(set, fmt(cool))
end
if cool ~= nil and cool > last then last = cool end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], last - now + keep)
end
return 1
"#;

static ACQUIRE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ACQUIRE));
static OBSERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OBSERVE));

/// How long a record outlives the last time it knows of: long enough to carry a rolled-over
/// window's count until Groq reports the new one.
const KEEP: Duration = Duration::from_secs(60);

/// One dimension (requests or tokens) of a budget: its limit, what is left, and in how long
/// its window resets (`None`: not known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dim {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset: Option<Duration>,
}

/// One upstream key's shared budget for a model, as Redis held it after a script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub requests: Dim,
    pub tokens: Dim,
    /// How long the key still rests after a 429.
    pub cool: Option<Duration>,
}

/// What the acquire script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The key reserved, as an index into the order asked; `None`: no key fits now.
    pub picked: Option<usize>,
    /// When none fits: how long until one may.
    pub wait: Duration,
    /// Every key asked about, in the order asked.
    pub seen: Vec<Seen>,
}

/// What one Groq response said: per dimension (limit, remaining, reset), and a 429's rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reported {
    pub requests: Option<(Option<u64>, u64, Duration)>,
    pub tokens: Option<(Option<u64>, u64, Duration)>,
    pub cool: Option<Duration>,
}

/// Before Groq says anything, a tier preset's (limit, window) per dimension.
pub type Preset = [(Option<u64>, Duration); 2];

#[derive(Debug)]
pub struct SharedBudget {
    redis: Redis,
    /// A short fingerprint per upstream key (never the key): replicas configured with the same
    /// keys in another order still agree on whose budget is whose.
    key_ids: Vec<String>,
}

/// How often a waiter looks again when a spent budget's new window is not known yet.
pub const RECHECK: Duration = Duration::from_millis(50);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::Failed(::redis::RedisError::from((::redis::ErrorKind::Parse, what)))
}

fn parse_granted(values: &[String], keys: usize) -> Option<Granted> {
    if values.len() != 2 + keys * 7 {
        return None;
    }
    let number = |text: &str| -> Option<Option<u64>> {
        if text.is_empty() {
            Some(None)
        } else {
            text.parse().ok().map(Some)
        }
    };
    let picked: usize = values[0].parse().ok()?;
    let wait = Duration::from_millis(number(&values[1])?.unwrap_or(0));
    let mut seen = Vec::with_capacity(keys);
    for chunk in values[2..].chunks(7) {
        let dim = |at: usize| -> Option<Dim> {
            Some(Dim {
                limit: number(&chunk[at])?,
                remaining: number(&chunk[at + 1])?,
                reset: number(&chunk[at + 2])?.map(Duration::from_millis),
            })
        };
        seen.push(Seen {
            requests: dim(0)?,
            tokens: dim(3)?,
            cool: number(&chunk[6])?.map(Duration::from_millis),
        });
    }
    Some(Granted {
        picked: (1..=keys).contains(&picked).then(|| picked - 1),
        wait,
        seen,
    })
}

impl SharedBudget {
    pub fn new(redis: Redis, key_ids: Vec<String>) -> Self {
        Self { redis, key_ids }
    }

    fn key(&self, key: usize, model: &str) -> Option<String> {
        let id = self.key_ids.get(key)?;
        Some(format!("{}ub:{{{model}}}:{id}", self.redis.prefix()))
    }

    /// Reserves one request and `tokens` tokens of `model` from the first key of `order` whose
    /// shared budget fits, atomically for every replica. `Err`: Redis gave no answer.
    pub async fn acquire(
        &self,
        order: &[usize],
        model: &str,
        tokens: u64,
        preset: Preset,
    ) -> Result<Granted, RedisError> {
        let keys: Option<Vec<String>> = order.iter().map(|&key| self.key(key, model)).collect();
        let keys = keys.ok_or_else(|| unexpected("an upstream key without a shared id"))?;
        let mut invocation = ACQUIRE_SCRIPT.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        invocation.arg(tokens);
        for (limit, window) in preset {
            invocation.arg(limit.unwrap_or(0)).arg(ms(window));
        }
        invocation.arg(ms(RECHECK)).arg(ms(KEEP));
        let values: Vec<String> = self
            .redis
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await?;
        parse_granted(&values, keys.len()).ok_or_else(|| unexpected("unexpected reply from the budget script"))
    }

    /// Merges what Groq said about `key` and `model` into the shared budget. A lost report only
    /// leaves the shared count as careful as it was.
    pub async fn observe(&self, key: usize, model: &str, reported: Reported) {
        let Some(redis_key) = self.key(key, model) else {
            return;
        };
        let field = |v: Option<u64>| v.map_or_else(String::new, |v| v.to_string());
        let mut invocation = OBSERVE_SCRIPT.prepare_invoke();
        invocation.key(&redis_key);
        for dim in [reported.requests, reported.tokens] {
            invocation.arg(field(dim.and_then(|(limit, _, _)| limit)));
            invocation.arg(field(dim.map(|(_, remaining, _)| remaining)));
            invocation.arg(field(dim.map(|(_, _, reset)| ms(reset))));
        }
        invocation.arg(field(reported.cool.map(ms))).arg(ms(KEEP));
        let result: Result<i64, RedisError> = self
            .redis
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "Groq's budget report not recorded in redis");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_strictly() {
        let values: Vec<String> = [
            "2", "0", "5", "3", "59000", "", "", "", "", "5", "0", "", "", "", "", "1500",
        ]
        .map(str::to_owned)
        .to_vec();
        let granted = parse_granted(&values, 2).expect("parsed");
        assert_eq!(granted.picked, Some(1));
        assert_eq!(
            granted.seen[0].requests,
            Dim {
                limit: Some(5),
                remaining: Some(3),
                reset: Some(Duration::from_secs(59))
            }
        );
        assert_eq!(granted.seen[0].tokens, Dim::default());
        assert_eq!(granted.seen[1].requests.remaining, Some(0));
        assert_eq!(granted.seen[1].cool, Some(Duration::from_millis(1500)));
        assert_eq!(parse_granted(&values, 1), None, "wrong length");
        let mut none = values.clone();
        none[0] = "0".to_owned();
        none[1] = "250".to_owned();
        let refused = parse_granted(&none, 2).expect("parsed");
        assert_eq!((refused.picked, refused.wait), (None, Duration::from_millis(250)));
        let mut garbage = values;
        garbage[3] = "x".to_owned();
        assert_eq!(parse_granted(&garbage, 2), None);
    }
}
