//! Chat request validation: check the body once, decide compatibility rewrites, check Groq's rules, and decide the bytes Groq receives.
//!
//! Steps, in order (each a submodule):
//! 1. `strict`: one JSON document; duplicate keys, bad UTF-8, lone surrogates, overflowing
//!    numbers, deep nesting and trailing garbage are refused. A cheap walk (`quick`) answers for
//!    plainly valid bodies; serde_json's exact pass, which words the errors, for the rest.
//! 2. `compat`: model aliases, OpenAI-only fields (strip / reject / forward), OpenAI enum values,
//!    decided as `request::Edits` that every later reader applies.
//! 3. `nul`, then `rules` and `messages`: Groq's field and per-role rules, in Groq's wording.
//! 4. The model catalogue (when known): unknown model, `max_completion_tokens` above the model's
//!    limit, and an estimated prompt (`estimate`, a lower bound) plus completion over the window.
//!
//! No step builds a tree: each reads the client's bytes in place (`json`), so validating costs
//! about the body itself, and `gate` bounds the bytes under validation at once.
//!
//! Invariant 5 (one view of the request): when no rewrite applied, Groq receives the client's
//! exact bytes; when one did, it receives the serialisation of the very request that was checked
//! (`rewrite`: the same bytes with the same edits the checks read through).

mod compat;
mod estimate;
mod gate;
mod messages;
mod nul;
#[cfg(test)]
mod props;
mod quick;
mod request;
mod responses;
mod responses_input;
mod rewrite;
mod rules;
mod strict;
mod wording;

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use tokio::time::Instant;

pub use crate::wire::json::{Kind, Raw};
pub use compat::Rewrites;
pub use gate::Gate;
pub use request::Checked;
use responses::validate_responses;

pub use crate::error::Rejection;
use crate::{catalog::Catalog, config::ValidationConfig, error::GatewayError, routes::table::Endpoint};

/// What the later steps need to know about a request, whatever its endpoint.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The JSON bytes to send to Groq (empty for bodiless and streamed requests).
    pub body: Bytes,
    /// The model the request names, if its body names one.
    pub model: Option<Arc<str>>,
    pub stream: bool,
    /// A lower bound of the prompt's tokens (chat and responses; 0 elsewhere).
    pub prompt_estimate: u64,
    /// The cap on generated tokens the request states, if it states one.
    pub max_completion: Option<u64>,
    pub rewrites: Rewrites,
    /// The checked request, for the cache key: only for endpoints the cache serves.
    pub cacheable: Option<Checked>,
}

/// Checks a request the way its endpoint needs: the chat and Responses rules in full; for the other JSON
/// endpoints one strict check (one view of the request: duplicate keys refused) and the few
/// fields the limits need; nothing for bodiless and streamed requests.
///
/// A body waits in `gate` until it fits under `validation.max_bytes_in_flight`; still waiting at
/// `deadline`, the request is answered 503.
pub async fn check(
    endpoint: Endpoint,
    json: Option<Bytes>,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
    gate: &Gate,
    deadline: Instant,
) -> Result<Call, GatewayError> {
    let Some(body) = json else {
        return Ok(Call::default());
    };
    let limit = config.max_bytes_in_flight.0;
    let _held = tokio::time::timeout_at(deadline, gate.enter(body.len() as u64, limit))
        .await
        .map_err(|_| GatewayError::ValidationBusy {
            limit: config.max_bytes_in_flight.as_usize(),
        })?;
    if endpoint == Endpoint::ChatCompletions {
        let chat = validate_chat(body, config, aliases, catalog)?;
        return Ok(Call {
            body: chat.body,
            model: Some(chat.model.into()),
            stream: chat.stream,
            prompt_estimate: chat.prompt_tokens_estimate,
            max_completion: chat.max_completion_tokens,
            rewrites: chat.rewrites,
            cacheable: Some(chat.request),
        });
    }
    if endpoint == Endpoint::Responses {
        let checked = validate_responses(body, config, aliases, catalog)?;
        return Ok(Call {
            body: checked.body,
            model: Some(checked.model.into()),
            stream: checked.stream,
            prompt_estimate: checked.prompt_tokens_estimate,
            max_completion: checked.max_output_tokens,
            rewrites: checked.rewrites,
            cacheable: Some(checked.request),
        });
    }
    Ok(check_other(body)?)
}

