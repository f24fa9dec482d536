//! The only way to Groq: one pooled client with the upstream key injected and timeouts that map to 502/504, and the one forward path every route takes, with its bounded retries and fallbacks.

mod body;
mod client;
mod forward;
mod retry;

pub use client::Upstream;
pub use forward::{AdmitModel, Alternatives, Forward, ForwardBody, MODEL_HEADER, Target};
