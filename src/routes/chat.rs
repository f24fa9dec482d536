//! `POST /v1/chat/completions`: validate, admit under the caller's limits, answer from the cache or a flight in progress, or forward the validated bytes under Groq's budget.

use std::sync::Arc;

use axum::{Extension, extract::State, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, header};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::{
    app::AppState,
    auth::Caller,
    body,
    cache::{self, CacheKey, Controls, Entry, Flight, Head, Role},
    error::GatewayError,
    limits::{Admission, render::RateHeaders},
    observe::{Record, RequestRecord, UpstreamTap},
    relay::{self, Outcome, RelayContext, Tap, Taps},
    upstream::{UpstreamKey, UpstreamRequest},
    usage::UsageTap,
    validate,
};

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestRecord(record)): Extension<RequestRecord>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let started = record.started;
    let (parts, incoming) = request.into_parts();
    check_content_type(&parts.headers)?;
    let config = state.config();
    let bytes = body::read_limited(incoming, &parts.headers, config.limits.chat_body.as_usize()).await?;
    let catalog = state.catalog().snapshot();
    let chat = validate::validate_chat(bytes, &config.validation, &config.models.aliases, catalog.as_deref())?;
    record.set_request(chat.model.as_str().into(), chat.stream);

    // A stored answer is looked up before admission: a hit counts as a request but reserves
    // no tokens, since it spends none upstream.
    let cache = state.cache();
    let key = cache.key_for(&caller, &chat.request);
    let controls = Controls::parse(&parts.headers);
    let mut hit = key.as_ref().and_then(|key| cache.lookup(key, &controls));
    if let (None, Some(key)) = (&hit, &key) {
        hit = cache.lookup_shared(key, &controls).await;
    }

    let model_max = catalog
        .as_deref()
        .and_then(|c| c.get(&chat.model))
        .map(|m| m.max_completion_tokens);
    let limiter = state.limiter();
    let reserved = match hit {
        Some(_) => 0,
        None => limiter.reservation(
            &config.rate_limits,
            chat.prompt_tokens_estimate,
            chat.max_completion_tokens,
            model_max,
        ),
    };
    let admission = limiter
        .admit(&config.rate_limits, &caller, &chat.model, reserved)
        .await
        .map_err(GatewayError::RateLimited)?;
    let rate_headers = admission.headers;

    let forward = Forward {
        state: state.clone(),
        caller_key: caller.upstream_authorization.clone(),
        headers: parts.headers,
        body: chat.body,
        model: chat.model,
        // Groq's budget is asked for the prompt and the completion the request itself caps,
        // not for groxy's default reservation, which is only a guess for the caller's limits.
        upstream_tokens: chat
            .prompt_tokens_estimate
            .saturating_add(chat.max_completion_tokens.unwrap_or(0)),
        started,
        record: Arc::clone(&record),
    };
    let mut response = match (key, hit) {
        (_, Some(entry)) => {
            admission.settle(Some(0));
            record.set_cache("HIT");
            cache::replay(&entry)
        }
        (None, None) => {
            record.set_cache("BYPASS");
            let mut response = forward.send(admission).await?;
            response.headers_mut().insert("x-groxy-cache", cache::BYPASS);
            response
        }
        (Some(key), None) => {
            let (role, registered) = if controls.no_cache {
                let flight = Flight::new(cache.max_entry_bytes());
                match flight.join() {
                    Some(reader) => (Role::Leader(flight, reader), false),
                    None => return Err(GatewayError::Internal),
                }
            } else {
                (cache.flights.join_or_lead(key, cache.max_entry_bytes()), true)
            };
            match role {
                Role::Joined(reader) => {
                    // Coalesced: no upstream tokens either; the reservation goes back.
                    admission.settle(Some(0));
                    record.set_cache("COALESCED");
                    let joined = Instant::now();
                    let head = reader.head().await?;
                    record.waited_on_flight(joined, Instant::now());
                    cache::from_reader(head, reader, cache::COALESCED)
                }
                Role::Leader(flight, reader) => {
                    record.set_cache("MISS");
                    let store = (!controls.no_store).then(|| cache.ttl(&controls));
                    tokio::spawn(drive(forward, admission, flight, key, registered, store));
                    let head = reader.head().await?;
                    cache::from_reader(head, reader, cache::MISS)
                }
            }
        }
    };
    decorate(response.headers_mut(), &rate_headers, &chat.rewrites);
    Ok(response)
}

/// What the gateway adds to every chat answer: the caller's rate-limit state and what
/// compatibility rewrote.
fn decorate(headers: &mut HeaderMap, rate: &RateHeaders, rewrites: &validate::Rewrites) {
    rate.apply(headers);
    if !rewrites.stripped.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&rewrites.stripped.join(",")) {
            headers.insert("x-groxy-stripped", value);
        }
    }
    if !rewrites.mapped.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&rewrites.mapped.join(",")) {
            headers.insert("x-groxy-mapped", value);
        }
    }
}

/// Everything needed to send the request to Groq, owned, so a flight's driver task can do it
/// after the client that started it has gone.
struct Forward {
    state: AppState,
    caller_key: Option<HeaderValue>,
    headers: HeaderMap,
    body: Bytes,
    model: String,
    upstream_tokens: u64,
    started: Instant,
    record: Arc<Record>,
}

