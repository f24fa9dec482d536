//! Fallbacks of a request: the other models (and the flex-to-on-demand retry) the forward path may try when the requested model fails before its first byte.

use crate::{
    auth::Caller,
    state::AppState,
    upstream::{AdmitModel, Alternatives, Target},
    validate,
};

/// What the forward path may try when the requested model fails before its first byte:
/// `models.fallbacks` (each the catalogue lists, when it is loaded, and the caller may use),
/// each admitted by the caller's per-model limits when it comes to it; and for a flex request,
/// with `models.flex_fallback_to_on_demand`, the same request at `on_demand`.
pub fn alternatives(
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

/// Whether the caller may use `model` as a fallback: a stored key limited to some models
/// never gets an answer from another one, even when the model it asked for is down.
fn may_use(caller: &Caller, model: &str) -> bool {
    caller.account.as_ref().is_none_or(|account| account.allows(model))
}
