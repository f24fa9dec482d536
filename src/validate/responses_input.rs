//! The parts of a Responses request that hold the conversation and the tools: `input` (a string or items), `tools` and `tool_choice`, checked as Groq takes them, with the prompt estimate read on the way.
//!
//! Why the items are checked here and not left to Groq: an item Groq would refuse is a request
//! that should not wait for the caller's limits or reserve tokens; and the walk that checks
//! them is the one that counts their text for the estimate (a lower bound, see `estimate`).

use super::{
    estimate::tokens_of,
    rules::{MAX_TOOLS, valid_function_name},
    wording::{invalid, kind},
};
use crate::error::Rejection;
use crate::wire::json::Raw;

pub const ROLES: &[&str] = &["user", "system", "developer", "assistant"];
const PART_TYPES: &[&str] = &["input_text", "input_image", "output_text"];
/// Messages, function calls and their outputs; then the items a client sends back from an
/// earlier answer's `output` (Groq's reasoning and remote MCP items), whose insides are Groq's
/// to check.
const ITEM_TYPES: &[&str] = &[
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "mcp_list_tools",
    "mcp_call",
    "mcp_approval_request",
    "mcp_approval_response",
];
const TOOL_CHOICES: &[&str] = &["none", "auto", "required"];
pub const NAME_PATTERN: &str = "does not match pattern '^[a-zA-Z0-9_-]{1,64}$'";

pub fn one_of(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("value must be one of {}", quoted.join(", "))
}

fn missing(path: impl Into<String>, field: &str) -> Rejection {
    invalid(path, format!("missing properties: '{field}'"))
}

fn expected(path: impl Into<String>, what: &str, value: Raw<'_>) -> Rejection {
    invalid(path, format!("expected {what}, but got {}", kind(value)))
}

/// A string field that must be present.
fn required_string(item: Raw<'_>, path: &str, field: &str) -> Result<u64, Rejection> {
    match item.get(field) {
        None => Err(missing(path, field)),
        Some(value) if value.is_string() => Ok(tokens_of(Some(value))),
        Some(value) => Err(expected(format!("{path}.{field}"), "string", value)),
    }
}

/// Checks `input` (required: a string, or at least one item and at most `max_items`) and
/// returns a lower bound of the tokens of its text.
pub fn check_input(input: Option<Raw<'_>>, max_items: usize) -> Result<u64, Rejection> {
    let input = match input {
        None => return Err(missing_top("input")),
        Some(input) if input.is_string() => return Ok(tokens_of(Some(input))),
        Some(input) if input.is_array() => input,
        Some(other) => return Err(expected("input", "string or array", other)),
    };
    let count = input.items().count();
    if count == 0 {
        return Err(invalid("input", "minimum number of items is 1"));
    }
    if count > max_items {
        return Err(invalid(
            "input",
            format!("maximum {max_items} items allowed, but found {count} items"),
        ));
    }
    let mut tokens = 0u64;
    for (i, item) in input.items().enumerate() {
        tokens = tokens.saturating_add(check_item(i, item)?);
    }
    Ok(tokens)
}

/// A missing top-level field, worded as Groq's validator does.
pub fn missing_top(field: &str) -> Rejection {
    Rejection::Invalid {
        message: format!("missing properties: '{field}'"),
        param: Some(field.to_owned()),
    }
}

fn check_item(i: usize, item: Raw<'_>) -> Result<u64, Rejection> {
    let path = format!("input.{i}");
    if !item.is_object() {
        return Err(expected(path, "object", item));
    }
    let kind_of_item = match item.get("type") {
        // A message may leave out its type (OpenAI's "easy input message").
        None => "message",
        Some(t) => match t.as_str() {
            Some(text) => match ITEM_TYPES.iter().find(|k| **k == text) {
                Some(found) => *found,
                None => return Err(invalid(format!("{path}.type"), one_of(ITEM_TYPES))),
            },
            None => return Err(expected(format!("{path}.type"), "string", t)),
        },
    };
    match kind_of_item {
        "message" => check_message(&path, item),
        "function_call" => {
            let name = required_string(item, &path, "name")?;
            if !item
                .get("name")
                .and_then(Raw::as_str)
                .is_some_and(|n| valid_function_name(&n))
            {
                return Err(invalid(format!("{path}.name"), NAME_PATTERN));
            }
            required_string(item, &path, "call_id")?;
            Ok(name + required_string(item, &path, "arguments")?)
        }
        "function_call_output" => {
            required_string(item, &path, "call_id")?;
            match item.get("output") {
                None => Err(missing(path, "output")),
                Some(output) if output.is_string() => Ok(tokens_of(Some(output))),
                Some(output) if output.is_array() => Ok(parts_tokens(output)),
                Some(other) => Err(expected(format!("{path}.output"), "string or array", other)),
            }
        }
        _echoed => Ok(0),
    }
}

