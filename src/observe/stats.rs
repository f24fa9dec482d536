//! The dashboard's figures: ten-second buckets over the last 15 minutes, and the last 50 requests.
//!
//! Latency quantiles come from log-spaced bins (each 25% wider than the last), so a bucket is a
//! fixed array however busy the gateway is, and a quantile is accurate to within one bin.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use serde::Serialize;

use super::metrics::bounded_arc;

pub const BUCKET_SECONDS: u64 = 10;
pub const WINDOW_BUCKETS: usize = 90;
/// Latency and overhead quantiles on the dashboard's cards cover this many buckets (5 minutes).
pub const LATENCY_BUCKETS: usize = 30;
pub const RECENT: usize = 50;

const BINS: usize = 96;
/// The first bin's upper bound, in milliseconds; bin `i` ends at `FIRST * GROWTH^i`.
const FIRST_MS: f64 = 0.01;
const GROWTH: f64 = 1.25;

#[derive(Clone)]
struct Histogram {
    bins: [u32; BINS],
    count: u32,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            bins: [0; BINS],
            count: 0,
        }
    }
}

impl Histogram {
    fn add(&mut self, ms: f64) {
        let index = if ms <= FIRST_MS {
            0
        } else {
            ((ms / FIRST_MS).ln() / GROWTH.ln()).ceil() as usize
        };
        self.bins[index.min(BINS - 1)] += 1;
        self.count += 1;
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.bins.iter_mut().zip(other.bins.iter()) {
            *a += b;
        }
        self.count += other.count;
    }

    /// The upper bound of the bin holding quantile `q`, or `None` without samples.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * f64::from(self.count)).ceil() as u32).max(1);
        let mut seen = 0;
        for (i, n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let ms = FIRST_MS * GROWTH.powi(i as i32);
                return Some((ms * 1000.0).round() / 1000.0);
            }
        }
        None
    }
}

#[derive(Clone, Default)]
struct Bucket {
    /// Which ten seconds since the epoch this bucket holds.
    id: u64,
    requests: u64,
    errors: u64,
    rate_limited: u64,
    latency: Histogram,
    overhead: Histogram,
}

/// One finished request, as the dashboard's table shows it: no prompt, no completion, no key.
/// Names longer than [`super::metrics::MAX_NAME_BYTES`] are cut when it is added.
#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    pub time: f64,
    pub request_id: String,
    pub key: Option<Arc<str>>,
    pub model: Option<Arc<str>>,
    pub route: &'static str,
    pub status: u16,
    pub latency_ms: f64,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cache: Option<&'static str>,
    pub stream: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub t: f64,
    pub requests: u64,
    pub errors: u64,
    pub rate_limited: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub overhead_p50_ms: Option<f64>,
    pub overhead_p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub window_seconds: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub overhead_p50_ms: Option<f64>,
    pub overhead_p99_ms: Option<f64>,
}

struct Inner {
    buckets: Vec<Bucket>,
    recent: VecDeque<Recent>,
}

pub struct Stats {
    inner: Mutex<Inner>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                buckets: vec![Bucket::default(); WINDOW_BUCKETS],
                recent: VecDeque::with_capacity(RECENT),
            }),
        }
    }
}

/// What one finished request adds to the figures.
pub struct Sample {
    pub now_secs: f64,
    pub latency_ms: f64,
    pub overhead_ms: Option<f64>,
    pub error: bool,
    pub rate_limited: bool,
}

impl Stats {
    pub fn add(&self, sample: Sample, recent: Option<Recent>) {
        let id = sample.now_secs as u64 / BUCKET_SECONDS;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut inner.buckets[(id % WINDOW_BUCKETS as u64) as usize];
        if slot.id != id {
            *slot = Bucket {
                id,
                ..Bucket::default()
            };
        }
        slot.requests += 1;
        slot.errors += u64::from(sample.error);
        slot.rate_limited += u64::from(sample.rate_limited);
        slot.latency.add(sample.latency_ms);
        if let Some(overhead) = sample.overhead_ms {
            slot.overhead.add(overhead);
        }
        if let Some(mut recent) = recent {
            // The model is whatever the client sent: bounded like a metric label.
            recent.model = recent.model.as_ref().map(bounded_arc);
            recent.key = recent.key.as_ref().map(bounded_arc);
            if inner.recent.len() == RECENT {
                inner.recent.pop_back();
            }
            inner.recent.push_front(recent);
        }
    }

    /// The last 15 minutes, oldest first, one point per bucket (zeros where nothing happened),
    /// the latency over the last 5 minutes, and the recent requests, newest first.
    pub fn snapshot(&self, now_secs: f64) -> (Vec<Point>, Latency, Vec<Recent>) {
        let current = now_secs as u64 / BUCKET_SECONDS;
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut points = Vec::with_capacity(WINDOW_BUCKETS);
        let mut latency = Histogram::default();
        let mut overhead = Histogram::default();
        for age in (0..WINDOW_BUCKETS as u64).rev() {
            let Some(id) = current.checked_sub(age) else {
                continue;
            };
            let slot = &inner.buckets[(id % WINDOW_BUCKETS as u64) as usize];
            let t = (id * BUCKET_SECONDS) as f64;
            if slot.id != id {
                points.push(Point {
                    t,
                    requests: 0,
                    errors: 0,
                    rate_limited: 0,
                    p50_ms: None,
                    p99_ms: None,
                    overhead_p50_ms: None,
                    overhead_p99_ms: None,
                });
                continue;
            }
            if age < LATENCY_BUCKETS as u64 {
                latency.merge(&slot.latency);
                overhead.merge(&slot.overhead);
            }
            points.push(Point {
                t,
                requests: slot.requests,
                errors: slot.errors,
                rate_limited: slot.rate_limited,
                p50_ms: slot.latency.quantile(0.5),
                p99_ms: slot.latency.quantile(0.99),
                overhead_p50_ms: slot.overhead.quantile(0.5),
                overhead_p99_ms: slot.overhead.quantile(0.99),
            });
        }
        let summary = Latency {
            window_seconds: LATENCY_BUCKETS as u64 * BUCKET_SECONDS,
            p50_ms: latency.quantile(0.5),
            p99_ms: latency.quantile(0.99),
            overhead_p50_ms: overhead.quantile(0.5),
            overhead_p99_ms: overhead.quantile(0.99),
        };
        (points, summary, inner.recent.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now_secs: f64, latency_ms: f64) -> Sample {
        Sample {
            now_secs,
            latency_ms,
            overhead_ms: Some(latency_ms / 10.0),
            error: false,
            rate_limited: false,
        }
    }

    #[test]
    fn quantiles_are_within_one_bin() {
        let stats = Stats::default();
        for i in 1..=100 {
            stats.add(sample(1000.0, f64::from(i)), None);
        }
        let (points, latency, _) = stats.snapshot(1000.0);
        assert_eq!(points.len(), WINDOW_BUCKETS);
        assert_eq!(points.last().map(|p| p.requests), Some(100));
        let p50 = latency.p50_ms.expect("p50");
        let p99 = latency.p99_ms.expect("p99");
        assert!((50.0..=62.5).contains(&p50), "{p50}");
        assert!((99.0..=124.0).contains(&p99), "{p99}");
    }

    #[test]
    fn old_buckets_fall_out_of_the_window() {
        let stats = Stats::default();
        stats.add(sample(1000.0, 1.0), None);
        let (points, _, _) = stats.snapshot(1000.0 + (WINDOW_BUCKETS as f64) * BUCKET_SECONDS as f64);
        assert_eq!(points.iter().map(|p| p.requests).sum::<u64>(), 0);
    }
}
