//! Responses API validation (`POST /responses`): the request checked as Groq takes it, so the later steps (catalogue, limits, cache) treat it as they treat chat.
//!
//! Steps, in the order of chat's: one strict parse (duplicate keys refused), the top-level
//! fields Groq documents (an unknown one is refused, with Groq's "did you mean" hint), the
//! stateful features Groq lacks (`store: true`, `previous_response_id`) refused in the words
//! Groq uses (`groq_wire::responses`), `input` and the tools (`responses_input`), then the
//! model catalogue: the model, `max_output_tokens` against the model's cap, and the estimate of
//! `input` + `instructions` plus the cap against its window. A model alias is the one rewrite:
//! the body is then the checked request with its `model` replaced (invariant 5).

use std::collections::BTreeMap;

use bytes::Bytes;
use groq_wire::responses::{FIELDS, PREVIOUS_RESPONSE_UNSUPPORTED, STORE_UNSUPPORTED};

use super::{
    compat::Rewrites,
    estimate::tokens_of,
    nul,
    request::{Checked, Edits, REASONING_EFFORTS, SERVICE_TIERS, Top},
    responses_input::{NAME_PATTERN, check_input, check_tool_choice, check_tools, missing_top, one_of},
    rewrite,
    rules::{boolean, integer_in, number_in, string_enum, valid_function_name},
    strict,
    wording::{invalid, kind, suggest},
};
use crate::wire::json::Raw;
use crate::{catalog::Catalog, config::ValidationConfig, error::Rejection};

const SUMMARIES: &[&str] = &["auto", "concise", "detailed"];
const TRUNCATIONS: &[&str] = &["auto", "disabled"];
const FORMATS: &[&str] = &["text", "json_object", "json_schema"];

/// A Responses request that passed validation: what the later steps read.
#[derive(Debug, Clone)]
pub struct ValidatedResponses {
    /// The bytes to send to Groq.
    pub body: Bytes,
    pub model: String,
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    /// Lower bound of the tokens of `input`, `instructions` and the tools' descriptions.
    pub prompt_tokens_estimate: u64,
    pub rewrites: Rewrites,
    /// The checked request (what `body` encodes), for the cache key and fallbacks.
    pub request: Checked,
}

