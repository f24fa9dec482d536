//! One walk of `messages` for every step that reads them: Groq's per-role rules (which fields each role may carry and which it must), the OpenAI-only fields compatibility removes, and the prompt estimate.
//!
//! Why one walk: `messages` is nearly all of a request, and each walk over it costs time; the
//! steps still report in their own order (compatibility, then the rules), from what it found.

use super::{
    estimate::tokens_of,
    request::Edits,
    wording::{invalid, kind, suggest},
};
use crate::error::Rejection;
use crate::wire::json::Raw;

/// What the walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub count: usize,
    /// For each of `request::OPENAI_ONLY_MESSAGE_FIELDS`, the first assistant message carrying it.
    pub openai_fields: [Option<usize>; 3],
    /// The first of Groq's rules a message breaks (among the first `max_messages`).
    pub broken: Option<Rejection>,
    /// A lower bound of the tokens of the messages' text (see `estimate`); complete only when
    /// no rule is broken.
    pub prompt_tokens: u64,
}

/// `messages` must be an array; `edits` says which fields compatibility removes.
pub fn walk(messages: Raw<'_>, edits: &Edits, reject_unknown: bool, max_messages: usize) -> Walk {
    let mut walk = Walk::default();
    for (i, (message, fields)) in messages.items_picking(&FIELDS).enumerate() {
        walk.count += 1;
        let [role, .., refusal, annotations, audio] = fields;
        if role.is_some_and(|role| role.is_str("assistant")) {
            for (first, field) in walk.openai_fields.iter_mut().zip([refusal, annotations, audio]) {
                if first.is_none() && field.is_some() {
                    *first = Some(i);
                }
            }
        }
        // Past `max_messages` the request is refused for its length whatever they hold.
        if walk.broken.is_some() || i >= max_messages {
            continue;
        }
        if !message.is_object() {
            walk.broken = Some(invalid(
                format!("messages.{i}"),
                format!("expected object, but got {}", kind(message)),
            ));
            continue;
        }
        match check_one(i, message, fields, edits, reject_unknown) {
            Ok(tokens) => walk.prompt_tokens += tokens,
            Err(rejection) => walk.broken = Some(rejection),
        }
    }
    walk
}

/// The fields of a message the walk reads, in one pass over it; the last three are
/// `request::OPENAI_ONLY_MESSAGE_FIELDS`.
const FIELDS: [&str; 9] = [
    "role",
    "content",
    "name",
    "tool_calls",
    "function_call",
    "tool_call_id",
    "refusal",
    "annotations",
    "audio",
];

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

