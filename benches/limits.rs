//! Cost of one rate-limit admission (check, reserve, settle) with 10,000 client keys known.
//!
//! `cargo bench --bench limits`. Under `cargo test` each benchmark runs once as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use groxy::{
    bench::{Caller, Limits},
    config::{LimitSet, RateLimitsConfig},
    sha256,
};

fn main() {
    divan::main();
}

fn callers(n: usize) -> Vec<Caller> {
    (0..n)
        .map(|i| {
            let name = format!("key-{i}");
            Caller {
                partition: sha256(name.as_bytes()),
                name: name.into(),
                upstream_authorization: None,
                account: None,
            }
        })
        .collect()
}

#[divan::bench(args = [1, 10_000])]
fn admit_and_settle(bencher: divan::Bencher, keys: usize) {
    let config = RateLimitsConfig {
        default: LimitSet {
            requests_per_minute: Some(1_000_000),
            requests_per_day: Some(100_000_000),
            tokens_per_minute: Some(1_000_000_000),
            ..LimitSet::default()
        },
        per_model: LimitSet {
            tokens_per_day: Some(u64::MAX / 4),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let limiter = Limits::in_memory();
    let callers = callers(keys);
    for caller in &callers {
        if let Ok(admission) = runtime.block_on(limiter.admit(&config, caller, Some("openai/gpt-oss-20b"), 1)) {
            admission.settle(Some(1));
        }
    }
    let mut next = 0usize;
    bencher.bench_local(|| {
        next = (next + 7919) % callers.len();
        let admission = runtime
            .block_on(limiter.admit(&config, &callers[next], Some("openai/gpt-oss-20b"), 1500))
            .expect("within limits");
        admission.settle(Some(700));
    });
}
