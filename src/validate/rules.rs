//! Groq's rules for the top-level fields of a chat completion, worded as Groq words them (`'<path>' : <rule>`).

use serde_json::{Map, Value};

use super::{
    messages,
    wording::{invalid, kind},
};
use crate::error::Rejection;

/// Groq's limit on tools per request.
pub const MAX_TOOLS: usize = 128;
/// Groq's limit on stop sequences.
pub const MAX_STOP: usize = 4;

/// Fields Groq documents for chat completions; used to suggest a spelling when a field is
/// unknown, and to refuse unknown ones when `validation.unknown_fields = "reject"`.
pub const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "stop",
    "max_completion_tokens",
    "max_tokens",
    "stream",
    "stream_options",
    "response_format",
    "tools",
    "tool_choice",
    "reasoning_format",
    "reasoning_effort",
    "include_reasoning",
    "service_tier",
    "seed",
    "user",
    "parallel_tool_calls",
    "search_settings",
    "documents",
    "citation_options",
    "disable_tool_validation",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "functions",
    "function_call",
    "compound_custom",
    "exclude_domains",
    "include_domains",
];

pub const TOOL_CHOICES: &[&str] = &["none", "auto", "required"];
pub const REASONING_FORMATS: &[&str] = &["hidden", "raw", "parsed"];
pub const REASONING_EFFORTS: &[&str] = &["none", "default", "low", "medium", "high"];
pub const SERVICE_TIERS: &[&str] = &["auto", "on_demand", "flex", "performance"];
const RESPONSE_FORMATS: &[&str] = &["text", "json_object", "json_schema"];

fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("value must be one of {}", quoted.join(", "))
}

/// A number within `[min, max]`; absent or null is fine.
pub fn number_in(obj: &Map<String, Value>, key: &str, min: f64, max: f64) -> Result<(), Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if v < min {
                Err(invalid(key, format!("number must be at least {min}")))
            } else if v > max {
                Err(invalid(key, format!("number must be at most {max}")))
            } else {
                Ok(())
            }
        }
        Some(other) => Err(invalid(key, format!("expected number, but got {}", kind(other)))),
    }
}

/// An integer within `[min, max]`; absent or null is fine. Returns it when present.
pub fn integer_in(obj: &Map<String, Value>, key: &str, min: i64, max: i64) -> Result<Option<i64>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
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
        Some(other) => Err(invalid(key, format!("expected integer, but got {}", kind(other)))),
    }
}

pub fn boolean(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(key, format!("expected boolean, but got {}", kind(other)))),
    }
}

pub fn string_enum<'a>(obj: &'a Map<String, Value>, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
        Some(Value::String(_)) => Err(invalid(key, one_of(allowed))),
        Some(other) => Err(invalid(key, format!("expected string, but got {}", kind(other)))),
    }
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Rejection> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(key, format!("expected string, but got {}", kind(other)))),
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
pub struct TopLevel<'a> {
    pub model: &'a str,
    pub stream: bool,
    /// `max_completion_tokens`, else the deprecated `max_tokens`, with the field it came from.
    pub max_completion: Option<(i64, &'static str)>,
}

