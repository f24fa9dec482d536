//! OpenTelemetry: a real OTLP/HTTP receiver started by the test decodes what the groxy binary exports (span tree, HTTP and GenAI attributes, propagation), and a collector that refuses or hangs costs requests nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use groq_sim::{Reply, Slicing, StreamEnd, fixtures};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, any_value},
    trace::v1::Span,
};
use prost::Message;

use crate::{process::*, support::*};

/// How the test collector answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Collector {
    Accept,
    Refuse,
    Hang,
}

#[derive(Clone)]
struct Receiver {
    mode: Collector,
    spans: Arc<Mutex<Vec<Span>>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(receiver): State<Receiver>, body: Bytes) -> StatusCode {
    match receiver.mode {
        Collector::Refuse => return StatusCode::SERVICE_UNAVAILABLE,
        Collector::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK;
        }
        Collector::Accept => {}
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    for resource in request.resource_spans {
        if let Some(resource_attributes) = resource.resource {
            if let Some(name) = attribute(&resource_attributes.attributes, "service.name") {
                receiver.service_names.lock().expect("lock").push(name);
            }
        }
        for scope in resource.scope_spans {
            receiver.spans.lock().expect("lock").extend(scope.spans);
        }
    }
    StatusCode::OK
}

/// A collector on a free loopback port; returns its base URL.
async fn collector(mode: Collector) -> (String, Receiver) {
    let receiver = Receiver {
        mode,
        spans: Arc::default(),
        service_names: Arc::default(),
    };
    let app = Router::new()
        .route("/v1/traces", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), receiver)
}

fn value_text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(value_text).collect::<Vec<_>>().join(","),
        _ => String::new(),
    }
}

fn attribute(attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(value_text)
}

fn attr(span: &Span, key: &str) -> Option<String> {
    attribute(&span.attributes, key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// groxy as a process exporting to `endpoint`, sampling everything.
async fn traced_groxy(sim: &groq_sim::Simulator, endpoint: &str, extra: &[(&str, &str)]) -> Running {
    let port = free_port();
    let mut command = groxy_command();
    command
        .arg("serve")
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "groxy-under-test")
        .env("OTEL_TRACES_SAMPLER", "parentbased_always_on");
    for (name, value) in extra {
        command.env(name, value);
    }
    Running::start(command, port).await
}

/// Waits until the collector holds a span satisfying `wanted`.
async fn span_where(receiver: &Receiver, wanted: impl Fn(&Span) -> bool) -> Span {
    poll_until(Duration::from_secs(10), || async {
        receiver.spans.lock().expect("lock").iter().find(|s| wanted(s)).cloned()
    })
    .await
    .expect("the span reached the collector")
}

/// The spans of the trace of `server`, by name.
fn trace_of(receiver: &Receiver, server: &Span) -> HashMap<String, Span> {
    receiver
        .spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.trace_id == server.trace_id)
        .map(|s| (s.name.clone(), s.clone()))
        .collect()
}

