//! Several replicas under fast traffic and Redis outages: Groq's budget reserved atomically across replicas, the local share starting from what was used, a quick recovery, and an honest `/readyz` at start.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use groq_sim::{SimBudget, SimConfig, Simulator};
use groxy::{
    Config,
    config::{HumanDuration, LimitSet, RedisUrl},
};

use crate::{redis_server::RedisServer, support::*};

const KEYS: [(&str, &str); 4] = [
    ("alice", "gxy_alice"),
    ("bob", "gxy_bob"),
    ("carol", "gxy_carol"),
    ("dave", "gxy_dave"),
];

/// A replica of a deployment of `replicas` sharing `redis`, with a Redis timeout long enough
/// that a busy machine never opens the breaker by accident.
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

async fn readyz(gw: &Gateway) -> serde_json::Value {
    let response = client().get(gw.url("/readyz")).send().await.expect("readyz");
    assert_eq!(response.status(), 200, "readyz stays 200 whatever Redis does");
    json(&response.bytes().await.expect("body"))
}

/// Waits until `/readyz` reports Redis `want`; panics after `within`.
async fn wait_redis(gw: &Gateway, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let state = readyz(gw).await["redis"].as_str().unwrap_or("").to_owned();
        if state == want {
            return;
        }
        assert!(Instant::now() < deadline, "redis still {state:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_replicas(sim: &Simulator, redis: &RedisServer, edit: impl Fn(&mut Config)) -> (Gateway, Gateway) {
    let mut config = replica(sim, redis, 2);
    edit(&mut config);
    let a = gateway(config.clone()).await;
    let b = gateway(config).await;
    wait_redis(&a, "up", Duration::from_secs(10)).await;
    wait_redis(&b, "up", Duration::from_secs(10)).await;
    (a, b)
}

/// A simulator whose Groq budget is `requests` per `window` per key and model, with tokens to spare.
async fn budget_sim(requests: u64, window: Duration) -> Simulator {
    sim_with(SimConfig {
        budget: Some(SimBudget {
            requests,
            request_window: window,
            tokens: 100_000_000,
            token_window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await
}

/// Status and, for a 429, whose it is: groxy's own names the upstream organisation.
async fn outcome(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let retry_after = header(&response, "retry-after");
    let body = response.bytes().await.expect("body");
    if status == 200 {
        return (status, String::new());
    }
    let error = json(&body)["error"].clone();
    let message = error["message"].as_str().unwrap_or("").to_owned();
    let whose = if message.contains("on the upstream Groq organisation") {
        let wait: u64 = retry_after.parse().expect("groxy's 429 has a retry-after");
        assert!(wait > 30, "the reset of a 1-minute window: {wait}");
        "groxy"
    } else {
        "other"
    };
    (status, format!("{whose}: {message}"))
}

fn tally(outcomes: &[(u16, String)]) -> (usize, usize, usize) {
    let ok = outcomes.iter().filter(|(s, _)| *s == 200).count();
    let ours = outcomes
        .iter()
        .filter(|(s, w)| *s == 429 && w.starts_with("groxy"))
        .count();
    (ok, ours, outcomes.len() - ok - ours)
}

/// Waiting cannot help within a second: a request over the budget gets groxy's own 429 at once.
fn short_queue(config: &mut Config) {
    config.rate_limits.queue_wait = HumanDuration::secs(1);
}

#[tokio::test]
async fn groqs_budget_holds_across_replicas_for_requests_alternating_without_a_pause() {
    let redis = RedisServer::start();
    let sim = budget_sim(5, Duration::from_secs(60)).await;
    let (a, b) = two_replicas(&sim, &redis, short_queue).await;
    let mut outcomes = Vec::new();
    for i in 0..15 {
        let gw = if i % 2 == 0 { &a } else { &b };
        outcomes.push(outcome(chat_as(gw, "alice", chat_body(false)).await).await);
    }
    println!("alternating: (200, groxy 429, other) = {:?}", tally(&outcomes));
    assert_eq!(sim.rate_limited_count(), 0, "Groq refused nothing: {outcomes:?}");
    assert_eq!(tally(&outcomes), (5, 10, 0), "{outcomes:?}");
    assert_eq!(call_count(&sim), 5, "the budget, not the budget per replica");
}

#[tokio::test]
async fn groqs_budget_holds_across_replicas_for_one_request_then_fourteen_at_once() {
    let redis = RedisServer::start();
    let sim = budget_sim(5, Duration::from_secs(60)).await;
    let (a, b) = two_replicas(&sim, &redis, short_queue).await;
    let first = outcome(chat_as(&a, "alice", chat_body(false)).await).await;
    assert_eq!(first.0, 200);
    let burst = (0..14).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        async move { outcome(chat_as(gw, "alice", chat_body(false)).await).await }
    });
    let outcomes = join_all(burst).await;
    println!("one then fourteen: (200, groxy 429, other) = {:?}", tally(&outcomes));
    assert_eq!(sim.rate_limited_count(), 0, "Groq refused nothing: {outcomes:?}");
    assert_eq!(tally(&outcomes), (4, 10, 0), "{outcomes:?}");
    assert_eq!(call_count(&sim), 5);
}

#[tokio::test]
async fn replicas_waiting_for_groqs_reset_take_turns_without_a_429() {
    let redis = RedisServer::start();
    // Three windows of 5 within the queue wait: everyone is answered, and Groq refuses nothing.
    let sim = budget_sim(5, Duration::from_secs(2)).await;
    let (a, b) = two_replicas(&sim, &redis, |c| c.rate_limits.queue_wait = HumanDuration::secs(20)).await;
    assert_eq!(outcome(chat_as(&a, "alice", chat_body(false)).await).await.0, 200);
    let started = Instant::now();
    let burst = (0..14).map(|i| {
        let gw = if i % 2 == 0 { &a } else { &b };
        async move { outcome(chat_as(gw, "alice", chat_body(false)).await).await }
    });
    let outcomes = join_all(burst).await;
    println!(
        "waiting replicas: (200, groxy 429, other) = {:?} in {:?}",
        tally(&outcomes),
        started.elapsed()
    );
    assert_eq!(sim.rate_limited_count(), 0, "Groq refused nothing: {outcomes:?}");
    assert_eq!(tally(&outcomes), (14, 0, 0), "{outcomes:?}");
    assert!(started.elapsed() > Duration::from_secs(2), "two resets were waited for");
}

fn per_day(requests: u64) -> LimitSet {
    LimitSet {
        requests_per_day: Some(requests),
        ..LimitSet::default()
    }
}

/// `n` requests from `who`, one after the other on `gw`: how many were admitted.
async fn admitted(gw: &Gateway, who: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let status = chat_as(gw, who, chat_body(false)).await.status().as_u16();
        assert!(matches!(status, 200 | 429), "{status}");
        ok += usize::from(status == 200);
    }
    ok
}

/// Sends requests from alice (far from her limit) until `gw` has noticed Redis is gone.
async fn notice_down(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while readyz(gw).await["redis"] != "down" {
        assert_eq!(chat_as(gw, "alice", chat_body(false)).await.status(), 200);
        assert!(Instant::now() < deadline, "Redis not noticed as down");
    }
}

#[tokio::test]
async fn an_outage_starts_each_replicas_local_share_from_what_was_used() {
    let mut redis = RedisServer::start();
    let sim = sim().await;
    let (a, b) = two_replicas(&sim, &redis, |c| {
        c.rate_limits.default = per_day(1_000);
        c.rate_limits.keys.insert("bob".to_owned(), per_day(10));
        c.rate_limits.keys.insert("carol".to_owned(), per_day(10));
        c.rate_limits.keys.insert("dave".to_owned(), per_day(5));
    })
    .await;
    // Bob spends all 10 of his day, carol 6, dave all 5, alternating replicas.
    for (who, n) in [("bob", 10), ("carol", 6), ("dave", 5)] {
        for i in 0..n {
            let gw = if i % 2 == 0 { &a } else { &b };
            assert_eq!(chat_as(gw, who, chat_body(false)).await.status(), 200, "{who} {i}");
        }
    }
    redis.kill();
    notice_down(&a).await;
    notice_down(&b).await;
    // Nothing left for bob and dave, on either replica; carol's 4 are shared between them.
    let bob = admitted(&a, "bob", 6).await + admitted(&b, "bob", 6).await;
    let dave = admitted(&a, "dave", 4).await + admitted(&b, "dave", 4).await;
    let carol = (admitted(&a, "carol", 6).await, admitted(&b, "carol", 6).await);
    println!("during the outage: bob {bob}, dave {dave}, carol {carol:?}");
    assert_eq!(bob, 0, "10 of 10 were used before the outage");
    assert_eq!(dave, 0, "5 of 5 were used before the outage");
    assert_eq!(carol, (2, 2), "6 of 10 used: 4 left, 2 per replica");
    // Alice used nothing before: her whole share is there.
    assert_eq!(admitted(&a, "alice", 3).await, 3);
}

#[tokio::test]
async fn readyz_says_connecting_until_redis_first_answers() {
    let redis = RedisServer::start();
    redis.pause();
    let sim = sim().await;
    let mut config = replica(&sim, &redis, 1);
    config.redis.timeout = HumanDuration::secs(3);
    let gw = gateway(config).await;
    let first = readyz(&gw).await;
    println!("readyz with a paused Redis at start: {first}");
    assert_eq!(
        first["redis"], "connecting",
        "not up before Redis ever answered: {first}"
    );
    assert!(
        first["degraded"]
            .as_array()
            .is_some_and(|d| d.iter().any(|p| p == "redis")),
        "{first}"
    );
    assert_eq!(chat_as(&gw, "alice", chat_body(false)).await.status(), 200);
    wait_redis(&gw, "down", Duration::from_secs(15)).await;
    redis.resume();
    wait_redis(&gw, "up", Duration::from_secs(15)).await;
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("groxy_redis_up 1"), "{metrics}");
}

#[tokio::test]
async fn a_replica_with_traffic_notices_redis_is_back_within_the_probe_interval() {
    let mut redis = RedisServer::start();
    redis.kill();
    let sim = sim().await;
    let mut config = replica(&sim, &redis, 2);
    // Probes back off 0.1, 0.2, 0.4 ... up to 10 s: after 7 s down the next one is seconds away.
    config.redis.max_probe_interval = HumanDuration::secs(10);
    config.rate_limits.keys.insert("bob".to_owned(), per_day(10));
    let gw = gateway(config).await;
    wait_redis(&gw, "down", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.restart();
    let back = Instant::now();
    loop {
        assert!(matches!(
            chat_as(&gw, "alice", chat_body(false)).await.status().as_u16(),
            200
        ));
        if readyz(&gw).await["redis"] == "up" {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "Redis never noticed as back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("noticed Redis back after {:?} of traffic", back.elapsed());
    assert!(
        back.elapsed() < Duration::from_secs(2),
        "noticed within the probe interval plus a margin, not at the next backed-off probe: {:?}",
        back.elapsed()
    );
    // And the shared limit is used again: bob's 10 a day count in Redis.
    assert_eq!(admitted(&gw, "bob", 3).await, 3);
    assert!(!redis.keys("groxy:rl:*").is_empty(), "the buckets live in Redis again");
}
