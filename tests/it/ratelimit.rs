//! Client limits through the real gateway: isolation, exact headers, 429 bodies, token settlement; and Groq-aware admission.

use std::time::Duration;

use groq_sim::{Reply, SimConfig, Simulator, Slicing, StreamEnd, fixtures};
use groxy::config::{LimitSet, Secret};

use crate::support::*;

fn keyed(sim: &Simulator, default: LimitSet) -> groxy::Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice"), ("bob", "gxy_bob")]);
    config.rate_limits.default = default;
    config
}

#[tokio::test]
async fn one_noisy_key_does_not_starve_another() {
    let sim = sim().await;
    let gw = gateway(keyed(
        &sim,
        LimitSet {
            requests_per_day: Some(3),
            ..LimitSet::default()
        },
    ))
    .await;
    for remaining in ["2", "1", "0"] {
        let response = chat_as(&gw, "alice", chat_body(false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), remaining);
        let reset = header(&response, "x-ratelimit-reset-requests");
        assert!(
            reset.ends_with('s') && reset.contains('h'),
            "a Go duration of hours: {reset}"
        );
    }
    let refused = chat_as(&gw, "alice", chat_body(false)).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("retry-after");
    let retry_after_ms: u64 = header(&refused, "retry-after-ms").parse().expect("retry-after-ms");
    assert!((28_790..=28_800).contains(&retry_after), "{retry_after}");
    assert!(retry_after_ms.div_ceil(1000) == retry_after);
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let error = assert_openai_error(&refused.bytes().await.expect("body"));
    assert_eq!(error["type"], "requests");
    assert_eq!(error["code"], "rate_limit_exceeded");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.starts_with("Rate limit reached for key `alice` on requests per day (RPD): Limit 3, Used 3, Requested 1. Please try again in "), "{message}");
    assert!(!message.contains("gxy_"));
    // Bob has his own budget.
    let bob = chat_as(&gw, "bob", chat_body(false)).await;
    assert_eq!(bob.status(), 200);
    assert_eq!(header(&bob, "x-ratelimit-remaining-requests"), "2");
    assert_eq!(call_count(&sim), 4, "the refused call never reached Groq");
}

fn remaining_tokens(response: &reqwest::Response) -> i64 {
    header(response, "x-ratelimit-remaining-tokens")
        .parse()
        .expect("remaining tokens")
}

#[tokio::test]
async fn tokens_are_reserved_then_settled_with_the_real_usage() {
    let sim = sim().await;
    let gw = gateway(keyed(
        &sim,
        LimitSet {
            tokens_per_day: Some(100_000),
            ..LimitSet::default()
        },
    ))
    .await;
    let body =
        r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":200}"#;
    let stream_body = body.replace("200}", "200,\"stream\":true}");
    let reservation = 202; // "Say hi" is at least 2 tokens, plus the 200 requested

    // JSON: the fixture reports 35 tokens used.
    let first = chat_as(&gw, "alice", body.to_owned()).await;
    assert_eq!(remaining_tokens(&first), 100_000 - reservation);
    first.bytes().await.expect("body");

    // A stream: the fixture's finish chunk reports 99 tokens.
    sim.push(Reply::stream(fixtures::stream("content")));
    let second = chat_as(&gw, "alice", stream_body.clone()).await;
    let expected = 100_000 - 35 - reservation;
    assert!(
        (expected..=expected + 2).contains(&remaining_tokens(&second)),
        "{}",
        remaining_tokens(&second)
    );
    second.bytes().await.expect("body");

    // A cancelled stream gives back all but what it consumed: the prompt (2) and the tokens
    // streamed so far (none: its one complete event carries no text).
    sim.push(Reply::Stream {
        body: fixtures::stream("content").slice(..600),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let third = chat_as(&gw, "alice", stream_body.clone()).await;
    drop(third);
    assert!(wait_outcome(&sim, true, Duration::from_secs(2)).await.is_some());
    wait_idle(&gw).await;

    // A Groq error uses nothing.
    sim.push(fixtures::error("400-n").expect("fixture"));
    assert_eq!(chat_as(&gw, "alice", body.to_owned()).await.status(), 400);

    let fourth = chat_as(&gw, "alice", body.to_owned()).await;
    let expected = 100_000 - 35 - 99 - 2 - reservation;
    assert!(
        (expected..=expected + 3).contains(&remaining_tokens(&fourth)),
        "{}",
        remaining_tokens(&fourth)
    );
}

#[tokio::test]
async fn a_request_larger_than_the_whole_token_limit_is_a_413() {
    let sim = sim().await;
    let gw = gateway(keyed(
        &sim,
        LimitSet {
            tokens_per_minute: Some(500),
            ..LimitSet::default()
        },
    ))
    .await;
    let body =
        r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":1000}"#;
    let response = chat_as(&gw, "alice", body.to_owned()).await;
    assert_eq!(response.status(), 413);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["type"], "tokens");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("Limit 500, Requested 1001")
    );
    assert_eq!(call_count(&sim), 0);
}

