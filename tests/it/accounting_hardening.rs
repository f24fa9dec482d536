//! Accounting that cannot be dodged (issue 14, items 11-13): hanging up is charged what Groq spent, a small token limit admits what fits, and every 429 says what refused it and when to come back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use groq_sim::{Reply, SimConfig, Simulator, Slicing, StreamEnd, fixtures};
use groxy::config::LimitSet;

use crate::support::*;

fn keyed(sim: &Simulator, default: LimitSet) -> groxy::Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.rate_limits.default = default;
    config
}

fn per_minute_tokens(limit: u64) -> LimitSet {
    LimitSet {
        tokens_per_minute: Some(limit),
        ..LimitSet::default()
    }
}

fn remaining_tokens(response: &reqwest::Response) -> i64 {
    header(response, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap_or_else(|_| panic!("x-ratelimit-remaining-tokens in {:?}", response.headers()))
}

/// The most a per-minute bucket of `limit` can have refilled since `since`, rounded up.
fn refill_since(since: Instant, limit: u64) -> i64 {
    (since.elapsed().as_secs_f64() * limit as f64 / 60.0).ceil() as i64 + 1
}

/// "Say hi" (a prompt estimate of 2 tokens) with a cap of 100: a reservation of 102.
fn capped(stream: bool) -> String {
    format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"Say hi"}}],"max_completion_tokens":100,"stream":{stream}}}"#
    )
}

/// The first `n` events of the simulator's content stream.
fn first_events(n: usize) -> Bytes {
    let stream = fixtures::stream("content");
    let ends: Vec<usize> = stream
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == b"\n\n")
        .map(|(i, _)| i + 2)
        .collect();
    assert_eq!(ends.len(), 22, "the content fixture has 22 events");
    stream.slice(..ends[n - 1])
}

/// Reads a stream until `n` events have arrived (or it ends), then hangs up.
async fn read_events_then_hang_up(response: reqwest::Response, n: usize) -> usize {
    let mut body = response.bytes_stream();
    let mut seen = Vec::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(Duration::from_secs(5), body.next()).await {
        seen.extend_from_slice(&chunk);
        if seen.windows(2).filter(|w| *w == b"\n\n").count() >= n {
            break;
        }
    }
    seen.windows(2).filter(|w| *w == b"\n\n").count()
}

/// The 18 events a client reads before it hangs up carry 6 reasoning pieces and 20 content
/// pieces: with the 2-token prompt estimate, 28 tokens.
const CHARGE_FOR_18_EVENTS: i64 = 2 + 26;

