//! `POST /v1/chat/completions`: read the body within its limit, check it is JSON, forward it byte for byte.

use axum::{extract::State, response::Response};
use http::{Method, Request};
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    app::AppState,
    body,
    error::GatewayError,
    relay::{self, RelayContext},
    upstream::UpstreamRequest,
};

/// The few fields the gateway looks at; everything else is forwarded untouched in the original
/// bytes. Parsing into this still checks the whole document is well-formed JSON.
#[derive(Deserialize)]
struct ChatPeek {
    #[serde(default)]
    stream: Option<bool>,
}

pub async fn chat_completions(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (parts, incoming) = request.into_parts();
    let limit = state.config().limits.chat_body.as_usize();
    let bytes = body::read_limited(incoming, &parts.headers, limit).await?;
    let peek: ChatPeek =
        serde_json::from_slice(&bytes).map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
    tracing::debug!(
        stream = peek.stream.unwrap_or(false),
        bytes = bytes.len(),
        "chat completion"
    );

    let upstream = state.upstream();
    let deadlines = upstream.deadlines(started);
    let request = UpstreamRequest {
        method: Method::POST,
        path: "chat/completions",
        headers: &parts.headers,
        body: bytes.into(),
        streamed_body: false,
    };
    let response = upstream.send(request, started, &deadlines).await?;
    relay::respond(
        response,
        RelayContext {
            started,
            deadlines,
            abort: state.lifecycle().abort_token(),
        },
    )
    .await
}