fn check_message(path: &str, item: Raw<'_>) -> Result<u64, Rejection> {
    let [role, content] = item.pick(&["role", "content"]);
    match role {
        None => return Err(missing(path, "role")),
        Some(role) => match role.as_str() {
            Some(text) if ROLES.contains(&&*text) => {}
            Some(_) => return Err(invalid(format!("{path}.role"), one_of(ROLES))),
            None => return Err(expected(format!("{path}.role"), "string", role)),
        },
    }
    let content = match content {
        None => return Err(missing(path, "content")),
        Some(content) if content.is_string() => return Ok(tokens_of(Some(content))),
        Some(content) if content.is_array() => content,
        Some(other) => return Err(expected(format!("{path}.content"), "string or array", other)),
    };
    let mut tokens = 0u64;
    for (j, part) in content.items().enumerate() {
        let path = format!("{path}.content.{j}");
        if !part.is_object() {
            return Err(expected(path, "object", part));
        }
        let [kind_of_part, text, image] = part.pick(&["type", "text", "image_url"]);
        let kind_of_part = match kind_of_part {
            None => return Err(missing(path, "type")),
            Some(t) => match t.as_str() {
                Some(text) if PART_TYPES.contains(&&*text) => text,
                Some(_) => return Err(invalid(format!("{path}.type"), one_of(PART_TYPES))),
                None => return Err(expected(format!("{path}.type"), "string", t)),
            },
        };
        match (&*kind_of_part, text, image) {
            ("input_image", _, Some(url)) if url.is_string() => {}
            ("input_image", _, Some(other)) => return Err(expected(format!("{path}.image_url"), "string", other)),
            ("input_image", _, None) => return Err(missing(path, "image_url")),
            (_, Some(text), _) if text.is_string() => tokens += tokens_of(Some(text)),
            (_, Some(other), _) => return Err(expected(format!("{path}.text"), "string", other)),
            (_, None, _) => return Err(missing(path, "text")),
        }
    }
    Ok(tokens)
}

/// The text of an array of content parts, counted without checking them (a tool's output).
fn parts_tokens(parts: Raw<'_>) -> u64 {
    parts.items().map(|part| tokens_of(part.get("text"))).sum()
}

/// Checks `tools` (function tools by name, remote MCP servers by label; other types are
/// Groq's built-ins, Groq's to check) and returns their count and the tokens of their
/// descriptions.
pub fn check_tools(tools: Option<Raw<'_>>) -> Result<(usize, u64), Rejection> {
    let tools = match tools {
        None => return Ok((0, 0)),
        Some(tools) if tools.is_null() => return Ok((0, 0)),
        Some(tools) if tools.is_array() => tools,
        Some(other) => return Err(expected("tools", "array", other)),
    };
    let count = tools.items().count();
    if count > MAX_TOOLS {
        return Err(invalid(
            "tools",
            format!("maximum {MAX_TOOLS} items allowed, but found {count} items"),
        ));
    }
    let mut tokens = 0;
    for (i, tool) in tools.items().enumerate() {
        let path = format!("tools.{i}");
        if !tool.is_object() {
            return Err(expected(path, "object", tool));
        }
        let [kind_of_tool, name, parameters, description, label, url] = tool.pick(&[
            "type",
            "name",
            "parameters",
            "description",
            "server_label",
            "server_url",
        ]);
        let kind_of_tool = match kind_of_tool {
            None => return Err(missing(path, "type")),
            Some(t) => match t.as_str() {
                Some(text) => text,
                None => return Err(expected(format!("{path}.type"), "string", t)),
            },
        };
        match &*kind_of_tool {
            "function" => {
                match name {
                    Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => {}
                    Some(name) if name.is_string() => return Err(invalid(format!("{path}.name"), NAME_PATTERN)),
                    Some(other) => return Err(expected(format!("{path}.name"), "string", other)),
                    None => return Err(missing(path, "name")),
                }
                if let Some(p) = parameters.filter(|p| !p.is_null() && !p.is_object()) {
                    return Err(expected(format!("{path}.parameters"), "object", p));
                }
                tokens += tokens_of(description);
            }
            "mcp" => {
                match label {
                    Some(label) if label.is_string() => {}
                    Some(other) => return Err(expected(format!("{path}.server_label"), "string", other)),
                    None => return Err(missing(path, "server_label")),
                }
                if let Some(url) = url.filter(|u| !u.is_null() && !u.is_string()) {
                    return Err(expected(format!("{path}.server_url"), "string", url));
                }
            }
            _builtin => {}
        }
    }
    Ok((count, tokens))
}

