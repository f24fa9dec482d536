//! The persistent usage ledger's buffer: what finished requests add (per key, model and hour), summed in memory and written to the store in one batch every `database.flush_interval` by one task, never on the request path.
//!
//! Rows, not requests, are buffered: a row per (key, model, hour) whatever the traffic, so
//! the buffer's bound (`database.max_buffered_rows`) is about distinct keys and models over
//! the hours of an outage, not about request rates. A batch the database refuses stays
//! in the buffer (rows leave it only once written) and is written when it answers again;
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
    flushing: tokio::sync::Mutex<()>,
}

impl Pending {
    pub fn new(max_rows: usize) -> Self {
        Self {
            rows: Mutex::new(HashMap::new()),
            max_rows: max_rows.max(1),
            dropped: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
            flushing: tokio::sync::Mutex::new(()),
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

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Everything buffered, as rows (for a report that must include what is not written yet).
    pub fn snapshot(&self) -> Vec<UsageRow> {
        self.lock().iter().map(|(key, delta)| row(key, delta)).collect()
    }

    /// Takes back what a batch wrote: rows stay in the buffer while they are written (so
    /// the bound counts them, and what arrives meanwhile adds to them), and go when written.
    fn subtract(&self, written: &[UsageRow]) {
        let mut rows = self.lock();
        for w in written {
            let key = (w.key.as_str().into(), w.model.as_str().into(), w.hour);
            let Some(row) = rows.get_mut(&key) else { continue };
            row.requests -= uint(w.requests).min(row.requests);
            row.prompt_tokens -= uint(w.prompt_tokens).min(row.prompt_tokens);
            row.completion_tokens -= uint(w.completion_tokens).min(row.completion_tokens);
            row.cached_tokens -= uint(w.cached_tokens).min(row.cached_tokens);
            row.refusals -= uint(w.refusals).min(row.refusals);
            row.cost_nanos -= uint(w.cost_nanos).min(row.cost_nanos);
            if *row == Delta::default() {
                rows.remove(&key);
            }
        }
    }

    /// Writes every buffered row in one transaction; what the database does not take stays
    /// buffered for the next round. `Ok(n)`: rows written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        // One batch at a time (the writer's and the drain's): a row is subtracted only after
        // its batch is written, so two batches in flight would write it twice.
        let _one_at_a_time = self.flushing.lock().await;
        let rows = self.snapshot();
        if rows.is_empty() {
            return Ok(0);
        }
        store.add_usage(&rows).await?;
        self.subtract(&rows);
        if self.len() < self.max_rows {
            self.overflowing.store(false, Ordering::Relaxed);
        }
        Ok(rows.len())
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
        let rows = pending.snapshot();
        let a_row = rows.iter().find(|r| r.key == "a").expect("a");
        assert_eq!((a_row.requests, a_row.cost_nanos), (3, 15));
        // Written while more arrived: the new part stays, the written rows go.
        pending.add(&a, &m, one);
        pending.subtract(&rows);
        let left = pending.snapshot();
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].key.as_str(), left[0].requests), ("a", 1));
    }
}
