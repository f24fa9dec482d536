//! Per-day limits that survive a restart: the requests and tokens the usage ledger saw in the last 24 hours, replayed into a new day bucket, so a restart of groxy (or of Redis) resets no `requests_per_day` or `tokens_per_day`.
//!
//! The ledger counts per hour, so each hour's use is placed at the end of its hour (or now, for
//! the current one): a bucket seeded this way refills no faster than the live one would have,
//! and never hands out a limit already spent. Used only when a bucket is created (a new scope
//! in memory, a missing key in Redis); a live bucket knows better.

use std::{collections::HashMap, sync::Arc};

use crate::store::UsageRow;

const DAY: i64 = 86_400;

/// Use per (subject, model): `None` is the subject's scope across models.
type ScopeId = (Arc<str>, Option<Arc<str>>);

/// What the ledger says each subject used, hour by hour, over the last day.
#[derive(Debug, Default)]
pub struct DaySeed {
    /// `(when, requests, tokens)`, oldest first.
    used: HashMap<ScopeId, Vec<(i64, u64, u64)>>,
}

impl DaySeed {
    /// From ledger rows of the last day (per hour); `now` in Unix seconds.
    pub fn from_rows(rows: &[UsageRow], now: i64) -> DaySeed {
        let mut used: HashMap<ScopeId, Vec<(i64, u64, u64)>> = HashMap::new();
        for row in rows {
            if row.hour + 3600 <= now - DAY {
                continue;
            }
            let at = (row.hour + 3600).min(now);
            let requests = u64::try_from(row.requests).unwrap_or(0);
            let tokens = u64::try_from(row.prompt_tokens + row.completion_tokens).unwrap_or(0);
            let subject: Arc<str> = row.key.as_str().into();
            let model: Option<Arc<str>> = (!row.model.is_empty()).then(|| row.model.as_str().into());
            for scope in [(subject.clone(), None), (subject, model)] {
                let entries = used.entry(scope).or_default();
                match entries.iter_mut().find(|(t, _, _)| *t == at) {
                    Some(entry) => {
                        entry.1 += requests;
                        entry.2 += tokens;
                    }
                    None => entries.push((at, requests, tokens)),
                }
            }
        }
        for entries in used.values_mut() {
            entries.sort_by_key(|(t, _, _)| *t);
        }
        DaySeed { used }
    }

    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The levels of a new requests-per-day and tokens-per-day bucket of these limits for
    /// `subject` (and `model`, for a per-model scope) at `now`; `None` where there is no limit
    /// or nothing was used.
    pub fn levels(
        &self,
        subject: &Arc<str>,
        model: Option<&Arc<str>>,
        requests_per_day: Option<u64>,
        tokens_per_day: Option<u64>,
        now: i64,
    ) -> [Option<f64>; 2] {
        let Some(entries) = self.used.get(&(subject.clone(), model.cloned())) else {
            return [None, None];
        };
        let replay = |limit: Option<u64>, pick: fn(&(i64, u64, u64)) -> u64| {
            let limit = limit? as f64;
            let rate = limit / DAY as f64;
            let (mut level, mut t) = (limit, now - DAY);
            for entry in entries {
                level = (level + (entry.0 - t).max(0) as f64 * rate).min(limit) - pick(entry) as f64;
                t = entry.0;
            }
            Some((level + (now - t).max(0) as f64 * rate).min(limit))
        };
        [replay(requests_per_day, |e| e.1), replay(tokens_per_day, |e| e.2)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_days_use_is_replayed_into_a_new_bucket() {
        let now = 1_000_000 * 3600 + 1800;
        let row = |hour, model: &str, requests, tokens| UsageRow {
            key: "k".into(),
            model: model.into(),
            hour,
            requests,
            prompt_tokens: tokens,
            ..UsageRow::default()
        };
        let hour = now - 1800;
        let seed = DaySeed::from_rows(
            &[
                row(hour, "a", 7, 70),
                row(hour, "b", 3, 30),
                row(hour - 2 * DAY, "a", 99, 0),
            ],
            now,
        );
        let k: Arc<str> = "k".into();
        let a: Arc<str> = "a".into();
        // The current hour's use counts in full: placed at now, nothing refilled yet.
        assert_eq!(
            seed.levels(&k, None, Some(100), Some(1000), now),
            [Some(90.0), Some(900.0)]
        );
        assert_eq!(seed.levels(&k, Some(&a), Some(100), None, now), [Some(93.0), None]);
        // Twelve hours later half a day's refill is back.
        let later = seed.levels(&k, None, Some(100), None, now + DAY / 2)[0].expect("level");
        assert!((later - 100.0).abs() < 1e-9, "{later}");
        assert_eq!(seed.levels(&"other".into(), None, Some(100), None, now), [None, None]);
    }
}
