//! The one error type for everything groxy itself refuses or fails at, and the only place a status code is chosen.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use std::time::Duration;

use std::sync::Arc;

use crate::wire::{
    duration::format as go_duration,
    ratelimit::{RateHeaders, retry_after, should_retry},
};

/// Why a request was refused; in Groq's wording (see `validate`).
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// 400 `invalid_request_error`, Groq's wording.
    Invalid { message: String, param: Option<String> },
    /// 404 `model_not_found`.
    ModelNotFound { model: String },
    /// 400 `context_length_exceeded`; `param` names the field holding the prompt (`messages`
    /// for chat, `input` for the Responses API).
    ContextLength { message: String, param: &'static str },
    /// 400 `model_decommissioned`: Groq retired the model; `replacement` is the one to use
    /// instead, if there is one.
    Decommissioned { model: String, replacement: Option<String> },
}

// The refusal data of the client limits: what a 429 or 413 must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requests,
    Tokens,
    Concurrency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Minute,
    Day,
}

/// A refused admission, with what the 429 (or 413) must say.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitExceeded {
    pub kind: Kind,
    pub window: Window,
    pub limit: u64,
    pub used: u64,
    pub requested: u64,
    /// `None`: the request is larger than the whole limit, waiting cannot help.
    pub wait: Option<Duration>,
    pub caller: Arc<str>,
    pub model: Option<Arc<str>>,
    pub headers: RateHeaders,
}

/// Every limit that can refuse a request: the `limit` label of `groxy_rate_limited_total` and
/// of the access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusingLimit {
    RequestsPerMinute,
    RequestsPerDay,
    TokensPerMinute,
    TokensPerDay,
    Concurrency,
    UpstreamBudget,
    AuthFailures,
    /// A budget in dollars (a key's or the gateway's, per day or per month).
    Budget,
}

impl RefusingLimit {
    pub const ALL: [RefusingLimit; 8] = [
        RefusingLimit::RequestsPerMinute,
        RefusingLimit::RequestsPerDay,
        RefusingLimit::TokensPerMinute,
        RefusingLimit::TokensPerDay,
        RefusingLimit::Concurrency,
        RefusingLimit::UpstreamBudget,
        RefusingLimit::AuthFailures,
        RefusingLimit::Budget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RefusingLimit::RequestsPerMinute => "requests_per_minute",
            RefusingLimit::RequestsPerDay => "requests_per_day",
            RefusingLimit::TokensPerMinute => "tokens_per_minute",
            RefusingLimit::TokensPerDay => "tokens_per_day",
            RefusingLimit::Concurrency => "concurrency",
            RefusingLimit::UpstreamBudget => "upstream_budget",
            RefusingLimit::AuthFailures => "auth_failures",
            RefusingLimit::Budget => "budget",
        }
    }
}

/// A spent budget: whose, over which period, and when that period ends.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRefusal {
    /// `key `alice`` or `the gateway`.
    pub whose: String,
    /// `daily` or `monthly`.
    pub period: &'static str,
    pub limit_usd: f64,
    pub spent_usd: f64,
    /// The request's worst-case cost, which did not fit.
    pub requested_usd: f64,
    /// Until the period ends (UTC midnight, or the first of next month).
    pub resets_in: Duration,
}

/// Left in a response's extensions when a limit refused the request, for observation to count.
#[derive(Debug, Clone, Copy)]
pub struct RefusedBy(pub RefusingLimit);

