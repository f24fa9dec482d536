//! Turns Groq's response into the client's: status and allowed headers kept, body relayed as received.

mod body;
mod deadlines;
pub mod tap;
pub mod usage;

use axum::{body::Body, response::Response};
use futures_util::StreamExt;
use http::{HeaderValue, header};
use tokio::time::Instant;

pub use body::{Framing, RelayBody, RelayError};
pub use deadlines::Deadlines;
pub use tap::{Outcome, Report, Tap, Taps};

use crate::{
    error::GatewayError,
    wire::{headers, sse::BoundaryTracker},
};

/// Everything the relay needs besides the response itself.
pub struct RelayContext {
    pub started: Instant,
    pub deadlines: Deadlines,
    pub abort: tokio_util::sync::CancellationToken,
    /// Observers of this exchange (usage accounting, cache fill); told how it ended.
    pub taps: Taps,
}

/// Builds the client's response from Groq's.
///
/// - An error whose body is not JSON (a plain-text 503 from a load balancer) becomes an
///   OpenAI-shaped 502, because the SDKs cannot read anything else.
/// - A successful event stream waits for its first bytes before answering, so a failure that
///   early is still an ordinary HTTP error; after that, every chunk goes out as read.
/// - Everything else is relayed as is, body streamed.
pub async fn respond(upstream: reqwest::Response, mut ctx: RelayContext) -> Result<Response, GatewayError> {
    let status = upstream.status();
    ctx.taps.start(status, upstream.headers());
    let kept = headers::response_headers(upstream.headers());
    if (status.is_client_error() || status.is_server_error()) && !headers::is_json(upstream.headers()) {
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
        return Ok(response);
    }

    let is_sse = status.is_success() && headers::is_event_stream(upstream.headers());
    let mut stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>> =
        upstream.bytes_stream().boxed();
    let (first, framing) = if is_sse {
        let first = match body::first_chunk(&mut stream, &ctx.deadlines, ctx.started).await {
            Ok(first) => first,
            Err(error) => {
                ctx.taps.fail(&error);
                return Err(error);
            }
        };
        (first, Framing::Sse(BoundaryTracker::default()))
    } else {
        (None, Framing::Opaque)
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
    Ok(response)
}
