//! `POST /v1/chat/completions`: validate, admit under the caller's limits and Groq's budget, forward the validated bytes, settle the usage.

use std::sync::Arc;

use axum::{Extension, extract::State, response::Response};
use http::{HeaderMap, HeaderValue, Method, Request, header};
use tokio::time::Instant;

use crate::{
    app::AppState,
    auth::Caller,
    body,
    error::GatewayError,
    limits::Admission,
    relay::{self, Outcome, RelayContext, Tap, Taps},
    upstream::{UpstreamKey, UpstreamRequest},
    usage::UsageTap,
    validate,
};

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (parts, incoming) = request.into_parts();
    check_content_type(&parts.headers)?;
    let config = state.config();
    let bytes = body::read_limited(incoming, &parts.headers, config.limits.chat_body.as_usize()).await?;
    let catalog = state.catalog().snapshot();
    let chat = validate::validate_chat(bytes, &config.validation, &config.models.aliases, catalog.as_deref())?;
    tracing::debug!(model = %chat.model, stream = chat.stream, caller = %caller.name, "chat completion");

    // Admission: the caller's own limits first (cheap, local), then Groq's budget (may wait).
    let model_max = catalog
        .as_deref()
        .and_then(|c| c.get(&chat.model))
        .map(|m| m.max_completion_tokens);
    let limiter = state.limiter();
    let reserved = limiter.reservation(chat.prompt_tokens_estimate, chat.max_completion_tokens, model_max);
    let admission = if limiter.is_active() {
        limiter
            .admit(&caller, &chat.model, reserved)
            .map_err(GatewayError::RateLimited)?
    } else {
        Admission::unlimited()
    };
    let rate_headers = admission.headers;
    let key = match &caller.upstream_authorization {
        Some(own) => UpstreamKey::Caller(own.clone()),
        None if !config.rate_limits.upstream_aware => UpstreamKey::Configured(0),
        None => {
            let index = state
                .budget()
                .acquire(&chat.model, reserved)
                .await
                .map_err(|exhausted| GatewayError::UpstreamBudget {
                    model: chat.model.clone(),
                    retry_after: exhausted.retry_after,
                })?;
            UpstreamKey::Configured(index)
        }
    };

    let mut taps = Taps::new();
    taps.push(UsageTap::new(move |report| {
        let used = match (report.outcome, report.status) {
            (Outcome::Complete, 200..=299) => report.usage.map(|u| u.total_tokens),
            _ => None,
        };
        admission.settle(used);
    }));
    if let (UpstreamKey::Configured(index), true) = (&key, config.rate_limits.upstream_aware) {
        let index = *index;
        taps.push(BudgetTap {
            state: state.clone(),
            key: index,
            model: chat.model.clone().into(),
        });
    }

    let upstream = state.upstream();
    let deadlines = upstream.deadlines(started);
    let request = UpstreamRequest {
        method: Method::POST,
        path: "chat/completions",
        headers: &parts.headers,
        body: chat.body.into(),
        streamed_body: false,
        key,
    };
    let response = match upstream.send(request, started, &deadlines).await {
        Ok(response) => response,
        Err(error) => {
            taps.end(Outcome::Failed);
            return Err(error);
        }
    };
    let mut response = relay::respond(
        response,
        RelayContext {
            started,
            deadlines,
            abort: state.lifecycle().abort_token(),
            taps,
        },
    )
    .await?;
    let headers = response.headers_mut();
    rate_headers.apply(headers);
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

/// Teaches the upstream budget what Groq said about this key and model.
struct BudgetTap {
    state: AppState,
    key: usize,
    model: Arc<str>,
}

impl Tap for BudgetTap {
    fn start(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        self.state.budget().observe(self.key, &self.model, status, headers);
    }
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
