//! The upstream client: one connection pool, the upstream key injected, header allowlists both ways, and the first-byte deadline.
//!
//! hyper-util's pooled client over rustls, with nothing in between but gzip/deflate decoding:
//! the request URI is built from the base parsed once at start, not parsed again per request.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Uri, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use tokio::time::Instant;
use tower_http::decompression::{Decompression, DecompressionBody, ResponseFuture};

use super::body::{BoxError, RequestBody};
use crate::relay::Deadlines;
use crate::{
    config::{UpstreamConfig, UpstreamHttp2},
    error::GatewayError,
    wire::headers,
};

type Pool = Client<TimedConnect, RequestBody>;

type PoolFuture = hyper_util::client::legacy::ResponseFuture;

/// Groq's answer body: as received, or decoded when Groq sent gzip or deflate anyway.
pub type ResponseBody = DecompressionBody<hyper::body::Incoming>;

/// Groq's answer, its head read.
pub type UpstreamResponse = http::Response<ResponseBody>;

/// A request about to be sent to Groq.
pub struct UpstreamRequest<'a> {
    pub method: Method,
    /// Path below the base URL, without a leading slash, with the query if any
    /// (`chat/completions`, `models/openai/gpt-oss-20b`, `files?purpose=batch`).
    pub path: &'a str,
    /// The client's request headers; only the allowlisted ones are copied.
    pub headers: &'a HeaderMap,
    pub body: RequestBody,
    /// The body is streamed as it arrives, so its length header is forwarded as announced.
    pub streamed_body: bool,
    /// Whose key Groq sees.
    pub key: UpstreamKey,
}

/// The credential for one upstream request.
#[derive(Debug, Clone)]
pub enum UpstreamKey {
    /// One of the configured upstream keys, by index.
    Configured(usize),
    /// The caller's own `Authorization` (passthrough mode).
    Caller(HeaderValue),
}

/// The upstream client. Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct Upstream {
    /// gzip and deflate are decoded should Groq send them anyway (groxy asks for `identity`):
    /// the relay, the usage reader, the SSE framing and the cache then all see plain bytes,
    /// and the client gets them without a `content-encoding` it never asked for.
    client: Arc<Pool>,
    base: Arc<Base>,
    /// `Bearer <key>` for each configured upstream key, marked sensitive.
    keys: std::sync::Arc<[HeaderValue]>,
    extra_headers: std::sync::Arc<[String]>,
    first_byte_timeout: Duration,
    idle_timeout: Duration,
    total_timeout: Duration,
    /// Read at start, like the rest of `[upstream]`.
    retries: crate::config::RetryConfig,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, String> {
        let mut keys = Vec::new();
        for key in config.api_key.iter().chain(config.api_keys.iter()) {
            let mut authorization = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                .map_err(|_| "an upstream API key is not a valid header value")?;
            // Marked sensitive so hyper's HPACK never indexes it and Debug output hides it.
            authorization.set_sensitive(true);
            keys.push(authorization);
        }
        let base = Base::parse(&config.url)?;
        let client = Arc::new(pool(config)?);
        Ok(Self {
            client,
            base: Arc::new(base),
            keys: keys.into(),
            extra_headers: config.forward_headers.clone().into(),
            first_byte_timeout: config.first_byte_timeout.0,
            idle_timeout: config.idle_timeout.0,
            total_timeout: config.total_timeout.0,
            retries: config.retries,
        })
    }

    /// How many upstream keys are configured (zero in pure passthrough mode).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn retries(&self) -> crate::config::RetryConfig {
        self.retries
    }

    pub fn deadlines(&self, started: Instant) -> Deadlines {
        let total = started + self.total_timeout;
        Deadlines {
            first_byte: (started + self.first_byte_timeout).min(total),
            total,
            idle: self.idle_timeout,
        }
    }

    /// Sends the request and waits for Groq's response headers, at most until the first-byte
    /// deadline. Dropping the returned future (the client went away) drops the connection, which
    /// is how cancellation reaches Groq.
    pub async fn send(
        &self,
        request: UpstreamRequest<'_>,
        started: Instant,
        deadlines: &Deadlines,
    ) -> Result<UpstreamResponse, GatewayError> {
        let Some(uri) = self.base.uri(request.path) else {
            return Err(GatewayError::UpstreamUnreachable);
        };
        let mut headers = headers::request_headers(request.headers, &self.extra_headers, request.streamed_body);
        match &request.key {
            UpstreamKey::Configured(index) => {
                if let Some(value) = self.keys.get(*index) {
                    headers.insert(header::AUTHORIZATION, value.clone());
                }
            }
            UpstreamKey::Caller(value) => {
                headers.insert(header::AUTHORIZATION, value.clone());
            }
        }
        let mut outgoing = http::Request::new(request.body);
        *outgoing.method_mut() = request.method;
        *outgoing.uri_mut() = uri;
        *outgoing.headers_mut() = headers;
        let send = self.call(outgoing);
        match tokio::time::timeout_at(deadlines.first_byte, send).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_elapsed) => {
                tracing::warn!(
                    path = request.path,
                    "upstream sent no response headers before the first-byte deadline"
                );
                Err(GatewayError::UpstreamTimeout {
                    seconds: deadlines.first_byte_seconds(started),
                })
            }
        }
    }
}

