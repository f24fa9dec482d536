//! The request body, as its endpoint takes it: refused where none is defined, read whole within a limit for JSON, streamed within a limit for uploads.

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::{config::LimitsConfig, error::GatewayError, routes::table::BodyKind};

/// A request body as the next steps take it.
pub enum Intake {
    Empty,
    /// A JSON document, whole.
    Json(Bytes),
    /// An upload, streamed to Groq as it arrives.
    Streamed(reqwest::Body),
}

/// Reads (or prepares to stream) the body the way its endpoint takes it.
pub async fn read(
    kind: BodyKind,
    endpoint: &'static str,
    headers: &HeaderMap,
    body: Body,
    limits: &LimitsConfig,
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
            Ok(Intake::Json(
                read_limited(body, headers, limits.chat_body.as_usize()).await?,
            ))
        }
        BodyKind::Multipart => {
            check_content_type(
                headers,
                |essence| essence == "multipart/form-data",
                "multipart/form-data",
            )?;
            let stream = stream_limited(body, headers, limits.upload_body.as_usize())?;
            Ok(Intake::Streamed(reqwest::Body::wrap_stream(stream)))
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

/// The streamed body passed its limit; carried inside reqwest's error so `upstream` can map it to 413.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: usize,
}

/// The client's body failed while streaming (it hung up or sent bad chunking).
#[derive(Debug, thiserror::Error)]
#[error("client request body failed")]
pub struct ClientBodyError;

/// Refuses before reading a byte when the announced length is already over the limit.
fn check_announced_length(headers: &HeaderMap, limit: usize) -> Result<(), GatewayError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(len) if len > limit as u64 => Err(GatewayError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Buffers the whole body, refusing more than `limit` bytes (announced or actually sent).
async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
    check_announced_length(headers, limit)?;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Err(_) => Err(GatewayError::BodyRead),
    }
}

/// Turns the body into a stream for the upstream request without buffering it; going over the
/// limit fails the upstream request with [`BodyTooLarge`].
fn stream_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<impl Stream<Item = Result<Bytes, Box<dyn std::error::Error + Send + Sync>>> + Send + 'static, GatewayError>
{
    check_announced_length(headers, limit)?;
    let mut seen: usize = 0;
    Ok(body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|_| Box::new(ClientBodyError) as Box<dyn std::error::Error + Send + Sync>)?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            return Err(Box::new(BodyTooLarge { limit }) as Box<dyn std::error::Error + Send + Sync>);
        }
        Ok(chunk)
    }))
}
