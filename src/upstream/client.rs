//! The upstream client: one connection pool, the upstream key injected, header allowlists both ways, and the first-byte deadline.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, header};
use tokio::time::Instant;

use crate::relay::Deadlines;
use crate::{
    config::{UpstreamConfig, UpstreamHttp2},
    error::GatewayError,
    wire::headers,
};

/// A request about to be sent to Groq.
pub struct UpstreamRequest<'a> {
    pub method: Method,
    /// Path below the base URL, without a leading slash, with the query if any
    /// (`chat/completions`, `models/openai/gpt-oss-20b`, `files?purpose=batch`).
    pub path: &'a str,
    /// The client's request headers; only the allowlisted ones are copied.
    pub headers: &'a HeaderMap,
    pub body: reqwest::Body,
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
    client: reqwest::Client,
    base: String,
    chat_url: Option<reqwest::Url>,
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
        // gzip and deflate are decoded should Groq send them anyway (groxy asks for `identity`):
        // the relay, the usage reader, the SSE framing and the cache then all see plain bytes,
        // and the client gets them without a `content-encoding` it never asked for.
        let builder = reqwest::Client::builder();
        let builder = match config.http2 {
            UpstreamHttp2::Auto => builder,
            UpstreamHttp2::Always => builder.http2_prior_knowledge(),
            UpstreamHttp2::Never => builder.http1_only(),
        };
        let client = builder
            .gzip(true)
            .deflate(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout.0)
            .pool_idle_timeout(config.pool_idle_timeout.0)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: config.url.trim_end_matches('/').to_owned(),
            chat_url: reqwest::Url::parse(&format!("{}/chat/completions", config.url.trim_end_matches('/'))).ok(),
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
    ) -> Result<reqwest::Response, GatewayError> {
        // The chat URL is parsed once; parsing it per request was a visible share of the CPU.
        let url = match (request.path, &self.chat_url) {
            ("chat/completions", Some(url)) => url.clone(),
            _ => match reqwest::Url::parse(&format!("{}/{}", self.base, request.path)) {
                Ok(url) => url,
                Err(_) => return Err(GatewayError::UpstreamUnreachable),
            },
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
        let send = self
            .client
            .request(request.method, url)
            .headers(headers)
            .body(request.body)
            .send();
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
    /// A small GET for groxy's own use (the model catalogue), bounded by the first-byte timeout
    /// for the headers and the idle timeout for the body.
    pub async fn fetch(&self, path: &str) -> Result<bytes::Bytes, String> {
        let url = format!("{}/{}", self.base, path);
        let key = self.keys.first().ok_or("no upstream key configured")?.clone();
        let request = self
            .client
            .get(url)
            .header(header::AUTHORIZATION, key)
            .header(header::ACCEPT_ENCODING, headers::accept_identity())
            .header(header::USER_AGENT, concat!("groxy/", env!("CARGO_PKG_VERSION")));
        let response = tokio::time::timeout(self.first_byte_timeout, request.send())
            .await
            .map_err(|_| format!("GET {path}: no response in time"))?
            .map_err(|e| format!("GET {path}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {path}: HTTP {}", response.status().as_u16()));
        }
        tokio::time::timeout(self.idle_timeout, response.bytes())
            .await
            .map_err(|_| format!("GET {path}: body too slow"))?
            .map_err(|e| format!("GET {path}: {e}"))
    }
}

/// Maps a transport failure to who is at fault: a body the client sent too much of (413), too
/// slowly (408) or broke off (400) is the client's, anything else is Groq's side (502).
fn classify(error: &reqwest::Error) -> GatewayError {
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
        tracing::warn!(error = %error, "upstream connection failed");
        GatewayError::UpstreamUnreachable
    } else {
        tracing::warn!(error = %error, "upstream request failed before a response");
        GatewayError::UpstreamTruncated
    }
}
