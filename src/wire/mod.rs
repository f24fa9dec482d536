//! Groq's wire dialect, shared by every step: Go durations, `x-ratelimit-*` headers, SSE framing, which headers cross the gateway, token counts without a tokenizer, and finding a JSON object's members without parsing it.
//!
//! Vocabulary only: nothing here imports from the rest of the crate, so any layer may use it.

pub mod duration;
pub mod headers;
pub mod json_scan;
pub mod ratelimit;
pub mod sse;
pub mod tokens;
