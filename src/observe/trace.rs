//! OpenTelemetry spans of a request: the server span (HTTP conventions), the upstream client span (GenAI conventions), and W3C trace-context propagation both ways.
//!
//! Every span has the `groxy::otel` target, which only the OpenTelemetry layer listens to: with
//! tracing off, creating one costs a cached "disabled" check and every setter below is a no-op.
//! Prompt and completion content are never recorded: only sizes, settings and outcomes.

use http::HeaderMap;
use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator,
    trace::{Status, TraceContextExt},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::relay::{Outcome, Report, usage::Usage};

/// The server span of one request, continuing the client's trace when it sent a
/// `traceparent`, with its sampling decision: the span, its trace id when sampled (for the
/// access line), and, when tracing is on but the request is not sampled, the context Groq is
/// told about instead.
///
/// An unsampled request keeps no span: every sampler groxy offers decides a child as its
/// parent (by the parent's flag, or by the same trace id), so none of its spans would be
/// exported, and building them cost tens of thousands of instructions a request (issue 19).
/// The span handed back is then disabled, so the step spans and the upstream span are never
/// made; Groq still receives the trace id, unsampled, through the returned context.
///
/// `path` is the record's, already bounded.
pub fn server_span(
    method: &http::Method,
    path: &str,
    route: &'static str,
    headers: &HeaderMap,
) -> (Span, Option<String>, Option<Context>) {
    let span = tracing::info_span!(
        target: "groxy::otel",
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
    );
    if span.is_disabled() {
        return (span, None, None);
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    // Starts the span: the sampler decides here.
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_sampled() {
        return (Span::none(), None, Some(context));
    }
    span.set_attribute("http.request.method", method.as_str().to_owned());
    span.set_attribute("http.route", route);
    span.set_attribute("url.path", path.to_owned());
    (span, Some(span_context.trace_id().to_string()), None)
}

/// What the server span learns when the request ends.
pub fn end_server_span(
    span: &Span,
    status: u16,
    outcome: Outcome,
    cache: Option<&'static str>,
    limit: Option<&'static str>,
) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    span.set_attribute("groxy.outcome", outcome.as_str());
    if let Some(cache) = cache {
        span.set_attribute("groxy.cache", cache);
    }
    if let Some(limit) = limit {
        span.set_attribute("groxy.refused_by", limit);
    }
    if status >= 500 || outcome == Outcome::Failed {
        span.set_status(Status::error(format!("{} {}", status, outcome.as_str())));
    }
}

/// The request settings the GenAI conventions record on the upstream span.
#[derive(Debug, Clone, Default)]
pub struct GenAiRequest {
    pub operation: &'static str,
    pub model: Option<String>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stream: bool,
}

/// The client span of the exchange with Groq, a child of `parent`.
pub fn upstream_span(parent: &Span, request: &GenAiRequest) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    let model = request.model.as_deref().unwrap_or("");
    let span = tracing::info_span!(
        target: "groxy::otel",
        parent: parent,
        "upstream",
        otel.name = %format_args!("{} {model}", request.operation),
        otel.kind = "client",
    );
    span.set_attribute("gen_ai.operation.name", request.operation);
    span.set_attribute("gen_ai.provider.name", "groq");
    span.set_attribute("gen_ai.system", "groq");
    if !model.is_empty() {
        span.set_attribute("gen_ai.request.model", model.to_owned());
    }
    if let Some(max) = request.max_tokens {
        span.set_attribute("gen_ai.request.max_tokens", i64::try_from(max).unwrap_or(i64::MAX));
    }
    if let Some(temperature) = request.temperature {
        span.set_attribute("gen_ai.request.temperature", temperature);
    }
    if let Some(top_p) = request.top_p {
        span.set_attribute("gen_ai.request.top_p", top_p);
    }
    span.set_attribute("groxy.stream", request.stream);
    span
}

/// Writes `span`'s context as `traceparent` (and `tracestate`) for Groq; for a request that is
/// not sampled (no span), `unsampled`, the server span's context: the same trace, unsampled.
pub fn inject(span: &Span, unsampled: Option<&Context>, headers: &mut HeaderMap) {
    let propagator = TraceContextPropagator::new();
    if !span.is_disabled() {
        propagator.inject_context(&span.context(), &mut HeaderInjector(headers));
    } else if let Some(context) = unsampled {
        propagator.inject_context(context, &mut HeaderInjector(headers));
    }
}

/// A child span of `parent` for one step that takes time; disabled when `parent` is (tracing
/// off, or the request not sampled), never a root of its own.
pub fn step_span(parent: &Span, name: &'static str) -> Span {
    if parent.is_disabled() {
        return Span::none();
    }
    tracing::info_span!(target: "groxy::otel", parent: parent, "step", otel.name = name)
}

pub fn first_token(span: &Span) {
    if !span.is_disabled() {
        span.add_event("gen_ai.first_token", Vec::new());
    }
}

pub fn upstream_status(span: &Span, status: u16, upstream_key: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if let Some(key) = upstream_key {
        span.set_attribute("groxy.upstream_key", key.to_owned());
    }
}

pub fn queued(span: &Span, waited: std::time::Duration) {
    if !span.is_disabled() {
        span.add_event(
            "groxy.budget_queue",
            vec![KeyValue::new("groxy.queued_ms", waited.as_secs_f64() * 1000.0)],
        );
    }
}

/// What the upstream span learns when the exchange ends: usage, response identity, outcome.
pub fn end_upstream_span(span: &Span, report: &Report, response: &ResponseFacts) {
    if span.is_disabled() {
        return;
    }
    if let Some(Usage {
        prompt_tokens,
        completion_tokens,
        ..
    }) = report.usage
    {
        span.set_attribute(
            "gen_ai.usage.input_tokens",
            i64::try_from(prompt_tokens).unwrap_or(i64::MAX),
        );
        span.set_attribute(
            "gen_ai.usage.output_tokens",
            i64::try_from(completion_tokens).unwrap_or(i64::MAX),
        );
    }
    if let Some(id) = &response.id {
        span.set_attribute("gen_ai.response.id", id.clone());
    }
    if let Some(model) = &response.model {
        span.set_attribute("gen_ai.response.model", model.clone());
    }
    if !response.finish_reasons.is_empty() {
        span.set_attribute(
            "gen_ai.response.finish_reasons",
            opentelemetry::Value::Array(opentelemetry::Array::String(
                response.finish_reasons.iter().map(|r| r.clone().into()).collect(),
            )),
        );
    }
    span.set_attribute("groxy.outcome", report.outcome.as_str());
    if let Some(kind) = report.upstream_error {
        span.set_attribute("error.type", kind);
    }
    if report.outcome == Outcome::Failed || report.status >= 500 {
        span.set_status(Status::error(report.upstream_error.unwrap_or("failed")));
    }
}

/// What the answer said about itself, read as it passed (never its content).
#[derive(Debug, Clone, Default)]
pub struct ResponseFacts {
    pub id: Option<String>,
    pub model: Option<String>,
    pub finish_reasons: Vec<String>,
}
