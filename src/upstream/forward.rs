//! One forward path for every route: pick the upstream key (waiting for Groq's budget), send, and relay, telling the taps each step.

use std::sync::Arc;

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{Upstream, UpstreamKey, UpstreamRequest};
use crate::{
    budget::{BudgetTap, UpstreamBudget},
    error::GatewayError,
    relay::{self, RelayContext, Taps},
};

/// The request body as it goes to Groq.
pub enum ForwardBody {
    /// Validated bytes (JSON) or nothing.
    Whole(Bytes),
    /// An upload, streamed as the client sends it; it cannot be replayed.
    Streamed(reqwest::Body),
}

/// Everything needed to send one request to Groq, owned, so a flight's driver task can do it
/// after the client that started it has gone.
pub struct Forward {
    pub upstream: Upstream,
    /// Groq's budget, when groxy paces requests by it (`rate_limits.upstream_aware`).
    pub budget: Option<Arc<UpstreamBudget>>,
    /// Cancelled at the drain deadline: nothing is sent after it, a request still waiting for
    /// Groq's budget or headers ends with a 503, and a relayed body ends with an error.
    pub abort: CancellationToken,
    pub method: Method,
    /// Built by the route table from checked parts only.
    pub path: std::borrow::Cow<'static, str>,
    pub headers: HeaderMap,
    pub body: ForwardBody,
    /// The caller's own `Authorization` (passthrough mode), sent instead of a configured key.
    pub caller_key: Option<HeaderValue>,
    pub model: Option<Arc<str>>,
    /// Tokens to ask Groq's budget for: the prompt and the completion the request caps.
    pub upstream_tokens: u64,
    pub started: Instant,
    /// The request's span: a flight's driver runs in a task of its own, where the current
    /// span is no longer the request's.
    pub span: tracing::Span,
}

impl Forward {
    /// Picks the upstream key (waiting for Groq's budget if need be), sends, and relays. The
    /// taps hear of every step and of the end, whatever it is.
    ///
    /// Past the drain deadline nothing is sent (a flight's driver runs in its own task, so the
    /// handler's 503 alone would not stop it), and a wait for the budget or for Groq's headers
    /// ends with a 503 `server_shutting_down`.
    pub async fn send(self, mut taps: Taps) -> Result<Response, GatewayError> {
        let abort = self.abort.clone();
        let picked = tokio::select! {
            biased;
            () = abort.cancelled() => Err(GatewayError::ShuttingDown),
            picked = self.pick_key(&mut taps) => picked,
        };
        let key = match picked {
            Ok(key) => key,
            Err(error) => {
                taps.fail(&error);
                return Err(error);
            }
        };
        let deadlines = self.upstream.deadlines(self.started);
        let (body, streamed_body) = match self.body {
            ForwardBody::Whole(bytes) => (reqwest::Body::from(bytes), false),
            ForwardBody::Streamed(body) => (body, true),
        };
        let request = UpstreamRequest {
            method: self.method,
            path: &self.path,
            headers: &self.headers,
            body,
            streamed_body,
            key: key.clone(),
        };
        if abort.is_cancelled() {
            taps.fail(&GatewayError::ShuttingDown);
            return Err(GatewayError::ShuttingDown);
        }
        let configured = match key {
            UpstreamKey::Configured(index) => Some(index),
            UpstreamKey::Caller(_) => None,
        };
        taps.sent(configured);
        let sent = tokio::select! {
            biased;
            () = abort.cancelled() => Err(GatewayError::ShuttingDown),
            sent = self.upstream.send(request, self.started, &deadlines) => sent,
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                taps.fail(&error);
                return Err(error);
            }
        };
        // Groq's budget shared with the other replicas learns this answer before the client
        // does, so a request the client sends next, to any replica, is counted against it.
        if let (Some(budget), Some(model), Some(index)) = (&self.budget, &self.model, configured) {
            budget.share(index, model, response.status(), response.headers()).await;
        }
        let context = RelayContext {
            started: self.started,
            deadlines,
            abort: self.abort,
            taps,
        };
        relay::respond(response, context).await
    }

    /// The caller's own key; or the first configured key whose Groq budget fits the request,
    /// waiting in Groq's queue if none does yet.
    async fn pick_key(&self, taps: &mut Taps) -> Result<UpstreamKey, GatewayError> {
        if let Some(own) = &self.caller_key {
            return Ok(UpstreamKey::Caller(own.clone()));
        }
        let (Some(budget), Some(model)) = (&self.budget, &self.model) else {
            return Ok(UpstreamKey::Configured(0));
        };
        let queued = Instant::now();
        let acquired = tracing::Instrument::instrument(
            budget.acquire(model, self.upstream_tokens),
            tracing::info_span!(target: "groxy::otel", parent: &self.span, "step", otel.name = "budget.wait"),
        )
        .await;
        // An immediate grant is groxy's own work (overhead); only a real wait is queueing.
        let waited = queued.elapsed();
        if waited >= std::time::Duration::from_millis(1) {
            taps.queued(waited);
        }
        let index = acquired.map_err(|exhausted| GatewayError::UpstreamBudget {
            model: model.to_string(),
            retry_after: exhausted.retry_after,
            headers: Box::new(budget.snapshot(model)),
        })?;
        taps.push(BudgetTap {
            budget: Arc::clone(budget),
            key: index,
            model: Arc::clone(model),
        });
        Ok(UpstreamKey::Configured(index))
    }
}
