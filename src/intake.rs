//! The request body, as its endpoint takes it: refused where none is defined, read whole within a size, a deadline and the shared byte budget for JSON, streamed within a size and a deadline for uploads.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, header};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use sync_wrapper::SyncWrapper;
use tokio::time::{Instant, timeout_at};

use crate::{config::LimitsConfig, error::GatewayError, lifecycle::BodyBudget, routes::table::BodyKind};

/// A request body as the next steps take it.
pub enum Intake {
    Empty,
    /// A JSON document, whole.
    Json(Bytes),
    /// An upload, streamed to Groq as it arrives.
    Streamed(SyncWrapper<UnsyncBoxBody<Bytes, StreamError>>),
}

/// Reads (or prepares to stream) the body the way its endpoint takes it. The deadline counts
/// from here, once the headers are in: a JSON body must be whole by `limits.body_read_timeout`
/// (reading it waits first for its bytes in `bodies`), an upload by `limits.upload_read_timeout`.
pub async fn read(
    kind: BodyKind,
    endpoint: &'static str,
    headers: &HeaderMap,
    body: Body,
    limits: &LimitsConfig,
    bodies: &BodyBudget,
) -> Result<Intake, GatewayError> {
    match kind {
        BodyKind::Empty if has_body(headers) => Err(GatewayError::BodyNotAllowed { endpoint }),
        BodyKind::Empty => Ok(Intake::Empty),
        BodyKind::Json => {
            check_content_type(
                headers,
                |essence| essence == "application/json" || essence.ends_with("+json"),
                "application/json",
            )?;
            let deadline = Deadline::after(limits.body_read_timeout.0);
            Ok(Intake::Json(
                read_limited(body, headers, limits.chat_body.as_usize(), deadline, bodies).await?,
            ))
        }
        BodyKind::Multipart => {
            check_content_type(
                headers,
                |essence| essence == "multipart/form-data",
                "multipart/form-data",
            )?;
            let deadline = Deadline::after(limits.upload_read_timeout.0);
            let stream = stream_limited(body, headers, limits.upload_body.as_usize(), deadline)?;
            let frames = http_body_util::StreamBody::new(stream.map(|chunk| chunk.map(http_body::Frame::data)));
            Ok(Intake::Streamed(SyncWrapper::new(UnsyncBoxBody::new(frames))))
        }
    }
}

/// Whether the request announces a body (a length above zero, or chunked framing).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A JSON endpoint also takes a body with no content type at all (some hand-written clients
/// omit it); anything else that does not fit the endpoint is a 415.
fn check_content_type(headers: &HeaderMap, fits: impl Fn(&str) -> bool, wanted: &str) -> Result<(), GatewayError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return if wanted == "application/json" {
            Ok(())
        } else {
            Err(GatewayError::UnsupportedMediaType {
                got: String::new(),
                wanted: wanted.to_owned(),
            })
        };
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if fits(&essence) {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType {
            got: text.chars().take(100).collect(),
            wanted: wanted.to_owned(),
        })
    }
}

/// The streamed body passed its limit; carried inside the upstream client's error so `upstream` can map it to 413.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: usize,
}

/// The client's body failed while streaming (it hung up or sent bad chunking).
#[derive(Debug, thiserror::Error)]
#[error("client request body failed")]
pub struct ClientBodyError;

/// The streamed body did not arrive by its deadline; carried inside the upstream client's error so
/// `upstream` can map it to 408, as a JSON body's deadline is.
#[derive(Debug, thiserror::Error)]
#[error("request body did not arrive within {seconds} s")]
pub struct BodyTimedOut {
    pub seconds: u64,
}

/// When a body must be whole, and how the 408 names it.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    seconds: u64,
}

impl Deadline {
    fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            seconds: limit.as_secs().max(1),
        }
    }
}

/// The announced length; refuses before reading a byte when it is already over the limit.
fn check_announced_length(headers: &HeaderMap, limit: usize) -> Result<Option<usize>, GatewayError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
        Some(len) if len > limit as u64 => Err(GatewayError::BodyTooLarge { limit }),
        Some(len) => Ok(usize::try_from(len).ok()),
        None => Ok(None),
    }
}

