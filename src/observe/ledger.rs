//! Usage accounting: requests and tokens per client key and model, for the current minute, the current day and since start.
//!
//! Windows are calendar-aligned in UTC (the minute and the day a dashboard or an invoice would
//! name), not sliding: "today" means since 00:00 UTC, like Groq's daily limits.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use super::metrics::bounded_arc;
use crate::relay::usage::Usage;

/// A (client or upstream key name, model) pair: the rows of the table.
type KeyModel = (Arc<str>, Arc<str>);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Answered from the cache or a coalesced flight: counted as requests, spending no tokens.
    pub cached: u64,
    /// Refused by a rate limit.
    pub rate_limited: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.total_tokens += other.total_tokens;
        self.cached += other.cached;
        self.rate_limited += other.rate_limited;
    }
}

/// Counts for one calendar window, reset when the window changes.
#[derive(Debug, Clone, Copy, Default)]
struct Windowed {
    window: u64,
    counts: Counts,
}

impl Windowed {
    fn current(&mut self, window: u64) -> &mut Counts {
        if self.window != window {
            self.window = window;
            self.counts = Counts::default();
        }
        &mut self.counts
    }

    fn read(&self, window: u64) -> Counts {
        if self.window == window {
            self.counts
        } else {
            Counts::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Row {
    minute: Windowed,
    day: Windowed,
    total: Counts,
}

/// One event to account.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event {
    pub request: bool,
    pub cached: bool,
    pub rate_limited: bool,
    pub usage: Option<Usage>,
}

impl Event {
    fn counts(&self) -> Counts {
        let usage = self.usage.unwrap_or_default();
        Counts {
            requests: u64::from(self.request),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cached: u64::from(self.cached),
            rate_limited: u64::from(self.rate_limited),
        }
    }
}

/// The most (key, model) rows kept; past it, new pairs are accounted in one `other`/`other`
/// row, so made-up model names or passthrough keys cannot grow the table without bound.
const MAX_ROWS: usize = 4096;

#[derive(Default)]
pub struct Ledger {
    rows: Mutex<BTreeMap<KeyModel, Row>>,
}

fn windows(now: SystemTime) -> (u64, u64) {
    let secs = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    (secs / 60, secs / 86_400)
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelUsage {
    pub model: Arc<str>,
    pub minute: Counts,
    pub day: Counts,
    pub total: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeyUsage {
    pub key: Arc<str>,
    pub minute: Counts,
    pub day: Counts,
    pub total: Counts,
    pub models: Vec<ModelUsage>,
}

impl Ledger {
    pub fn record(&self, key: &Arc<str>, model: &Arc<str>, event: Event) {
        self.record_at(key, model, event, SystemTime::now());
    }

    fn record_at(&self, key: &Arc<str>, model: &Arc<str>, event: Event, now: SystemTime) {
        let (minute, day) = windows(now);
        let counts = event.counts();
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded like metric labels, so neither `/admin/usage` nor `/admin/stats` grows with
        // the length of a name a client made up.
        let mut id = (bounded_arc(key), bounded_arc(model));
        if !rows.contains_key(&id) && rows.len() >= MAX_ROWS {
            // Full (made-up model names, or endless passthrough keys): one overflow row.
            id = ("other".into(), "other".into());
        }
        let row = rows.entry(id).or_default();
        row.minute.current(minute).add(&counts);
        row.day.current(day).add(&counts);
        row.total.add(&counts);
    }

    /// Every key with its models, sorted by name.
    pub fn snapshot(&self) -> Vec<KeyUsage> {
        self.snapshot_at(SystemTime::now())
    }

    fn snapshot_at(&self, now: SystemTime) -> Vec<KeyUsage> {
        let (minute, day) = windows(now);
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<KeyUsage> = Vec::new();
        for ((key, model), row) in rows.iter() {
            let usage = ModelUsage {
                model: model.clone(),
                minute: row.minute.read(minute),
                day: row.day.read(day),
                total: row.total,
            };
            match out.last_mut() {
                Some(last) if last.key == *key => {
                    last.minute.add(&usage.minute);
                    last.day.add(&usage.day);
                    last.total.add(&usage.total);
                    last.models.push(usage);
                }
                _ => out.push(KeyUsage {
                    key: key.clone(),
                    minute: usage.minute,
                    day: usage.day,
                    total: usage.total,
                    models: vec![usage],
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_reset_at_calendar_boundaries() {
        let ledger = Ledger::default();
        let alice: Arc<str> = "alice".into();
        let model: Arc<str> = "m".into();
        let t0 = UNIX_EPOCH + Duration::from_secs(86_400 * 100 + 59);
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cached_tokens: 0,
        };
        let event = Event {
            request: true,
            usage: Some(usage),
            ..Event::default()
        };
        ledger.record_at(&alice, &model, event, t0);
        ledger.record_at(&alice, &model, event, t0 + Duration::from_secs(1));
        let snap = ledger.snapshot_at(t0 + Duration::from_secs(1));
        assert_eq!(snap[0].minute.requests, 1, "a new minute started");
        assert_eq!(snap[0].day.requests, 2);
        assert_eq!(snap[0].total.total_tokens, 30);
        let next_day = ledger.snapshot_at(t0 + Duration::from_secs(86_400));
        assert_eq!(next_day[0].day, Counts::default());
        assert_eq!(next_day[0].total.requests, 2);
    }

    #[test]
    fn names_are_kept_bounded() {
        let ledger = Ledger::default();
        let key: Arc<str> = "k".repeat(1000).into();
        let model: Arc<str> = "m".repeat(8192).into();
        ledger.record(&key, &model, Event::default());
        let snap = ledger.snapshot();
        assert!(snap[0].key.len() <= super::super::metrics::MAX_NAME_BYTES);
        assert!(snap[0].models[0].model.len() <= super::super::metrics::MAX_NAME_BYTES);
        assert!(snap[0].models[0].model.ends_with('…'));
    }
}