/// Validates a Responses body. `catalog` is `None` until the model list has been fetched;
/// model-dependent checks are then skipped rather than guessed.
pub fn validate_responses(
    body: Bytes,
    config: &ValidationConfig,
    aliases: &BTreeMap<String, String>,
    catalog: Option<&Catalog>,
) -> Result<ValidatedResponses, Rejection> {
    let plain = strict::check(&body).map_err(|message| Rejection::Invalid { message, param: None })?;
    let root = match Raw::root(&body) {
        Some(root) if root.is_object() => root,
        root => {
            let got = root.map_or("null", kind);
            return Err(Rejection::Invalid {
                message: format!("request body must be a JSON object, but got {got}"),
                param: None,
            });
        }
    };
    if let Some((key, _)) = root.entries().find(|(key, _)| key.position_in(FIELDS).is_none()) {
        let key = key.text();
        let hint = suggest(&key, FIELDS)
            .map(|s| format!(", did you mean '{s}'?"))
            .unwrap_or_default();
        return Err(Rejection::Invalid {
            message: format!("property '{key}' is unsupported{hint}"),
            param: Some(key.into_owned()),
        });
    }
    let [
        model,
        input,
        instructions,
        max_output,
        stream,
        tools,
        tool_choice,
        store,
        previous,
    ] = root.pick(&[
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "stream",
        "tools",
        "tool_choice",
        "store",
        "previous_response_id",
    ]);

    let mut edits = Edits::default();
    let mut rewrites = Rewrites::default();
    let model = match model {
        None => return Err(missing_top("model")),
        Some(value) => match value.as_str() {
            Some(name) => name.into_owned(),
            None => return Err(invalid("model", format!("expected string, but got {}", kind(value)))),
        },
    };
    if model.trim().is_empty() {
        return Err(invalid("model", "length must be >= 1, but got 0"));
    }
    let model = match aliases.get(&model) {
        Some(target) => {
            edits.model = Some(target.clone());
            rewrites.mapped.push("model");
            target.clone()
        }
        None => model,
    };
    // The stateful features first: they are what a client ported from OpenAI most often sends.
    if boolean(store, "store")? == Some(true) {
        return Err(Rejection::Invalid {
            message: STORE_UNSUPPORTED.to_owned(),
            param: Some("store".to_owned()),
        });
    }
    if previous.is_some_and(|p| !p.is_null()) {
        return Err(Rejection::Invalid {
            message: PREVIOUS_RESPONSE_UNSUPPORTED.to_owned(),
            param: Some("previous_response_id".to_owned()),
        });
    }
    if config.reject_nul && plain.nul {
        nul::check(root, &edits)?;
    }

    let mut prompt = check_input(input, config.max_messages)?;
    prompt = prompt.saturating_add(string_field(instructions, "instructions")?);
    let (_, tool_tokens) = check_tools(tools)?;
    prompt = prompt.saturating_add(tool_tokens);
    check_tool_choice(tool_choice)?;
    let max_output = integer_in(max_output, "max_output_tokens", 1, i64::MAX)?.map(|v| v as u64);
    let stream = boolean(stream, "stream")?.unwrap_or(false);
    check_settings(root)?;

    if let Some(catalog) = catalog {
        let Some(limits) = catalog.get(&model) else {
            return Err(Rejection::ModelNotFound { model });
        };
        if max_output.is_some_and(|v| v > limits.max_completion_tokens) {
            let max = limits.max_completion_tokens;
            return Err(Rejection::Invalid {
                message: format!(
                    "`max_output_tokens` must be less than or equal to `{max}`, the maximum value for `max_output_tokens` is less than the `context_window` for this model"
                ),
                param: Some("max_output_tokens".to_owned()),
            });
        }
        let completion = max_output.unwrap_or(0);
        if prompt.saturating_add(completion) > limits.context_window {
            return Err(Rejection::ContextLength {
                message: format!(
                    "This model's maximum context length is {} tokens. However, you requested at least {} tokens ({} in the input, {} in the output). Please reduce the length of the input or output.",
                    limits.context_window,
                    prompt.saturating_add(completion),
                    prompt,
                    completion
                ),
                param: "input",
            });
        }
    }

    let request = if edits == Edits::default() {
        Checked::from_body(body.clone()).ok_or_else(|| invalid("", "request body must be a JSON object"))?
    } else {
        let encoded = rewrite::encode(root, &edits).map_err(|_| Rejection::Invalid {
            message: "request could not be re-encoded".into(),
            param: None,
        })?;
        let encoded = Bytes::from(encoded);
        let sent = Raw::root(&encoded)
            .filter(|r| r.is_object())
            .ok_or_else(|| invalid("", "request could not be re-encoded"))?;
        Checked::new(encoded.clone(), &Top::new(sent), Some((body.clone(), edits)))
    };
    Ok(ValidatedResponses {
        body: request.body().clone(),
        request,
        model,
        stream,
        max_output_tokens: max_output,
        prompt_tokens_estimate: prompt,
        rewrites,
    })
}

/// A string (or null) field; the tokens of its text.
fn string_field(value: Option<Raw<'_>>, key: &str) -> Result<u64, Rejection> {
    match value {
        Some(v) if !v.is_null() && !v.is_string() => Err(invalid(key, format!("expected string, but got {}", kind(v)))),
        _ => Ok(tokens_of(value)),
    }
}

