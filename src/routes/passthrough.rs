//! Every other `/v1/*` endpoint (audio, responses, files, batches, models): request and response streamed through, never buffered.

use axum::{Extension, extract::State, response::Response};
use http::{Request, header};
use std::sync::Arc;

use crate::{
    app::AppState,
    auth::Caller,
    body,
    error::GatewayError,
    observe::{RequestRecord, UpstreamTap},
    relay::{self, RelayContext},
    routes::upstream_path,
    upstream::{UpstreamKey, UpstreamRequest},
};

pub async fn passthrough(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestRecord(record)): Extension<RequestRecord>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let started = record.started;
    let (parts, incoming) = request.into_parts();
    let path = upstream_path(&parts.uri).ok_or_else(|| GatewayError::UnknownUrl {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
    })?;

    let has_body = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let limit = state.config().limits.upload_body.as_usize();
    let body = if has_body {
        reqwest::Body::wrap_stream(body::stream_limited(incoming, &parts.headers, limit)?)
    } else {
        reqwest::Body::from(bytes::Bytes::new())
    };

    let upstream = state.upstream();
    let deadlines = upstream.deadlines(started);
    let request = UpstreamRequest {
        method: parts.method.clone(),
        path: &path,
        headers: &parts.headers,
        body,
        streamed_body: has_body,
        key: match caller.upstream_authorization {
            Some(own) => UpstreamKey::Caller(own),
            None => UpstreamKey::Configured(0),
        },
    };
    let observer = state.observer();
    let mut taps = relay::Taps::new();
    // No model here, so no budget report: Groq's x-ratelimit headers are per model.
    taps.push(UpstreamTap::new(
        Arc::clone(observer),
        Arc::clone(&record),
        None,
        "".into(),
    ));
    record.upstream_sent();
    let response = match upstream.send(request, started, &deadlines).await {
        Ok(response) => response,
        Err(error) => {
            if let Some(kind) = error.upstream_kind() {
                observer.metrics.upstream_error(kind);
            }
            return Err(error);
        }
    };
    let relayed = relay::respond(
        response,
        RelayContext {
            started,
            deadlines,
            abort: state.lifecycle().abort_token(),
            taps,
        },
    )
    .await;
    record.upstream_ready();
    relayed
}
