//! OpenTelemetry spans of a request: the server span (HTTP conventions), the upstream client span (GenAI conventions), and W3C trace-context propagation both ways.
//!
//! Every span has the `groxy::otel` target, which only the OpenTelemetry layer listens to: with
//! tracing off, creating one costs a cached "disabled" check and every setter below is a no-op.
//! Prompt and completion content are never recorded: only sizes, settings and outcomes.

use http::HeaderMap;
use opentelemetry::{
    KeyValue,
    propagation::TextMapPropagator,
    trace::{Status, TraceContextExt},
};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::relay::{Outcome, Report, usage::Usage};

/// The server span of one request, continuing the client's trace when it sent a
/// `traceparent`.
pub fn server_span(method: &http::Method, path: &str, route: &'static str, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(
        target: "groxy::otel",
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
    );
    if span.is_disabled() {
        return span;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.request.method", method.as_str().to_owned());
    span.set_attribute("http.route", route);
    span.set_attribute("url.path", path.chars().take(256).collect::<String>());
    span
}

/// The trace id of `span`, for the access line; `None` when tracing is off or not sampled.
pub fn trace_id(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_sampled().then(|| span_context.trace_id().to_string())
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

/// Writes `span`'s context as `traceparent` (and `tracestate`) for Groq.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
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
