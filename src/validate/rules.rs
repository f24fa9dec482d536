//! Groq's rules for the top-level fields of a chat completion, worded as Groq words them (`'<path>' : <rule>`).

use super::{
    messages::Walk,
    request::{Edits, REASONING_EFFORTS, SERVICE_TIERS, Top},
    wording::{invalid, kind},
};
use crate::error::Rejection;
use crate::wire::json::Raw;

/// Groq's limit on tools per request.
pub const MAX_TOOLS: usize = 128;
/// Groq's limit on stop sequences.
pub const MAX_STOP: usize = 4;

pub const TOOL_CHOICES: &[&str] = &["none", "auto", "required"];
pub const REASONING_FORMATS: &[&str] = &["hidden", "raw", "parsed"];
const RESPONSE_FORMATS: &[&str] = &["text", "json_object", "json_schema"];

fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("value must be one of {}", quoted.join(", "))
}

/// A number within `[min, max]`; absent or null is fine.
pub fn number_in(value: Option<Raw<'_>>, key: &str, min: f64, max: f64) -> Result<(), Rejection> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let Some(n) = value.as_number() else {
        return Err(invalid(key, format!("expected number, but got {}", kind(value))));
    };
    let v = n.as_f64().unwrap_or(f64::NAN);
    if v < min {
        Err(invalid(key, format!("number must be at least {min}")))
    } else if v > max {
        Err(invalid(key, format!("number must be at most {max}")))
    } else {
        Ok(())
    }
}

/// An integer within `[min, max]`; absent or null is fine. Returns it when present.
pub fn integer_in(value: Option<Raw<'_>>, key: &str, min: i64, max: i64) -> Result<Option<i64>, Rejection> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(n) = value.as_number() else {
        return Err(invalid(key, format!("expected integer, but got {}", kind(value))));
    };
    let Some(v) = n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)) else {
        return Err(invalid(key, "expected integer, but got number"));
    };
    if v < min {
        Err(invalid(key, format!("number must be at least {min}")))
    } else if v > max {
        Err(invalid(key, format!("number must be at most {max}")))
    } else {
        Ok(Some(v))
    }
}

pub fn boolean(value: Option<Raw<'_>>, key: &str) -> Result<Option<bool>, Rejection> {
    match value {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.as_bool() {
            Some(b) => Ok(Some(b)),
            None => Err(invalid(key, format!("expected boolean, but got {}", kind(v)))),
        },
    }
}

/// A string, one of `allowed`; absent or null is fine. Returns it when present.
pub fn string_enum(
    value: Option<Raw<'_>>,
    key: &str,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, Rejection> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(text) = value.as_str() else {
        return Err(invalid(key, format!("expected string, but got {}", kind(value))));
    };
    match allowed.iter().find(|a| **a == text) {
        Some(found) => Ok(Some(found)),
        None => Err(invalid(key, one_of(allowed))),
    }
}

fn string(value: Option<Raw<'_>>, key: &str) -> Result<(), Rejection> {
    match value {
        Some(v) if !v.is_null() && !v.is_string() => Err(invalid(key, format!("expected string, but got {}", kind(v)))),
        _ => Ok(()),
    }
}

pub fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

const NAME_PATTERN: &str = "does not match pattern '^[a-zA-Z0-9_-]{1,64}$'";

