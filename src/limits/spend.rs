//! Budgets in dollars, per key and for the whole gateway, per UTC day and per UTC month: a request reserves its worst-case cost at admission and is settled with its real cost when its answer ends.
//!
//! Counters are nanodollars (exact integers). Each counter holds what was spent plus what is
//! reserved by requests in flight, so concurrent requests can never together pass a budget by
//! more than their reservations underestimate. In memory, a counter starts from what the usage
//! ledger says was spent in its period ([`SpendSeed`]); with Redis, one counter per budget and
//! period is shared by every replica (`spend_redis`), and while Redis cannot answer each
//! replica spends at most its share (`budget / redis.replicas`) of what was left.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{calendar, error::BudgetRefusal, store::UsageRow};

/// The subject of the gateway-wide budget (no key's id or name can be empty).
pub const GATEWAY: &str = "";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Day,
    Month,
}

impl Period {
    fn start(self, now: i64) -> i64 {
        match self {
            Period::Day => calendar::day_start(now),
            Period::Month => calendar::month_start(now),
        }
    }

    fn end(self, now: i64) -> i64 {
        match self {
            Period::Day => calendar::day_start(now) + calendar::DAY,
            Period::Month => calendar::next_month_start(now),
        }
    }

    pub fn letter(self) -> &'static str {
        match self {
            Period::Day => "d",
            Period::Month => "m",
        }
    }
}

/// One budget that applies to a request: whose, over which period, how much.
#[derive(Debug, Clone)]
pub struct Line {
    pub subject: Arc<str>,
    /// How a refusal names it: `key `bob``, `the gateway`.
    pub whose: String,
    pub period: Period,
    /// The Unix second the period started.
    pub start: i64,
    pub limit: u64,
    /// What the ledger says was spent in this period (where a counter starts).
    pub seed: u64,
}

impl Line {
    /// The counter's identity.
    pub fn id(&self) -> Counter {
        (self.subject.clone(), self.period, self.start)
    }

    pub fn refusal(&self, spent: u64, requested: u64, now: i64) -> BudgetRefusal {
        BudgetRefusal {
            whose: self.whose.clone(),
            period: match self.period {
                Period::Day => "daily",
                Period::Month => "monthly",
            },
            limit_usd: self.limit as f64 / 1e9,
            spent_usd: spent as f64 / 1e9,
            requested_usd: requested as f64 / 1e9,
            resets_in: Duration::from_secs(u64::try_from(self.period.end(now) - now).unwrap_or(0).max(1)),
        }
    }
}

/// Budgets of one subject: nanodollars per day and per month.
#[derive(Debug, Clone, Copy, Default)]
pub struct Caps {
    pub daily: Option<u64>,
    pub monthly: Option<u64>,
}

/// What the ledger says each subject spent today and this month (the gateway's under
/// [`GATEWAY`]), for counters created from now on.
#[derive(Debug, Default)]
pub struct SpendSeed {
    day_start: i64,
    month_start: i64,
    day: HashMap<Arc<str>, u64>,
    month: HashMap<Arc<str>, u64>,
}

impl SpendSeed {
    /// From ledger rows since the month started.
    pub fn from_rows(rows: &[UsageRow], now: i64) -> SpendSeed {
        let mut seed = SpendSeed {
            day_start: calendar::day_start(now),
            month_start: calendar::month_start(now),
            ..SpendSeed::default()
        };
        for row in rows {
            let cost = u64::try_from(row.cost_nanos).unwrap_or(0);
            if cost == 0 || row.hour < seed.month_start {
                continue;
            }
            let subject: Arc<str> = row.key.as_str().into();
            let add = |map: &mut HashMap<Arc<str>, u64>| {
                *map.entry(subject.clone()).or_default() += cost;
                *map.entry(GATEWAY.into()).or_default() += cost;
            };
            add(&mut seed.month);
            if row.hour >= seed.day_start {
                add(&mut seed.day);
            }
        }
        seed
    }