impl Upstream {
    /// Through the pool by reference (hyper-util clones what it keeps), decoding gzip and
    /// deflate on the way back.
    fn call(&self, request: http::Request<RequestBody>) -> ResponseFuture<PoolFuture> {
        tower::Service::call(&mut Decompression::new(&*self.client), request)
    }

    /// A small GET for groxy's own use (the model catalogue), bounded by the first-byte timeout
    /// for the headers and the idle timeout for the body.
    pub async fn fetch(&self, path: &str) -> Result<Bytes, String> {
        let uri = self
            .base
            .uri(path)
            .ok_or_else(|| format!("GET {path}: not a valid URI"))?;
        let key = self.keys.first().ok_or("no upstream key configured")?.clone();
        let mut request = http::Request::new(RequestBody::Whole(None));
        *request.uri_mut() = uri;
        let h = request.headers_mut();
        h.insert(header::AUTHORIZATION, key);
        h.insert(header::ACCEPT_ENCODING, headers::accept_identity());
        h.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("groxy/", env!("CARGO_PKG_VERSION"))),
        );
        let send = self.call(request);
        let response = tokio::time::timeout(self.first_byte_timeout, send)
            .await
            .map_err(|_| format!("GET {path}: no response in time"))?
            .map_err(|e| format!("GET {path}: {}", Chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: HTTP {}", response.status().as_u16()));
        }
        let collected = tokio::time::timeout(self.idle_timeout, response.into_body().collect())
            .await
            .map_err(|_| format!("GET {path}: body too slow"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        Ok(collected.to_bytes())
    }
}

/// The base URL, parsed once: each request's URI is these parts and its own path.
struct Base {
    scheme: Scheme,
    authority: Authority,
    /// The base's path without its trailing slash (`/openai/v1`).
    prefix: String,
    /// The URI of the one path nearly every request takes.
    chat: Option<Uri>,
}

impl Base {
    fn parse(url: &str) -> Result<Self, String> {
        let invalid = || format!("upstream.url {url:?} is not a valid http(s) URL");
        let parsed: Uri = url.trim_end_matches('/').parse().map_err(|_| invalid())?;
        let (Some(scheme), Some(authority)) = (parsed.scheme().cloned(), parsed.authority().cloned()) else {
            return Err(invalid());
        };
        if parsed.query().is_some() {
            return Err(invalid());
        }
        let mut base = Self {
            scheme,
            authority,
            prefix: parsed.path().trim_end_matches('/').to_owned(),
            chat: None,
        };
        base.chat = Some(base.uri("chat/completions").ok_or_else(invalid)?);
        Ok(base)
    }

    /// `path` (below the base, with its query if any) as a full URI; `None` when it has bytes a
    /// URI cannot carry.
    fn uri(&self, path: &str) -> Option<Uri> {
        if let (Some(chat), "chat/completions") = (&self.chat, path) {
            return Some(chat.clone());
        }
        let mut full = String::with_capacity(self.prefix.len() + 1 + path.len());
        full.push_str(&self.prefix);
        full.push('/');
        full.push_str(path);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(PathAndQuery::from_maybe_shared(Bytes::from(full)).ok()?);
        Uri::from_parts(parts).ok()
    }
}

/// The pooled client: TCP_NODELAY, the connect timeout, keepalive probes, no proxy; HTTP/2 by
/// ALPN (`auto`), only (`always`: ALPN `h2`, or h2c with prior knowledge on plain http) or never.
fn pool(config: &UpstreamConfig) -> Result<Pool, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // The same probes reqwest set, so a connection whose peer vanished is found out.
    http.set_keepalive(Some(Duration::from_secs(15)));
    http.set_keepalive_interval(Some(Duration::from_secs(15)));
    http.set_keepalive_retries(Some(3));
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    http.set_tcp_user_timeout(Some(Duration::from_secs(30)));
    let connector = TimedConnect {
        inner: hyper_rustls::HttpsConnector::from((http, tls(config.http2)?)),
        limit: config.connect_timeout.0,
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout.0)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        // A held stream's answer frames are small: a fixed read buffer keeps each HTTP/1.1
        // connection from growing (and keeping) a large one; a large answer takes more reads.
        .http1_read_buf_exact_size(UPSTREAM_READ_BUFFER);
    if config.http2 == UpstreamHttp2::Always {
        builder.http2_only(true);
    }
    Ok(builder.build(connector))
}

