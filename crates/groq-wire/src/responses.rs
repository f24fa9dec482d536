//! Groq's Responses API as both sides must agree on it: the request fields it takes and its wording where it refuses the stateful features it lacks.
//!
//! Groq's Responses API is stateless: it stores nothing, so `store` may only be `false` or
//! `null`, and `previous_response_id` (which points at a stored response) is not supported.
//! groxy refuses these before Groq is asked, and the simulator refuses them as Groq does, with
//! the same words from here.

/// The top-level fields of a Responses request Groq documents.
pub const FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "stream",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "metadata",
    "user",
    "service_tier",
    "truncation",
    "store",
    "previous_response_id",
    "include",
];

/// The refusal of `"store": true`.
pub const STORE_UNSUPPORTED: &str =
    "`store` is not supported: Groq's Responses API is stateless, so only false or null are accepted";

/// The refusal of a `previous_response_id`.
pub const PREVIOUS_RESPONSE_UNSUPPORTED: &str = "`previous_response_id` is not supported: Groq's Responses API is stateless; send the whole conversation in `input`";