    fn spent(&self, subject: &Arc<str>, period: Period, start: i64) -> u64 {
        let (map, from) = match period {
            Period::Day => (&self.day, self.day_start),
            Period::Month => (&self.month, self.month_start),
        };
        if from == start {
            map.get(subject).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The budgets of `subject` (and the gateway's) that apply now, as lines.
    pub fn lines(&self, key: Option<(&Arc<str>, &str, Caps)>, gateway: Caps, now: i64) -> Vec<Line> {
        // No budget at all (the default): no line, and none of the names below built.
        let none = |caps: &Caps| caps.daily.is_none() && caps.monthly.is_none();
        if none(&gateway) && key.as_ref().is_none_or(|(_, _, caps)| none(caps)) {
            return Vec::new();
        }
        let gateway_subject: Arc<str> = GATEWAY.into();
        let mut lines = Vec::with_capacity(4);
        let owners = key
            .into_iter()
            .map(|(subject, name, caps)| (subject.clone(), format!("key `{name}`"), caps))
            .chain(std::iter::once((gateway_subject, "the gateway".to_owned(), gateway)));
        for (subject, whose, caps) in owners {
            for (period, limit) in [(Period::Day, caps.daily), (Period::Month, caps.monthly)] {
                if let Some(limit) = limit {
                    let start = period.start(now);
                    lines.push(Line {
                        seed: self.spent(&subject, period, start),
                        subject: subject.clone(),
                        whose: whose.clone(),
                        period,
                        start,
                        limit,
                    });
                }
            }
        }
        lines
    }
}

/// This replica's counters: the only ones without Redis, the fallback share with it.
#[derive(Debug, Default)]
pub struct LocalSpend {
    counters: Mutex<HashMap<Counter, u64>>,
}

/// A budget counter: whose, which period, from when.
type Counter = (Arc<str>, Period, i64);

impl LocalSpend {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Counter, u64>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `amount` on every line if all of them have room (limits scaled by `share`),
    /// or names the first that has not.
    pub fn reserve(&self, lines: &[Line], amount: u64, share: f64) -> Result<(), Box<BudgetRefusal>> {
        let now = calendar::now();
        let mut counters = self.lock();
        for line in lines {
            let spent = *counters.entry(line.id()).or_insert((line.seed as f64 * share) as u64);
            let limit = (line.limit as f64 * share).floor() as u64;
            if spent.saturating_add(amount) > limit {
                return Err(Box::new(line.refusal(spent, amount, now)));
            }
        }
        for line in lines {
            if let Some(spent) = counters.get_mut(&line.id()) {
                *spent = spent.saturating_add(amount);
            }
        }
        Ok(())
    }

    /// Adds `delta` (the real cost minus the reservation) to every line.
    pub fn settle(&self, lines: &[Line], delta: i64) {
        let mut counters = self.lock();
        for line in lines {
            let spent = counters.entry(line.id()).or_insert(0);
            *spent = spent.saturating_add_signed(delta);
        }
    }

    /// Keeps what Redis said was spent (scaled to this replica's share), so an outage starts
    /// from what was used rather than from nothing.
    pub fn remember(&self, lines: &[Line], spent: &[u64], share: f64) {
        let mut counters = self.lock();
        for (line, spent) in lines.iter().zip(spent) {
            counters.insert(line.id(), (*spent as f64 * share) as u64);
        }
    }

    /// Drops counters of periods that are over.
    pub fn sweep(&self) {
        let now = calendar::now();
        self.lock().retain(|(_, period, start), _| period.start(now) == *start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_never_passed_by_reservations_and_settles_to_the_real_cost() {
        let now = calendar::now();
        let seed = SpendSeed::from_rows(
            &[UsageRow {
                key: "k".into(),
                hour: calendar::hour_start(now),
                cost_nanos: 400,
                ..UsageRow::default()
            }],
            now,
        );
        let k: Arc<str> = "k".into();
        let lines = seed.lines(
            Some((
                &k,
                "bob",
                Caps {
                    daily: Some(1000),
                    monthly: None,
                },
            )),
            Caps {
                daily: None,
                monthly: Some(10_000),
            },
            now,
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(
            (lines[0].seed, lines[1].seed),
            (400, 400),
            "the gateway's spend includes every key's"
        );
        let local = LocalSpend::default();
        local.reserve(&lines, 500, 1.0).expect("400 + 500 fits 1000");
        let refused = local.reserve(&lines, 101, 1.0).expect_err("900 + 101 does not");
        assert_eq!((refused.period, refused.whose.as_str()), ("daily", "key `bob`"));
        local.settle(&lines, -300);
        local.reserve(&lines, 400, 1.0).expect("600 + 400 fits exactly");
        // Half a share of what is left while Redis is away.
        local.remember(&lines, &[0, 0], 0.5);
        assert!(local.reserve(&lines, 501, 0.5).is_err());
        local.reserve(&lines, 500, 0.5).expect("the share");
    }
}
