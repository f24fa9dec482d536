//! Groq's wire dialect, shared by every step: Go durations, `x-ratelimit-*` headers, SSE framing, and which headers cross the gateway.
//!
//! Vocabulary only: nothing here imports from the rest of the crate, so any layer may use it.

pub mod duration;
pub mod headers;
pub mod ratelimit;
pub mod sse;
