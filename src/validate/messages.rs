//! Groq's per-role rules for `messages`: which fields each role may carry and which it must.

use serde_json::{Map, Value};

use super::wording::{invalid, kind, suggest};
use crate::error::Rejection;

/// Fields each role may carry on Groq (beyond `role`).
fn allowed(role: &str) -> Option<&'static [&'static str]> {
    Some(match role {
        "system" | "developer" => &["content", "name"],
        "user" => &["content", "name"],
        "assistant" => &[
            "content",
            "name",
            "tool_calls",
            "reasoning",
            "function_call",
            "channel",
            "executed_tools",
        ],
        "tool" => &["content", "tool_call_id", "name"],
        "function" => &["content", "name"],
        _ => return None,
    })
}

const ROLES: &str = "value must be one of 'system', 'developer', 'user', 'assistant', 'tool', 'function'";

/// Groq's wording for a rule of one role: the outer path, then the inner problem in brackets.
fn role_rule(i: usize, role: &str, path: String, rule: impl std::fmt::Display) -> Rejection {
    Rejection::Invalid {
        message: format!("'messages.{i}' : for 'role:{role}' the following must be satisfied[('{path}' : {rule})]"),
        param: Some(path),
    }
}

pub fn check(messages: &[Value], reject_unknown: bool) -> Result<(), Rejection> {
    for (i, message) in messages.iter().enumerate() {
        let Value::Object(message) = message else {
            return Err(invalid(
                format!("messages.{i}"),
                format!("expected object, but got {}", kind(message)),
            ));
        };
        check_one(i, message, reject_unknown)?;
    }
    Ok(())
}

fn check_one(i: usize, message: &Map<String, Value>, reject_unknown: bool) -> Result<(), Rejection> {
    let role = match message.get("role") {
        Some(Value::String(role)) => role.as_str(),
        Some(other) => {
            return Err(invalid(
                format!("messages.{i}.role"),
                format!("expected string, but got {}", kind(other)),
            ));
        }
        None => {
            return Err(invalid(format!("messages.{i}"), "missing properties: 'role'"));
        }
    };
    let Some(fields) = allowed(role) else {
        return Err(invalid(format!("messages.{i}.role"), ROLES));
    };
    for key in message.keys().filter(|_| reject_unknown) {
        if key != "role" && !fields.contains(&key.as_str()) {
            let hint = suggest(key, fields)
                .map(|s| format!(", did you mean '{s}'?"))
                .unwrap_or_default();
            return Err(role_rule(
                i,
                role,
                format!("messages.{i}"),
                format!("property '{key}' is unsupported{hint}"),
            ));
        }
    }
    let content = message.get("content");
    match role {
        "assistant" => {
            let has_tool_calls = matches!(message.get("tool_calls"), Some(Value::Array(calls)) if !calls.is_empty())
                || matches!(message.get("function_call"), Some(Value::Object(_)));
            match content {
                None | Some(Value::Null) if has_tool_calls => {}
                None | Some(Value::Null) => {
                    return Err(role_rule(
                        i,
                        role,
                        format!("messages.{i}"),
                        "missing properties: 'content' (content may be null only with tool_calls)",
                    ));
                }
                Some(content) => check_content(i, role, content, false)?,
            }
            if let Some(calls) = message.get("tool_calls") {
                check_tool_calls(i, calls)?;
            }
        }
        "tool" => {
            match message.get("tool_call_id") {
                Some(Value::String(_)) => {}
                None => {
                    return Err(role_rule(
                        i,
                        role,
                        format!("messages.{i}"),
                        "missing properties: 'tool_call_id'",
                    ));
                }
                Some(other) => {
                    return Err(role_rule(
                        i,
                        role,
                        format!("messages.{i}.tool_call_id"),
                        format!("expected string, but got {}", kind(other)),
                    ));
                }
            }
            required_content(i, role, content, false)?;
        }
        "function" => {
            if !matches!(message.get("name"), Some(Value::String(_))) {
                return Err(role_rule(
                    i,
                    role,
                    format!("messages.{i}"),
                    "missing properties: 'name'",
                ));
            }
            required_content(i, role, content, false)?;
        }
        "user" => required_content(i, role, content, true)?,
        _system_or_developer => required_content(i, role, content, false)?,
    }
    if let Some(name) = message.get("name") {
        if !name.is_string() {
            return Err(role_rule(
                i,
                role,
                format!("messages.{i}.name"),
                format!("expected string, but got {}", kind(name)),
            ));
        }
    }
    Ok(())
}

fn required_content(i: usize, role: &str, content: Option<&Value>, images: bool) -> Result<(), Rejection> {
    match content {
        None => Err(role_rule(
            i,
            role,
            format!("messages.{i}"),
            "missing properties: 'content'",
        )),
        Some(content) => check_content(i, role, content, images),
    }
}

/// A string, or an array of content parts. Only user messages may carry non-text parts.
fn check_content(i: usize, role: &str, content: &Value, images: bool) -> Result<(), Rejection> {
    let parts = match content {
        Value::String(_) => return Ok(()),
        Value::Array(parts) => parts,
        other => {
            return Err(role_rule(
                i,
                role,
                format!("messages.{i}.content"),
                format!("expected string or array, but got {}", kind(other)),
            ));
        }
    };
    for (j, part) in parts.iter().enumerate() {
        let path = || format!("messages.{i}.content.{j}");
        let Value::Object(part) = part else {
            return Err(role_rule(
                i,
                role,
                path(),
                format!("expected object, but got {}", kind(part)),
            ));
        };
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                if !matches!(part.get("text"), Some(Value::String(_))) {
                    return Err(role_rule(i, role, path(), "missing properties: 'text'"));
                }
            }
            Some("image_url") if images => {
                let url = part.get("image_url").and_then(|u| u.get("url"));
                if !matches!(url, Some(Value::String(_))) {
                    return Err(role_rule(
                        i,
                        role,
                        format!("{}.image_url", path()),
                        "missing properties: 'url'",
                    ));
                }
            }
            // Other part types (documents, audio, future ones) are Groq's to judge.
            Some(_) if images => {}
            Some(other) => {
                return Err(role_rule(
                    i,
                    role,
                    format!("{}.type", path()),
                    format!("value must be 'text' for role {role}, got '{other}'"),
                ));
            }
            None => return Err(role_rule(i, role, path(), "missing properties: 'type'")),
        }
    }
    Ok(())
}

fn check_tool_calls(i: usize, calls: &Value) -> Result<(), Rejection> {
    let Value::Array(calls) = calls else {
        return Err(role_rule(
            i,
            "assistant",
            format!("messages.{i}.tool_calls"),
            format!("expected array, but got {}", kind(calls)),
        ));
    };
    for (j, call) in calls.iter().enumerate() {
        let path = format!("messages.{i}.tool_calls.{j}");
        let Some(call) = call.as_object() else {
            return Err(role_rule(
                i,
                "assistant",
                path,
                format!("expected object, but got {}", kind(call)),
            ));
        };
        for key in ["id", "function"] {
            if !call.contains_key(key) {
                return Err(role_rule(i, "assistant", path, format!("missing properties: '{key}'")));
            }
        }
        if !matches!(call.get("function").and_then(|f| f.get("name")), Some(Value::String(_))) {
            return Err(role_rule(
                i,
                "assistant",
                format!("{path}.function"),
                "missing properties: 'name'",
            ));
        }
    }
    Ok(())
}
