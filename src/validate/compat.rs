//! Drop-in compatibility for OpenAI clients: model aliases, OpenAI-only fields, and OpenAI enum values Groq spells differently.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{rules, wording};
use crate::config::{FieldPolicy, ValidationConfig};
use crate::error::Rejection;

/// Top-level fields OpenAI accepts and Groq refuses. OpenAI SDKs and frameworks send several of
/// them by default (`store`, `metadata`, `prompt_cache_key`), which is why stripping is the default.
pub const OPENAI_ONLY_FIELDS: &[&str] = &[
    "store",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "safety_identifier",
    "verbosity",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
    "moderation",
];

/// Message fields OpenAI returns on assistant messages, which clients echo back in the history.
const OPENAI_ONLY_MESSAGE_FIELDS: &[&str] = &["refusal", "annotations", "audio"];

/// What compatibility changed, reported to the client in response headers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewrites {
    /// Fields removed (`x-groxy-stripped`).
    pub stripped: Vec<String>,
    /// Fields whose value was changed (`x-groxy-mapped`), e.g. `model`, `service_tier`.
    pub mapped: Vec<&'static str>,
}

impl Rewrites {
    pub fn is_empty(&self) -> bool {
        self.stripped.is_empty() && self.mapped.is_empty()
    }
}

pub fn apply(
    obj: &mut Map<String, Value>,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
) -> Result<Rewrites, Rejection> {
    let mut rewrites = Rewrites::default();
    if let Some(Value::String(model)) = obj.get_mut("model") {
        if let Some(target) = aliases.get(model.as_str()) {
            *model = target.clone();
            rewrites.mapped.push("model");
        }
    }
    openai_only_fields(obj, config.openai_fields, &mut rewrites)?;
    map_enum(
        obj,
        "service_tier",
        &[("default", "on_demand")],
        rules::SERVICE_TIERS,
        config.openai_fields,
        &mut rewrites,
    )?;
    map_enum(
        obj,
        "reasoning_effort",
        &[("minimal", "low"), ("xhigh", "high")],
        rules::REASONING_EFFORTS,
        config.openai_fields,
        &mut rewrites,
    )?;
    match config.unknown_fields {
        FieldPolicy::Forward => {}
        FieldPolicy::Reject => {
            if let Some(key) = obj.keys().find(|k| is_unknown(k)) {
                let hint = wording::suggest(key, rules::KNOWN_FIELDS)
                    .map(|s| format!(", did you mean '{s}'?"))
                    .unwrap_or_default();
                return Err(Rejection::Invalid {
                    message: format!("property '{key}' is unsupported{hint}"),
                    param: Some(key.clone()),
                });
            }
        }
        FieldPolicy::Strip => {
            let unknown: Vec<String> = obj
                .keys()
                .filter(|k| !rules::KNOWN_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect();
            for key in unknown {
                obj.shift_remove(&key);
                rewrites.stripped.push(key);
            }
        }
    }
    Ok(rewrites)
}

/// Neither Groq's nor a known OpenAI-only field (those follow `openai_fields` instead).
fn is_unknown(key: &str) -> bool {
    !rules::KNOWN_FIELDS.contains(&key) && !OPENAI_ONLY_FIELDS.contains(&key)
}

fn openai_only_fields(
    obj: &mut Map<String, Value>,
    policy: FieldPolicy,
    rewrites: &mut Rewrites,
) -> Result<(), Rejection> {
    if policy == FieldPolicy::Forward {
        return Ok(());
    }
    let refuse = |path: String| {
        let field = path.rsplit('.').next().unwrap_or(&path).to_owned();
        Rejection::Invalid {
            message: format!(
                "property '{field}' is unsupported by Groq (an OpenAI-only field; groxy strips it when validation.openai_fields = \"strip\")"
            ),
            param: Some(path),
        }
    };
    for field in OPENAI_ONLY_FIELDS {
        if obj.contains_key(*field) {
            if policy == FieldPolicy::Reject {
                return Err(refuse((*field).to_owned()));
            }
            obj.shift_remove(*field);
            rewrites.stripped.push((*field).to_owned());
        }
    }
    if let Some(Value::Object(options)) = obj.get_mut("stream_options") {
        if options.contains_key("include_obfuscation") {
            if policy == FieldPolicy::Reject {
                return Err(refuse("stream_options.include_obfuscation".to_owned()));
            }
            options.shift_remove("include_obfuscation");
            rewrites.stripped.push("stream_options.include_obfuscation".to_owned());
        }
    }
    if let Some(Value::Array(messages)) = obj.get_mut("messages") {
        for (i, message) in messages.iter_mut().enumerate() {
            let Value::Object(message) = message else { continue };
            if message.get("role").and_then(Value::as_str) != Some("assistant") {
                continue;
            }
            for field in OPENAI_ONLY_MESSAGE_FIELDS {
                if message.contains_key(*field) {
                    if policy == FieldPolicy::Reject {
                        return Err(refuse(format!("messages.{i}.{field}")));
                    }
                    message.shift_remove(*field);
                    let name = format!("messages[].{field}");
                    if !rewrites.stripped.contains(&name) {
                        rewrites.stripped.push(name);
                    }
                }
            }
        }
    }
    Ok(())
}

/// OpenAI spellings of enum values that have a Groq equivalent are mapped (unless the policy is
/// `forward`); OpenAI values without one fall through to the enum check, which lists Groq's values.
fn map_enum(
    obj: &mut Map<String, Value>,
    field: &'static str,
    mapping: &[(&str, &str)],
    allowed: &[&str],
    policy: FieldPolicy,
    rewrites: &mut Rewrites,
) -> Result<(), Rejection> {
    let Some(Value::String(value)) = obj.get_mut(field) else {
        return Ok(());
    };
    if allowed.contains(&value.as_str()) || policy == FieldPolicy::Forward {
        return Ok(());
    }
    if let Some((from, to)) = mapping.iter().find(|(from, _)| from == value) {
        if policy == FieldPolicy::Reject {
            return Err(wording::invalid(
                field,
                format!("'{from}' is OpenAI's value; Groq's equivalent is '{to}'"),
            ));
        }
        *value = (*to).to_owned();
        rewrites.mapped.push(field);
    }
    Ok(())
}
