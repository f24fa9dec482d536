//! `POST /v1/chat/completions`: read the body within its limit, validate it, forward the validated bytes.

use axum::{extract::State, response::Response};
use http::{HeaderMap, HeaderValue, Method, Request, header};
use tokio::time::Instant;

use crate::{
    app::AppState,
    body,
    error::GatewayError,
    relay::{self, RelayContext},
    upstream::UpstreamRequest,
    validate,
};

pub async fn chat_completions(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (parts, incoming) = request.into_parts();
    check_content_type(&parts.headers)?;
    let config = state.config();
    let bytes = body::read_limited(incoming, &parts.headers, config.limits.chat_body.as_usize()).await?;
    let catalog = state.catalog().snapshot();
    let chat = validate::validate_chat(bytes, &config.validation, &config.models.aliases, catalog.as_deref())?;
    tracing::debug!(model = %chat.model, stream = chat.stream, "chat completion");

    let upstream = state.upstream();
    let deadlines = upstream.deadlines(started);
    let request = UpstreamRequest {
        method: Method::POST,
        path: "chat/completions",
        headers: &parts.headers,
        body: chat.body.into(),
        streamed_body: false,
    };
    let response = upstream.send(request, started, &deadlines).await?;
    let mut response = relay::respond(
        response,
        RelayContext {
            started,
            deadlines,
            abort: state.lifecycle().abort_token(),
            taps: relay::Taps::new(),
        },
    )
    .await?;
    let headers = response.headers_mut();
    if !chat.rewrites.stripped.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&chat.rewrites.stripped.join(",")) {
            headers.insert("x-groxy-stripped", value);
        }
    }
    if !chat.rewrites.mapped.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&chat.rewrites.mapped.join(",")) {
            headers.insert("x-groxy-mapped", value);
        }
    }
    Ok(response)
}

/// JSON, or no content type at all (some hand-written clients omit it); anything else is a 415,
/// since a form or multipart body cannot be a chat request.
fn check_content_type(headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(GatewayError::UnsupportedMediaType(text.chars().take(100).collect()))
    }
}