/// Errors the gateway makes (as opposed to errors Groq makes, which pass through untouched).
///
/// Messages are written for the API caller: they never carry a key, an internal address or a
/// Rust error chain. The detail worth debugging goes to the log at the place the error is made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("request body is too large: the limit is {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyRead,
    /// The whole body was not read in time (`limits.body_read_timeout`, or
    /// `limits.upload_read_timeout` for a streamed upload), whether the client sent it too
    /// slowly or it waited too long for room among the bodies being read.
    #[error("the request body was not received within {seconds} s")]
    BodyTimeout { seconds: u64 },
    #[error(
        "Unknown request URL: {method} {path}. Please check the URL for typos, or see the docs at https://console.groq.com/docs/"
    )]
    UnknownUrl { method: String, path: String },
    #[error("Method {method} is not allowed for {path}; this endpoint accepts {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
    #[error("Invalid request path: {reason}")]
    InvalidPath { reason: String },
    #[error("{endpoint} takes no request body")]
    BodyNotAllowed { endpoint: &'static str },
    #[error("could not reach the upstream API")]
    UpstreamUnreachable,
    #[error("the upstream API did not respond within {seconds} s")]
    UpstreamTimeout { seconds: u64 },
    #[error("the upstream API answered with HTTP {status} and a body that is not JSON")]
    UpstreamNonJson { status: u16 },
    #[error("the upstream API closed the response before it was complete")]
    UpstreamTruncated,
    #[error("the upstream API sent nothing for {seconds} s")]
    UpstreamIdle { seconds: u64 },
    #[error("the request exceeded groxy's total time limit of {seconds} s")]
    TotalTimeout { seconds: u64 },
    #[error("groxy is shutting down; retry the request")]
    ShuttingDown,
    /// Other requests held `validation.max_bytes_in_flight` for as long as this one could wait.
    #[error(
        "groxy is validating as many request bytes as it takes at once ({limit}) and could not start this one before its deadline; retry the request"
    )]
    ValidationBusy { limit: usize },
    #[error("internal error in groxy")]
    Internal,
    #[error("Content-Type {got:?} is not supported here: send the request body as {wanted}")]
    UnsupportedMediaType { got: String, wanted: String },
    /// Refused by validation; the wording is Groq's (see `validate`).
    #[error("{}", rejection_message(.0))]
    Rejected(Rejection),
    /// Missing or unknown client key: Groq's exact words, the same for both cases.
    #[error("Invalid API Key")]
    InvalidApiKey,
    #[error("Too many failed authentication attempts from this address. Please try again in {}.", go_duration(*retry_after))]
    AuthThrottled { retry_after: Duration },
    /// A client limit of groxy's own refused the request.
    #[error("{}", limit_message(.0))]
    RateLimited(Box<LimitExceeded>),
    #[error("admin endpoints are disabled: set admin.key_sha256 in the config or GROXY_ADMIN_KEY")]
    AdminDisabled,
    #[error("Invalid admin key: send it as `Authorization: Bearer <admin key>` or as the password of HTTP Basic auth")]
    InvalidAdminKey,
    /// A reload found problems; the old config stays in force.
    #[error("the new config was rejected and the old one stays in effect: {}", .0.join("; "))]
    ConfigRejected(Vec<String>),
    /// Groq's budget for this model is spent on every upstream key, and waiting would not help.
    /// `headers`: that budget as groxy knows it, so the client sees what refused it.
    #[error("Rate limit reached for model `{model}` on the upstream Groq organisation. Please try again in {}.", go_duration(*retry_after))]
    UpstreamBudget {
        model: String,
        retry_after: Duration,
        headers: Box<RateHeaders>,
    },
    /// A budget in dollars is spent: OpenAI's exhausted-quota answer, not worth retrying soon.
    #[error(
        "You exceeded the {} budget of {}: ${:.6} of ${:.6} spent, and this request may cost up to ${:.6}. It resets in {}.",
        .0.period, .0.whose, .0.spent_usd, .0.limit_usd, .0.requested_usd, go_duration(.0.resets_in)
    )]
    InsufficientQuota(Box<BudgetRefusal>),
    /// The caller's key may not use this model.
    #[error("This key is not allowed to use the model `{model}`.")]
    ModelNotAllowed { model: String },
    /// An admin API object that does not exist.
    #[error("No {what} with id `{id}`.")]
    NotFound { what: &'static str, id: String },
    /// An admin API change that cannot be made (a read-only key, a name in use).
    #[error("{message}")]
    Conflict { message: String, code: &'static str },
    /// The accounts database did not answer; an admin call that needs it cannot be served.
    #[error("the accounts database is unavailable; retry shortly")]
    DatabaseUnavailable,
}

fn limit_message(limit: &LimitExceeded) -> String {
    let (what, abbreviation) = match (limit.kind, limit.window) {
        (Kind::Requests, Window::Minute) => ("requests per minute", "RPM"),
        (Kind::Requests, Window::Day) => ("requests per day", "RPD"),
        (Kind::Tokens, Window::Minute) => ("tokens per minute", "TPM"),
        (Kind::Tokens, Window::Day) => ("tokens per day", "TPD"),
        (Kind::Concurrency, _) => ("concurrent requests", "concurrency"),
    };
    let scope = match &limit.model {
        Some(model) => format!("for key `{}` and model `{model}`", limit.caller),
        None => format!("for key `{}`", limit.caller),
    };
    match limit.wait {
        Some(wait) => format!(
            "Rate limit reached {scope} on {what} ({abbreviation}): Limit {}, Used {}, Requested {}. Please try again in {}.",
            limit.limit,
            limit.used,
            limit.requested,
            go_duration(wait)
        ),
        None => format!(
            "Request too large {scope} on {what} ({abbreviation}): Limit {}, Requested {}, please reduce your message size or max_completion_tokens and try again.",
            limit.limit, limit.requested
        ),
    }
}

fn rejection_message(rejection: &Rejection) -> String {
    match rejection {
        Rejection::Invalid { message, .. } | Rejection::ContextLength { message, .. } => message.clone(),
        Rejection::ModelNotFound { model } => {
            format!("The model `{model}` does not exist or you do not have access to it.")
        }
        // Groq's sentence, then the replacement it leaves the reader to look up.
        Rejection::Decommissioned { model, replacement } => {
            let groq = format!(
                "The model `{model}` has been decommissioned and is no longer supported. Please refer to https://console.groq.com/docs/deprecations for a recommendation on which model to use instead."
            );
            match replacement {
                Some(replacement) => format!("{groq} Its replacement is `{replacement}`."),
                None => groq,
            }
        }
    }
}

impl From<Rejection> for GatewayError {
    fn from(rejection: Rejection) -> Self {
        GatewayError::Rejected(rejection)
    }
}

/// `{"error":{"message","type","param","code"}}`: the shape every OpenAI SDK reads.
#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    /// Always present (`null` when there is none), except where Groq's body has no `param`.
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<Option<&'a str>>,
    code: Option<&'a str>,
}