/// A JSON endpoint other than chat: one strict check and the fields the limits read.
fn check_other(body: Bytes) -> Result<Call, Rejection> {
    strict::check(&body).map_err(|message| Rejection::Invalid { message, param: None })?;
    let request = object(&body)
        .map_err(|got| wording::invalid("", format!("request body must be a JSON object, but got {got}")))?;
    let [model, stream, max_output, max_completion, max_tokens] = request.pick(&[
        "model",
        "stream",
        "max_output_tokens",
        "max_completion_tokens",
        "max_tokens",
    ]);
    let model = match model {
        None => None,
        Some(model) if model.is_null() => None,
        Some(model) => match model.as_str() {
            Some(model) => Some(Arc::from(&*model)),
            None => {
                return Err(wording::invalid(
                    "model",
                    format!("expected string, but got {}", wording::kind(model)),
                ));
            }
        },
    };
    let stream = stream.and_then(Raw::as_bool) == Some(true);
    let max_completion = [max_output, max_completion, max_tokens]
        .into_iter()
        .find_map(|field| field.and_then(Raw::as_u64));
    Ok(Call {
        body,
        model,
        stream,
        max_completion,
        ..Call::default()
    })
}

/// The checked request with only `model` (and `service_tier`, when given) changed, serialised
/// the way a compatibility rewrite is: the body of a fallback attempt, or of a flex request sent
/// again at `on_demand`. `None` for an endpoint whose request is not kept (not chat or responses).
///
/// Encoded from the client's bytes with the checked request's edits (not from the bytes sent),
/// so each value is exactly the one that was checked.
pub fn with_model(call: &Call, model: &str, service_tier: Option<&str>) -> Option<Bytes> {
    let checked = call.cacheable.as_ref()?;
    let (original, mut edits) = checked.source();
    edits.model = Some(model.to_owned());
    if let Some(tier) = service_tier {
        edits.service_tier = Some(tier.to_owned());
    }
    let top = object(original).ok()?;
    rewrite::encode(top, &edits).ok().map(Bytes::from)
}

/// The checked body's top-level value if it is an object, else the kind it is.
fn object(body: &[u8]) -> Result<Raw<'_>, &'static str> {
    match Raw::root(body) {
        Some(root) if root.is_object() => Ok(root),
        root => Err(root.map_or("null", wording::kind)),
    }
}

fn not_an_object(got: &str) -> Rejection {
    Rejection::Invalid {
        message: format!("request body must be a JSON object, but got {got}"),
        param: None,
    }
}

/// A request that passed validation, with what later steps need to know about it.
#[derive(Debug, Clone)]
pub struct ValidatedChat {
    /// The bytes to send to Groq.
    pub body: Bytes,
    pub model: String,
    pub stream: bool,
    /// Requested completion tokens, if the request set a limit.
    pub max_completion_tokens: Option<u64>,
    /// Lower-bound estimate of the prompt's tokens.
    pub prompt_tokens_estimate: u64,
    pub rewrites: Rewrites,
    /// The checked request (what `body` encodes), for the cache key.
    pub request: Checked,
}

