//! The only way to Groq: one pooled client with the upstream key injected and timeouts that map to 502/504, and the one forward path every route takes.

mod client;
mod forward;

pub use client::Upstream;
pub use forward::{Forward, ForwardBody};