pub fn check(obj: &Map<String, Value>, max_messages: usize, reject_unknown: bool) -> Result<TopLevel<'_>, Rejection> {
    let model = match obj.get("model") {
        None => {
            return Err(Rejection::Invalid {
                message: "missing properties: 'model'".into(),
                param: Some("model".into()),
            });
        }
        Some(Value::String(s)) if !s.trim().is_empty() => s.as_str(),
        Some(Value::String(_)) => return Err(invalid("model", "length must be >= 1, but got 0")),
        Some(other) => return Err(invalid("model", format!("expected string, but got {}", kind(other)))),
    };
    match obj.get("messages") {
        None => {
            return Err(Rejection::Invalid {
                message: "missing properties: 'messages'".into(),
                param: Some("messages".into()),
            });
        }
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(invalid("messages", "minimum number of items is 1"));
        }
        Some(Value::Array(items)) if items.len() > max_messages => {
            return Err(invalid(
                "messages",
                format!("maximum {max_messages} items allowed, but found {} items", items.len()),
            ));
        }
        Some(Value::Array(items)) => messages::check(items, reject_unknown)?,
        Some(other) => return Err(invalid("messages", format!("expected array, but got {}", kind(other)))),
    }

    number_in(obj, "temperature", 0.0, 2.0)?;
    number_in(obj, "top_p", 0.0, 1.0)?;
    number_in(obj, "frequency_penalty", -2.0, 2.0)?;
    number_in(obj, "presence_penalty", -2.0, 2.0)?;
    integer_in(obj, "n", 1, 1)?;
    integer_in(obj, "seed", i64::MIN, i64::MAX)?;
    integer_in(obj, "top_logprobs", 0, 20)?;
    boolean(obj, "logprobs")?;
    boolean(obj, "parallel_tool_calls")?;
    string(obj, "user")?;
    let max_completion = match integer_in(obj, "max_completion_tokens", 1, i64::MAX)? {
        Some(v) => Some((v, "max_completion_tokens")),
        None => integer_in(obj, "max_tokens", 1, i64::MAX)?.map(|v| (v, "max_tokens")),
    };
    let stream = boolean(obj, "stream")?.unwrap_or(false);
    check_stream_options(obj)?;
    check_stop(obj)?;

    let tools = check_tools(obj)?;
    check_tool_choice(obj)?;
    let json_mode = check_response_format(obj)?;
    if json_mode && tools > 0 {
        return Err(Rejection::Invalid {
            message: "json mode cannot be combined with tool/function calling".into(),
            param: Some("response_format".into()),
        });
    }
    let reasoning_format = string_enum(obj, "reasoning_format", REASONING_FORMATS)?;
    let include_reasoning = boolean(obj, "include_reasoning")?;
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
    string_enum(obj, "reasoning_effort", REASONING_EFFORTS)?;
    string_enum(obj, "service_tier", SERVICE_TIERS)?;
    Ok(TopLevel {
        model,
        stream,
        max_completion,
    })
}

fn check_stream_options(obj: &Map<String, Value>) -> Result<(), Rejection> {
    match obj.get("stream_options") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null | Value::Bool(_)) => Ok(()),
            Some(other) => Err(invalid(
                "stream_options.include_usage",
                format!("expected boolean, but got {}", kind(other)),
            )),
        },
        Some(other) => Err(invalid(
            "stream_options",
            format!("expected object, but got {}", kind(other)),
        )),
    }
}

fn check_stop(obj: &Map<String, Value>) -> Result<(), Rejection> {
    match obj.get("stop") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(invalid(
                    "stop",
                    format!("maximum {MAX_STOP} items allowed, but found {} items", items.len()),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    return Err(invalid(
                        format!("stop.{i}"),
                        format!("expected string, but got {}", kind(item)),
                    ));
                }
            }
            Ok(())
        }
        Some(other) => Err(invalid(
            "stop",
            format!("expected string or array, but got {}", kind(other)),
        )),
    }
}

