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
mod accounts;
mod accounts_budget;
mod accounts_dashboard;
mod accounts_db;
mod accounts_ledger;
mod accounts_outage;
mod answers_hardening;
mod auth;
mod binary;
mod cache;
mod cancellation;
mod conn_hardening;
mod dashboard;
mod deploy;
mod deploy_manifests;
mod errors;
mod hardening_config;
mod limits;
mod logs_and_catalog;
mod observability;
mod one_path;
mod otel;
mod passthrough;
mod process;
mod ratelimit;
mod redis;
mod redis_server;
mod redis_tls;
mod replica_hardening;
mod responses_api;
mod retired_models;
mod retries;
mod sdk;
mod shutdown;
mod streaming;
mod support;
mod upstream_http2;
mod validation;
mod validation_memory;