async fn chat(base: &str, body: String, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().post(format!("{base}{CHAT}")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send")
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn spans_carry_the_http_and_genai_conventions_and_continue_the_clients_trace() {
    let sim = sim().await;
    let (endpoint, receiver) = collector(Collector::Accept).await;
    let groxy = traced_groxy(&sim, &endpoint, &[]).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");

    // A JSON chat, inside the client's trace.
    let body = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":50,"temperature":0.5,"top_p":0.9}"#;
    let response = chat(&groxy.base, body.to_owned(), &[("traceparent", &traceparent)]).await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let server = span_where(&receiver, |s| hex(&s.trace_id) == CLIENT_TRACE && s.kind == 2).await;
    assert_eq!(
        hex(&server.parent_span_id),
        CLIENT_SPAN,
        "the client's span is the parent"
    );
    assert_eq!(attr(&server, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(&server, "http.route").as_deref(), Some("chat_completions"));
    assert_eq!(attr(&server, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(&server, "groxy.outcome").as_deref(), Some("complete"));
    let upstream = span_where(&receiver, |s| s.trace_id == server.trace_id && s.kind == 3).await;
    assert_eq!(
        upstream.parent_span_id, server.span_id,
        "the upstream span is the server span's child"
    );
    for (key, want) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "groq"),
        ("gen_ai.request.model", "openai/gpt-oss-20b"),
        ("gen_ai.request.max_tokens", "50"),
        ("gen_ai.request.temperature", "0.5"),
        ("gen_ai.request.top_p", "0.9"),
        ("gen_ai.usage.input_tokens", "16"),
        ("gen_ai.usage.output_tokens", "19"),
        ("gen_ai.response.finish_reasons", "stop"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(
            attr(&upstream, key).as_deref(),
            Some(want),
            "{key}: {:?}",
            upstream.attributes
        );
    }
    assert!(attr(&upstream, "gen_ai.response.id").is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(
        attr(&upstream, "gen_ai.response.model").as_deref(),
        Some("qwen/qwen3.8-27b")
    );
    // Groq received groxy's own traceparent: same trace, the upstream span as parent.
    let sent = last_request(&sim);
    let forwarded = sent.header("traceparent").expect("traceparent sent to Groq");
    assert_eq!(forwarded, format!("00-{CLIENT_TRACE}-{}-01", hex(&upstream.span_id)));
    // Steps that take time are children of the server span.
    let names: Vec<String> = trace_of(&receiver, &server).into_keys().collect();
    for step in ["validate", "limits.admit"] {
        assert!(names.iter().any(|n| n == step), "{step} in {names:?}");
    }
    // No content anywhere: not the prompt, not the completion.
    for span in receiver.spans.lock().expect("lock").iter() {
        let dump = format!("{span:?}");
        assert!(!dump.contains("Say hi"), "{dump}");
    }
    assert!(
        receiver
            .service_names
            .lock()
            .expect("lock")
            .iter()
            .any(|n| n == "groxy-under-test")
    );
    // The access line carries the trace id.
    let line = poll_until(Duration::from_secs(5), || async {
        groxy
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["target"] == "groxy::access" && l["trace_id"] == CLIENT_TRACE)
    })
    .await;
    assert!(line.is_some(), "{}", groxy.output());
    // And the latency histogram carries it as an exemplar (OpenMetrics).
    let metrics = metrics_text(&groxy.base).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("groxy_request_duration_seconds_bucket")
                && l.contains(&format!("trace_id=\"{CLIENT_TRACE}\""))),
        "{metrics}"
    );
}

/// A request the sampler drops exports nothing and builds no spans (issue 19: the step and
/// upstream spans of an unsampled request cost tens of thousands of instructions), yet Groq
/// still hears of the trace, unsampled, and the next sampled request is traced as before.
#[tokio::test]
async fn an_unsampled_request_exports_nothing_but_still_propagates_its_trace() {
    let sim = sim().await;
    let (endpoint, receiver) = collector(Collector::Accept).await;
    let groxy = traced_groxy(&sim, &endpoint, &[]).await;
    let unsampled = "5b".repeat(16);
    let sampled = "6c".repeat(16);

    // The client's trace is unsampled (flag 00): parentbased_always_on follows it.
    let traceparent = format!("00-{unsampled}-{CLIENT_SPAN}-00");
    let response = chat(&groxy.base, chat_body(false), &[("traceparent", &traceparent)]).await;
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;
    let sent = last_request(&sim);
    let forwarded = sent.header("traceparent").expect("traceparent sent to Groq");
    assert!(
        forwarded.starts_with(&format!("00-{unsampled}-")) && forwarded.ends_with("-00"),
        "the same trace, unsampled: {forwarded}"
    );
    assert_ne!(forwarded, traceparent, "groxy's own span id, not the client's");

    // A sampled request after it: once its spans are in, the unsampled one's would be too.
    let traceparent = format!("00-{sampled}-{CLIENT_SPAN}-01");
    let _ = chat(&groxy.base, chat_body(false), &[("traceparent", &traceparent)])
        .await
        .bytes()
        .await;
    let server = span_where(&receiver, |s| hex(&s.trace_id) == sampled && s.kind == 2).await;
    let _ = span_where(&receiver, |s| s.trace_id == server.trace_id && s.kind == 3).await;
    let names: Vec<String> = trace_of(&receiver, &server).into_keys().collect();
    assert!(names.iter().any(|n| n == "validate"), "{names:?}");
    let spans = receiver.spans.lock().expect("lock").clone();
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) != unsampled),
        "nothing of the unsampled trace is exported"
    );
    // Besides the sampled request's trace only the readiness probes' server spans.
    assert!(
        spans
            .iter()
            .all(|s| s.trace_id == server.trace_id || (s.name == "GET health" && s.parent_span_id.is_empty())),
        "no step of the unsampled request became a trace of its own: {:?}",
        spans.iter().map(|s| (&s.name, hex(&s.trace_id))).collect::<Vec<_>>()
    );
    // Only the sampled request's access line carries a trace id.
    let lines = poll_until(Duration::from_secs(5), || async {
        let lines: Vec<serde_json::Value> = groxy
            .output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["target"] == "groxy::access")
            .collect();
        (lines.len() >= 2).then_some(lines)
    })
    .await
    .expect("two access lines");
    assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    assert_eq!(lines[1]["trace_id"], sampled.as_str());
}

