//! One forward path for every route: pick the upstream key (waiting for Groq's budget), send, and relay, telling the taps each step; an attempt that fails while nothing has reached the client is made again, bounded (`retry`).
//!
//! Attempts, for one request: the model as requested, retried on another key after a jittered
//! backoff when Groq failed in a way that says "not now" (`retry::Failure`); a flex request Groq
//! turned away with 498 at `on_demand` (opt-in); the configured fallback models, when the model
//! is over capacity (498, 503) or its retries are spent. Never once a byte of the answer went to
//! the client, never a streamed upload (its body is gone once sent). The client's answer says
//! how many attempts it took (`x-groxy-attempts`) and, after a fallback, which model answered
//! (`x-groxy-model`).

use std::{sync::Arc, time::Duration};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::body::{RequestBody, Streamed};
use super::client::{Upstream, UpstreamKey, UpstreamRequest};
use super::retry::{self, Failure, Waits};
use crate::{
    budget::UpstreamBudget,
    error::GatewayError,
    limits::Admission,
    relay::{self, Deadlines, Early, EarlyFailure, RelayContext, Retry, Taps},
    wire::ratelimit::GroqBudgetHeaders,
};

/// How many attempts an answer took, on every answer that went to Groq (errors included).
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-groxy-attempts");
/// The model that answered, when it is a fallback rather than the one requested.
pub const MODEL_HEADER: HeaderName = HeaderName::from_static("x-groxy-model");

/// The request body as it goes to Groq.
pub enum ForwardBody {
    /// Validated bytes (JSON) or nothing: replayable, so retried when Groq fails early.
    Whole(Bytes),
    /// An upload, streamed as the client sends it; it cannot be replayed, so never retried.
    Streamed(Streamed),
}

/// Admits a fallback model under the caller's per-model limits: the hold to keep until the
/// answer ends, or `None` when they refuse it. Built by the route, which knows the caller.
pub type AdmitModel = Arc<dyn Fn(Arc<str>) -> BoxFuture<'static, Option<Admission>> + Send + Sync>;

/// A model the request may go to instead of the one requested, with the body to send it.
pub struct Target {
    pub model: Arc<str>,
    /// The checked request with only `model` changed.
    pub body: Bytes,
    /// The same at `service_tier: "on_demand"`, for a flex request (opt-in).
    pub on_demand: Option<Bytes>,
}

/// What a request may try besides the body it came with; nothing by default.
#[derive(Default)]
pub struct Alternatives {
    /// The request at `service_tier: "on_demand"`: only for a flex request, and only with
    /// `models.flex_fallback_to_on_demand`.
    pub on_demand: Option<Bytes>,
    /// `models.fallbacks` of the requested model, in order, already checked against the catalogue.
    pub fallbacks: Vec<Target>,
    /// The caller's per-model limits for a fallback; without it no fallback is tried.
    pub admit: Option<AdmitModel>,
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
    /// The request's server span (disabled when tracing is off or the request not sampled): a
    /// flight's driver runs in a task of its own, where the current span is no longer the
    /// request's.
    pub span: tracing::Span,
    /// Fallback models and the on-demand rewrite of a flex request.
    pub alternatives: Alternatives,
    /// The shape of the endpoint's event streams, for an error event mid-stream.
    pub dialect: relay::Dialect,
}

/// What one attempt came to, as the client would get it if no other attempt followed.
enum Outcome {
    /// Groq's answer, nothing of it relayed yet.
    Answer(Early),
    /// No answer: the key could not be picked, the connection failed, a deadline passed.
    Error(GatewayError),
    /// A successful stream that failed before its first bytes.
    AfterHead(EarlyFailure),
}

struct Attempt {
    outcome: Outcome,
    /// Set when the outcome is worth another attempt.
    failure: Option<Failure>,
    retry_after: Option<Duration>,
    /// The configured key it went out on.
    key: Option<usize>,
    sent: bool,
}

impl Attempt {
    fn unsent(error: GatewayError) -> Attempt {
        Attempt {
            outcome: Outcome::Error(error),
            failure: None,
            retry_after: None,
            key: None,
            sent: false,
        }
    }
}

/// The model and body the next attempt goes with.
struct Current {
    model: Option<Arc<str>>,
    body: Bytes,
    on_demand: Option<Bytes>,
    /// A fallback, not the model requested.
    fallback: bool,
    /// Retries this model took so far.
    retries: u32,
}

