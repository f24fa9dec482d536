//! Groq's wire dialect, shared by every step: Go durations, `x-ratelimit-*` headers, SSE framing, which headers cross the gateway, and token counts without a tokenizer.
//!
//! Vocabulary only: nothing here imports from the rest of the crate, so any layer may use it.

pub mod duration;
pub mod headers;
pub mod ratelimit;
pub mod sse;
pub mod tokens;