/// What the top-level checks learned, for the later steps.
pub struct TopLevel {
    pub model: String,
    pub stream: bool,
    /// `max_completion_tokens`, else the deprecated `max_tokens`, with the field it came from.
    pub max_completion: Option<(i64, &'static str)>,
}

/// The rules, on the request as compatibility left it (`edits`); `walk` is what the walk of
/// `messages` found.
pub fn check(top: &Top<'_>, edits: &Edits, walk: &Walk, max_messages: usize) -> Result<TopLevel, Rejection> {
    let model = match (edits.model.as_deref(), top.get("model")) {
        (_, None) => {
            return Err(Rejection::Invalid {
                message: "missing properties: 'model'".into(),
                param: Some("model".into()),
            });
        }
        (Some(target), Some(_)) => target.to_owned(),
        (None, Some(value)) => match value.as_str() {
            Some(s) => s.into_owned(),
            None => return Err(invalid("model", format!("expected string, but got {}", kind(value)))),
        },
    };
    if model.trim().is_empty() {
        return Err(invalid("model", "length must be >= 1, but got 0"));
    }
    match top.get("messages") {
        None => {
            return Err(Rejection::Invalid {
                message: "missing properties: 'messages'".into(),
                param: Some("messages".into()),
            });
        }
        Some(items) if items.is_array() => {
            let count = walk.count;
            if count == 0 {
                return Err(invalid("messages", "minimum number of items is 1"));
            }
            if count > max_messages {
                return Err(invalid(
                    "messages",
                    format!("maximum {max_messages} items allowed, but found {count} items"),
                ));
            }
            if let Some(broken) = &walk.broken {
                return Err(broken.clone());
            }
        }
        Some(other) => return Err(invalid("messages", format!("expected array, but got {}", kind(other)))),
    }

    number_in(top.get("temperature"), "temperature", 0.0, 2.0)?;
    number_in(top.get("top_p"), "top_p", 0.0, 1.0)?;
    number_in(top.get("frequency_penalty"), "frequency_penalty", -2.0, 2.0)?;
    number_in(top.get("presence_penalty"), "presence_penalty", -2.0, 2.0)?;
    integer_in(top.get("n"), "n", 1, 1)?;
    integer_in(top.get("seed"), "seed", i64::MIN, i64::MAX)?;
    integer_in(top.get("top_logprobs"), "top_logprobs", 0, 20)?;
    boolean(top.get("logprobs"), "logprobs")?;
    boolean(top.get("parallel_tool_calls"), "parallel_tool_calls")?;
    string(top.get("user"), "user")?;
    let max_completion = match integer_in(top.get("max_completion_tokens"), "max_completion_tokens", 1, i64::MAX)? {
        Some(v) => Some((v, "max_completion_tokens")),
        None => integer_in(top.get("max_tokens"), "max_tokens", 1, i64::MAX)?.map(|v| (v, "max_tokens")),
    };
    let stream = boolean(top.get("stream"), "stream")?.unwrap_or(false);
    check_stream_options(top.get("stream_options"))?;
    check_stop(top.get("stop"))?;

    let tools = check_tools(top.get("tools"))?;
    check_tool_choice(top.get("tool_choice"))?;
    let json_mode = check_response_format(top.get("response_format"))?;
    if json_mode && tools > 0 {
        return Err(Rejection::Invalid {
            message: "json mode cannot be combined with tool/function calling".into(),
            param: Some("response_format".into()),
        });
    }
    let reasoning_format = string_enum(top.get("reasoning_format"), "reasoning_format", REASONING_FORMATS)?;
    let include_reasoning = boolean(top.get("include_reasoning"), "include_reasoning")?;
    if reasoning_format.is_some() && include_reasoning.is_some() {
        return Err(invalid(
            "reasoning_format",
            "'reasoning_format' and 'include_reasoning' cannot be used together",
        ));
    }
    if reasoning_format == Some("raw") && (json_mode || tools > 0) {
        return Err(invalid(
            "reasoning_format",
            "'raw' cannot be used with JSON mode or tool calling; use 'parsed' or 'hidden'",
        ));
    }
    // A value compatibility mapped is one of Groq's.
    if edits.reasoning_effort.is_none() {
        string_enum(top.get("reasoning_effort"), "reasoning_effort", REASONING_EFFORTS)?;
    }
    if edits.service_tier.is_none() {
        string_enum(top.get("service_tier"), "service_tier", SERVICE_TIERS)?;
    }
    Ok(TopLevel {
        model,
        stream,
        max_completion,
    })
}

fn check_stream_options(options: Option<Raw<'_>>) -> Result<(), Rejection> {
    match options {
        None => Ok(()),
        Some(options) if options.is_null() => Ok(()),
        Some(options) if options.is_object() => match options.get("include_usage") {
            Some(usage) if !usage.is_null() && usage.as_bool().is_none() => Err(invalid(
                "stream_options.include_usage",
                format!("expected boolean, but got {}", kind(usage)),
            )),
            _ => Ok(()),
        },
        Some(other) => Err(invalid(
            "stream_options",
            format!("expected object, but got {}", kind(other)),
        )),
    }
}

fn check_stop(stop: Option<Raw<'_>>) -> Result<(), Rejection> {
    let Some(stop) = stop.filter(|s| !s.is_null() && !s.is_string()) else {
        return Ok(());
    };
    if !stop.is_array() {
        return Err(invalid(
            "stop",
            format!("expected string or array, but got {}", kind(stop)),
        ));
    }
    let count = stop.items().count();
    if count > MAX_STOP {
        return Err(invalid(
            "stop",
            format!("maximum {MAX_STOP} items allowed, but found {count} items"),
        ));
    }
    for (i, item) in stop.items().enumerate() {
        if !item.is_string() {
            return Err(invalid(
                format!("stop.{i}"),
                format!("expected string, but got {}", kind(item)),
            ));
        }
    }
    Ok(())
}

/// Returns the number of tools.
fn check_tools(tools: Option<Raw<'_>>) -> Result<usize, Rejection> {
    let tools = match tools {
        None => return Ok(0),
        Some(tools) if tools.is_null() => return Ok(0),
        Some(tools) if tools.is_array() => tools,
        Some(other) => return Err(invalid("tools", format!("expected array, but got {}", kind(other)))),
    };
    let count = tools.items().count();
    if count > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!("maximum {MAX_TOOLS} items allowed, but found {count} items"),
        ));
    }
    for (i, tool) in tools.items().enumerate() {
        if !tool.is_object() {
            return Err(invalid(
                format!("tools.{i}"),
                format!("expected object, but got {}", kind(tool)),
            ));
        }
        let [kind_of_tool, function] = tool.pick(&["type", "function"]);
        match kind_of_tool {
            Some(t) if t.is_str("function") => {}
            // Groq's built-in tools (browser_search, code_interpreter, ...) are Groq's to check.
            Some(t) if t.is_string() => continue,
            None => return Err(invalid(format!("tools.{i}"), "missing properties: 'type'")),
            Some(other) => {
                return Err(invalid(
                    format!("tools.{i}.type"),
                    format!("expected string, but got {}", kind(other)),
                ));
            }
        }
        let Some(function) = function.filter(|f| f.is_object()) else {
            return Err(invalid(format!("tools.{i}"), "missing properties: 'function'"));
        };
        let [name, parameters] = function.pick(&["name", "parameters"]);
        match name {
            Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => {}
            Some(name) if name.is_string() => return Err(invalid(format!("tools.{i}.function.name"), NAME_PATTERN)),
            None => return Err(invalid(format!("tools.{i}.function"), "missing properties: 'name'")),
            Some(other) => {
                return Err(invalid(
                    format!("tools.{i}.function.name"),
                    format!("expected string, but got {}", kind(other)),
                ));
            }
        }
        match parameters {
            Some(p) if !p.is_null() && !p.is_object() => {
                return Err(invalid(
                    format!("tools.{i}.function.parameters"),
                    format!("expected object, but got {}", kind(p)),
                ));
            }
            _ => {}
        }
    }
    Ok(count)
}

