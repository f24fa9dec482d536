//! Every authenticated API route, through the same steps in the same code: the request path of ARCHITECTURE.md, one step a paragraph.

use axum::{Extension, extract::State, response::Response};
use http::{HeaderMap, HeaderValue, Request};
use tokio::time::Instant;
use tracing::Instrument;

use super::table::{self, Endpoint};
use crate::{
    auth::Caller,
    cache::{self, CacheStatus, Controls, Served},
    error::GatewayError,
    intake::{self, Intake},
    keyring,
    limits::SpendHold,
    observe::{self, ExchangeTap, GenAiRequest, RequestRecord},
    relay::Taps,
    state::AppState,
    upstream::{AdmitModel, Alternatives, Target},
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
    let intake = intake::read(
        route.body,
        route.endpoint.label(),
        &parts.headers,
        body,
        &config.limits,
        state.lifecycle().bodies(),
    )
    .await?;
    let (json, upload) = match intake {
        Intake::Json(bytes) => (Some(bytes), Intake::Empty),
        other => (None, other),
    };
    let catalog = state.catalog().snapshot();
    let call = step("validate", || {
        validate::check(
            route.endpoint,
            json,
            &config.validation,
            &config.models.aliases,
            catalog.as_deref(),
        )
    })?;
    record.set_request(call.model.clone(), call.stream);
    keyring::check_model(caller.account.as_deref(), call.model.as_deref())?;

    // A stored answer is looked up before admission: a hit counts as a request but reserves
    // no tokens, since it spends none upstream.
    let cache = state.cache();
    let controls = Controls::parse(&parts.headers);
    let key = cache.key_for(&caller, call.cacheable.as_ref());
    let stored = match &key {
        Some(key) => cache.stored(key, &controls).instrument(step_span("cache.lookup")).await,
        None => None,
    };
    let model_max = catalog
        .as_deref()
        .zip(call.model.as_deref())
        .and_then(|(catalog, model)| catalog.get(model))
        .map(|model| model.max_completion_tokens);
    let reserved = match (&stored, route.endpoint) {
        (Some(_), _) => 0,
        (None, Endpoint::ChatCompletions) => state.limiter().reservation(
            &config.rate_limits,
            &caller,
            call.model.as_deref(),
            call.prompt_estimate,
            call.max_completion,
            model_max,
        ),
        // Elsewhere only a cap the request states is reserved; the usage Groq reports settles.
        (None, _) => call.max_completion.unwrap_or(0),
    };
    let admission = state
        .limiter()
        .admit(&config.rate_limits, &caller, call.model.as_deref(), reserved)
        .instrument(step_span("limits.admit"))
        .await
        .map_err(GatewayError::RateLimited)?
        .for_request(call.prompt_estimate, call.stream);
    // Budgets in dollars: the worst case is reserved (a stored answer costs nothing).
    let price = call.model.as_deref().and_then(|model| state.prices().get(model));
    let spend = match (&stored, price) {
        (None, Some(price)) => {
            let completion = call
                .max_completion
                .or(model_max)
                .unwrap_or(config.rate_limits.completion_reservation);
            // Every token is at least one byte: the body's length bounds the prompt.
            let worst = price.cost(call.body.len() as u64, 0, completion);
            let budgets = &config.budgets;
            let reserve =
                state
                    .limiter()
                    .reserve_spend(budgets, &caller, price, worst, call.prompt_estimate, call.stream);
            reserve.await.map_err(GatewayError::InsufficientQuota)?
        }
        _ => None,
    };
    record.admitted();
    let rate = admission.headers;

    // Only a request that goes to Groq gets an upstream span, its taps and its forward.
    let exchange = |admission, spend: Option<SpendHold>| {
        let upstream_span = observe::upstream_span(&record.span, &gen_ai_request(route.endpoint, &call));
        observe::inject(&upstream_span, &mut parts.headers);
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
        forward.alternatives = alternatives(&state, &config, &caller, &call, catalog.as_deref());
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
    Ok(response)
}

/// What the forward path may try when the requested model fails before its first byte:
/// `models.fallbacks` (each the catalogue lists, when it is loaded, and the caller may use),
/// each admitted by the caller's per-model limits when it comes to it; and for a flex request,
/// with `models.flex_fallback_to_on_demand`, the same request at `on_demand`.
fn alternatives(
    state: &AppState,
    config: &std::sync::Arc<crate::config::Config>,
    caller: &Caller,
    call: &validate::Call,
    catalog: Option<&crate::catalog::Catalog>,
) -> Alternatives {
    let Some(model) = call.model.as_deref() else {
        return Alternatives::default();
    };
    let chain = config.models.fallbacks.get(model);
    let flex = config.models.flex_fallback_to_on_demand
        && call
            .cacheable
            .as_ref()
            .and_then(|tree| tree.get("service_tier"))
            .is_some_and(|tier| tier == "flex");
    if chain.is_none() && !flex {
        return Alternatives::default();
    }
    let on_demand = |model: &str| {
        flex.then(|| validate::with_model(call, model, Some("on_demand")))
            .flatten()
    };
    let fallbacks = chain
        .into_iter()
        .flatten()
        .filter(|fallback| catalog.is_none_or(|catalog| catalog.get(fallback).is_some()))
        .filter(|fallback| may_use(caller, fallback))
        .filter_map(|fallback| {
            Some(Target {
                model: fallback.as_str().into(),
                body: validate::with_model(call, fallback, None)?,
                on_demand: on_demand(fallback),
            })
        })
        .collect::<Vec<_>>();
    // Only the caller's limits for the fallback model itself: the request was already counted
    // across models (and against the model it asked for) when it was admitted.
    let mut per_model = config.rate_limits.clone();
    per_model.default = Default::default();
    per_model.keys.clear();
    let per_model = std::sync::Arc::new(per_model);
    let (state, caller) = (state.clone(), caller.clone());
    // Each fallback's completion cap, for its reservation (as the request's own was reserved).
    let caps: Vec<(std::sync::Arc<str>, Option<u64>)> = fallbacks
        .iter()
        .map(|target| {
            let cap = catalog
                .and_then(|c| c.get(&target.model))
                .map(|m| m.max_completion_tokens);
            (std::sync::Arc::clone(&target.model), cap)
        })
        .collect();
    let (prompt, max_completion, stream) = (call.prompt_estimate, call.max_completion, call.stream);
    let admit: AdmitModel = std::sync::Arc::new(move |model| {
        let (state, caller, per_model) = (state.clone(), caller.clone(), std::sync::Arc::clone(&per_model));
        let model_max = caps.iter().find(|(m, _)| *m == model).and_then(|(_, cap)| *cap);
        Box::pin(async move {
            let limiter = state.limiter();
            let reserved = limiter.reservation(&per_model, &caller, Some(&model), prompt, max_completion, model_max);
            let admission = limiter.admit(&per_model, &caller, Some(&model), reserved).await.ok()?;
            Some(admission.for_request(prompt, stream))
        })
    });
    Alternatives {
        on_demand: on_demand(model),
        fallbacks,
        admit: Some(admit),
    }
}

/// Whether the caller may use `model` as a fallback. Every caller may use every model today;
/// per-key allowed models (another issue) decide here.
fn may_use(_caller: &Caller, _model: &str) -> bool {
    true
}

/// A child span of the request's for one step that takes time (disabled when tracing is off).
fn step_span(name: &'static str) -> tracing::Span {
    tracing::info_span!(target: "groxy::otel", "step", otel.name = name)
}

fn step<T>(name: &'static str, run: impl FnOnce() -> T) -> T {
    step_span(name).in_scope(run)
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