impl<'a> ErrorObject<'a> {
    fn of(error: &'a GatewayError) -> Self {
        let (kind, code) = error.kind_and_code();
        ErrorObject {
            message: error.to_string(),
            kind,
            // Groq's body for a retired model is answered word for word: it has no `param`.
            param: (!matches!(error, GatewayError::Rejected(Rejection::Decommissioned { .. }))).then(|| error.param()),
            code,
        }
    }
}

impl GatewayError {
    /// Who failed decides the status: the client (4xx), Groq (502, 504), or us (500, 503).
    /// Exhaustive on purpose: a new variant must decide its status here.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BodyRead => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UnknownUrl { .. } => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::InvalidPath { .. } | GatewayError::BodyNotAllowed { .. } => StatusCode::BAD_REQUEST,
            GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamNonJson { .. }
            | GatewayError::UpstreamTruncated => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamIdle { .. }
            | GatewayError::TotalTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::ShuttingDown | GatewayError::ValidationBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::Rejected(
                Rejection::Invalid { .. } | Rejection::ContextLength { .. } | Rejection::Decommissioned { .. },
            ) => StatusCode::BAD_REQUEST,
            GatewayError::Rejected(Rejection::ModelNotFound { .. }) => StatusCode::NOT_FOUND,
            GatewayError::InvalidApiKey | GatewayError::InvalidAdminKey => StatusCode::UNAUTHORIZED,
            GatewayError::AdminDisabled => StatusCode::FORBIDDEN,
            GatewayError::ConfigRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GatewayError::AuthThrottled { .. } | GatewayError::UpstreamBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
            // Like Groq: a request bigger than the whole budget is 413, since retrying cannot help.
            GatewayError::RateLimited(limit) if limit.wait.is_none() => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::RateLimited(_) | GatewayError::InsufficientQuota(_) => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
            GatewayError::NotFound { .. } => StatusCode::NOT_FOUND,
            GatewayError::Conflict { .. } => StatusCode::CONFLICT,
            GatewayError::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The limit that refused the request, if a limit did.
    pub fn refused_by(&self) -> Option<RefusingLimit> {
        Some(match self {
            GatewayError::RateLimited(limit) => match (limit.kind, limit.window) {
                (Kind::Requests, Window::Minute) => RefusingLimit::RequestsPerMinute,
                (Kind::Requests, Window::Day) => RefusingLimit::RequestsPerDay,
                (Kind::Tokens, Window::Minute) => RefusingLimit::TokensPerMinute,
                (Kind::Tokens, Window::Day) => RefusingLimit::TokensPerDay,
                (Kind::Concurrency, _) => RefusingLimit::Concurrency,
            },
            GatewayError::UpstreamBudget { .. } => RefusingLimit::UpstreamBudget,
            GatewayError::AuthThrottled { .. } => RefusingLimit::AuthFailures,
            GatewayError::InsufficientQuota(_) => RefusingLimit::Budget,
            GatewayError::ModelNotAllowed { .. }
            | GatewayError::NotFound { .. }
            | GatewayError::Conflict { .. }
            | GatewayError::DatabaseUnavailable
            | GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead
            | GatewayError::BodyTimeout { .. }
            | GatewayError::UnknownUrl { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidPath { .. }
            | GatewayError::BodyNotAllowed { .. }
            | GatewayError::UpstreamUnreachable
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::UpstreamNonJson { .. }
            | GatewayError::UpstreamTruncated
            | GatewayError::UpstreamIdle { .. }
            | GatewayError::TotalTimeout { .. }
            | GatewayError::ShuttingDown
            | GatewayError::ValidationBusy { .. }
            | GatewayError::Internal
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::Rejected(_)
            | GatewayError::InvalidApiKey
            | GatewayError::AdminDisabled
            | GatewayError::InvalidAdminKey
            | GatewayError::ConfigRejected(_) => return None,
        })
    }

    /// The `kind` label of `groxy_upstream_errors_total` for an exchange with Groq that failed
    /// before its response could be relayed.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        Some(match self {
            GatewayError::UpstreamUnreachable => "unreachable",
            GatewayError::UpstreamTimeout { .. } => "timeout",
            GatewayError::UpstreamIdle { .. } => "idle_timeout",
            GatewayError::TotalTimeout { .. } => "total_timeout",
            GatewayError::UpstreamTruncated => "truncated",
            GatewayError::UpstreamNonJson { .. } => "non_json",
            GatewayError::BodyTooLarge { .. }
            | GatewayError::BodyRead
            | GatewayError::BodyTimeout { .. }
            | GatewayError::UnknownUrl { .. }
            | GatewayError::MethodNotAllowed { .. }
            | GatewayError::InvalidPath { .. }
            | GatewayError::BodyNotAllowed { .. }
            | GatewayError::ShuttingDown
            | GatewayError::ValidationBusy { .. }
            | GatewayError::Internal
            | GatewayError::UnsupportedMediaType { .. }
            | GatewayError::Rejected(_)
            | GatewayError::InvalidApiKey
            | GatewayError::AuthThrottled { .. }
            | GatewayError::RateLimited(_)
            | GatewayError::AdminDisabled
            | GatewayError::InvalidAdminKey
            | GatewayError::ConfigRejected(_)
            | GatewayError::UpstreamBudget { .. }
            | GatewayError::InsufficientQuota(_)
            | GatewayError::ModelNotAllowed { .. }
            | GatewayError::NotFound { .. }
            | GatewayError::Conflict { .. }
            | GatewayError::DatabaseUnavailable => return None,
        })
    }

    /// How long a client should wait before retrying, when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::AuthThrottled { retry_after } | GatewayError::UpstreamBudget { retry_after, .. } => {
                Some(*retry_after)
            }
            GatewayError::RateLimited(limit) => limit.wait,
            GatewayError::InsufficientQuota(refusal) => Some(refusal.resets_in),
            GatewayError::ShuttingDown | GatewayError::DatabaseUnavailable | GatewayError::ValidationBusy { .. } => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            GatewayError::Rejected(Rejection::Invalid { param, .. }) => param.as_deref(),
            GatewayError::Rejected(Rejection::ContextLength { param, .. }) => Some(param),
            GatewayError::Rejected(Rejection::ModelNotFound { .. }) | GatewayError::ModelNotAllowed { .. } => {
                Some("model")
            }
            _ => None,
        }
    }

    /// OpenAI's `type` and a stable machine-readable `code`.
    fn kind_and_code(&self) -> (&'static str, Option<&'static str>) {
        let (kind, code) = match self {
            // Groq's validation errors carry no code; keep the same so clients see one dialect.
            GatewayError::Rejected(Rejection::Invalid { .. }) => return ("invalid_request_error", None),
            GatewayError::Rejected(Rejection::ContextLength { .. }) => {
                ("invalid_request_error", "context_length_exceeded")
            }
            GatewayError::Rejected(Rejection::ModelNotFound { .. }) => ("invalid_request_error", "model_not_found"),
            GatewayError::Rejected(Rejection::Decommissioned { .. }) => {
                ("invalid_request_error", "model_decommissioned")
            }
            GatewayError::UnsupportedMediaType { .. } => ("invalid_request_error", "unsupported_media_type"),
            GatewayError::InvalidApiKey => ("invalid_request_error", "invalid_api_key"),
            GatewayError::InvalidAdminKey => ("invalid_request_error", "invalid_admin_key"),
            GatewayError::AdminDisabled => ("invalid_request_error", "admin_disabled"),
            GatewayError::ConfigRejected(_) => ("invalid_request_error", "config_rejected"),
            GatewayError::AuthThrottled { .. } => ("requests", "too_many_auth_failures"),
            GatewayError::RateLimited(limit) => match limit.kind {
                Kind::Tokens => ("tokens", "rate_limit_exceeded"),
                Kind::Requests | Kind::Concurrency => ("requests", "rate_limit_exceeded"),
            },
            GatewayError::UpstreamBudget { .. } => ("requests", "rate_limit_exceeded"),
            GatewayError::InsufficientQuota(_) => ("insufficient_quota", "insufficient_quota"),
            GatewayError::ModelNotAllowed { .. } => ("invalid_request_error", "model_not_allowed"),
            GatewayError::NotFound { .. } => ("invalid_request_error", "not_found"),
            GatewayError::Conflict { code, .. } => ("invalid_request_error", *code),
            GatewayError::DatabaseUnavailable => ("api_error", "database_unavailable"),
            GatewayError::BodyRead => ("invalid_request_error", "invalid_body"),
            GatewayError::BodyTimeout { .. } => ("invalid_request_error", "request_timeout"),
            GatewayError::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            GatewayError::UnknownUrl { .. } => ("invalid_request_error", "unknown_url"),
            GatewayError::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed"),
            GatewayError::InvalidPath { .. } => ("invalid_request_error", "invalid_path"),
            GatewayError::BodyNotAllowed { .. } => ("invalid_request_error", "body_not_allowed"),
            GatewayError::UpstreamUnreachable => ("api_error", "upstream_unreachable"),
            GatewayError::UpstreamTimeout { .. } => ("api_error", "upstream_timeout"),
            GatewayError::UpstreamNonJson { .. } => ("api_error", "upstream_error"),
            GatewayError::UpstreamTruncated => ("api_error", "upstream_truncated"),
            GatewayError::UpstreamIdle { .. } => ("api_error", "upstream_idle_timeout"),
            GatewayError::TotalTimeout { .. } => ("api_error", "total_timeout"),
            GatewayError::ShuttingDown => ("api_error", "server_shutting_down"),
            GatewayError::ValidationBusy { .. } => ("api_error", "server_busy"),
            GatewayError::Internal => ("api_error", "internal_error"),
        };
        (kind, Some(code))
    }

    /// The JSON body, with Groq's trailing newline.
    pub fn body(&self) -> Bytes {
        let envelope = ErrorEnvelope {
            error: ErrorObject::of(self),
        };
        let mut out = serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{}".to_vec());
        out.push(b'\n');
        Bytes::from(out)
    }

    /// The error as one SSE event, for failures after a stream's first byte: both OpenAI SDKs
    /// raise on a data frame with a top-level `error`, as they do for Groq's own mid-stream errors.
    pub fn sse_frame(&self) -> Bytes {
        let envelope = ErrorEnvelope {
            error: ErrorObject::of(self),
        };
        let json = serde_json::to_string(&envelope).unwrap_or_else(|_| "{}".to_owned());
        Bytes::from(format!("data: {json}\n\n"))
    }

    /// The error as one Responses API event (`event: error`), for failures after a Responses
    /// stream's first byte: the fields of OpenAI's `error` event (`type`, `code`, `message`,
    /// `param`, `sequence_number`: the next of the stream's numbers), plus the OpenAI `error`
    /// object, on which both OpenAI SDKs raise instead of waiting for a `response.completed`
    /// that will never come.
    pub fn responses_error_event(&self, sequence_number: u64) -> Bytes {
        #[derive(Serialize)]
        struct Event<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            code: Option<&'a str>,
            message: &'a str,
            param: Option<&'a str>,
            sequence_number: u64,
            error: &'a ErrorObject<'a>,
        }
        let error = ErrorObject::of(self);
        let event = Event {
            kind: "error",
            code: error.code,
            message: &error.message,
            param: error.param.flatten(),
            sequence_number,
            error: &error,
        };
        let json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
        Bytes::from(format!("event: error\ndata: {json}\n\n"))
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, self.body()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(wait) = self.retry_after() {
            retry_after(headers, wait);
        }
        if let GatewayError::RateLimited(limit) = &self {
            limit.headers.apply(headers);
        }
        if let GatewayError::UpstreamBudget { headers: budget, .. } = &self {
            budget.apply(headers);
        }
        // Every 429 groxy makes is worth retrying after its `retry-after`, but a spent budget
        // (which lasts until the period ends); its 413 never is.
        if matches!(self, GatewayError::InsufficientQuota(_)) {
            should_retry(headers, false);
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            should_retry(headers, true);
        } else if self.refused_by().is_some() {
            should_retry(headers, false);
        }
        if let GatewayError::MethodNotAllowed { allowed, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(allowed) {
                headers.insert(header::ALLOW, value);
            }
        }
        if matches!(self, GatewayError::InvalidAdminKey) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"groxy admin\", charset=\"UTF-8\""),
            );
        }
        if let Some(limit) = self.refused_by() {
            response.extensions_mut().insert(RefusedBy(limit));
        }
        response
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