#[tokio::test]
async fn a_429_rests_that_upstream_key_and_the_next_key_takes_over() {
    // Two upstream keys; the simulator accepts any key and records which one it got.
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let mut config = config_for(&sim);
    config.upstream.api_key = Some(Secret::new("gsk_first"));
    config.upstream.api_keys = vec![Secret::new("gsk_second")];
    let gw = gateway(config).await;
    sim.push(fixtures::error("429-tpm").expect("fixture"));
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(post_chat(&gw, chat_body(false)).await.status().as_u16());
    }
    let keys: Vec<String> = calls(&sim)
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_owned())
        .collect();
    assert_eq!(statuses[0], 429, "Groq's 429 passes through");
    assert!(statuses[1..].iter().all(|s| *s == 200), "{statuses:?}");
    let rested = keys[0].clone();
    assert!(
        keys[1..].iter().all(|k| *k != rested),
        "the rate-limited key rests for its retry-after: {keys:?}"
    );
}

/// Sends one request, then `burst` at once; returns the statuses of the burst.
async fn warm_up_then_burst(gw: &Gateway, burst: usize) -> Vec<u16> {
    assert_eq!(post_chat(gw, chat_body(false)).await.status(), 200);
    let requests = (0..burst).map(|_| async { post_chat(gw, chat_body(false)).await.status().as_u16() });
    futures_util::future::join_all(requests).await
}

#[tokio::test]
async fn a_burst_waits_for_groqs_reset_instead_of_causing_429s() {
    let budget = groq_sim::SimBudget {
        requests: 5,
        request_window: Duration::from_secs(2),
        tokens: 1_000_000,
        token_window: Duration::from_secs(60),
    };
    // A naive proxy (groxy with upstream awareness off) forwards the whole burst.
    let naive_sim = sim_with(SimConfig {
        budget: Some(budget.clone()),
        ..SimConfig::default()
    })
    .await;
    let mut naive = config_for(&naive_sim);
    naive.rate_limits.upstream_aware = false;
    let naive_gw = gateway(naive).await;
    let naive_statuses = warm_up_then_burst(&naive_gw, 14).await;
    let naive_429s = naive_sim.rate_limited_count();

    // groxy learns Groq's budget from the first answer and holds the rest until the reset.
    let sim = sim_with(SimConfig {
        budget: Some(budget),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(config_for(&sim)).await;
    let started = std::time::Instant::now();
    let statuses = warm_up_then_burst(&gw, 14).await;
    let took = started.elapsed();
    let groxy_429s = sim.rate_limited_count();
    println!(
        "upstream 429s for the same burst of 15: naive proxy {naive_429s}, groxy {groxy_429s} (groxy took {took:?})"
    );

    assert_eq!(naive_429s, 10, "{naive_statuses:?}");
    assert_eq!(naive_statuses.iter().filter(|s| **s == 429).count(), 10);
    assert_eq!(groxy_429s, 0, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(call_count(&sim), 15);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "two resets were waited for: {took:?}"
    );
}

#[tokio::test]
async fn when_waiting_cannot_help_the_429_comes_at_once_with_groqs_reset() {
    let budget = groq_sim::SimBudget {
        requests: 1,
        request_window: Duration::from_secs(3600),
        tokens: 1_000_000,
        token_window: Duration::from_secs(60),
    };
    let sim = sim_with(SimConfig {
        budget: Some(budget),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(config_for(&sim)).await;
    assert_eq!(post_chat(&gw, chat_body(false)).await.status(), 200);
    let started = std::time::Instant::now();
    let refused = post_chat(&gw, chat_body(false)).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("retry-after");
    assert!((3590..=3600).contains(&retry_after), "{retry_after}");
    let error = assert_openai_error(&refused.bytes().await.expect("body"));
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("upstream Groq organisation")
    );
    assert_eq!(sim.rate_limited_count(), 0, "groxy did not send it into a certain 429");
}