/// Buffers the whole body, refusing more than `limit` bytes (announced or actually sent) and a
/// body not whole by the deadline (408).
///
/// Its bytes are reserved in the shared budget first: the announced length at once, so a body
/// that starts reading can always finish (no two half-read bodies wait on each other); a body
/// without a length (chunked) reserves each chunk as it comes. The wait is first come, first
/// served and counts against the same deadline: a body not read by then is a 408 whether the
/// client was slow or the budget full (the OpenAI SDKs retry a 408).
async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: Deadline,
    bodies: &BodyBudget,
) -> Result<Bytes, GatewayError> {
    let announced = check_announced_length(headers, limit)?;
    let mut held = match announced {
        Some(0) | None => None,
        Some(len) => Some(reserve(bodies, len, deadline).await?),
    };
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut seen: usize = 0;
    loop {
        let frame = match timeout_at(deadline.at, body.frame()).await {
            Err(_elapsed) => {
                tracing::debug!(seen, announced, "request body not whole by its deadline");
                return Err(GatewayError::BodyTimeout {
                    seconds: deadline.seconds,
                });
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(GatewayError::BodyRead),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else { continue };
        if chunk.is_empty() {
            continue;
        }
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            return Err(GatewayError::BodyTooLarge { limit });
        }
        if announced.is_none() {
            let more = reserve(bodies, chunk.len(), deadline).await?;
            match &mut held {
                Some(permit) => permit.merge(more),
                None => held = Some(more),
            }
        }
        // One chunk is kept as is (no copy); later ones go into one buffer of the final size.
        match (&mut first, &mut rest) {
            (None, None) => first = Some(chunk),
            (Some(_), None) => {
                let previous = first.take().unwrap_or_default();
                let capacity = announced.unwrap_or(0).max(previous.len() + chunk.len());
                let mut buffer = BytesMut::with_capacity(capacity);
                buffer.extend_from_slice(&previous);
                buffer.extend_from_slice(&chunk);
                rest = Some(buffer);
            }
            (_, Some(buffer)) => buffer.extend_from_slice(&chunk),
        }
    }
    drop(held);
    Ok(match (first, rest) {
        (_, Some(buffer)) => buffer.freeze(),
        (Some(chunk), None) => chunk,
        (None, None) => Bytes::new(),
    })
}

/// `bytes` of the shared budget, waited for until the deadline.
async fn reserve(
    bodies: &BodyBudget,
    bytes: usize,
    deadline: Deadline,
) -> Result<tokio::sync::SemaphorePermit<'_>, GatewayError> {
    match timeout_at(deadline.at, bodies.reserve(bytes)).await {
        Ok(Some(permit)) => Ok(permit),
        Ok(None) | Err(_) => {
            tracing::warn!(
                bytes,
                "no room among the request bodies being read before the body deadline; answering 408"
            );
            Err(GatewayError::BodyTimeout {
                seconds: deadline.seconds,
            })
        }
    }
}

type StreamError = Box<dyn std::error::Error + Send + Sync>;

/// Turns the body into a stream for the upstream request without buffering it; going over the
/// limit fails the upstream request with [`BodyTooLarge`], missing the deadline with
/// [`BodyTimedOut`].
fn stream_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    deadline: Deadline,
) -> Result<impl Stream<Item = Result<Bytes, StreamError>> + Send + 'static, GatewayError> {
    check_announced_length(headers, limit)?;
    let chunks = body.into_data_stream();
    Ok(futures_util::stream::unfold(
        (chunks, 0usize, false),
        move |(mut chunks, seen, failed)| async move {
            if failed {
                return None;
            }
            let item = match timeout_at(deadline.at, chunks.next()).await {
                Err(_elapsed) => Err(Box::new(BodyTimedOut {
                    seconds: deadline.seconds,
                }) as StreamError),
                Ok(None) => return None,
                Ok(Some(Err(_))) => Err(Box::new(ClientBodyError) as StreamError),
                Ok(Some(Ok(chunk))) if seen.saturating_add(chunk.len()) > limit => {
                    Err(Box::new(BodyTooLarge { limit }) as StreamError)
                }
                Ok(Some(Ok(chunk))) => {
                    let seen = seen.saturating_add(chunk.len());
                    return Some((Ok(chunk), (chunks, seen, false)));
                }
            };
            Some((item, (chunks, seen, true)))
        },
    ))
}