impl Forward {
    /// Sends, retrying while nothing has reached the client (see the module docs), and relays
    /// the answer. The taps hear of every attempt, of every retry and of the one end.
    ///
    /// Past the drain deadline nothing is sent (a flight's driver runs in its own task, so the
    /// handler's 503 alone would not stop it), and a wait for the budget, for Groq's headers or
    /// between attempts ends with a 503 `server_shutting_down`.
    pub async fn send(mut self, mut taps: Taps) -> Result<Response, GatewayError> {
        let deadlines = self.upstream.deadlines(self.started);
        let mut waits = Waits::new(self.upstream.retries());
        let alternatives = std::mem::take(&mut self.alternatives);
        let mut fallbacks = alternatives.fallbacks.into_iter();
        let (mut streamed, whole) = match std::mem::replace(&mut self.body, ForwardBody::Whole(Bytes::new())) {
            ForwardBody::Whole(bytes) => (None, bytes),
            ForwardBody::Streamed(body) => (Some(body), Bytes::new()),
        };
        let replayable = streamed.is_none();
        let mut current = Current {
            model: self.model.clone(),
            body: whole,
            on_demand: alternatives.on_demand,
            fallback: false,
            retries: 0,
        };
        let mut attempts = 0u32;
        let mut avoid = None;
        loop {
            let body = match streamed.take() {
                Some(body) => (RequestBody::Streamed(body), true),
                None => (RequestBody::whole(current.body.clone()), false),
            };
            let attempt = self
                .attempt(&mut taps, body, current.model.as_ref(), avoid, &deadlines)
                .await;
            attempts += u32::from(attempt.sent);
            avoid = attempt.key.or(avoid);
            let Some(failure) = attempt.failure.filter(|_| replayable) else {
                return self.finish(attempt.outcome, taps, attempts, &current, deadlines);
            };
            let Some((next, wait)) = self
                .next_attempt(
                    failure,
                    attempt.retry_after,
                    &mut current,
                    &mut fallbacks,
                    &alternatives.admit,
                    &mut waits,
                    &mut taps,
                    &deadlines,
                )
                .await
            else {
                return self.finish(attempt.outcome, taps, attempts, &current, deadlines);
            };
            drop(attempt.outcome);
            tracing::info!(
                attempt = attempts,
                reason = failure.label(),
                next,
                model = current.model.as_deref(),
                wait_ms = wait.as_millis() as u64,
                "Groq failed before any byte reached the client; trying again"
            );
            taps.retried(&Retry {
                reason: failure.label(),
                next,
                model: current.model.as_deref().filter(|_| current.fallback),
            });
            if !wait.is_zero() {
                tokio::select! {
                    biased;
                    () = self.abort.cancelled() => {
                        return self.finish(Outcome::Error(GatewayError::ShuttingDown), taps, attempts, &current, deadlines);
                    }
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// What the next attempt changes (`on_demand`, `fallback`, `same_model`) and how long to
    /// wait before it; `None` when there is none to make.
    #[expect(
        clippy::too_many_arguments,
        reason = "the state of one retry loop, borrowed piecewise"
    )]
    async fn next_attempt(
        &self,
        failure: Failure,
        retry_after: Option<Duration>,
        current: &mut Current,
        fallbacks: &mut std::vec::IntoIter<Target>,
        admit: &Option<AdmitModel>,
        waits: &mut Waits,
        taps: &mut Taps,
        deadlines: &Deadlines,
    ) -> Option<(&'static str, Duration)> {
        if failure == Failure::Status(498) {
            if let Some(on_demand) = current.on_demand.take() {
                current.body = on_demand;
                return Some(("on_demand", Duration::ZERO));
            }
        }
        // Over capacity, another model is the better bet than the same one again.
        if failure.over_capacity() && Self::fall_back(current, fallbacks, admit, taps).await {
            return Some(("fallback", Duration::ZERO));
        }
        if current.retries < waits.attempts() {
            if let Some(wait) = waits.next(current.retries, retry_after) {
                // A wait that would end past the first-byte deadline could only end in a 504.
                if Instant::now() + wait < deadlines.first_byte {
                    current.retries += 1;
                    return Some(("same_model", wait));
                }
            }
        }
        if !failure.over_capacity() && Self::fall_back(current, fallbacks, admit, taps).await {
            return Some(("fallback", Duration::ZERO));
        }
        None
    }

    /// Moves to the next fallback the caller's per-model limits admit (its hold joins the taps,
    /// settled with the answer); `false` when none is left.
    async fn fall_back(
        current: &mut Current,
        fallbacks: &mut std::vec::IntoIter<Target>,
        admit: &Option<AdmitModel>,
        taps: &mut Taps,
    ) -> bool {
        let Some(admit) = admit else { return false };
        for target in fallbacks.by_ref() {
            match admit(Arc::clone(&target.model)).await {
                Some(admission) => {
                    taps.push(admission);
                    *current = Current {
                        model: Some(target.model),
                        body: target.body,
                        on_demand: target.on_demand,
                        fallback: true,
                        retries: 0,
                    };
                    return true;
                }
                None => tracing::info!(model = %target.model, "fallback skipped: the caller's limits for it refuse"),
            }
        }
        false
    }

    /// One attempt: a key, the request, Groq's head (and a stream's first bytes).
    async fn attempt(
        &self,
        taps: &mut Taps,
        (body, streamed_body): (RequestBody, bool),
        model: Option<&Arc<str>>,
        avoid: Option<usize>,
        deadlines: &Deadlines,
    ) -> Attempt {
        let picked = tokio::select! {
            biased;
            () = self.abort.cancelled() => Err(GatewayError::ShuttingDown),
            picked = self.pick_key(taps, model, avoid) => picked,
        };
        let key = match picked {
            Ok(key) => key,
            Err(error) => return Attempt::unsent(error),
        };
        if self.abort.is_cancelled() {
            return Attempt::unsent(GatewayError::ShuttingDown);
        }
        let configured = match key {
            UpstreamKey::Configured(index) => Some(index),
            UpstreamKey::Caller(_) => None,
        };
        let request = UpstreamRequest {
            method: self.method.clone(),
            path: &self.path,
            headers: &self.headers,
            body,
            streamed_body,
            key,
        };
        taps.sent(configured);
        let sent = tokio::select! {
            biased;
            () = self.abort.cancelled() => Err(GatewayError::ShuttingDown),
            sent = self.upstream.send(request, self.started, deadlines) => sent,
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt {
                    failure: Failure::of_error(&error),
                    outcome: Outcome::Error(error),
                    retry_after: None,
                    key: configured,
                    sent: true,
                };
            }
        };
        let status = response.status();
        if let Some(index) = configured {
            // Read once, for the budget here and for the operators' report (the taps).
            let seen = GroqBudgetHeaders::read(response.headers());
            if let (Some(budget), Some(model)) = (&self.budget, model) {
                let report = budget.observe_read(index, model, status, response.headers(), &seen);
                // The budget shared with the other replicas learns this answer before the
                // client does, so a request the client sends next, to any replica, is counted
                // against it.
                budget.share(index, model, report).await;
            }
            taps.budget(seen);
        }
        let failure = Failure::of_status(status);
        let retry_after = failure.and_then(|_| retry::retry_after(response.headers()));
        let (outcome, failure) = match relay::early(response, deadlines, self.started).await {
            Ok(early) => (Outcome::Answer(early), failure),
            Err(failed) => {
                let failure = Failure::of_error(&failed.error);
                (Outcome::AfterHead(failed), failure)
            }
        };
        Attempt {
            outcome,
            failure,
            retry_after,
            key: configured,
            sent: true,
        }
    }

    /// The client's answer from the last attempt, marked with the attempts it took.
    fn finish(
        self,
        outcome: Outcome,
        mut taps: Taps,
        attempts: u32,
        current: &Current,
        deadlines: Deadlines,
    ) -> Result<Response, GatewayError> {
        let result = match outcome {
            Outcome::Answer(early) => Ok(early.respond(RelayContext {
                started: self.started,
                dialect: self.dialect,
                deadlines,
                abort: self.abort,
                taps,
            })),
            Outcome::Error(error) => {
                taps.fail(&error);
                Err(error)
            }
            Outcome::AfterHead(failed) => {
                taps.start(failed.status, &failed.headers);
                taps.fail(&failed.error);
                Err(failed.error)
            }
        };
        if attempts == 0 {
            return result;
        }
        let mut response = result.unwrap_or_else(IntoResponse::into_response);
        let headers = response.headers_mut();
        headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
        if let Some(model) = current.model.as_deref().filter(|_| current.fallback) {
            if let Ok(value) = HeaderValue::from_str(model) {
                headers.insert(MODEL_HEADER, value);
            }
        }
        Ok(response)
    }

    /// The caller's own key; or the first configured key whose Groq budget fits the request,
    /// waiting in Groq's queue if none does yet, `avoid` (the key the last attempt failed on)
    /// only if no other fits.
    async fn pick_key(
        &self,
        taps: &mut Taps,
        model: Option<&Arc<str>>,
        avoid: Option<usize>,
    ) -> Result<UpstreamKey, GatewayError> {
        if let Some(own) = &self.caller_key {
            return Ok(UpstreamKey::Caller(own.clone()));
        }
        let (Some(budget), Some(model)) = (&self.budget, model) else {
            let keys = self.upstream.key_count().max(1);
            return Ok(UpstreamKey::Configured(avoid.map_or(0, |key| (key + 1) % keys)));
        };
        let queued = Instant::now();
        // A child of the request's span only: with that disabled (tracing off, or the request
        // not sampled) the step would be a root span of a trace of its own.
        let span = if self.span.is_disabled() {
            tracing::Span::none()
        } else {
            tracing::info_span!(target: "groxy::otel", parent: &self.span, "step", otel.name = "budget.wait")
        };
        let acquired =
            tracing::Instrument::instrument(budget.acquire_avoiding(model, self.upstream_tokens, avoid), span).await;
        // An immediate grant is groxy's own work (overhead); only a real wait is queueing.
        let waited = queued.elapsed();
        if waited >= Duration::from_millis(1) {
            taps.queued(waited);
        }
        let index = acquired.map_err(|exhausted| GatewayError::UpstreamBudget {
            model: model.to_string(),
            retry_after: exhausted.retry_after,
            headers: Box::new(budget.snapshot(model)),
        })?;
        Ok(UpstreamKey::Configured(index))
    }
}
