//! Black-box tests: groxy and the Groq simulator on real loopback sockets, asserting bytes, statuses, headers and counts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

mod accounting_hardening;
mod auth;
mod binary;
mod cache;
mod cancellation;
mod dashboard;
mod errors;
mod hardening_config;
mod limits;
mod observability;
mod one_path;
mod passthrough;
mod process;
mod ratelimit;
mod redis;
mod redis_server;
mod sdk;
mod shutdown;
mod streaming;
mod support;
mod validation;
