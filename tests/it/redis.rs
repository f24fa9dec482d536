//! Two replicas against one real Redis: one shared limit, one shared cache and Groq budget, and Redis failing (killed, paused, restarted) without failing a request.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use groq_sim::{Reply, SimConfig, Simulator, SliceMode, Slicing, StreamEnd, fixtures};
use groxy::{
    Config,
    config::{HumanDuration, LimitSet, RedisUrl},
};

use crate::{redis_server::RedisServer, support::*};

const KEYS: [(&str, &str); 5] = [
    ("alice", "gxy_alice"),
    ("bob", "gxy_bob"),
    ("carol", "gxy_carol"),
    ("dave", "gxy_dave"),
    ("erin", "gxy_erin"),
];

/// A replica's config: client keys, Redis at `redis` shared by `replicas`, and a Redis timeout
/// long enough that a busy 2-core machine never trips the breaker by accident (tests of the
/// timeout itself set their own).
fn replica(sim: &Simulator, redis: &RedisServer, replicas: u64) -> Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, &KEYS);
    config.redis.url = Some(RedisUrl::new(redis.url()));
    config.redis.replicas = replicas;
    config.redis.timeout = HumanDuration::secs(2);
    config.redis.probe_interval = HumanDuration::millis(100);
    config.redis.max_probe_interval = HumanDuration::millis(500);
    config
}

fn per_day(requests: u64) -> LimitSet {
    LimitSet {
        requests_per_day: Some(requests),
        ..LimitSet::default()
    }
}

async fn redis_state(gw: &Gateway) -> (u16, String) {
    let response = client().get(gw.url("/readyz")).send().await.expect("readyz");
    let status = response.status().as_u16();
    let body = json(&response.bytes().await.expect("body"));
    (status, body["redis"].as_str().unwrap_or("").to_owned())
}

/// Waits until `/readyz` reports Redis `want`; panics after `within`.
async fn wait_redis(gw: &Gateway, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, state) = redis_state(gw).await;
        assert_eq!(status, 200, "readyz stays 200 whatever Redis does");
        if state == want {
            return;
        }
        assert!(Instant::now() < deadline, "redis still {state:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas of one deployment against `redis` and `sim`, both connected.
async fn two_replicas(sim: &Simulator, redis: &RedisServer, edit: impl Fn(&mut Config)) -> (Gateway, Gateway) {
    let mut config = replica(sim, redis, 2);
    edit(&mut config);
    let a = gateway(config.clone()).await;
    let b = gateway(config).await;
    wait_redis(&a, "up", Duration::from_secs(5)).await;
    wait_redis(&b, "up", Duration::from_secs(5)).await;
    (a, b)
}

/// `n` requests from `who`, half through each replica, all at once; the statuses.
async fn burst(a: &Gateway, b: &Gateway, who: &str, n: usize) -> Vec<u16> {
    let requests = (0..n).map(|i| async move {
        let gw = if i % 2 == 0 { a } else { b };
        chat_as(gw, who, chat_body(false)).await.status().as_u16()
    });
    join_all(requests).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn two_replicas_share_one_limit_exactly() {
    let redis = RedisServer::start();
    let sim = sim().await;
    let (a, b) = two_replicas(&sim, &redis, |c| c.rate_limits.default = per_day(10)).await;
    // One after the other, alternating: one budget counts down across both.
    for (i, remaining) in ["9", "8", "7", "6"].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        let response = chat_as(gw, "alice", chat_body(false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "10");
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), remaining);
    }
    // Then all at once on both: exactly the 6 left get through.
    let statuses = burst(&a, &b, "alice", 26).await;
    assert_eq!((count(&statuses, 200), count(&statuses, 429)), (6, 20), "{statuses:?}");
    assert_eq!(call_count(&sim), 10, "Groq saw the limit, not the limit per replica");
    let refused = chat_as(&b, "alice", chat_body(false)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    assert!(!header(&refused, "retry-after").is_empty());
    assert!(!redis.keys("groxy:rl:*").is_empty(), "the buckets live in Redis");
}

/// Statuses, the headers and the 429 text without its wait (which runs on two clocks).
async fn observe(gw: &Gateway, who: &str, body: &str) -> (u16, Vec<String>, String, u64) {
    let response = chat_as(gw, who, body.to_owned()).await;
    let status = response.status().as_u16();
    let headers = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
    ]
    .map(|name| header(&response, name))
    .to_vec();
    let retry_after = header(&response, "retry-after").parse().unwrap_or(0);
    let body = response.bytes().await.expect("body");
    let message = if status == 200 {
        String::new()
    } else {
        let error = assert_openai_error(&body);
        let message = error["message"].as_str().unwrap_or("").to_owned();
        let cut = message.find("Please try again in").unwrap_or(message.len());
        format!("{} {} {}", error["type"], error["code"], &message[..cut])
    };
    // Let the settlement land before the next request (Redis settles in the background).
    tokio::time::sleep(Duration::from_millis(50)).await;
    (status, headers, message, retry_after)
}

