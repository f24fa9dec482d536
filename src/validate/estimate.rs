//! A prompt-size estimate that is a lower bound: it may say too few tokens, never too many.
//!
//! Why a lower bound: it is only used to refuse requests that cannot fit the context window, and
//! refusing one that Groq would accept is worse than forwarding one it will refuse.
//!
//! How: the pieces of message text counted by [`text_tokens`] (see `wire::tokens`); everything
//! outside message text (role markers, JSON punctuation, tool schemas' structure) is not counted
//! at all. For English prose this comes to roughly 70-80% of the real count.
//!
//! Counted: the text of every message (string content, each part's `text`, tool call
//! arguments), by the walk of `messages` (see `messages`), and the tool definitions'
//! descriptions, here.

use crate::wire::json::Raw;
use crate::wire::tokens::text_tokens;

/// Lower bound on the tokens of a string value (0 for any other kind).
pub fn tokens_of(value: Option<Raw<'_>>) -> u64 {
    value.and_then(Raw::as_str).map_or(0, |text| text_tokens(&text))
}

/// Lower bound on the tokens of the tool definitions' descriptions.
pub fn tool_tokens(tools: Option<Raw<'_>>) -> u64 {
    tools
        .into_iter()
        .flat_map(Raw::items)
        .map(|tool| tokens_of(tool.get("function").and_then(|f| f.get("description"))))
        .sum()
}
