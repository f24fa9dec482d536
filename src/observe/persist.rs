//! The persistent usage ledger's buffer: what finished requests add (per key, model and hour), summed in memory and written to the store in one batch every `database.flush_interval` by one task, never on the request path.
//!
//! Rows, not requests, are buffered: a row per (key, model, hour) whatever the traffic, so
//! the buffer's bound (`database.max_buffered_rows`) is about distinct keys and models over
//! the hours of an outage, not about request rates. A batch the database refuses goes back
//! into the buffer (summed with what arrived meanwhile) and is written when it answers again;
//! a row that does not fit is dropped, counted in `groxy_ledger_dropped_rows_total` and
//! logged once per outage.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use crate::{
    calendar,
    store::{Store, StoreError, UsageRow},
};

/// What one event adds to a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub refusals: u64,
    pub cost_nanos: u64,
}

impl Delta {
    fn add(&mut self, other: &Delta) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.cached_tokens += other.cached_tokens;
        self.refusals += other.refusals;
        self.cost_nanos += other.cost_nanos;
    }
}

type RowKey = (Arc<str>, Arc<str>, i64);

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Rows waiting to be written.
pub struct Pending {
    rows: Mutex<HashMap<RowKey, Delta>>,
    max_rows: usize,
    dropped: AtomicU64,
    /// Set while rows are being dropped, so the warning is logged once per episode.
    overflowing: AtomicBool,
}

impl Pending {
    pub fn new(max_rows: usize) -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
            max_rows: max_rows.max(1),
            dropped: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RowKey, Delta>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `delta` to the row of `subject` and `model` for the current hour.
    pub fn add(&self, subject: &Arc<str>, model: &Arc<str>, delta: Delta) {
        let key = (subject.clone(), model.clone(), calendar::hour_start(calendar::now()));
        self.merge(key, delta);
    }

    fn merge(&self, key: RowKey, delta: Delta) {
        let mut rows = self.lock();
        let full = rows.len() >= self.max_rows;
        match rows.get_mut(&key) {
            Some(row) => row.add(&delta),
            None if !full => {
                rows.insert(key, delta);
            }
            None => {
                drop(rows);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        max_buffered_rows = self.max_rows,
                        "the usage ledger's buffer is full while the database is unreachable: new rows are dropped (groxy_ledger_dropped_rows_total)"
                    );
                }
            }
        }
    }

    /// Rows dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Everything buffered, as rows (for a report that must include what is not written yet).
    pub fn snapshot(&self) -> Vec<UsageRow> {
        self.lock().iter().map(|(key, delta)| row(key, delta)).collect()
    }

    fn take(&self) -> Vec<UsageRow> {
        std::mem::take(&mut *self.lock())
            .iter()
            .map(|(key, delta)| row(key, delta))
            .collect()
    }

    /// Puts back a batch the database did not take, summed with what arrived meanwhile.
    fn restore(&self, rows: Vec<UsageRow>) {
        for r in rows {
            let key = (r.key.as_str().into(), r.model.as_str().into(), r.hour);
            self.merge(
                key,
                Delta {
                    requests: uint(r.requests),
                    prompt_tokens: uint(r.prompt_tokens),
                    completion_tokens: uint(r.completion_tokens),
                    cached_tokens: uint(r.cached_tokens),
                    refusals: uint(r.refusals),
                    cost_nanos: uint(r.cost_nanos),
                },
            );
        }
    }

    /// Writes every buffered row in one transaction; on failure they go back into the buffer.
    /// `Ok(n)`: rows written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let rows = self.take();
        if rows.is_empty() {
            return Ok(0);
        }
        match store.add_usage(&rows).await {
            Ok(()) => {
                if self.len() < self.max_rows {
                    self.overflowing.store(false, Ordering::Relaxed);
                }
                Ok(rows.len())
            }
            Err(error) => {
                self.restore(rows);
                Err(error)
            }
        }
    }
}

fn row(key: &RowKey, delta: &Delta) -> UsageRow {
    UsageRow {
        key: key.0.to_string(),
        model: key.1.to_string(),
        hour: key.2,
        requests: int(delta.requests),
        prompt_tokens: int(delta.prompt_tokens),
        completion_tokens: int(delta.completion_tokens),
        cached_tokens: int(delta.cached_tokens),
        refusals: int(delta.refusals),
        cost_nanos: int(delta.cost_nanos),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_and_the_bound_drops_new_rows_only() {
        let pending = Pending::new(2);
        let (a, b, c, m): (Arc<str>, Arc<str>, Arc<str>, Arc<str>) = ("a".into(), "b".into(), "c".into(), "m".into());
        let one = Delta {
            requests: 1,
            cost_nanos: 5,
            ..Delta::default()
        };
        pending.add(&a, &m, one);
        pending.add(&a, &m, one);
        pending.add(&b, &m, one);
        pending.add(&c, &m, one);
        assert_eq!(pending.dropped(), 1);
        pending.add(&a, &m, one);
        let rows = pending.take();
        let a_row = rows.iter().find(|r| r.key == "a").expect("a");
        assert_eq!((a_row.requests, a_row.cost_nanos), (3, 15));
        pending.restore(rows);
        pending.add(&a, &m, one);
        assert_eq!(pending.snapshot().iter().map(|r| r.requests).sum::<i64>(), 5);
    }
}
