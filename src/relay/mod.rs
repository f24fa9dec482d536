//! Turns Groq's response into the client's: status and allowed headers kept, body relayed as received.

mod body;
mod deadlines;
pub mod tap;
pub mod usage;

use axum::{body::Body, response::Response};
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderValue, header};
use tokio::time::Instant;

pub use body::{BodyError, Framing, RelayBody, RelayError};
pub use deadlines::Deadlines;
pub use tap::{Outcome, Report, Retry, Tap, Taps};

use crate::{
    error::GatewayError,
    wire::{
        headers,
        sse::{BoundaryTracker, EventCounter},
    },
};

/// How the endpoint's event streams are shaped, which decides the error event a failure
/// mid-stream appends: chat's `data: {"error":…}`, or the Responses API's `event: error`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    #[default]
    Chat,
    Responses,
}

/// Everything the relay needs besides the response itself.
pub struct RelayContext {
    pub started: Instant,
    pub dialect: Dialect,
    pub deadlines: Deadlines,
    pub abort: tokio_util::sync::CancellationToken,
    /// Observers of this exchange (usage accounting, cache fill); told how it ended.
    pub taps: Taps,
}

type UpstreamStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, BodyError>> + Send>>;

/// Groq's answer while nothing of it has gone to the client (so it may still be given up for
/// another attempt): its head and, for a successful event stream, its first bytes.
pub struct Early {
    status: http::StatusCode,
    headers: http::HeaderMap,
    stream: UpstreamStream,
    first: Option<bytes::Bytes>,
    is_sse: bool,
}

/// A successful event stream that failed before its first bytes; its head, for the taps.
pub struct EarlyFailure {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub error: GatewayError,
}

/// Builds the client's response from Groq's, in two steps: this one reads Groq's head and
/// waits for a successful event stream's first bytes, so a stream that fails that early is
/// still an ordinary HTTP error (or worth another attempt); then [`Early::respond`].
pub async fn early<B>(
    upstream: http::Response<B>,
    deadlines: &Deadlines,
    started: Instant,
) -> Result<Early, EarlyFailure>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    let (head, body) = upstream.into_parts();
    let (status, headers) = (head.status, head.headers);
    let is_sse = status.is_success() && headers::is_event_stream(&headers);
    let mut stream: UpstreamStream = http_body_util::BodyExt::into_data_stream(body)
        .map_err(Into::<BodyError>::into)
        .boxed();
    let first = if is_sse {
        match body::first_chunk(&mut stream, deadlines, started).await {
            Ok(first) => first,
            Err(error) => return Err(EarlyFailure { status, headers, error }),
        }
    } else {
        None
    };
    Ok(Early {
        status,
        headers,
        stream,
        first,
        is_sse,
    })
}

impl Early {
    /// The client's response.
    ///
    /// - An error whose body is not JSON (a plain-text 503 from a load balancer) becomes an
    ///   OpenAI-shaped 502, because the SDKs cannot read anything else.
    /// - Everything else is relayed as is, body streamed; after the first byte, every chunk goes
    ///   out as read.
    pub fn respond(self, mut ctx: RelayContext) -> Response {
        let Early {
            status,
            headers: upstream_headers,
            stream,
            first,
            is_sse,
        } = self;
        ctx.taps.start(status, &upstream_headers);
        let kept = headers::response_headers(&upstream_headers);
        if (status.is_client_error() || status.is_server_error()) && !headers::is_json(&upstream_headers) {
            tracing::warn!(
                status = status.as_u16(),
                "upstream error with a non-JSON body; answering 502"
            );
            let error = GatewayError::UpstreamNonJson {
                status: status.as_u16(),
            };
            ctx.taps.fail(&error);
            let mut response = axum::response::IntoResponse::into_response(error);
            for (name, value) in &kept {
                // groxy's own JSON body replaces Groq's: what described Groq's body does not apply.
                if name != header::CONTENT_TYPE && name != header::CONTENT_ENCODING {
                    response.headers_mut().append(name.clone(), value.clone());
                }
            }
            return response;
        }
        let framing = match (is_sse, ctx.dialect) {
            (false, _) => Framing::Opaque,
            (true, Dialect::Chat) => Framing::Sse(BoundaryTracker::default()),
            (true, Dialect::Responses) => Framing::Named(BoundaryTracker::default(), EventCounter::default()),
        };
        ctx.taps.ready();
        let relay = RelayBody::new(stream, first, framing, &ctx.deadlines, ctx.started, ctx.abort, ctx.taps);
        let mut response = Response::new(Body::from_stream(relay));
        *response.status_mut() = status;
        *response.headers_mut() = kept;
        if is_sse {
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        }
        response
    }
}