impl Forward {
    /// Picks the upstream key (waiting for Groq's budget if need be), sends, and relays. The
    /// admission is settled with the real usage when the response ends.
    async fn send(self, admission: Admission) -> Result<Response, GatewayError> {
        let state = &self.state;
        let upstream_aware = state.config().rate_limits.upstream_aware;
        let key = match self.caller_key {
            Some(own) => UpstreamKey::Caller(own),
            None if !upstream_aware => UpstreamKey::Configured(0),
            None => {
                let queued = Instant::now();
                let acquired = state.budget().acquire(&self.model, self.upstream_tokens).await;
                // An immediate grant is groxy's own work (overhead); only a real wait is queueing.
                let waited = queued.elapsed();
                if waited >= std::time::Duration::from_millis(1) {
                    self.record.queued(waited);
                }
                let index = acquired.map_err(|exhausted| GatewayError::UpstreamBudget {
                    model: self.model.clone(),
                    retry_after: exhausted.retry_after,
                })?;
                UpstreamKey::Configured(index)
            }
        };
        let observer = Arc::clone(state.observer());
        let record = Arc::clone(&self.record);
        let mut taps = Taps::new();
        taps.push(UsageTap::new({
            let observer = Arc::clone(&observer);
            let record = Arc::clone(&record);
            move |report| {
                let used = match (report.outcome, report.status) {
                    (Outcome::Complete, 200..=299) => report.usage.map(|u| u.total_tokens),
                    _ => None,
                };
                admission.settle(used);
                if let Some(usage) = report.usage {
                    observer.usage(&record, usage);
                }
            }
        }));
        let key_label = match &key {
            UpstreamKey::Configured(index) => Some(format!("key-{}", index + 1).into()),
            UpstreamKey::Caller(_) => None,
        };
        taps.push(UpstreamTap::new(
            Arc::clone(&observer),
            Arc::clone(&record),
            key_label,
            self.model.as_str().into(),
        ));
        if let (UpstreamKey::Configured(index), true) = (&key, upstream_aware) {
            taps.push(BudgetTap {
                state: state.clone(),
                key: *index,
                model: self.model.as_str().into(),
            });
        }
        let upstream = state.upstream();
        let deadlines = upstream.deadlines(self.started);
        let request = UpstreamRequest {
            method: Method::POST,
            path: "chat/completions",
            headers: &self.headers,
            body: self.body.into(),
            streamed_body: false,
            key,
        };
        record.upstream_sent();
        let response = match upstream.send(request, self.started, &deadlines).await {
            Ok(response) => response,
            Err(error) => {
                if let Some(kind) = error.upstream_kind() {
                    observer.metrics.upstream_error(kind);
                }
                taps.end(Outcome::Failed);
                return Err(error);
            }
        };
        let abort = state.lifecycle().abort_token();
        let relayed = relay::respond(
            response,
            RelayContext {
                started: self.started,
                deadlines,
                abort,
                taps,
            },
        )
        .await;
        record.upstream_ready();
        if let Err(error) = &relayed {
            if let Some(kind) = error.upstream_kind() {
                observer.metrics.upstream_error(kind);
            }
        }
        relayed
    }
}

/// A flight's driver: sends the request once, feeds every reader, and stores a complete,
/// successful answer. Stops (cancelling the upstream call) when the last reader leaves.
async fn drive(
    forward: Forward,
    admission: Admission,
    flight: Arc<Flight>,
    key: CacheKey,
    registered: bool,
    store: Option<std::time::Duration>,
) {
    let state = forward.state.clone();
    let _end_for_readers = EndOnDrop(Arc::clone(&flight));
    let finish = |state: &AppState| {
        if registered {
            state.cache().flights.finish(&key, &flight);
        }
    };
    let response = tokio::select! {
        response = forward.send(admission) => response,
        () = flight.abandoned() => {
            finish(&state);
            return;
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            flight.fail(error);
            finish(&state);
            return;
        }
    };
    let (parts, mut body) = response.into_parts();
    let is_sse = crate::upstream::headers::is_event_stream(&parts.headers);
    flight.set_head(Head {
        status: parts.status,
        headers: parts.headers.clone(),
    });
    let complete = loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        flight.push(data);
                    }
                }
                Some(Err(_)) => {
                    flight.end(true);
                    break false;
                }
                None => {
                    flight.end(false);
                    break true;
                }
            },
            () = flight.abandoned() => {
                flight.end(true);
                break false;
            }
        }
    };
    drop(body);
    if let (true, Some(ttl), true) = (complete, store, parts.status.is_success()) {
        if let Some((chunks, size)) = flight.whole_body() {
            if size <= state.cache().max_entry_bytes() && !(is_sse && cache::has_error_event(&chunks)) {
                let entry = Entry {
                    status: parts.status.as_u16(),
                    content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                    request_id: parts.headers.get(crate::upstream::headers::GROQ_REQUEST_ID).cloned(),
                    chunks: cache::compact(&chunks, size),
                    size,
                    is_sse,
                    stored_at: Instant::now(),
                    ttl,
                };
                state.cache().insert(key, entry);
            }
        }
    }
    finish(&state);
}

/// Makes sure a flight's readers hear of its end even if the driver never gets to say it.
struct EndOnDrop(Arc<Flight>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.fail_unless_ended(GatewayError::Internal);
    }
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