/// The sampling and output settings: ranges, enums and shapes as Groq takes them.
fn check_settings(root: Raw<'_>) -> Result<(), Rejection> {
    let [
        temperature,
        top_p,
        parallel,
        reasoning,
        text,
        metadata,
        user,
        tier,
        truncation,
        include,
    ] = root.pick(&[
        "temperature",
        "top_p",
        "parallel_tool_calls",
        "reasoning",
        "text",
        "metadata",
        "user",
        "service_tier",
        "truncation",
        "include",
    ]);
    number_in(temperature, "temperature", 0.0, 2.0)?;
    number_in(top_p, "top_p", 0.0, 1.0)?;
    boolean(parallel, "parallel_tool_calls")?;
    string_field(user, "user")?;
    string_enum(tier, "service_tier", SERVICE_TIERS)?;
    string_enum(truncation, "truncation", TRUNCATIONS)?;
    if let Some(reasoning) = object(reasoning, "reasoning")? {
        let [effort, summary] = reasoning.pick(&["effort", "summary"]);
        string_enum(effort, "reasoning.effort", REASONING_EFFORTS)?;
        string_enum(summary, "reasoning.summary", SUMMARIES)?;
    }
    if let Some(text) = object(text, "text")? {
        check_format(text.get("format"))?;
    }
    if let Some(metadata) = object(metadata, "metadata")? {
        for (key, value) in metadata.entries() {
            if !value.is_string() {
                let path = format!("metadata.{}", key.text());
                return Err(invalid(path, format!("expected string, but got {}", kind(value))));
            }
        }
    }
    match include {
        Some(list) if list.is_array() => {
            for (i, item) in list.items().enumerate() {
                if !item.is_string() {
                    return Err(invalid(
                        format!("include.{i}"),
                        format!("expected string, but got {}", kind(item)),
                    ));
                }
            }
            Ok(())
        }
        Some(other) if !other.is_null() => Err(invalid("include", format!("expected array, but got {}", kind(other)))),
        _ => Ok(()),
    }
}

/// An object (or null) field.
fn object<'a>(value: Option<Raw<'a>>, key: &str) -> Result<Option<Raw<'a>>, Rejection> {
    match value {
        Some(v) if v.is_object() => Ok(Some(v)),
        Some(v) if !v.is_null() => Err(invalid(key, format!("expected object, but got {}", kind(v)))),
        _ => Ok(None),
    }
}

