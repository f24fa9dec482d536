//! Reading client request bodies within a size limit: buffered for chat, streamed for uploads.

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, header};
use http_body_util::BodyExt;

use crate::error::GatewayError;

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
pub async fn read_limited(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, GatewayError> {
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
pub fn stream_limited(
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
