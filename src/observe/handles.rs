//! Metric series kept once first counted, so counting a request is not a hash of its labels into a family each time.
//!
//! Why: a family's `get_or_create` hashes the label set (SipHash) and takes the family's lock,
//! about 350 instructions, and a request counted nine of them. A series handle shares its
//! counts with the family (its state is behind an `Arc`), and a family never drops a series,
//! so a kept handle stays the exported series. A handle is taken from its family the first
//! time that series is counted, exactly when `get_or_create` used to create it: the scrape
//! shows the same series at the same moments.

use std::sync::{Arc, Mutex, OnceLock, atomic::AtomicU64};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

/// Handles by a small key (a route, a status, a cache result): few enough for a scan.
pub struct Handles<K, M>(Mutex<Vec<(K, M)>>);

impl<K, M> Default for Handles<K, M> {
    fn default() -> Self {
        Self(Mutex::new(Vec::new()))
    }
}

impl<K: PartialEq, M: Clone> Handles<K, M> {
    /// The handle kept for `key`, else the one `make` takes from its family (then kept).
    pub fn get(&self, key: K, make: impl FnOnce() -> M) -> M {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, handle)) = kept.iter().find(|(k, _)| *k == key) {
            return handle.clone();
        }
        let handle = make();
        kept.push((key, handle.clone()));
        handle
    }
}

/// The series of one model label value.
#[derive(Default)]
pub struct ModelSeries {
    pub upstream_duration: OnceLock<Histogram>,
    pub upstream_ttft: OnceLock<Histogram>,
    pub cost: OnceLock<Counter<f64, AtomicU64>>,
    /// `prompt`, then `completion`.
    pub tokens: [OnceLock<Counter>; 2],
    /// By route and status.
    pub requests: Handles<(&'static str, u16), Counter>,
}

/// A model label value and its series.
#[derive(Clone)]
pub struct Label {
    pub name: Arc<str>,
    pub series: Arc<ModelSeries>,
}

impl Label {
    pub fn new(name: Arc<str>) -> Self {
        Label {
            name,
            series: Arc::default(),
        }
    }
}