/// Validates a chat completion body. `catalog` is `None` until the model list has been fetched,
/// in which case model-dependent checks are skipped rather than guessed.
pub fn validate_chat(
    body: Bytes,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
) -> Result<ValidatedChat, Rejection> {
    let plain = strict::check(&body).map_err(|message| Rejection::Invalid { message, param: None })?;
    let top = request::Top::new(object(&body).map_err(not_an_object)?);
    let reject_unknown = config.unknown_fields == crate::config::FieldPolicy::Reject;
    let walk = match top.get("messages").filter(|m| m.is_array()) {
        Some(items) => messages::walk(
            items,
            &compat::strips_openai_fields(config),
            reject_unknown,
            config.max_messages,
        ),
        None => messages::Walk::default(),
    };
    let (rewrites, edits) = compat::plan(&top, &walk, config, aliases)?;
    // A NUL can only be spelled `\u0000` inside a string (a raw control byte is not JSON), so
    // the walk runs only for bodies the strict check saw that spelling in.
    if config.reject_nul && plain.nul {
        nul::check(top.raw(), &edits)?;
    }
    let checked = rules::check(&top, &edits, &walk, config.max_messages)?;
    let model = checked.model;
    let stream = checked.stream;
    let max_completion = checked.max_completion;
    let prompt_tokens_estimate = walk.prompt_tokens + estimate::tool_tokens(top.get("tools"));

    if let Some(catalog) = catalog {
        let Some(limits) = catalog.get(&model) else {
            return Err(Rejection::ModelNotFound { model });
        };
        if let Some((requested, field)) = max_completion {
            if requested as u64 > limits.max_completion_tokens {
                let max = limits.max_completion_tokens;
                return Err(Rejection::Invalid {
                    message: format!(
                        "`{field}` must be less than or equal to `{max}`, the maximum value for `{field}` is less than the `context_window` for this model"
                    ),
                    param: Some(field.to_owned()),
                });
            }
        }
        let completion = max_completion.map_or(0, |(v, _)| v as u64);
        if prompt_tokens_estimate.saturating_add(completion) > limits.context_window {
            return Err(Rejection::ContextLength {
                message: format!(
                    "This model's maximum context length is {} tokens. However, you requested at least {} tokens ({} in the messages, {} in the completion). Please reduce the length of the messages or completion.",
                    limits.context_window,
                    prompt_tokens_estimate.saturating_add(completion),
                    prompt_tokens_estimate,
                    completion
                ),
                param: "messages",
            });
        }
    }

    let request = if rewrites.is_empty() {
        Checked::new(body.clone(), &top, None)
    } else {
        let encoded = rewrite::encode(top.raw(), &edits).map_err(|_| Rejection::Invalid {
            message: "request could not be re-encoded".into(),
            param: None,
        })?;
        let encoded = Bytes::from(encoded);
        let sent = request::Top::new(object(&encoded).map_err(not_an_object)?);
        Checked::new(encoded.clone(), &sent, Some((body.clone(), edits)))
    };
    Ok(ValidatedChat {
        body: request.body().clone(),
        request,
        model,
        stream,
        max_completion_tokens: max_completion.map(|(v, _)| v as u64),
        prompt_tokens_estimate,
        rewrites,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::response::IntoResponse;

    use super::*;

    fn chat() -> Bytes {
        Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_still_waiting_for_room_at_its_deadline_is_a_503() {
        let (gate, config, aliases) = (Gate::default(), ValidationConfig::default(), BTreeMap::new());
        let all = config.max_bytes_in_flight.0;
        let held = gate.enter(all, all).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let waited = check(
            Endpoint::ChatCompletions,
            Some(chat()),
            &config,
            &aliases,
            None,
            &gate,
            deadline,
        )
        .await;
        let Err(error) = waited else {
            panic!("validated while another body held every byte");
        };
        assert!(Instant::now() >= deadline, "it waited until the deadline");
        let response = error.into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body = axum::body::to_bytes(response.into_body(), 4096).await.expect("body");
        let error: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(error["error"]["code"], "server_busy");
        assert_eq!(error["error"]["type"], "api_error");

        drop(held);
        let deadline = Instant::now() + Duration::from_secs(30);
        let call = check(
            Endpoint::ChatCompletions,
            Some(chat()),
            &config,
            &aliases,
            None,
            &gate,
            deadline,
        )
        .await
        .expect("room again");
        assert_eq!(call.model.as_deref(), Some("m"));
    }
}
