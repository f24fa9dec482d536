//! Observation's tap on the exchange with Groq: its timings, request id, budget headers, failure kind and token usage, read as they pass.

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::{metrics, observer::Observer, record::Record};
use crate::relay::{Outcome, Report, Tap};

/// Watches one exchange with Groq on behalf of one request's record: the wait for Groq's
/// budget, when the request left and its answer was ready (groxy's overhead is the rest), Groq's
/// status, request id and budget headers, the failure kind, the duration, and the token usage.
pub struct ExchangeTap {
    observer: Arc<Observer>,
    record: Arc<Record>,
    /// `key-1`, … for configured keys; `None` for a caller's own key (passthrough), whose
    /// budget is theirs, not the team's.
    key: Option<Arc<str>>,
    sent: Option<Instant>,
    status: Option<StatusCode>,
}

impl ExchangeTap {
    pub fn new(observer: Arc<Observer>, record: Arc<Record>) -> Self {
        Self {
            observer,
            record,
            key: None,
            sent: None,
            status: None,
        }
    }

    fn model(&self) -> Arc<str> {
        let model = self.record.data().model.clone();
        self.observer.metrics.models.get(model.as_deref().unwrap_or(""))
    }
}

impl Tap for ExchangeTap {
    fn queued(&mut self, waited: Duration) {
        self.record.queued(waited);
    }

    fn sent(&mut self, upstream_key: Option<usize>) {
        self.key = upstream_key.map(|index| format!("key-{}", index + 1).into());
        self.sent = Some(Instant::now());
        self.record.upstream_sent();
    }

    fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        {
            let mut data = self.record.data();
            data.upstream_status = Some(status.as_u16());
            data.upstream_key = self.key.clone();
            data.upstream_request_id = headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.chars().take(128).collect());
        }
        let m = &self.observer.metrics;
        if status.is_server_error() {
            m.upstream_error("status_5xx");
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            m.upstream_error("status_429");
        }
        if let Some(key) = &self.key {
            let model = self.model();
            self.observer.groq_budget.observe(m, key.clone(), model, headers);
        }
    }

    fn ready(&mut self) {
        self.record.upstream_ready();
    }

    fn end(&mut self, report: &Report) {
        self.record.data().upstream_outcome = Some(report.outcome);
        if let Some(usage) = report.usage {
            self.observer.usage(&self.record, usage);
        }
        let m = &self.observer.metrics;
        let ready = self.record.data().upstream_ready;
        // A failure before the answer could be relayed counts by its kind; one after the
        // client had the head is a broken stream, whatever broke it.
        match (report.outcome, ready, report.upstream_error) {
            (Outcome::Failed, None, Some(kind)) => m.upstream_error(kind),
            (Outcome::Failed, Some(_), _) if self.status.is_some_and(|s| s.is_success()) => {
                m.upstream_error("stream_broken")
            }
            _ => {}
        }
        let (Some(sent), Some(status)) = (self.sent, self.status) else {
            return;
        };
        let model = self.model();
        m.upstream_duration
            .get_or_create(&metrics::ModelLabels { model: model.clone() })
            .observe(sent.elapsed().as_secs_f64());
        if let (Some(ready), true) = (ready, status.is_success()) {
            m.upstream_ttft
                .get_or_create(&metrics::ModelLabels { model })
                .observe(ready.saturating_duration_since(sent).as_secs_f64());
        }
    }
}
