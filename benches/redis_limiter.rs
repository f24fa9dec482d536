//! What the Redis limiter adds to a request: one admission (median, p99) in memory and in a local Redis.
//!
//! `cargo bench --bench redis_limiter` starts its own `redis-server` on a free port (never the
//! system one), admits 20,000 requests of 1,000 client keys through each store, interleaved,
//! and prints the latency of `Limits::admit` (the part on the request path; the settlement
//! runs in the background). Under `cargo test` it runs 200 of each as a smoke test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a test or benchmark: failing loudly and printing results is its job"
)]

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use groxy::{
    bench::{Caller, Limits, Redis, RedisState},
    config::{HumanDuration, LimitSet, RateLimitsConfig, RedisConfig, RedisUrl},
    sha256,
};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> (Server, u16) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let binary = std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .expect("redis-server not found (apt-get install redis-server)");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start redis-server");
    (Server(child), port)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 20_000 } else { 200 };
    let (_server, port) = start_redis();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let redis = Redis::connect(&RedisConfig {
            url: Some(RedisUrl::new(format!("redis://127.0.0.1:{port}"))),
            timeout: HumanDuration::secs(1),
            ..RedisConfig::default()
        })
        .expect("config")
        .expect("redis");
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
        let callers: Vec<Caller> = (0..1_000)
            .map(|i| {
                let name = format!("key-{i}");
                Caller {
                    partition: sha256(name.as_bytes()),
                    name: name.into(),
                    upstream_authorization: None,
                    account: None,
                }
            })
            .collect();
        let memory = Limits::in_memory();
        let shared = Limits::shared(redis.clone(), 1, Duration::from_secs(600));
        // Warm up: connect, load the scripts, create the keys.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let admitted = shared.admit(&config, &callers[0], Some("openai/gpt-oss-20b"), 1).await;
            if admitted.is_ok() && redis.state() == RedisState::Up {
                break;
            }
            assert!(Instant::now() < deadline, "redis did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for caller in &callers {
            for limits in [&memory, &shared] {
                if let Ok(admission) = limits.admit(&config, caller, Some("openai/gpt-oss-20b"), 1).await {
                    admission.settle(Some(1));
                }
            }
        }
        let mut samples = [Vec::with_capacity(rounds), Vec::with_capacity(rounds)];
        for round in 0..rounds {
            let caller = &callers[(round * 7919) % callers.len()];
            for (which, limits) in [&memory, &shared].into_iter().enumerate() {
                let started = Instant::now();
                let admission = limits
                    .admit(&config, caller, Some("openai/gpt-oss-20b"), 1500)
                    .await
                    .expect("within limits");
                samples[which].push(started.elapsed());
                admission.settle(Some(700));
            }
        }
        assert_eq!(redis.state(), RedisState::Up, "no call fell back to memory");
        for sample in &mut samples {
            sample.sort();
        }
        println!("limiter admission latency, {rounds} admissions each, 1,000 keys, 2 scopes per request:");
        for (name, sample) in ["memory", "redis"].iter().zip(&samples) {
            println!(
                "  {name:<7} median {:>9.1?}  p99 {:>9.1?}",
                percentile(sample, 0.5),
                percentile(sample, 0.99)
            );
        }
        println!(
            "  added by Redis: median {:.1?}, p99 {:.1?}",
            percentile(&samples[1], 0.5).saturating_sub(percentile(&samples[0], 0.5)),
            percentile(&samples[1], 0.99).saturating_sub(percentile(&samples[0], 0.99))
        );
    });
}