/// `text.format`: Responses' flat shape (`{"type":"json_schema","name":…,"schema":{…}}`).
fn check_format(format: Option<Raw<'_>>) -> Result<(), Rejection> {
    let Some(format) = object(format, "text.format")? else {
        return Ok(());
    };
    let [kind_of_format, name, schema] = format.pick(&["type", "name", "schema"]);
    let kind_of_format = match kind_of_format {
        None => return Err(invalid("text.format", "missing properties: 'type'")),
        Some(t) => match t.as_str() {
            Some(text) if FORMATS.contains(&&*text) => text,
            Some(_) => return Err(invalid("text.format.type", one_of(FORMATS))),
            None => {
                return Err(invalid(
                    "text.format.type",
                    format!("expected string, but got {}", kind(t)),
                ));
            }
        },
    };
    if kind_of_format != "json_schema" {
        return Ok(());
    }
    match name {
        Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => {}
        Some(name) if name.is_string() => return Err(invalid("text.format.name", NAME_PATTERN)),
        Some(other) => {
            return Err(invalid(
                "text.format.name",
                format!("expected string, but got {}", kind(other)),
            ));
        }
        None => return Err(invalid("text.format", "missing properties: 'name'")),
    }
    match schema {
        Some(schema) if schema.is_object() => Ok(()),
        Some(other) => Err(invalid(
            "text.format.schema",
            format!("expected object, but got {}", kind(other)),
        )),
        None => Err(invalid("text.format", "missing properties: 'schema'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<ValidatedResponses, String> {
        let config = ValidationConfig::default();
        validate_responses(Bytes::from(json.to_owned()), &config, &BTreeMap::new(), None).map_err(|r| match r {
            Rejection::Invalid { message, .. } => message,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn a_full_request_passes_byte_for_byte() {
        let body = r#"{"model":"openai/gpt-oss-20b","input":[{"role":"user","content":"Say hi"}],"instructions":"Be brief","max_output_tokens":64,"temperature":0,"top_p":1,"stream":true,"tools":[{"type":"function","name":"f","parameters":{}}],"tool_choice":"auto","parallel_tool_calls":false,"reasoning":{"effort":"low","summary":"auto"},"text":{"format":{"type":"json_schema","name":"out","schema":{}}},"metadata":{"a":"b"},"user":"u","service_tier":"flex","truncation":"disabled","store":false,"previous_response_id":null,"include":["reasoning.encrypted_content"]}"#;
        let checked = check(body).expect("valid");
        assert_eq!(&checked.body[..], body.as_bytes());
        assert_eq!((checked.stream, checked.max_output_tokens), (true, Some(64)));
        assert!(
            checked.prompt_tokens_estimate >= 4,
            "{}",
            checked.prompt_tokens_estimate
        );
        assert!(checked.rewrites.is_empty());
    }

    #[test]
    fn refusals_use_groqs_wording() {
        let m = r#""model":"m","input":"hi""#;
        let refused = [
            (format!("{{{m},\"store\":true}}"), STORE_UNSUPPORTED.to_owned()),
            (
                format!("{{{m},\"previous_response_id\":\"resp_1\"}}"),
                PREVIOUS_RESPONSE_UNSUPPORTED.to_owned(),
            ),
            (
                format!("{{{m},\"temprature\":1}}"),
                "property 'temprature' is unsupported, did you mean 'temperature'?".to_owned(),
            ),
            (
                format!("{{{m},\"background\":true}}"),
                "property 'background' is unsupported".to_owned(),
            ),
            (r#"{"input":"hi"}"#.to_owned(), "missing properties: 'model'".to_owned()),
            (r#"{"model":"m"}"#.to_owned(), "missing properties: 'input'".to_owned()),
            (
                format!("{{{m},\"temperature\":3}}"),
                "'temperature' : number must be at most 2".to_owned(),
            ),
            (
                format!("{{{m},\"max_output_tokens\":0}}"),
                "'max_output_tokens' : number must be at least 1".to_owned(),
            ),
            (
                format!("{{{m},\"store\":\"no\"}}"),
                "'store' : expected boolean, but got string".to_owned(),
            ),
            (
                format!("{{{m},\"truncation\":\"middle\"}}"),
                "'truncation' : value must be one of 'auto', 'disabled'".to_owned(),
            ),
            (
                format!("{{{m},\"service_tier\":\"default\"}}"),
                "'service_tier' : value must be one of 'auto', 'on_demand', 'flex', 'performance'".to_owned(),
            ),
            (
                format!("{{{m},\"reasoning\":{{\"effort\":\"max\"}}}}"),
                "'reasoning.effort' : value must be one of 'none', 'default', 'low', 'medium', 'high'".to_owned(),
            ),
            (
                format!("{{{m},\"text\":{{\"format\":{{\"type\":\"json_schema\",\"schema\":{{}}}}}}}}"),
                "'text.format' : missing properties: 'name'".to_owned(),
            ),
            (
                format!("{{{m},\"metadata\":{{\"k\":1}}}}"),
                "'metadata.k' : expected string, but got number".to_owned(),
            ),
            (
                format!("{{{m},\"include\":\"x\"}}"),
                "'include' : expected array, but got string".to_owned(),
            ),
            (
                format!("{{{m},\"instructions\":1}}"),
                "'instructions' : expected string, but got number".to_owned(),
            ),
            (
                format!("{{{m},\"m\":1,\"m\":2}}"),
                "request body is not valid JSON: duplicate key \"m\" at line 1 column 35".to_owned(),
            ),
            (
                "[]".to_owned(),
                "request body must be a JSON object, but got array".to_owned(),
            ),
        ];
        for (body, message) in refused {
            let got = check(&body).map(|_| ());
            assert_eq!(got, Err(message.clone()), "{body}");
        }
        assert!(check(&format!("{{{m},\"store\":null,\"previous_response_id\":null}}")).is_ok());
    }

    #[test]
    fn an_alias_rewrites_the_model_only() {
        let aliases = BTreeMap::from([("fast".to_owned(), "openai/gpt-oss-20b".to_owned())]);
        let body = Bytes::from_static(br#"{"model":"fast","input":"hi","temperature":0}"#);
        let checked = validate_responses(body, &ValidationConfig::default(), &aliases, None).expect("valid");
        assert_eq!(
            &checked.body[..],
            br#"{"model":"openai/gpt-oss-20b","input":"hi","temperature":0}"#
        );
        assert_eq!(checked.rewrites.mapped, ["model"]);
        assert_eq!(checked.model, "openai/gpt-oss-20b");
    }
}