/// Returns the number of tools.
fn check_tools(obj: &Map<String, Value>) -> Result<usize, Rejection> {
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Array(tools)) => tools,
        Some(other) => return Err(invalid("tools", format!("expected array, but got {}", kind(other)))),
    };
    if tools.len() > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!("maximum {MAX_TOOLS} items allowed, but found {} items", tools.len()),
        ));
    }
    for (i, tool) in tools.iter().enumerate() {
        let Value::Object(tool) = tool else {
            return Err(invalid(
                format!("tools.{i}"),
                format!("expected object, but got {}", kind(tool)),
            ));
        };
        match tool.get("type") {
            Some(Value::String(t)) if t == "function" => {}
            // Groq's built-in tools (browser_search, code_interpreter, ...) are Groq's to check.
            Some(Value::String(_)) => continue,
            None => return Err(invalid(format!("tools.{i}"), "missing properties: 'type'")),
            Some(other) => {
                return Err(invalid(
                    format!("tools.{i}.type"),
                    format!("expected string, but got {}", kind(other)),
                ));
            }
        }
        let Some(Value::Object(function)) = tool.get("function") else {
            return Err(invalid(format!("tools.{i}"), "missing properties: 'function'"));
        };
        match function.get("name") {
            Some(Value::String(name)) if valid_function_name(name) => {}
            Some(Value::String(_)) => return Err(invalid(format!("tools.{i}.function.name"), NAME_PATTERN)),
            None => return Err(invalid(format!("tools.{i}.function"), "missing properties: 'name'")),
            Some(other) => {
                return Err(invalid(
                    format!("tools.{i}.function.name"),
                    format!("expected string, but got {}", kind(other)),
                ));
            }
        }
        match function.get("parameters") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(other) => {
                return Err(invalid(
                    format!("tools.{i}.function.parameters"),
                    format!("expected object, but got {}", kind(other)),
                ));
            }
        }
    }
    Ok(tools.len())
}

fn check_tool_choice(obj: &Map<String, Value>) -> Result<(), Rejection> {
    match obj.get("tool_choice") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if TOOL_CHOICES.contains(&s.as_str()) => Ok(()),
        Some(Value::String(_)) => Err(invalid("tool_choice", one_of(TOOL_CHOICES))),
        Some(Value::Object(choice)) => {
            if choice.get("type").and_then(Value::as_str) != Some("function") {
                return Err(invalid("tool_choice.type", one_of(&["function"])));
            }
            match choice.get("function").and_then(|f| f.get("name")) {
                Some(Value::String(name)) if valid_function_name(name) => Ok(()),
                Some(Value::String(_)) => Err(invalid("tool_choice.function.name", NAME_PATTERN)),
                _ => Err(invalid("tool_choice.function", "missing properties: 'name'")),
            }
        }
        Some(other) => Err(invalid(
            "tool_choice",
            format!("expected string or object, but got {}", kind(other)),
        )),
    }
}

/// Returns whether the request asks for JSON output (`json_object` or `json_schema`).
fn check_response_format(obj: &Map<String, Value>) -> Result<bool, Rejection> {
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(format)) => format,
        Some(other) => {
            return Err(invalid(
                "response_format",
                format!("expected object, but got {}", kind(other)),
            ));
        }
    };
    let kind_of_format = match format.get("type") {
        None => return Err(invalid("response_format", "missing properties: 'type'")),
        Some(Value::String(t)) if RESPONSE_FORMATS.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(_)) => return Err(invalid("response_format.type", one_of(RESPONSE_FORMATS))),
        Some(other) => {
            return Err(invalid(
                "response_format.type",
                format!("expected string, but got {}", kind(other)),
            ));
        }
    };
    match kind_of_format {
        "text" => Ok(false),
        "json_object" => Ok(true),
        _json_schema => {
            let Some(Value::Object(schema)) = format.get("json_schema") else {
                return Err(invalid("response_format", "missing properties: 'json_schema'"));
            };
            match schema.get("name") {
                Some(Value::String(name)) if valid_function_name(name) => Ok(true),
                Some(Value::String(_)) => Err(invalid("response_format.json_schema.name", NAME_PATTERN)),
                Some(other) => Err(invalid(
                    "response_format.json_schema.name",
                    format!("expected string, but got {}", kind(other)),
                )),
                None => Err(invalid("response_format.json_schema", "missing properties: 'name'")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::wording::suggest;

    #[test]
    fn suggestions_like_groqs() {
        assert_eq!(suggest("store", KNOWN_FIELDS), Some("stop"));
        assert_eq!(suggest("temprature", KNOWN_FIELDS), Some("temperature"));
        assert_eq!(suggest("zzzzzzzzzzzz", KNOWN_FIELDS), None);
    }
}
