//! A prompt-size estimate that is a lower bound: it may say too few tokens, never too many.
//!
//! Why a lower bound: it is only used to refuse requests that cannot fit the context window, and
//! refusing one that Groq would accept is worse than forwarding one it will refuse.
//!
//! How: the pieces of message text counted by [`text_tokens`] (see `wire::tokens`); everything
//! outside message text (role markers, JSON punctuation, tool schemas' structure) is not counted
//! at all. For English prose this comes to roughly 70-80% of the real count.

use serde_json::Value;

use crate::wire::tokens::text_tokens;

/// Lower bound on the prompt tokens of a request: the text of every message (string content,
/// text parts, tool call arguments) and of the tool definitions' descriptions.
pub fn prompt_tokens(request: &serde_json::Map<String, Value>) -> u64 {
    let mut total = 0;
    if let Some(Value::Array(messages)) = request.get("messages") {
        for message in messages {
            match message.get("content") {
                Some(Value::String(text)) => total += text_tokens(text),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(Value::String(text)) = part.get("text") {
                            total += text_tokens(text);
                        }
                    }
                }
                _ => {}
            }
            if let Some(Value::Array(calls)) = message.get("tool_calls") {
                for call in calls {
                    if let Some(Value::String(args)) = call.get("function").and_then(|f| f.get("arguments")) {
                        total += text_tokens(args);
                    }
                }
            }
        }
    }
    if let Some(Value::Array(tools)) = request.get("tools") {
        for tool in tools {
            if let Some(Value::String(text)) = tool.get("function").and_then(|f| f.get("description")) {
                total += text_tokens(text);
            }
        }
    }
    total
}
