//! Cache-hit latency against the network floor: the same 2 KB answer fetched directly from the
//! Groq simulator and as a groxy cache hit, interleaved in one run; medians and the difference.
//!
//! `cargo bench --bench cache_hit`. Under `cargo test` it runs a few iterations as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use std::time::{Duration, Instant};

use groq_sim::{SimConfig, Simulator};
use groxy::{
    Config,
    config::{CacheMode, Secret},
};

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations = if full { 5_000 } else { 20 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        // A ~2 KB chat completion.
        let content = "word ".repeat(340);
        let body = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"openai/gpt-oss-20b","choices":[{{"index":0,"message":{{"role":"assistant","content":"{content}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":10,"completion_tokens":340,"total_tokens":350}}}}"#
        );
        let sim = Simulator::start(SimConfig { json_body: Some(body.into()), ..SimConfig::default() }).await.expect("sim");
        let mut config = Config::default();
        config.upstream.url = sim.base_url();
        config.upstream.api_key = Some(Secret::new("gsk_bench"));
        config.cache.mode = CacheMode::All;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(groxy::run(listener, config, std::future::pending()));
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let request = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"temperature":0}"#;
        let direct_url = format!("{}/chat/completions", sim.base_url());
        let groxy_url = format!("http://{addr}/v1/chat/completions");
        let fetch = |url: String| {
            let client = client.clone();
            async move {
                let started = Instant::now();
                let response = client
                    .post(url)
                    .header("authorization", "Bearer gsk_bench")
                    .header("content-type", "application/json")
                    .body(request)
                    .send()
                    .await
                    .expect("send");
                let hit = response.headers().get("x-groxy-cache").is_some_and(|v| v == "HIT");
                let bytes = response.bytes().await.expect("body");
                (started.elapsed(), hit, bytes.len())
            }
        };
        // Wait for the catalogue, then warm up (the first groxy call stores the entry).
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..200.min(iterations) {
            fetch(direct_url.clone()).await;
            fetch(groxy_url.clone()).await;
        }
        let (mut direct, mut hits) = (Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..iterations {
            let (d, _, _) = fetch(direct_url.clone()).await;
            let (h, was_hit, len) = fetch(groxy_url.clone()).await;
            assert!(was_hit, "every measured groxy call is a cache hit");
            direct.push(d);
            hits.push(h);
            size = len;
        }
        let (d, h) = (median(&mut direct), median(&mut hits));
        println!("cache hit vs direct, {size}-byte answer, {iterations} interleaved pairs:");
        println!("  direct to simulator  median {:>8.1} µs", d.as_secs_f64() * 1e6);
        println!("  groxy cache hit      median {:>8.1} µs", h.as_secs_f64() * 1e6);
        println!("  added over the floor        {:>8.1} µs", (h.as_secs_f64() - d.as_secs_f64()) * 1e6);
    });
}
