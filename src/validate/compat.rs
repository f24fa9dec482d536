//! Drop-in compatibility for OpenAI clients: model aliases, OpenAI-only fields, and OpenAI enum values Groq spells differently.

use std::collections::BTreeMap;

use super::{
    messages::Walk,
    request::{
        Edits, KNOWN_FIELDS, OPENAI_ONLY_FIELDS, OPENAI_ONLY_MESSAGE_FIELDS, REASONING_EFFORTS, SERVICE_TIERS, Top,
    },
    wording,
};
use crate::config::{FieldPolicy, ValidationConfig};
use crate::error::Rejection;
use crate::wire::json::Raw;

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

/// What compatibility removes, known before anything is read: the walk of `messages` needs it.
pub fn strips_openai_fields(config: &ValidationConfig) -> Edits {
    Edits {
        strip_openai: config.openai_fields == FieldPolicy::Strip,
        ..Edits::default()
    }
}

/// Decides what changes; nothing is changed here (see [`Edits`]). `walk` is what the walk of
/// `messages` found, for their OpenAI-only fields.
pub fn plan(
    top: &Top<'_>,
    walk: &Walk,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
) -> Result<(Rewrites, Edits), Rejection> {
    let mut rewrites = Rewrites::default();
    let mut edits = strips_openai_fields(config);
    if let Some(model) = top.get("model").and_then(Raw::as_str) {
        if let Some(target) = aliases.get(&*model) {
            edits.model = Some(target.clone());
            rewrites.mapped.push("model");
        }
    }
    openai_only_fields(top, walk, config.openai_fields, &mut rewrites)?;
    edits.service_tier = map_enum(
        top,
        "service_tier",
        &[("default", "on_demand")],
        SERVICE_TIERS,
        config.openai_fields,
        &mut rewrites,
    )?
    .map(str::to_owned);
    edits.reasoning_effort = map_enum(
        top,
        "reasoning_effort",
        &[("minimal", "low"), ("xhigh", "high")],
        REASONING_EFFORTS,
        config.openai_fields,
        &mut rewrites,
    )?;
    match config.unknown_fields {
        FieldPolicy::Forward => {}
        FieldPolicy::Reject => {
            let unknown = top.raw().entries().map(|(key, _)| key.text()).find(|k| is_unknown(k));
            if let Some(key) = unknown {
                let hint = wording::suggest(&key, KNOWN_FIELDS)
                    .map(|s| format!(", did you mean '{s}'?"))
                    .unwrap_or_default();
                return Err(Rejection::Invalid {
                    message: format!("property '{key}' is unsupported{hint}"),
                    param: Some(key.into_owned()),
                });
            }
        }
        FieldPolicy::Strip => {
            for (key, _) in top.raw().entries() {
                let key = key.text();
                // OpenAI-only fields already stripped are not listed twice.
                if !KNOWN_FIELDS.contains(&&*key) && !edits.drops_top(&key) {
                    rewrites.stripped.push(key.into_owned());
                }
            }
            edits.strip_unknown = true;
        }
    }
    Ok((rewrites, edits))
}

/// Neither Groq's nor a known OpenAI-only field (those follow `openai_fields` instead).
fn is_unknown(key: &str) -> bool {
    !KNOWN_FIELDS.contains(&key) && !OPENAI_ONLY_FIELDS.contains(&key)
}

fn openai_only_fields(
    top: &Top<'_>,
    walk: &Walk,
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
        if top.get(field).is_some() {
            if policy == FieldPolicy::Reject {
                return Err(refuse((*field).to_owned()));
            }
            rewrites.stripped.push((*field).to_owned());
        }
    }
    if let Some(options) = top.get("stream_options").filter(|o| o.is_object()) {
        if options.get("include_obfuscation").is_some() {
            if policy == FieldPolicy::Reject {
                return Err(refuse("stream_options.include_obfuscation".to_owned()));
            }
            rewrites.stripped.push("stream_options.include_obfuscation".to_owned());
        }
    }
    // In message order, then in the order of the list: as a reader meets them.
    let mut found: Vec<(usize, &str)> = OPENAI_ONLY_MESSAGE_FIELDS
        .iter()
        .zip(walk.openai_fields)
        .filter_map(|(field, first)| first.map(|i| (i, *field)))
        .collect();
    found.sort_by_key(|&(i, field)| (i, OPENAI_ONLY_MESSAGE_FIELDS.iter().position(|f| *f == field)));
    for (i, field) in found {
        if policy == FieldPolicy::Reject {
            return Err(refuse(format!("messages.{i}.{field}")));
        }
        rewrites.stripped.push(format!("messages[].{field}"));
    }
    Ok(())
}

/// OpenAI spellings of enum values that have a Groq equivalent are mapped (unless the policy is
/// `forward`); OpenAI values without one fall through to the enum check, which lists Groq's values.
fn map_enum(
    top: &Top<'_>,
    field: &'static str,
    mapping: &[(&str, &'static str)],
    allowed: &[&str],
    policy: FieldPolicy,
    rewrites: &mut Rewrites,
) -> Result<Option<&'static str>, Rejection> {
    let Some(value) = top.get(field).and_then(Raw::as_str) else {
        return Ok(None);
    };
    if allowed.contains(&&*value) || policy == FieldPolicy::Forward {
        return Ok(None);
    }
    let Some((from, to)) = mapping.iter().find(|(from, _)| *from == value) else {
        return Ok(None);
    };
    if policy == FieldPolicy::Reject {
        return Err(wording::invalid(
            field,
            format!("'{from}' is OpenAI's value; Groq's equivalent is '{to}'"),
        ));
    }
    rewrites.mapped.push(field);
    Ok(Some(to))
}
