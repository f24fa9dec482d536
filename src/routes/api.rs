//! Every authenticated API route, through the same steps in the same code: the request path of ARCHITECTURE.md, one step a paragraph.

use axum::{Extension, extract::State, response::Response};
use http::{HeaderMap, HeaderValue, Request};
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    fallback,
    table::{self, Endpoint},
};
use crate::{
    auth::Caller,
    cache::{self, CacheStatus, Controls, Served},
    error::GatewayError,
    intake::{self, Intake},
    keyring,
    limits::SpendHold,
    observe::{self, ExchangeTap, GenAiRequest, RequestRecord},
    relay::Taps,
    retired,
    state::AppState,
    validate::{self, Rewrites},
    wire::ratelimit::RateHeaders,
};

/// `auth` (the route layer) → table → intake → validate → cache lookup → the caller's limits →
/// cache / coalesce → forward (Groq's budget, upstream, relay) → observe (the taps).
pub async fn api(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(RequestRecord(record)): Extension<RequestRecord>,
    request: Request<axum::body::Body>,
) -> Result<Response, GatewayError> {
    let route = table::resolve(request.method(), request.uri())?;
    let config = state.config();
    let (mut parts, body) = request.into_parts();
    let catalog = state.catalog().snapshot();
    let (call, upload, remapped) = read_call(&state, &route, &parts.headers, body, catalog.as_deref(), &record).await?;
    record.set_request(call.model.clone(), call.stream);
    keyring::check_model(caller.account.as_deref(), call.model.as_deref())?;

    // A stored answer is looked up before admission: a hit counts as a request but reserves
    // no tokens, since it spends none upstream.
    let cache = state.cache();
    let key = cache.key_for(&caller, route.endpoint, call.cacheable.as_ref());
    // Read only for a request the cache may answer.
    let controls = match &key {
        Some(_) => Controls::parse(&parts.headers),
        None => Controls::default(),
    };
    let stored = match &key {
        Some(key) => {
            cache
                .stored(key, &controls)
                .instrument(observe::step_span(&record.span, "cache.lookup"))
                .await
        }
        None => None,
    };
    let reserved = reservation(
        &state,
        &config,
        &caller,
        route.endpoint,
        &call,
        catalog.as_deref(),
        stored.is_some(),
    );

    let admission = state
        .limiter()
        .admit(&config.rate_limits, &caller, call.model.as_deref(), reserved)
        .instrument(observe::step_span(&record.span, "limits.admit"))
        .await
        .map_err(GatewayError::RateLimited)?
        .for_request(call.prompt_estimate, call.stream);
    let spend = reserve_spend(&state, &config, &caller, &call, catalog.as_deref(), stored.is_some()).await?;
    record.admitted();
    let rate = admission.headers;

    // Only a request that goes to Groq gets an upstream span, its taps and its forward.
    let exchange = |admission, spend: Option<SpendHold>| {
        let upstream_span = observe::upstream_span(&record.span, &gen_ai_request(route.endpoint, &call));
        observe::inject(&upstream_span, record.unsampled.as_ref(), &mut parts.headers);
        let mut taps = Taps::new();
        taps.push(ExchangeTap::new(
            std::sync::Arc::clone(state.observer()),
            std::sync::Arc::clone(&record),
            upstream_span,
        ));
        if caller.upstream_authorization.is_some() {
            taps.push(cache.verified.tap(caller.partition));
        }
        taps.push(admission);
        if let Some(spend) = spend {
            taps.push(spend);
        }
        let mut forward = state.forward(&route, &caller, parts.headers, &call, upload, record.started);
        forward.span = record.span.clone();
        forward.alternatives = fallback::alternatives(&state, &config, &caller, &call, catalog.as_deref());
        (forward, taps)
    };
    let (mut response, status) = match (stored, key) {
        (Some(entry), _) => {
            admission.settle(Some(0));
            drop(spend);
            (cache::replay(&entry), CacheStatus::Hit)
        }
        (None, None) => {
            let (forward, taps) = exchange(admission, spend);
            (forward.send(taps).await?, CacheStatus::Bypass)
        }
        (None, Some(key)) => match cache::serve_from_flight(cache, key, &controls)? {
            Served::Joined(reader) => {
                // Coalesced: no upstream tokens either; the reservations go back.
                admission.settle(Some(0));
                drop(spend);
                record.set_cache(CacheStatus::Coalesced);
                let joined = Instant::now();
                let response = cache::join(reader).await?;
                record.waited_on_flight(joined, Instant::now());
                (response, CacheStatus::Coalesced)
            }
            Served::Lead(lead) => {
                record.set_cache(CacheStatus::Miss);
                let (forward, taps) = exchange(admission, spend);
                (lead.start(forward, taps).await?, CacheStatus::Miss)
            }
        },
    };
    if call.cacheable.is_some() {
        record.set_cache(status);
        response.headers_mut().insert("x-groxy-cache", status.header());
    }
    decorate(response.headers_mut(), &rate, &call.rewrites);
    retired::mark(response.headers_mut(), remapped.as_ref());
    Ok(response)
}

