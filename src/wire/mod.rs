//! Groq's wire dialect, shared by every step: Go durations, `x-ratelimit-*` headers, SSE framing, which headers cross the gateway, token counts without a tokenizer, and reading JSON in place (a value is the bytes it spans) without building a tree.
//!
//! Vocabulary only: nothing here imports from the rest of the crate, so any layer may use it.

pub mod duration;
pub mod headers;
pub mod json;
pub mod ratelimit;
pub mod sse;
pub mod tokens;
