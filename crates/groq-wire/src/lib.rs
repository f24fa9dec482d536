//! Groq's wire dialect, shared by groxy and the simulator so each rule has one implementation.
//!
//! - [`duration`]: Go durations (`7.66s`, `2m59.56s`, `285ms`), printed as Go prints them and
//!   parsed back.
//! - [`responses`]: the Responses API's fields and Groq's refusals of what it does not support.
//! - [`ratelimit`]: the `x-ratelimit-*` header names and the one parser of a response's budget.
//!
//! Depends on `http` alone.

pub mod duration;
pub mod ratelimit;
pub mod responses;