#[tokio::test]
async fn the_redis_backend_gives_the_same_headers_and_429s_as_memory() {
    let redis = RedisServer::start();
    let sim = sim().await;
    let limits = |c: &mut Config| {
        c.rate_limits.default = LimitSet {
            requests_per_day: Some(3),
            tokens_per_day: Some(100_000),
            ..LimitSet::default()
        };
        // Per day, not per minute: the two backends are asked one after the other, and a
        // per-minute bucket refills visibly (25 tokens a second) in between.
        c.rate_limits.per_model = LimitSet {
            tokens_per_day: Some(1_500),
            ..LimitSet::default()
        };
    };
    let mut memory_config = config_for(&sim);
    with_client_keys(&mut memory_config, &KEYS);
    limits(&mut memory_config);
    let memory = gateway(memory_config).await;
    let mut shared_config = replica(&sim, &redis, 1);
    limits(&mut shared_config);
    let shared = gateway(shared_config).await;
    wait_redis(&shared, "up", Duration::from_secs(5)).await;

    let small =
        r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":200}"#;
    let large = small.replace("200}", "1400}");
    let huge = small.replace("200}", "5000}");
    // Fits; fits; over the per-model tokens per day (429); larger than it (413); fits;
    // over the requests per day (429).
    for body in [small, small, &large, &huge, small, small] {
        let in_memory = observe(&memory, "alice", body).await;
        let in_redis = observe(&shared, "alice", body).await;
        assert_eq!(in_memory.0, in_redis.0, "status");
        assert_eq!(in_memory.1, in_redis.1, "x-ratelimit-* headers");
        assert_eq!(in_memory.2, in_redis.2, "error body");
        assert!(
            in_memory.3.abs_diff(in_redis.3) <= 1,
            "retry-after {in_memory:?} {in_redis:?}"
        );
    }
}

fn det(stream: bool) -> String {
    format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"Say hi"}}],"temperature":0,"stream":{stream}}}"#
    )
}