fn check_tool_choice(choice: Option<Raw<'_>>) -> Result<(), Rejection> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(());
    };
    if let Some(text) = choice.as_str() {
        return if TOOL_CHOICES.contains(&&*text) {
            Ok(())
        } else {
            Err(invalid("tool_choice", one_of(TOOL_CHOICES)))
        };
    }
    if !choice.is_object() {
        return Err(invalid(
            "tool_choice",
            format!("expected string or object, but got {}", kind(choice)),
        ));
    }
    let [kind_of_choice, function] = choice.pick(&["type", "function"]);
    if !kind_of_choice.is_some_and(|t| t.is_str("function")) {
        return Err(invalid("tool_choice.type", one_of(&["function"])));
    }
    match function.and_then(|f| f.get("name")) {
        Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => Ok(()),
        Some(name) if name.is_string() => Err(invalid("tool_choice.function.name", NAME_PATTERN)),
        _ => Err(invalid("tool_choice.function", "missing properties: 'name'")),
    }
}

/// Returns whether the request asks for JSON output (`json_object` or `json_schema`).
fn check_response_format(format: Option<Raw<'_>>) -> Result<bool, Rejection> {
    let format = match format {
        None => return Ok(false),
        Some(format) if format.is_null() => return Ok(false),
        Some(format) if format.is_object() => format,
        Some(other) => {
            return Err(invalid(
                "response_format",
                format!("expected object, but got {}", kind(other)),
            ));
        }
    };
    let [kind_of_format, schema] = format.pick(&["type", "json_schema"]);
    let kind_of_format = match kind_of_format {
        None => return Err(invalid("response_format", "missing properties: 'type'")),
        Some(t) => match t.as_str() {
            Some(text) => match RESPONSE_FORMATS.iter().find(|f| **f == text) {
                Some(found) => *found,
                None => return Err(invalid("response_format.type", one_of(RESPONSE_FORMATS))),
            },
            None => {
                return Err(invalid(
                    "response_format.type",
                    format!("expected string, but got {}", kind(t)),
                ));
            }
        },
    };
    match kind_of_format {
        "text" => Ok(false),
        "json_object" => Ok(true),
        _json_schema => {
            let Some(json_schema) = schema.filter(|s| s.is_object()) else {
                return Err(invalid("response_format", "missing properties: 'json_schema'"));
            };
            let [name, schema, strict] = json_schema.pick(&["name", "schema", "strict"]);
            match name {
                Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => {}
                Some(name) if name.is_string() => {
                    return Err(invalid("response_format.json_schema.name", NAME_PATTERN));
                }
                Some(other) => {
                    return Err(invalid(
                        "response_format.json_schema.name",
                        format!("expected string, but got {}", kind(other)),
                    ));
                }
                None => return Err(invalid("response_format.json_schema", "missing properties: 'name'")),
            }
            // `strict: true` asks for constrained decoding where the model has it (best effort
            // elsewhere): Groq's to apply, only its type is checked here.
            boolean(strict, "response_format.json_schema.strict")?;
            match schema {
                Some(schema) if !schema.is_null() && !schema.is_object() => Err(invalid(
                    "response_format.json_schema.schema",
                    format!("expected object, but got {}", kind(schema)),
                )),
                _ => Ok(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::config::{FieldPolicy, ValidationConfig};
    use crate::error::Rejection;
    use crate::validate::{request::KNOWN_FIELDS, validate_chat, wording::suggest};

    /// A chat request with `extra` top-level fields, checked with `policy` for OpenAI's values.
    fn check(extra: &str, policy: FieldPolicy) -> Result<String, String> {
        let body = format!(r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#);
        let config = ValidationConfig {
            openai_fields: policy,
            ..ValidationConfig::default()
        };
        match validate_chat(Bytes::from(body), &config, &Default::default(), None) {
            Ok(chat) => Ok(String::from_utf8_lossy(&chat.body).into_owned()),
            Err(Rejection::Invalid { message, .. }) => Err(message),
            Err(other) => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn groqs_current_chat_parameters_are_accepted() {
        for extra in [
            r#","service_tier":"auto""#,
            r#","service_tier":"on_demand""#,
            r#","service_tier":"flex""#,
            r#","service_tier":"performance""#,
            r#","include_reasoning":true"#,
            r#","include_reasoning":false,"reasoning_effort":"none""#,
            r#","reasoning_effort":"default""#,
            r#","reasoning_effort":"low""#,
            r#","reasoning_effort":"medium""#,
            r#","response_format":{"type":"json_schema","json_schema":{"name":"Answer-1_a","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}}}"#,
            r#","response_format":{"type":"json_schema","json_schema":{"name":"a","strict":false,"description":"d"}}"#,
        ] {
            assert!(
                check(extra, FieldPolicy::Reject).is_ok(),
                "{extra}: {:?}",
                check(extra, FieldPolicy::Reject)
            );
        }
    }

    #[test]
    fn openais_values_and_groqs_other_rules_are_refused_in_groqs_words() {
        let tiers = "'service_tier' : value must be one of 'auto', 'on_demand', 'flex', 'performance'";
        for (extra, message) in [
            (r#","service_tier":"scale""#, tiers),
            (r#","service_tier":"priority""#, tiers),
            (
                r#","service_tier":"default""#,
                "'service_tier' : 'default' is OpenAI's value; Groq's equivalent is 'on_demand'",
            ),
            (
                r#","reasoning_effort":"minimal""#,
                "'reasoning_effort' : 'minimal' is OpenAI's value; Groq's equivalent is 'low'",
            ),
            (
                r#","include_reasoning":"yes""#,
                "'include_reasoning' : expected boolean, but got string",
            ),
            (
                r#","include_reasoning":true,"reasoning_format":"hidden""#,
                "'reasoning_format' : 'reasoning_format' and 'include_reasoning' cannot be used together",
            ),
            (
                r#","response_format":{"type":"json_schema","json_schema":{"name":"a","strict":"true"}}"#,
                "'response_format.json_schema.strict' : expected boolean, but got string",
            ),
            (
                r#","response_format":{"type":"json_schema","json_schema":{"name":"a","schema":"{}"}}"#,
                "'response_format.json_schema.schema' : expected object, but got string",
            ),
            (
                r#","response_format":{"type":"json_schema","json_schema":{"name":"a.b","strict":true}}"#,
                "'response_format.json_schema.name' : does not match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            ),
        ] {
            assert_eq!(check(extra, FieldPolicy::Reject), Err(message.to_owned()), "{extra}");
        }
        // By default OpenAI's spellings with a Groq equivalent are mapped; those without are refused.
        let mapped = check(r#","service_tier":"default""#, FieldPolicy::Strip).expect("mapped");
        assert!(mapped.ends_with(r#""service_tier":"on_demand"}"#), "{mapped}");
        assert_eq!(
            check(r#","service_tier":"priority""#, FieldPolicy::Strip),
            Err(tiers.to_owned())
        );
    }

    #[test]
    fn suggestions_like_groqs() {
        assert_eq!(suggest("store", KNOWN_FIELDS), Some("stop"));
        assert_eq!(suggest("temprature", KNOWN_FIELDS), Some("temperature"));
        assert_eq!(suggest("zzzzzzzzzzzz", KNOWN_FIELDS), None);
    }
}