#[tokio::test]
async fn hanging_up_mid_stream_is_charged_the_prompt_and_the_tokens_streamed_so_far() {
    const LIMIT: u64 = 600;
    let sim = sim().await;
    let gw = gateway(keyed(&sim, per_minute_tokens(LIMIT))).await;

    // The client reads 18 of the 22 events, then hangs up (Groq would have gone on).
    sim.push(Reply::Stream {
        body: first_events(18),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let since = Instant::now();
    let streamed = chat_as(&gw, "alice", capped(true)).await;
    assert_eq!(streamed.status(), 200);
    let before = remaining_tokens(&streamed);
    assert_eq!(before, LIMIT as i64 - 102, "the reservation");
    assert_eq!(read_events_then_hang_up(streamed, 18).await, 18);
    assert!(
        wait_outcome(&sim, true, Duration::from_secs(5)).await.is_some(),
        "groxy hung up on Groq"
    );

    // The next request's headers show what the first was charged: its reservation is the same.
    let next = chat_as(&gw, "alice", capped(false)).await;
    assert_eq!(next.status(), 200);
    let charged = before - remaining_tokens(&next);
    let refill = refill_since(since, LIMIT);
    assert!(
        (CHARGE_FOR_18_EVENTS - refill..=CHARGE_FOR_18_EVENTS + 1).contains(&charged),
        "charged {charged} (refilled at most {refill}), not the prompt and 26 streamed tokens"
    );
    next.bytes().await.expect("body");
}

#[tokio::test]
async fn a_stream_groq_cuts_short_is_charged_what_it_streamed() {
    const LIMIT: u64 = 600;
    let sim = sim().await;
    let gw = gateway(keyed(&sim, per_minute_tokens(LIMIT))).await;
    sim.push(Reply::Stream {
        body: first_events(18),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let since = Instant::now();
    let streamed = chat_as(&gw, "alice", capped(true)).await;
    let before = remaining_tokens(&streamed);
    let body = streamed.bytes().await.expect("body");
    assert!(
        body.ends_with(b"}\n\n") && std::str::from_utf8(&body).is_ok_and(|b| b.contains("\"error\"")),
        "one error event at the end"
    );
    let next = chat_as(&gw, "alice", capped(false)).await;
    let charged = before - remaining_tokens(&next);
    let refill = refill_since(since, LIMIT);
    assert!(
        (CHARGE_FOR_18_EVENTS - refill..=CHARGE_FOR_18_EVENTS + 1).contains(&charged),
        "charged {charged} (refilled at most {refill})"
    );
}

#[tokio::test]
async fn a_plain_request_abandoned_while_groq_works_keeps_its_reservation_and_a_refusal_costs_nothing() {
    const LIMIT: u64 = 600;
    let sim = sim().await;
    let gw = gateway(keyed(&sim, per_minute_tokens(LIMIT))).await;
    let probe = || chat_as(&gw, "alice", capped(false));

    // Groq refuses: nothing was used.
    sim.push(fixtures::error("400-n").expect("fixture"));
    let since = Instant::now();
    let refused = probe().await;
    assert_eq!(refused.status(), 400);
    let first = probe().await;
    assert_eq!(first.status(), 200);
    let first_remaining = remaining_tokens(&first);
    assert!(
        (LIMIT as i64 - 102..=LIMIT as i64 - 102 + refill_since(since, LIMIT)).contains(&first_remaining),
        "the refused request cost nothing: {first_remaining}"
    );
    first.bytes().await.expect("body");
    // Its own settlement (35 tokens used of the 102 reserved) is in the next reading.
    let before = first_remaining + 102 - 35;

    // The client gives up on a plain request Groq is working on: Groq will generate the whole
    // answer, so the reservation (prompt and the cap) stays charged.
    sim.push(Reply::Stall);
    let abandoned = client()
        .post(gw.url(CHAT))
        .header("authorization", "Bearer gxy_alice")
        .header("content-type", "application/json")
        .body(capped(false))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(abandoned.is_err(), "the client timed out");
    assert!(wait_outcome(&sim, true, Duration::from_secs(5)).await.is_some());
    let next = probe().await;
    let charged = before - 102 - remaining_tokens(&next);
    let refill = refill_since(since, LIMIT);
    assert!(
        (102 - refill..=102 + 1).contains(&charged),
        "charged {charged} (refilled at most {refill}), not the reservation of 102"
    );
}

#[tokio::test]
async fn a_token_limit_below_the_completion_reservation_admits_uncapped_requests() {
    const LIMIT: u64 = 1000;
    let sim = sim().await;
    let gw = gateway(keyed(&sim, per_minute_tokens(LIMIT))).await;
    let hi = |extra: &str| {
        format!(r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"hi"}}]{extra}}}"#)
    };

    // No max_completion_tokens: the default reservation (1 + 1024) is bounded by the limit.
    let since = Instant::now();
    let response = chat_as(&gw, "alice", hi("")).await;
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    assert_eq!(header(&response, "x-ratelimit-limit-tokens"), "1000");
    assert_eq!(remaining_tokens(&response), 0, "the whole limit is reserved, not more");
    response.bytes().await.expect("body");

    // Settled with the 35 tokens Groq reported: the next (capped at 10) sees them.
    let next = chat_as(&gw, "alice", hi(r#","max_completion_tokens":10"#)).await;
    assert_eq!(next.status(), 200);
    let expected = LIMIT as i64 - 35 - 11;
    assert!(
        (expected..=expected + refill_since(since, LIMIT)).contains(&remaining_tokens(&next)),
        "{}",
        remaining_tokens(&next)
    );
    next.bytes().await.expect("body");

    // What the request itself asks for is not bounded: over the whole limit is still a 413.
    let too_large = chat_as(&gw, "alice", hi(r#","max_completion_tokens":2000"#)).await;
    assert_eq!(too_large.status(), 413);
    assert_eq!(header(&too_large, "x-should-retry"), "false");
    let error = assert_openai_error(&too_large.bytes().await.expect("body"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("Limit 1000, Requested 2001")),
        "{error}"
    );
    assert_eq!(call_count(&sim), 2);
}

#[tokio::test]
async fn a_concurrency_429_names_the_slots_and_backs_off_long_enough_for_the_sdks_retries() {
    let sim = sim().await;
    let gw = gateway(keyed(
        &sim,
        LimitSet {
            max_concurrent: Some(1),
            ..LimitSet::default()
        },
    ))
    .await;
    sim.push(Reply::Stream {
        body: first_events(3),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let holding = chat_as(&gw, "alice", chat_body(true)).await;
    assert_eq!(holding.status(), 200);
    assert_eq!(header(&holding, "x-ratelimit-limit-concurrency"), "1");
    assert_eq!(header(&holding, "x-ratelimit-remaining-concurrency"), "0");

    let refused = chat_as(&gw, "alice", chat_body(false)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit-concurrency"), "1");
    assert_eq!(header(&refused, "x-ratelimit-remaining-concurrency"), "0");
    assert_eq!(header(&refused, "x-should-retry"), "true");
    assert_eq!(header(&refused, "retry-after"), "5");
    assert_eq!(header(&refused, "retry-after-ms"), "5000");
    assert_eq!(
        header(&refused, "x-ratelimit-limit-requests"),
        "",
        "no request limit is set"
    );
    let error = assert_openai_error(&refused.bytes().await.expect("body"));
    assert_eq!(error["code"], "rate_limit_exceeded");

    drop(holding);
    assert!(wait_outcome(&sim, true, Duration::from_secs(5)).await.is_some());
    // The slot is back (settled when the relay ended): this request holds it alone.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = chat_as(&gw, "alice", chat_body(false)).await;
    while again.status() == 429 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        again = chat_as(&gw, "alice", chat_body(false)).await;
    }
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "x-ratelimit-remaining-concurrency"), "0");
}

#[tokio::test]
async fn groxys_own_groq_budget_429_carries_that_budget() {
    let sim = sim_with(SimConfig {
        budget: Some(groq_sim::SimBudget {
            requests: 2,
            request_window: Duration::from_secs(3600),
            tokens: 1_000_000,
            token_window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(config_for(&sim)).await;
    for _ in 0..2 {
        assert_eq!(post_chat(&gw, chat_body(false)).await.status(), 200);
    }
    let refused = post_chat(&gw, chat_body(false)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-should-retry"), "true");
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("retry-after");
    assert!((3590..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "x-ratelimit-limit-requests"), "2");
    assert_eq!(header(&refused, "x-ratelimit-remaining-requests"), "0");
    let reset = header(&refused, "x-ratelimit-reset-requests");
    assert!(
        reset.starts_with("59m") || reset == "1h0m0s",
        "Groq's reset, about an hour (rounded to hundredths, an hour less a few ms prints 1h0m0s): {reset}"
    );
    assert_eq!(header(&refused, "x-ratelimit-limit-tokens"), "1000000");
    let remaining: u64 = header(&refused, "x-ratelimit-remaining-tokens")
        .parse()
        .expect("remaining tokens");
    assert!(remaining < 1_000_000 && remaining > 999_000, "{remaining}");
    let error = assert_openai_error(&refused.bytes().await.expect("body"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream Groq organisation")),
        "{error}"
    );
    assert_eq!(sim.rate_limited_count(), 0);
}