async fn wait_for_keys(redis: &RedisServer, pattern: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while redis.keys(pattern).len() < n {
        assert!(Instant::now() < deadline, "no {pattern} in Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_response_cached_by_replica_a_is_a_hit_on_replica_b() {
    let redis = RedisServer::start();
    let sim = sim().await;
    let (a, b) = two_replicas(&sim, &redis, |_| {}).await;
    let fixture = fixtures::stream("content");
    sim.push(Reply::Stream {
        body: fixture.clone(),
        slicing: Slicing {
            mode: SliceMode::Random {
                min: 1,
                max: 40,
                seed: 7,
            },
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    for (stored, stream) in [(1, true), (2, false)] {
        let first = chat_as(&a, "alice", det(stream)).await;
        assert_eq!(header(&first, "x-groxy-cache"), "MISS");
        let sent = first.bytes().await.expect("body");
        wait_for_keys(&redis, "groxy:c:*", stored).await;
        let second = chat_as(&b, "alice", det(stream)).await;
        assert_eq!(header(&second, "x-groxy-cache"), "HIT", "stream={stream}");
        if stream {
            assert_eq!(header(&second, "content-type"), "text/event-stream");
        }
        assert_eq!(second.bytes().await.expect("body"), sent, "byte for byte");
        assert_eq!(call_count(&sim), stored, "replica B did not call Groq");
    }
    assert_eq!(sent_to(&sim, 0), fixture, "the stream B replayed is the one Groq sent");
    // Tenants stay apart across replicas too.
    assert_eq!(header(&chat_as(&b, "bob", det(false)).await, "x-groxy-cache"), "MISS");
}

fn sent_to(sim: &Simulator, index: usize) -> Vec<u8> {
    calls(sim)[index].sent_bytes().to_vec()
}

/// Requests from `who` through `gw` for `duration`, `workers` at a time: the statuses (0 for a
/// transport error or a broken body) and the slowest answer.
async fn load(gw: &Gateway, who: &str, workers: usize, duration: Duration) -> (Vec<u16>, Duration) {
    let until = Instant::now() + duration;
    let runs = (0..workers).map(|w| async move {
        let client = client();
        let mut statuses = Vec::new();
        let mut slowest = Duration::ZERO;
        let mut i = 0usize;
        while Instant::now() < until {
            // Half of them cacheable (and new), so the cache tier is on the path too.
            let body = if (w + i) % 2 == 0 {
                det(false).replace("Say hi", &format!("Say hi {w} {i}"))
            } else {
                chat_body(false)
            };
            let started = Instant::now();
            let sent = client
                .post(gw.url(CHAT))
                .header("authorization", format!("Bearer gxy_{who}"))
                .body(body)
                .send()
                .await;
            let status = match sent {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if response.bytes().await.is_ok() { status } else { 0 }
                }
                Err(_) => 0,
            };
            slowest = slowest.max(started.elapsed());
            statuses.push(status);
            i += 1;
        }
        (statuses, slowest)
    });
    let results = join_all(runs).await;
    let slowest = results.iter().map(|(_, s)| *s).max().unwrap_or_default();
    (results.into_iter().flat_map(|(s, _)| s).collect(), slowest)
}

/// Failed client requests: anything but an answer (200) or a limit's refusal (429).
fn failures(statuses: &[u16]) -> usize {
    statuses.iter().filter(|s| !matches!(s, 200 | 429)).count()
}

/// With Redis gone, `who` (limit 10 per day) gets 5 per replica: the local share of 2 replicas.
async fn assert_local_share(a: &Gateway, b: &Gateway, who: &str) {
    for gw in [a, b] {
        let mut statuses = Vec::new();
        for _ in 0..8 {
            statuses.push(chat_as(gw, who, chat_body(false)).await.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429], "{who}");
    }
}

/// With Redis back, `who` (limit 10 per day) gets 10 across both replicas.
async fn assert_shared_again(a: &Gateway, b: &Gateway, who: &str) {
    let statuses = burst(a, b, who, 16).await;
    assert_eq!(
        (count(&statuses, 200), count(&statuses, 429)),
        (10, 6),
        "{who}: {statuses:?}"
    );
}

/// A simulator whose Groq budget no test can spend, so its rate-limit headers never make
/// groxy hold requests back under load (the fixture headers' 1,000 requests would).
async fn roomy_sim() -> Simulator {
    sim_with(SimConfig {
        budget: Some(groq_sim::SimBudget {
            requests: 1_000_000_000,
            request_window: Duration::from_secs(60),
            tokens: 1_000_000_000_000,
            token_window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await
}

fn limits_for_fault_tests(config: &mut Config) {
    config.rate_limits.default = per_day(1_000_000);
    for who in ["bob", "carol", "dave"] {
        config.rate_limits.keys.insert(who.to_owned(), per_day(10));
    }
}

#[tokio::test]
async fn redis_killed_mid_load_fails_no_request_then_limits_use_the_local_share_until_it_is_back() {
    let mut redis = RedisServer::start();
    let sim = roomy_sim().await;
    let (a, b) = two_replicas(&sim, &redis, limits_for_fault_tests).await;
    let started = Instant::now();
    let ((on_a, slowest_a), (on_b, slowest_b), ()) = tokio::join!(
        load(&a, "alice", 4, Duration::from_millis(2_500)),
        load(&b, "alice", 4, Duration::from_millis(2_500)),
        async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            redis.kill();
        }
    );
    let statuses: Vec<u16> = on_a.iter().chain(&on_b).copied().collect();
    println!(
        "redis killed mid-load: {} requests in {:?}, {} failed, slowest {:?}",
        statuses.len(),
        started.elapsed(),
        failures(&statuses),
        slowest_a.max(slowest_b)
    );
    assert!(statuses.len() > 40, "load ran: {}", statuses.len());
    assert_eq!(failures(&statuses), 0, "{statuses:?}");
    assert_eq!(count(&statuses, 200), statuses.len(), "alice's limit is far away");

    wait_redis(&a, "down", Duration::from_secs(5)).await;
    wait_redis(&b, "down", Duration::from_secs(5)).await;
    assert_eq!(
        redis_metrics(&a).await,
        (0, 1),
        "groxy_redis_up 0 after one state change"
    );
    assert_local_share(&a, &b, "bob").await;

    redis.restart();
    wait_redis(&a, "up", Duration::from_secs(10)).await;
    wait_redis(&b, "up", Duration::from_secs(10)).await;
    assert_eq!(redis_metrics(&b).await, (1, 2), "back up: two state changes");
    assert_shared_again(&a, &b, "carol").await;
}

/// `(groxy_redis_up, groxy_redis_state_changes_total)` from a scrape.
async fn redis_metrics(gw: &Gateway) -> (u64, u64) {
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let value = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    (value("groxy_redis_up"), value("groxy_redis_state_changes_total"))
}

#[tokio::test]
async fn a_paused_redis_delays_no_request_past_the_timeout_and_sharing_resumes() {
    let redis = RedisServer::start();
    let sim = roomy_sim().await;
    // Short enough to show the bound, long enough that a loaded 2-core machine does not trip
    // the breaker while Redis is fine (the exact shared limit at the end needs it closed).
    let timeout = Duration::from_millis(200);
    let (a, b) = two_replicas(&sim, &redis, |c| {
        limits_for_fault_tests(c);
        c.redis.timeout = HumanDuration::millis(200);
    })
    .await;
    let ((before_a, baseline_a), (before_b, baseline_b)) = tokio::join!(
        load(&a, "alice", 4, Duration::from_millis(800)),
        load(&b, "alice", 4, Duration::from_millis(800)),
    );
    assert_eq!(failures(&before_a) + failures(&before_b), 0);
    let baseline = baseline_a.max(baseline_b);

    redis.pause();
    let ((on_a, slowest_a), (on_b, slowest_b)) = tokio::join!(
        load(&a, "alice", 4, Duration::from_millis(2_000)),
        load(&b, "alice", 4, Duration::from_millis(2_000)),
    );
    let statuses: Vec<u16> = on_a.iter().chain(&on_b).copied().collect();
    let slowest = slowest_a.max(slowest_b);
    println!(
        "redis paused: {} requests, {} failed, slowest {slowest:?} (slowest with Redis up: {baseline:?}; timeout {timeout:?}); added at most {:?}",
        statuses.len(),
        failures(&statuses),
        slowest.saturating_sub(baseline)
    );
    assert_eq!(failures(&statuses), 0, "{statuses:?}");
    assert_eq!(count(&statuses, 200), statuses.len());
    assert!(
        slowest < baseline + timeout + Duration::from_millis(750),
        "no request waited much past the timeout: {slowest:?} (baseline {baseline:?})"
    );
    wait_redis(&a, "down", Duration::from_secs(1)).await;
    wait_redis(&b, "down", Duration::from_secs(1)).await;
    assert_local_share(&a, &b, "bob").await;

    redis.resume();
    wait_redis(&a, "up", Duration::from_secs(10)).await;
    wait_redis(&b, "up", Duration::from_secs(10)).await;
    assert_shared_again(&a, &b, "dave").await;
}

#[tokio::test]
async fn groxy_starts_and_serves_with_redis_down() {
    let mut redis = RedisServer::start();
    redis.kill();
    let sim = sim().await;
    let mut config = replica(&sim, &redis, 2);
    config.rate_limits.keys.insert("bob".to_owned(), per_day(10));
    let gw = gateway(config).await;
    wait_redis(&gw, "down", Duration::from_secs(5)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(chat_as(&gw, "bob", chat_body(false)).await.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 429],
        "the local share of 10 over 2 replicas"
    );
    assert_eq!(
        header(&chat_as(&gw, "alice", det(false)).await, "x-groxy-cache"),
        "MISS"
    );
    assert_eq!(
        header(&chat_as(&gw, "alice", det(false)).await, "x-groxy-cache"),
        "HIT",
        "the memory cache still works"
    );
}

#[tokio::test]
async fn groqs_budget_seen_by_one_replica_holds_the_other_back() {
    let redis = RedisServer::start();
    let sim = sim_with(SimConfig {
        budget: Some(groq_sim::SimBudget {
            requests: 2,
            request_window: Duration::from_secs(3),
            tokens: 1_000_000,
            token_window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let (a, b) = two_replicas(&sim, &redis, |_| {}).await;
    for _ in 0..2 {
        assert_eq!(chat_as(&a, "alice", chat_body(false)).await.status(), 200);
    }
    wait_for_keys(&redis, "groxy:ub:*", 1).await;
    // Replica B has sent nothing yet; it learns from A that Groq's budget is spent and waits
    // for the reset instead of sending a request into a certain 429.
    let started = Instant::now();
    let response = chat_as(&b, "alice", chat_body(false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(sim.rate_limited_count(), 0, "Groq refused nothing");
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}