/// Bytes per read from an HTTP/1.1 upstream connection.
const UPSTREAM_READ_BUFFER: usize = 4096;

/// rustls with the platform's verifier (the system's roots), as reqwest's `rustls` feature had
/// it: the process-wide crypto provider if one is installed, aws-lc-rs otherwise.
fn tls(http2: UpstreamHttp2) -> Result<rustls::ClientConfig, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(Arc::clone(&provider))
        .map_err(|e| format!("cannot build the TLS verifier: {e}"))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot build the TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = match http2 {
        UpstreamHttp2::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        UpstreamHttp2::Always => vec![b"h2".to_vec()],
        UpstreamHttp2::Never => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

/// The connector bounded by `upstream.connect_timeout` as a whole (TCP and the TLS handshake),
/// as reqwest bounded it; a timeout is a connect error like any other (502, unreachable).
#[derive(Clone)]
struct TimedConnect {
    inner: hyper_rustls::HttpsConnector<HttpConnector>,
    limit: Duration,
}

/// The connect attempt did not finish within `upstream.connect_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out")]
struct ConnectTimedOut;

type Connecting = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stream, BoxError>> + Send>>;
type Stream = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;

impl tower::Service<Uri> for TimedConnect {
    type Response = Stream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Connecting {
        let connecting = self.inner.call(dst);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_elapsed) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        })
    }
}

/// An error with its sources, for a log line that says what went wrong underneath.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// Maps a transport failure to who is at fault: a body the client sent too much of (413), too
/// slowly (408) or broke off (400) is the client's, anything else is Groq's side (502).
fn classify(error: &hyper_util::client::legacy::Error) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(limit) = e.downcast_ref::<crate::intake::BodyTooLarge>() {
            return GatewayError::BodyTooLarge { limit: limit.limit };
        }
        if e.downcast_ref::<crate::intake::ClientBodyError>().is_some() {
            return GatewayError::BodyRead;
        }
        if let Some(late) = e.downcast_ref::<crate::intake::BodyTimedOut>() {
            return GatewayError::BodyTimeout { seconds: late.seconds };
        }
        source = e.source();
    }
    if error.is_connect() {
        tracing::warn!(error = %Chain(error), "upstream connection failed");
        GatewayError::UpstreamUnreachable
    } else {
        tracing::warn!(error = %Chain(error), "upstream request failed before a response");
        GatewayError::UpstreamTruncated
    }
}