/// One message's rules; its estimated tokens when it keeps them.
fn check_one(
    i: usize,
    message: Raw<'_>,
    [role, content, name, tool_calls, function_call, tool_call_id, ..]: [Option<Raw<'_>>; 9],
    edits: &Edits,
    reject_unknown: bool,
) -> Result<u64, Rejection> {
    let role = match role {
        None => {
            return Err(invalid(format!("messages.{i}"), "missing properties: 'role'"));
        }
        Some(role) => match role.as_str() {
            Some(role) => role,
            None => {
                return Err(invalid(
                    format!("messages.{i}.role"),
                    format!("expected string, but got {}", kind(role)),
                ));
            }
        },
    };
    let role = &*role;
    let Some(fields) = allowed(role) else {
        return Err(invalid(format!("messages.{i}.role"), ROLES));
    };
    if reject_unknown {
        let stripped = edits.strips_message(message);
        for (key, _) in message.entries() {
            let key = key.text();
            // A field compatibility removes is not there for the rules.
            if key != "role" && !fields.contains(&&*key) && !(stripped && edits.drops_in_message(&key)) {
                let hint = suggest(&key, fields)
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
    }
    let content = content.filter(|c| !c.is_null() || role != "assistant");
    let mut tokens = 0;
    match role {
        "assistant" => {
            let has_tool_calls = tool_calls.is_some_and(|calls| calls.is_array() && calls.items().next().is_some())
                || function_call.is_some_and(Raw::is_object);
            match content {
                None if has_tool_calls => {}
                None => {
                    return Err(role_rule(
                        i,
                        role,
                        format!("messages.{i}"),
                        "missing properties: 'content' (content may be null only with tool_calls)",
                    ));
                }
                Some(content) => tokens += check_content(i, role, content, false)?,
            }
            if let Some(calls) = tool_calls {
                check_tool_calls(i, calls)?;
            }
        }
        "tool" => {
            match tool_call_id {
                Some(id) if id.is_string() => {}
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
            tokens += required_content(i, role, content, false)?;
        }
        "function" => {
            if !name.is_some_and(Raw::is_string) {
                return Err(role_rule(
                    i,
                    role,
                    format!("messages.{i}"),
                    "missing properties: 'name'",
                ));
            }
            tokens += required_content(i, role, content, false)?;
        }
        "user" => tokens += required_content(i, role, content, true)?,
        _system_or_developer => tokens += required_content(i, role, content, false)?,
    }
    if let Some(name) = name {
        if !name.is_string() {
            return Err(role_rule(
                i,
                role,
                format!("messages.{i}.name"),
                format!("expected string, but got {}", kind(name)),
            ));
        }
    }
    // Whatever the role, arguments of tool calls count (rules or not, Groq reads them).
    for call in tool_calls.into_iter().flat_map(Raw::items) {
        tokens += tokens_of(call.get("function").and_then(|f| f.get("arguments")));
    }
    Ok(tokens)
}

fn required_content(i: usize, role: &str, content: Option<Raw<'_>>, images: bool) -> Result<u64, Rejection> {
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
/// Returns the estimated tokens of its text (of every part's `text`, whatever the type).
fn check_content(i: usize, role: &str, content: Raw<'_>, images: bool) -> Result<u64, Rejection> {
    if content.is_string() {
        return Ok(tokens_of(Some(content)));
    }
    let mut tokens = 0;
    if !content.is_array() {
        return Err(role_rule(
            i,
            role,
            format!("messages.{i}.content"),
            format!("expected string or array, but got {}", kind(content)),
        ));
    }
    for (j, (part, [kind_of_part, text, image_url])) in
        content.items_picking(&["type", "text", "image_url"]).enumerate()
    {
        let path = || format!("messages.{i}.content.{j}");
        if !part.is_object() {
            return Err(role_rule(
                i,
                role,
                path(),
                format!("expected object, but got {}", kind(part)),
            ));
        }
        tokens += tokens_of(text);
        match kind_of_part.and_then(Raw::as_str).as_deref() {
            Some("text") => {
                if !text.is_some_and(Raw::is_string) {
                    return Err(role_rule(i, role, path(), "missing properties: 'text'"));
                }
            }
            Some("image_url") if images => {
                let url = image_url.and_then(|u| u.get("url"));
                if !url.is_some_and(Raw::is_string) {
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
    Ok(tokens)
}

fn check_tool_calls(i: usize, calls: Raw<'_>) -> Result<(), Rejection> {
    if !calls.is_array() {
        return Err(role_rule(
            i,
            "assistant",
            format!("messages.{i}.tool_calls"),
            format!("expected array, but got {}", kind(calls)),
        ));
    }
    for (j, call) in calls.items().enumerate() {
        let path = format!("messages.{i}.tool_calls.{j}");
        if !call.is_object() {
            return Err(role_rule(
                i,
                "assistant",
                path,
                format!("expected object, but got {}", kind(call)),
            ));
        }
        let [id, function] = call.pick(&["id", "function"]);
        for (key, value) in [("id", id), ("function", function)] {
            if value.is_none() {
                return Err(role_rule(i, "assistant", path, format!("missing properties: '{key}'")));
            }
        }
        if !function.and_then(|f| f.get("name")).is_some_and(Raw::is_string) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::request::OPENAI_ONLY_MESSAGE_FIELDS;

    #[test]
    fn the_last_fields_read_are_openais_only() {
        assert_eq!(FIELDS[6..], *OPENAI_ONLY_MESSAGE_FIELDS);
    }
}
