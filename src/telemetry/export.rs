//! OpenTelemetry export: spans go over OTLP/HTTP (protobuf) from a bounded queue on a thread of their own, so a slow or dead collector costs dropped spans (counted), never request time.
//!
//! Why our own span processor rather than the SDK's batch processor: the request path must
//! never wait on the exporter, and every span lost (queue full, collector refusing or timing
//! out) must be counted in `/metrics`. `on_end` is one `try_send` into a bounded channel; a
//! dedicated thread batches (at most [`BATCH`] spans or [`LINGER`]) and exports with a timeout.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor},
};

use crate::config::TracingConfig;

/// Spans per export request.
const BATCH: usize = 512;
/// The longest a finished span waits for its batch to fill.
const LINGER: Duration = Duration::from_secs(1);

/// Spans handed to the collector, lost because the queue was full, and lost because an export
/// failed (refused, unreachable, or slower than `tracing.export_timeout`).
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// The counters above, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanCounts {
    pub exported: u64,
    pub dropped_queue_full: u64,
    pub dropped_export_failed: u64,
}

pub fn span_counts() -> SpanCounts {
    SpanCounts {
        exported: EXPORTED.load(Ordering::Relaxed),
        dropped_queue_full: DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
        dropped_export_failed: DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
    }
}

/// The collector's traces URL: the OTLP base endpoint with `/v1/traces`, or a traces endpoint
/// used as given (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
fn traces_url(config: &TracingConfig) -> Option<String> {
    if let Some(full) = config.otlp_traces_endpoint.as_deref().filter(|e| !e.is_empty()) {
        return Some(full.to_owned());
    }
    let base = config.otlp_endpoint.trim().trim_end_matches('/');
    (!base.is_empty()).then(|| {
        if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }
    })
}

fn sampler(config: &TracingConfig) -> Sampler {
    let ratio = config.sample_ratio.clamp(0.0, 1.0);
    match config.sampler.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio),
        "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        _ => Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))),
    }
}

/// The tracer provider for `config`, or `None` when tracing is off (no endpoint) or the
/// exporter cannot be built (said once on stderr-bound logs by the caller).
pub fn provider(config: &TracingConfig) -> Result<Option<SdkTracerProvider>, String> {
    let Some(url) = traces_url(config) else {
        return Ok(None);
    };
    let client = ExportClient::new(config.export_timeout.0)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .with_timeout(config.export_timeout.0)
        .build()
        .map_err(|e| format!("tracing: cannot build the OTLP exporter: {e}"))?;
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", config.service_name.clone()));
    attributes.push(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    let resource = Resource::builder_empty().with_attributes(attributes).build();
    let processor = QueueProcessor::new(exporter, config.queue_size.max(1), config.export_timeout.0);
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler(config))
            .with_span_processor(processor)
            .build(),
    ))
}

/// A tracer from `provider`, named for the instrumentation scope.
pub fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("groxy")
}

/// Hands finished spans to the export thread through a bounded channel, never blocking.
#[derive(Debug)]
struct QueueProcessor {
    queue: SyncSender<Message>,
    /// The exporter until the first span starts the thread (the provider gives it the
    /// resource first, through `set_resource`).
    pending: Mutex<Option<(opentelemetry_otlp::SpanExporter, Receiver<Message>)>>,
    timeout: Duration,
}

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued and answer when done.
    Flush(SyncSender<()>),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Span(_) => "Span",
            Message::Flush(_) => "Flush",
        })
    }
}

impl QueueProcessor {
    fn new(exporter: opentelemetry_otlp::SpanExporter, capacity: usize, timeout: Duration) -> Self {
        let (queue, receiver) = mpsc::sync_channel(capacity);
        Self {
            queue,
            pending: Mutex::new(Some((exporter, receiver))),
            timeout,
        }
    }

    /// Starts the export thread on first use.
    fn ensure_started(&self) {
        let taken = self.pending.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((exporter, receiver)) = taken {
            let timeout = self.timeout;
            let started = std::thread::Builder::new()
                .name("groxy-otlp".to_owned())
                .spawn(move || export_loop(exporter, receiver, timeout));
            if let Err(error) = started {
                tracing::warn!(%error, "tracing: cannot start the export thread; spans are dropped");
            }
        }
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        self.ensure_started();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Message::Span(Box::new(span)))
        {
            DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ensure_started();
        let (done, wait) = mpsc::sync_channel(1);
        self.queue
            .try_send(Message::Flush(done))
            .map_err(|_| OTelSdkError::InternalFailure("the span queue is full".to_owned()))?;
        wait.recv_timeout(self.timeout + LINGER)
            .map_err(|_| OTelSdkError::Timeout(self.timeout))
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some((exporter, _)) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            exporter.set_resource(resource);
        }
    }
}

/// The export thread: batches spans and exports each batch within `timeout`.
fn export_loop(exporter: opentelemetry_otlp::SpanExporter, receiver: Receiver<Message>, timeout: Duration) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "tracing: no runtime for the export thread; spans are dropped");
            return;
        }
    };
    let mut batch: Vec<SpanData> = Vec::with_capacity(BATCH);
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map_or(LINGER, |t| LINGER.saturating_sub(t.elapsed()));
        let mut flushed = None;
        match receiver.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                oldest.get_or_insert_with(Instant::now);
                batch.push(*span);
                if batch.len() < BATCH {
                    continue;
                }
            }
            Ok(Message::Flush(done)) => flushed = Some(done),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                export(&runtime, &exporter, &mut batch, timeout);
                return;
            }
        }
        export(&runtime, &exporter, &mut batch, timeout);
        oldest = None;
        if let Some(done) = flushed {
            let _ = done.try_send(());
        }
    }
}

fn export(
    runtime: &tokio::runtime::Runtime,
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let count = spans.len() as u64;
    // The timer is made inside the runtime: a `timeout` built outside it has no reactor.
    let result = runtime.block_on(async { tokio::time::timeout(timeout, exporter.export(spans)).await });
    match result {
        Ok(Ok(())) => {
            EXPORTED.fetch_add(count, Ordering::Relaxed);
        }
        Ok(Err(error)) => {
            DROPPED_EXPORT_FAILED.fetch_add(count, Ordering::Relaxed);
            tracing::debug!(%error, spans = count, "tracing: export failed; spans dropped");
        }
        Err(_elapsed) => {
            DROPPED_EXPORT_FAILED.fetch_add(count, Ordering::Relaxed);
            tracing::debug!(spans = count, "tracing: export timed out; spans dropped");
        }
    }
}

/// The OTLP exporter's HTTP client: the same reqwest and rustls as the rest of groxy, bounded
/// by the export timeout.
#[derive(Debug, Clone)]
struct ExportClient(reqwest::Client);

impl ExportClient {
    fn new(timeout: Duration) -> Result<Self, String> {
        reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Self)
            .map_err(|e| format!("tracing: cannot build the HTTP client: {e}"))
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_follows_otlps_rules() {
        let mut config = TracingConfig::default();
        assert_eq!(traces_url(&config), None, "off by default");
        config.otlp_endpoint = "http://collector:4318/".into();
        assert_eq!(traces_url(&config).as_deref(), Some("http://collector:4318/v1/traces"));
        config.otlp_traces_endpoint = Some("http://other:9999/custom".into());
        assert_eq!(traces_url(&config).as_deref(), Some("http://other:9999/custom"));
    }
}