/// `tool_choice`: a mode, or one function (`{"type":"function","name":…}`) or MCP server
/// (`{"type":"mcp","server_label":…}`).
pub fn check_tool_choice(choice: Option<Raw<'_>>) -> Result<(), Rejection> {
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
        return Err(expected("tool_choice", "string or object", choice));
    }
    let [kind_of_choice, name, label] = choice.pick(&["type", "name", "server_label"]);
    match kind_of_choice.and_then(Raw::as_str).as_deref() {
        Some("function") => match name {
            Some(name) if name.as_str().is_some_and(|n| valid_function_name(&n)) => Ok(()),
            Some(name) if name.is_string() => Err(invalid("tool_choice.name", NAME_PATTERN)),
            Some(other) => Err(expected("tool_choice.name", "string", other)),
            None => Err(missing("tool_choice", "name")),
        },
        Some("mcp") => match label {
            Some(label) if label.is_string() => Ok(()),
            Some(other) => Err(expected("tool_choice.server_label", "string", other)),
            None => Err(missing("tool_choice", "server_label")),
        },
        _ => Err(invalid("tool_choice.type", one_of(&["function", "mcp"]))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> Result<u64, String> {
        let root = Raw::root(json.as_bytes()).expect("json");
        check_input(Some(root), 10).map_err(|r| match r {
            Rejection::Invalid { message, .. } => message,
            other => format!("{other:?}"),
        })
    }

    #[test]
    fn items_are_checked_and_counted() {
        assert_eq!(input(r#""Say hi""#), Ok(2));
        assert!(input(r#"[{"role":"user","content":"Say hi"}]"#).is_ok_and(|t| t > 0));
        assert!(
            input(
                r#"[{"type":"message","role":"developer","content":[{"type":"input_text","text":"Be brief"},{"type":"input_image","image_url":"data:image/png;base64,AA"}]},
                {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                {"type":"function_call_output","call_id":"call_1","output":"sunny"},
                {"type":"reasoning","id":"rs_1","summary":[]},
                {"role":"assistant","content":[{"type":"output_text","text":"It is sunny."}]}]"#
            )
            .is_ok()
        );
        let refused = [
            ("7", "'input' : expected string or array, but got number"),
            ("[]", "'input' : minimum number of items is 1"),
            (
                r#"[{"role":"tool","content":"x"}]"#,
                "'input.0.role' : value must be one of 'user', 'system', 'developer', 'assistant'",
            ),
            (r#"[{"role":"user"}]"#, "'input.0' : missing properties: 'content'"),
            (
                r#"[{"role":"user","content":[{"type":"image_url","image_url":"x"}]}]"#,
                "'input.0.content.0.type' : value must be one of 'input_text', 'input_image', 'output_text'",
            ),
            (
                r#"[{"role":"user","content":[{"type":"input_text"}]}]"#,
                "'input.0.content.0' : missing properties: 'text'",
            ),
            (
                r#"[{"type":"function_call","name":"f","arguments":"{}"}]"#,
                "'input.0' : missing properties: 'call_id'",
            ),
            (
                r#"[{"type":"function_call","name":"a b","call_id":"c","arguments":"{}"}]"#,
                "'input.0.name' : does not match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            ),
            (
                r#"[{"type":"function_call_output","call_id":"c"}]"#,
                "'input.0' : missing properties: 'output'",
            ),
            (
                r#"[{"type":"item_reference","id":"x"}]"#,
                "'input.0.type' : value must be one of 'message', 'function_call', 'function_call_output', 'reasoning', 'mcp_list_tools', 'mcp_call', 'mcp_approval_request', 'mcp_approval_response'",
            ),
            ("[1]", "'input.0' : expected object, but got number"),
        ];
        for (body, message) in refused {
            assert_eq!(input(body), Err(message.to_owned()), "{body}");
        }
        let eleven = format!("[{}]", [r#"{"role":"user","content":"x"}"#; 11].join(","));
        assert_eq!(
            input(&eleven),
            Err("'input' : maximum 10 items allowed, but found 11 items".to_owned())
        );
    }

    #[test]
    fn tools_and_tool_choice() {
        let tools = |json: &str| check_tools(Raw::root(json.as_bytes()));
        assert!(matches!(
            tools(
                r#"[{"type":"function","name":"get_weather","description":"Weather by city","parameters":{}},{"type":"mcp","server_label":"docs","server_url":"https://example.com/mcp"},{"type":"browser_search"}]"#
            ),
            Ok((3, 3))
        ));
        assert!(tools(r#"[{"type":"function","function":{"name":"f"}}]"#).is_err());
        assert!(tools(r#"[{"type":"mcp"}]"#).is_err());
        let choice = |json: &str| check_tool_choice(Raw::root(json.as_bytes())).is_ok();
        assert!(choice(r#""required""#) && choice(r#"{"type":"function","name":"f"}"#));
        assert!(choice(r#"{"type":"mcp","server_label":"docs"}"#));
        assert!(!choice(r#""any""#) && !choice(r#"{"type":"function","function":{"name":"f"}}"#));
    }
}
