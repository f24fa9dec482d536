//! What the usage ledger adds to one request: its two updates of the buffered row (the request
//! when it ends, the tokens and cost when Groq's usage arrives) and pricing the usage. The
//! database is never on this path (rows are written in batches by their own task), so this is
//! the whole per-request cost of having the ledger on.
//!
//! `cargo bench --bench ledger`. Under `cargo test` each benchmark runs once as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use std::sync::Arc;

use groxy::bench::{Delta, Pending, PriceTable};

fn main() {
    divan::main();
}

/// One request of `keys` keys × 3 models: price its usage, count it, add its tokens and cost.
#[divan::bench(args = [1, 1_000])]
fn one_request(bencher: divan::Bencher, keys: usize) {
    let pending = Pending::new(100_000);
    let prices = PriceTable::new(&Default::default());
    let names: Vec<Arc<str>> = (0..keys).map(|i| format!("key_{i:016x}").into()).collect();
    let models: Vec<Arc<str>> = ["openai/gpt-oss-20b", "openai/gpt-oss-120b", "qwen/qwen3.8-27b"]
        .map(Arc::from)
        .to_vec();
    let mut i = 0usize;
    bencher.bench_local(|| {
        i = i.wrapping_add(7919);
        let (key, model) = (&names[i % keys], &models[i % 3]);
        let cost = prices.get(model).map_or(0, |p| p.cost(1_500, 200, 300));
        pending.add(
            key,
            model,
            Delta {
                prompt_tokens: 1_500,
                completion_tokens: 300,
                cached_tokens: 200,
                cost_nanos: cost,
                ..Delta::default()
            },
        );
        pending.add(
            key,
            model,
            Delta {
                requests: 1,
                ..Delta::default()
            },
        );
    });
}