#[tokio::test]
async fn a_stream_a_cache_hit_a_429_and_a_cancelled_stream_are_told_apart() {
    let sim = sim().await;
    let (endpoint, receiver) = collector(Collector::Accept).await;
    let groxy = traced_groxy(&sim, &endpoint, &[]).await;

    // A stream: a first-token event and the usage from the finish chunk.
    sim.push(Reply::stream(fixtures::stream("include-usage")));
    let trace = |n: u8| format!("{}{n:02x}", &CLIENT_TRACE[..30]);
    let tp = |n: u8| format!("00-{}-{CLIENT_SPAN}-01", trace(n));
    let response = chat(&groxy.base, chat_body(true), &[("traceparent", &tp(1))]).await;
    let _ = response.bytes().await;
    let upstream = span_where(&receiver, |s| hex(&s.trace_id) == trace(1) && s.kind == 3).await;
    assert!(
        upstream.events.iter().any(|e| e.name == "gen_ai.first_token"),
        "{:?}",
        upstream.events
    );
    assert!(attr(&upstream, "gen_ai.usage.output_tokens").is_some());
    assert_eq!(attr(&upstream, "groxy.stream").as_deref(), Some("true"));

    // A cache hit: the server span says HIT, and there is no upstream span.
    let cached = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"temperature":0}"#;
    let _ = chat(&groxy.base, cached.to_owned(), &[("traceparent", &tp(2))])
        .await
        .bytes()
        .await;
    let _ = span_where(&receiver, |s| hex(&s.trace_id) == trace(2) && s.kind == 2).await;
    let hit = chat(&groxy.base, cached.to_owned(), &[("traceparent", &tp(3))]).await;
    assert_eq!(header(&hit, "x-groxy-cache"), "HIT");
    let _ = hit.bytes().await;
    let server = span_where(&receiver, |s| hex(&s.trace_id) == trace(3) && s.kind == 2).await;
    assert_eq!(attr(&server, "groxy.cache").as_deref(), Some("HIT"));
    assert!(trace_of(&receiver, &server).contains_key("cache.lookup"));
    assert!(
        !receiver
            .spans
            .lock()
            .expect("lock")
            .iter()
            .any(|s| hex(&s.trace_id) == trace(3) && s.kind == 3)
    );

    // A cancelled stream: the client leaves mid-way.
    sim.push(Reply::Stream {
        body: fixtures::stream("content").slice(..700),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let response = chat(&groxy.base, chat_body(true), &[("traceparent", &tp(4))]).await;
    drop(response);
    let server = span_where(&receiver, |s| hex(&s.trace_id) == trace(4) && s.kind == 2).await;
    assert_eq!(attr(&server, "groxy.outcome").as_deref(), Some("cancelled"));
    let upstream = span_where(&receiver, |s| hex(&s.trace_id) == trace(4) && s.kind == 3).await;
    assert_eq!(attr(&upstream, "groxy.outcome").as_deref(), Some("cancelled"));
}

#[tokio::test]
async fn a_429_records_the_limit_that_refused() {
    let sim = sim().await;
    let (endpoint, receiver) = collector(Collector::Accept).await;
    let dir = std::env::temp_dir().join(format!("groxy-otel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("groxy.toml");
    std::fs::write(&file, "[rate_limits.default]\nrequests_per_minute = 1\n").expect("write");
    let groxy = traced_groxy(&sim, &endpoint, &[("GROXY_CONFIG", file.to_str().expect("path"))]).await;
    let tp = format!("00-{}-{CLIENT_SPAN}-01", "aa".repeat(16));
    assert_eq!(chat(&groxy.base, chat_body(false), &[]).await.status(), 200);
    let refused = chat(&groxy.base, chat_body(false), &[("traceparent", &tp)]).await;
    assert_eq!(refused.status(), 429);
    let server = span_where(&receiver, |s| hex(&s.trace_id) == "aa".repeat(16) && s.kind == 2).await;
    assert_eq!(attr(&server, "http.response.status_code").as_deref(), Some("429"));
    assert_eq!(
        attr(&server, "groxy.refused_by").as_deref(),
        Some("requests_per_minute")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Median latency of `n` sequential plain chats.
async fn median_latency(base: &str, n: usize) -> Duration {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = chat(base, chat_body(false), &[]).await;
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[n / 2]
}

fn scrape_value(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_collector_that_refuses_or_hangs_costs_requests_nothing_but_dropped_spans() {
    let sim = sim().await;
    let untraced = {
        let port = free_port();
        let mut command = groxy_command();
        command
            .arg("serve")
            .env("GROQ_API_KEY", UPSTREAM_KEY)
            .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
            .env("GROXY_UPSTREAM_URL", sim.base_url());
        Running::start(command, port).await
    };
    let baseline = median_latency(&untraced.base, 60).await;
    for mode in [Collector::Refuse, Collector::Hang] {
        let (endpoint, _receiver) = collector(mode).await;
        let groxy = traced_groxy(&sim, &endpoint, &[("GROXY_CONFIG", "")]).await;
        let traced = median_latency(&groxy.base, 60).await;
        // Noise on a shared machine: the median may move by a millisecond or two, never by
        // the collector's time (a hang would add seconds per batch).
        assert!(
            traced < baseline * 3 + Duration::from_millis(5),
            "median {traced:?} with a collector that {} vs {baseline:?} untraced",
            if mode == Collector::Refuse { "refuses" } else { "hangs" }
        );
        let dropped = poll_until(Duration::from_secs(15), || async {
            let text = client()
                .get(format!("{}/metrics", groxy.base))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let failed = scrape_value(&text, "groxy_trace_spans_total{result=\"dropped_export_failed\"}");
            (failed > 0.0).then_some(failed)
        })
        .await;
        assert!(dropped.is_some(), "the lost spans are counted");
    }
}
