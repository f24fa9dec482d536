//! Black-box tests: groxy and the Groq simulator on real loopback sockets, asserting bytes, statuses, headers and counts.

mod auth;
mod binary;
mod cache;
mod cancellation;
mod dashboard;
mod errors;
mod hardening_config;
mod limits;
mod observability;
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