/// The body as the endpoint takes it, and the request it holds, checked: the intake, retired
/// models and validation steps. An upload stays a stream, returned beside the (empty) call.
async fn read_call(
    state: &AppState,
    route: &table::Route,
    headers: &HeaderMap,
    body: axum::body::Body,
    catalog: Option<&crate::catalog::Catalog>,
    record: &observe::Record,
) -> Result<(validate::Call, Intake, Option<retired::Remapped>), GatewayError> {
    let config = state.config();
    let intake = intake::read(
        route.body,
        route.endpoint.label(),
        headers,
        body,
        &config.limits,
        state.lifecycle().bodies(),
    )
    .await?;
    let (json, upload, remapped) = match intake {
        Intake::Json(bytes) => {
            let (bytes, remapped) = retired::apply(bytes, &config.models, catalog, state.retired_warnings())?;
            (Some(bytes), Intake::Empty, remapped)
        }
        other => (None, other, None),
    };
    // Waiting for room among the bodies being validated counts against the body's deadline.
    let call = validate::check(
        route.endpoint,
        json,
        &config.validation,
        &config.models.aliases,
        catalog,
        state.validation(),
        record.started + config.limits.body_read_timeout.0,
    )
    .instrument(observe::step_span(&record.span, "validate"))
    .await?;
    Ok((call, upload, remapped))
}

/// Tokens the caller's limits reserve: none for a stored answer (it spends nothing upstream);
/// for chat and responses the prompt estimate and the output it may produce; elsewhere only a cap the
/// request states (Groq's usage settles the rest).
fn reservation(
    state: &AppState,
    config: &crate::config::Config,
    caller: &Caller,
    endpoint: Endpoint,
    call: &validate::Call,
    catalog: Option<&crate::catalog::Catalog>,
    hit: bool,
) -> u64 {
    match (hit, endpoint) {
        (true, _) => 0,
        (false, Endpoint::ChatCompletions | Endpoint::Responses) => {
            let model_max = catalog
                .zip(call.model.as_deref())
                .and_then(|(catalog, model)| catalog.get(model))
                .map(|model| model.max_completion_tokens);
            state.limiter().reservation(
                &config.rate_limits,
                caller,
                call.model.as_deref(),
                call.prompt_estimate,
                call.max_completion,
                model_max,
            )
        }
        // Elsewhere only a cap the request states is reserved; the usage Groq reports settles.
        (false, _) => call.max_completion.unwrap_or(0),
    }
}

/// Budgets in dollars: the request's worst-case cost reserved against every budget that
/// applies (none for a stored answer, which costs nothing, or an unpriced model).
async fn reserve_spend(
    state: &AppState,
    config: &crate::config::Config,
    caller: &Caller,
    call: &validate::Call,
    catalog: Option<&crate::catalog::Catalog>,
    hit: bool,
) -> Result<Option<SpendHold>, GatewayError> {
    let prices = state.prices();
    let Some(price) = call.model.as_deref().filter(|_| !hit).and_then(|m| prices.get(m)) else {
        return Ok(None);
    };
    let model_max = catalog
        .zip(call.model.as_deref())
        .and_then(|(catalog, model)| catalog.get(model))
        .map(|model| model.max_completion_tokens);
    let completion = call
        .max_completion
        .or(model_max)
        .unwrap_or(config.rate_limits.completion_reservation);
    // Every token is at least one byte: the body's length bounds the prompt.
    let worst = price.cost(call.body.len() as u64, 0, completion);
    let limiter = state.limiter();
    let reserve = limiter.reserve_spend(&config.budgets, caller, price, worst, call.prompt_estimate, call.stream);
    let hold = reserve.await.map_err(GatewayError::InsufficientQuota)?;
    Ok(hold.map(|hold| hold.repriced_from(prices)))
}

/// The request settings the GenAI conventions put on the upstream span; never content.
fn gen_ai_request(endpoint: Endpoint, call: &validate::Call) -> GenAiRequest {
    let number = |field: &str| {
        call.cacheable
            .as_ref()
            .and_then(|tree| tree.get(field))
            .and_then(|v| v.as_f64())
    };
    GenAiRequest {
        operation: match endpoint {
            Endpoint::ChatCompletions | Endpoint::Responses => "chat",
            other => other.label(),
        },
        model: call.model.as_deref().map(str::to_owned),
        max_tokens: call.max_completion,
        temperature: number("temperature"),
        top_p: number("top_p"),
        stream: call.stream,
    }
}

/// What the gateway adds to every API answer: the caller's rate-limit state and what
/// compatibility rewrote.
fn decorate(headers: &mut HeaderMap, rate: &RateHeaders, rewrites: &Rewrites) {
    rate.apply(headers);
    for (name, values) in [
        ("x-groxy-stripped", rewrites.stripped.join(",")),
        ("x-groxy-mapped", rewrites.mapped.join(",")),
    ] {
        if values.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&values) {
            headers.insert(name, value);
        }
    }
}
