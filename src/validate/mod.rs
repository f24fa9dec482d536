//! Chat request validation: parse once, apply compatibility rewrites, check Groq's rules, and decide the bytes Groq receives.
//!
//! Steps, in order (each a submodule):
//! 1. `strict`: one JSON tree; duplicate keys, bad UTF-8, lone surrogates, overflowing numbers,
//!    deep nesting and trailing garbage are refused.
//! 2. `compat`: model aliases, OpenAI-only fields (strip / reject / forward), OpenAI enum values.
//! 3. `rules` and `messages`: Groq's field and per-role rules, in Groq's wording.
//! 4. The model catalogue (when known): unknown model, `max_completion_tokens` above the model's
//!    limit, and an estimated prompt (`estimate`, a lower bound) plus completion over the window.
//!
//! Invariant 5 (one view of the request): when no rewrite applied, Groq receives the client's
//! exact bytes; when one did, it receives the serialisation of the very tree that was checked.

mod compat;
mod estimate;
mod messages;
#[cfg(test)]
mod props;
mod rules;
mod strict;
mod wording;

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use serde_json::{Map, Value};

pub use compat::Rewrites;

pub use crate::error::Rejection;
use crate::{catalog::Catalog, config::ValidationConfig, routes::table::Endpoint};

/// What the later steps need to know about a request, whatever its endpoint.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The JSON bytes to send to Groq (empty for bodiless and streamed requests).
    pub body: Bytes,
    /// The model the request names, if its body names one.
    pub model: Option<Arc<str>>,
    pub stream: bool,
    /// A lower bound of the prompt's tokens (chat only; 0 elsewhere).
    pub prompt_estimate: u64,
    /// The cap on generated tokens the request states, if it states one.
    pub max_completion: Option<u64>,
    pub rewrites: Rewrites,
    /// The checked request as a tree, for the cache key: only for endpoints the cache serves.
    pub cacheable: Option<Map<String, Value>>,
}

/// Checks a request the way its endpoint needs: the chat rules in full; for the other JSON
/// endpoints one strict parse (one view of the request: duplicate keys refused) and the few
/// fields the limits need; nothing for bodiless and streamed requests.
pub fn check(
    endpoint: Endpoint,
    json: Option<Bytes>,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
) -> Result<Call, Rejection> {
    let Some(body) = json else {
        return Ok(Call::default());
    };
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
    let tree = strict::parse(&body).map_err(|message| Rejection::Invalid { message, param: None })?;
    let Value::Object(request) = &tree else {
        return Err(wording::invalid(
            "",
            format!("request body must be a JSON object, but got {}", wording::kind(&tree)),
        ));
    };
    let model = match request.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(model)) => Some(model.as_str().into()),
        Some(other) => {
            return Err(wording::invalid(
                "model",
                format!("expected string, but got {}", wording::kind(other)),
            ));
        }
    };
    let stream = matches!(request.get("stream"), Some(Value::Bool(true)));
    let max_completion = ["max_output_tokens", "max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| request.get(*field).and_then(Value::as_u64));
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
/// again at `on_demand`. `None` for an endpoint whose request is not kept as a tree.
pub fn with_model(call: &Call, model: &str, service_tier: Option<&str>) -> Option<Bytes> {
    let mut tree = call.cacheable.clone()?;
    // With `preserve_order`, replacing a key's value keeps its place.
    tree.insert("model".to_owned(), Value::String(model.to_owned()));
    if let Some(tier) = service_tier {
        tree.insert("service_tier".to_owned(), Value::String(tier.to_owned()));
    }
    serde_json::to_vec(&tree).ok().map(Bytes::from)
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
    /// The checked request as a tree (what `body` encodes), for the cache key.
    pub request: serde_json::Map<String, Value>,
}

/// Validates a chat completion body. `catalog` is `None` until the model list has been fetched,
/// in which case model-dependent checks are skipped rather than guessed.
pub fn validate_chat(
    body: Bytes,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
) -> Result<ValidatedChat, Rejection> {
    let mut tree = strict::parse(&body).map_err(|message| Rejection::Invalid { message, param: None })?;
    let Value::Object(request) = &mut tree else {
        return Err(Rejection::Invalid {
            message: format!("request body must be a JSON object, but got {}", wording::kind(&tree)),
            param: None,
        });
    };
    let rewrites = compat::apply(request, config, aliases)?;
    // The walk allocates a path per node, so it runs only when the raw bytes can hold a NUL
    // (raw control characters inside strings are already invalid JSON).
    if config.reject_nul && memchr::memmem::find(&body, b"\\u0000").is_some() {
        reject_nul(request)?;
    }
    let top = rules::check(
        request,
        config.max_messages,
        config.unknown_fields == crate::config::FieldPolicy::Reject,
    )?;
    let model = top.model.to_owned();
    let stream = top.stream;
    let max_completion = top.max_completion;
    let prompt_tokens_estimate = estimate::prompt_tokens(request);

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
            });
        }
    }

    let body = if rewrites.is_empty() {
        body
    } else {
        Bytes::from(serde_json::to_vec(&tree).map_err(|_| Rejection::Invalid {
            message: "request could not be re-encoded".into(),
            param: None,
        })?)
    };
    let Value::Object(request) = tree else {
        return Err(Rejection::Invalid {
            message: "request body must be a JSON object".into(),
            param: None,
        });
    };
    Ok(ValidatedChat {
        request,
        body,
        model,
        stream,
        max_completion_tokens: max_completion.map(|(v, _)| v as u64),
        prompt_tokens_estimate,
        rewrites,
    })
}

/// Policy: a NUL character anywhere in a string is refused. Backends written in C-family
/// languages truncate at NUL, so what the model sees would differ from what was validated.
fn reject_nul(request: &serde_json::Map<String, Value>) -> Result<(), Rejection> {
    fn walk(value: &Value, path: &mut Vec<String>) -> Result<(), Rejection> {
        match value {
            Value::String(s) if s.contains('\0') => Err(wording::invalid(
                path.join("."),
                "string contains a NUL character (U+0000), which groxy does not forward",
            )),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(item, path)?;
                    path.pop();
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, v) in map {
                    path.push(k.clone());
                    walk(v, path)?;
                    path.pop();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
    let mut path = Vec::new();
    for (k, v) in request {
        path.push(k.clone());
        walk(v, &mut path)?;
        path.pop();
    }
    Ok(())
}
