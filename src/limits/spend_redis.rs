//! Budgets shared by every replica through Redis: one counter per budget and period (nanodollars, integers), reserved atomically by one Lua script for all of a request's budgets, settled by another.
//!
//! A counter Redis does not hold (new, expired, or Redis restarted empty) starts from what the
//! usage ledger says was spent in its period, so a restart of Redis resets no budget. A Redis
//! that does not answer never fails a request: the replica reserves from its local share
//! instead (`budget / redis.replicas` of what it last saw spent), like the rate limits do.

use std::sync::{Arc, LazyLock};

use ::redis::Script;

use super::spend::{Line, LocalSpend, Period};
use crate::{
    error::BudgetRefusal,
    redis::{Redis, RedisError},
};

/// Where a reservation was made.
pub(super) enum Reserved {
    /// In Redis: settle there.
    Shared,
    /// On this replica's share, Redis not answering: settle here.
    Local,
}

const RESERVE: &str = r#"
local amount = tonumber(ARGV[1])
local spent = {}
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local limit, seed, ttl = tonumber(ARGV[base + 1]), ARGV[base + 2], tonumber(ARGV[base + 3])
  local v = redis.call('GET', KEYS[i])
  if not v then
    redis.call('SET', KEYS[i], seed, 'EX', ttl)
    v = seed
  end
  spent[i] = tonumber(v)
  if spent[i] + amount > limit then
    local out = {'0', tostring(i)}
    for j = 1, i do table.insert(out, tostring(spent[j])) end
    return out
  end
end
local out = {'1', '0'}
for i = 1, #KEYS do
  table.insert(out, tostring(redis.call('INCRBY', KEYS[i], amount)))
end
return out
"#;

const SETTLE: &str = r#"
local delta = tonumber(ARGV[1])
for i = 1, #KEYS do
  local seed, ttl = tonumber(ARGV[1 + (i - 1) * 2 + 1]), tonumber(ARGV[1 + (i - 1) * 2 + 2])
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], delta)
  else
    redis.call('SET', KEYS[i], seed + delta, 'EX', ttl)
  end
end
return 1
"#;

static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE));
static SETTLE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(SETTLE));

/// How long a counter outlives its period (a settlement may arrive after midnight).
fn ttl(period: Period) -> u64 {
    match period {
        Period::Day => 2 * 86_400,
        Period::Month => 35 * 86_400,
    }
}

/// The shared counters, and this replica's share for when Redis cannot answer.
#[derive(Clone)]
pub(super) struct SharedSpend {
    redis: Redis,
    local: Arc<LocalSpend>,
    share: f64,
}

impl SharedSpend {
    pub fn new(redis: Redis, local: Arc<LocalSpend>, replicas: u64) -> Self {
        Self {
            redis,
            local,
            share: 1.0 / replicas.max(1) as f64,
        }
    }

    fn key(&self, line: &Line) -> String {
        let subject = if line.subject.is_empty() {
            "*gateway*"
        } else {
            &line.subject
        };
        format!(
            "{}spend:{subject}:{}:{}",
            self.redis.prefix(),
            line.period.letter(),
            line.start
        )
    }

    /// Reserves `amount` on every line atomically in Redis; with Redis unavailable, on this
    /// replica's share.
    pub async fn reserve(&self, lines: &[Line], amount: u64) -> Result<Reserved, Box<BudgetRefusal>> {
        let mut invocation = RESERVE_SCRIPT.prepare_invoke();
        for line in lines {
            invocation.key(self.key(line));
        }
        invocation.arg(amount);
        for line in lines {
            invocation.arg(line.limit).arg(line.seed).arg(ttl(line.period));
        }
        let answer: Result<Vec<String>, RedisError> = self
            .redis
            .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
            .await;
        let parsed = answer.ok().and_then(|values| {
            let admitted = values.first()? == "1";
            let refusing: usize = values.get(1)?.parse().ok()?;
            let spent: Option<Vec<u64>> = values[2..].iter().map(|v| v.parse().ok()).collect();
            Some((admitted, refusing, spent?))
        });
        match parsed {
            Some((true, _, spent)) => {
                self.local.remember(lines, &spent, self.share);
                Ok(Reserved::Shared)
            }
            Some((false, refusing, spent)) if refusing >= 1 && refusing <= lines.len() => {
                self.local.remember(&lines[..spent.len()], &spent, self.share);
                let line = &lines[refusing - 1];
                let spent_there = spent.get(refusing - 1).copied().unwrap_or(line.limit);
                Err(Box::new(line.refusal(spent_there, amount, crate::calendar::now())))
            }
            _ => {
                tracing::debug!("budget decided on this replica's share: Redis did not answer");
                self.local.reserve(lines, amount, self.share)?;
                Ok(Reserved::Local)
            }
        }
    }

    /// Adds `delta` to every line's counter, in the background (the answer is on its way).
    /// Lost if Redis is down, which errs on the safe side for a refund and is small for a debt.
    pub fn settle(&self, lines: Vec<Line>, delta: i64) {
        if delta == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            let mut invocation = SETTLE_SCRIPT.prepare_invoke();
            for line in &lines {
                invocation.key(this.key(line));
            }
            invocation.arg(delta);
            for line in &lines {
                invocation.arg(line.seed).arg(ttl(line.period));
            }
            let result: Result<i64, RedisError> = this
                .redis
                .call(|mut connection| async move { invocation.invoke_async(&mut connection).await })
                .await;
            if result.is_err() {
                this.local.settle(&lines, delta);
            }
        });
    }
}
