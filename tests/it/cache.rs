//! The response cache and single-flight coalescing through the real gateway.

use std::time::Duration;

use futures_util::future::join_all;
use groq_sim::{Reply, SimConfig, Simulator, SliceMode, Slicing, StreamEnd, fixtures};
use groxy::config::{CacheMode, LimitSet};

use crate::support::*;

/// A deterministic request (temperature 0), so the default `deterministic` mode caches it.
fn det(stream: bool) -> String {
    format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"Say hi"}}],"temperature":0,"stream":{stream}}}"#
    )
}

fn cache_status(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-groxy-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn send(gw: &Gateway, body: String, extra: &[(&str, &str)]) -> (String, Vec<u8>, Option<String>) {
    let mut request = client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("send");
    let status = cache_status(&response);
    let age = response
        .headers()
        .get("age")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.bytes().await.expect("body").to_vec(), age)
}

#[tokio::test]
async fn identical_concurrent_requests_cost_one_groq_call_plain_and_streaming() {
    for stream in [false, true] {
        let sim = sim_with(SimConfig {
            json_latency: Duration::from_millis(300),
            ttft: Duration::from_millis(300),
            chunk_interval: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await;
        let gw = gateway(config_for(&sim)).await;
        let results = join_all((0..10).map(|_| send(&gw, det(stream), &[]))).await;
        assert_eq!(
            call_count(&sim),
            1,
            "stream={stream}: one upstream call for ten clients"
        );
        let bodies: Vec<&Vec<u8>> = results.iter().map(|(_, b, _)| b).collect();
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "byte-identical bodies");
        assert_eq!(
            *bodies[0],
            last_request(&sim).sent_bytes(),
            "and identical to what Groq sent"
        );
        let mut statuses: Vec<&str> = results.iter().map(|(s, _, _)| s.as_str()).collect();
        statuses.sort();
        assert_eq!(statuses.iter().filter(|s| **s == "MISS").count(), 1, "{statuses:?}");
        assert_eq!(
            statuses.iter().filter(|s| **s == "COALESCED").count(),
            9,
            "{statuses:?}"
        );
    }
}

#[tokio::test]
async fn a_hit_replays_the_stream_byte_exact() {
    let (sim, gw) = pair().await;
    let fixture = fixtures::stream("content");
    sim.push(Reply::Stream {
        body: fixture.clone(),
        slicing: Slicing {
            mode: SliceMode::Random {
                min: 1,
                max: 40,
                seed: 3,
            },
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    let (first, body, _) = send(&gw, det(true), &[]).await;
    assert_eq!(first, "MISS");
    assert_eq!(body, fixture.to_vec());
    let response = client().post(gw.url(CHAT)).body(det(true)).send().await.expect("send");
    assert_eq!(cache_status(&response), "HIT");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["age"], "0");
    assert_eq!(response.bytes().await.expect("body"), fixture, "replayed byte for byte");
    assert_eq!(call_count(&sim), 1);
    // A non-streaming request is a different entry.
    assert_eq!(send(&gw, det(false), &[]).await.0, "MISS");
    assert_eq!(call_count(&sim), 2);
}

#[tokio::test]
async fn reordered_keys_hit_and_changed_semantics_miss() {
    let (sim, gw) = pair().await;
    let base =
        r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"temperature":0,"seed":1}"#;
    assert_eq!(send(&gw, base.into(), &[]).await.0, "MISS");
    let reordered = "{ \"seed\":1, \"temperature\": 0.0,\n\"messages\":[{\"content\":\"Say hi\",\"role\":\"user\"}], \"model\":\"openai/gpt-oss-20b\", \"user\":\"someone\"}";
    assert_eq!(send(&gw, reordered.into(), &[]).await.0, "HIT");
    for changed in [
        r#""seed":2"#,
        r#""temperature":0.5"#,
        r#""stop":["x"]"#,
        r#""max_completion_tokens":9"#,
        r#""response_format":{"type":"json_object"}"#,
    ] {
        let field = changed.split(':').next().unwrap_or("");
        let body = base
            .replace(&format!("{field}:1"), changed)
            .replace(&format!("{field}:0"), changed);
        let body = if body == base {
            base.replace("}", &format!(",{changed}}}"))
        } else {
            body
        };
        let body = body.replacen("}}", "}", 0);
        assert_eq!(send(&gw, body.clone(), &[]).await.0, "MISS", "{body}");
    }
    assert_eq!(call_count(&sim), 6);
}

#[tokio::test]
async fn failed_truncated_and_cancelled_responses_are_not_stored() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.rate_limits.upstream_aware = false;
    let gw = gateway(config).await;
    sim.push(fixtures::error("429-tpm").expect("fixture"));
    assert_eq!(send(&gw, det(false), &[]).await.0, "MISS");
    sim.push(Reply::stream(fixtures::stream("midstream-error")));
    assert_eq!(send(&gw, det(true), &[]).await.0, "MISS");
    sim.push(Reply::Stream {
        body: fixtures::stream("content").slice(..900),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let (_, truncated, _) = send(&gw, det(true), &[]).await;
    assert!(String::from_utf8_lossy(&truncated).contains("upstream_truncated"));
    assert_eq!(call_count(&sim), 3);
    // None of those was stored: the next ones go to Groq again (and are then stored).
    assert_eq!(send(&gw, det(false), &[]).await.0, "MISS");
    assert_eq!(send(&gw, det(true), &[]).await.0, "MISS");
    assert_eq!(call_count(&sim), 5);
    assert_eq!(send(&gw, det(true), &[]).await.0, "HIT");

    // A stream whose only client hangs up is cancelled upstream and not stored.
    let body = det(true).replace("Say hi", "Say bye");
    sim.push(Reply::Stream {
        body: fixtures::stream("content"),
        slicing: Slicing {
            pause: Duration::from_millis(50),
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    let response = client()
        .post(gw.url(CHAT))
        .body(body.clone())
        .send()
        .await
        .expect("send");
    drop(response);
    assert!(
        wait_outcome(&sim, true, Duration::from_secs(2)).await.is_some(),
        "the upstream call was cancelled"
    );
    assert_eq!(send(&gw, body, &[]).await.0, "MISS");
}

#[tokio::test]
async fn when_the_first_client_leaves_the_others_still_get_everything() {
    let (sim, gw) = pair().await;
    let fixture = fixtures::stream("content");
    sim.push(Reply::Stream {
        body: fixture.clone(),
        slicing: Slicing {
            pause: Duration::from_millis(20),
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    let leader = client().post(gw.url(CHAT)).body(det(true)).send().await.expect("send");
    assert_eq!(cache_status(&leader), "MISS");
    let joiner = client().post(gw.url(CHAT)).body(det(true)).send().await.expect("send");
    assert_eq!(cache_status(&joiner), "COALESCED");
    drop(leader);
    assert_eq!(joiner.bytes().await.expect("body"), fixture);
    assert_eq!(call_count(&sim), 1);
    assert!(matches!(last_request(&sim).outcome, groq_sim::Outcome::Completed));
    assert_eq!(send(&gw, det(true), &[]).await.0, "HIT", "and it was stored");
}

#[tokio::test]
async fn when_groq_fails_every_joiner_sees_the_same_error() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.first_byte_timeout = groxy::config::HumanDuration::millis(400);
    let gw = gateway(config).await;
    sim.push(Reply::Stall);
    let results = join_all((0..5).map(|_| async {
        let response = client().post(gw.url(CHAT)).body(det(false)).send().await.expect("send");
        (response.status().as_u16(), response.bytes().await.expect("body"))
    }))
    .await;
    assert!(
        results
            .iter()
            .all(|(status, body)| *status == 504 && *body == results[0].1),
        "{results:?}"
    );
    assert_eq!(call_count(&sim), 1);
}

#[tokio::test]
async fn cache_control_no_cache_no_store_and_max_age() {
    let (sim, gw) = pair().await;
    assert_eq!(send(&gw, det(false), &[("cache-control", "no-store")]).await.0, "MISS");
    assert_eq!(send(&gw, det(false), &[]).await.0, "MISS", "no-store kept it out");
    assert_eq!(send(&gw, det(false), &[]).await.0, "HIT");
    assert_eq!(
        send(&gw, det(false), &[("cache-control", "no-cache")]).await.0,
        "MISS",
        "no-cache skips the lookup"
    );
    assert_eq!(call_count(&sim), 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, age) = send(&gw, det(false), &[]).await;
    assert_eq!(
        (status.as_str(), age.as_deref()),
        ("HIT", Some("1")),
        "no-cache still stored a fresh copy"
    );
    assert_eq!(send(&gw, det(false), &[("cache-control", "max-age=0")]).await.0, "MISS");
    assert_eq!(call_count(&sim), 4);
    // Non-deterministic requests bypass the cache in the default mode.
    assert_eq!(send(&gw, chat_body(false), &[]).await.0, "BYPASS");
    assert_eq!(send(&gw, chat_body(false), &[]).await.0, "BYPASS");
    assert_eq!(call_count(&sim), 6);
}

#[tokio::test]
async fn tenants_do_not_share_entries_and_a_key_can_opt_out() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(
        &mut config,
        &[("alice", "gxy_alice"), ("bob", "gxy_bob"), ("ci", "gxy_ci")],
    );
    config.cache.keys.insert("ci".into(), false);
    config.rate_limits.default = LimitSet {
        requests_per_day: Some(100),
        tokens_per_day: Some(100_000),
        ..LimitSet::default()
    };
    let gw = gateway(config).await;
    let as_ = |who: &'static str| [("authorization", format!("Bearer gxy_{who}"))];
    let send_as = |who: &'static str| {
        let headers = as_(who);
        let gw = &gw;
        async move {
            let response = client()
                .post(gw.url(CHAT))
                .header(headers[0].0, headers[0].1.clone())
                .body(det(false))
                .send()
                .await
                .expect("send");
            let status = cache_status(&response);
            let remaining = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            };
            (
                status,
                remaining("x-ratelimit-remaining-requests"),
                remaining("x-ratelimit-remaining-tokens"),
            )
        }
    };
    let (status, _, tokens_after_miss) = send_as("alice").await;
    assert_eq!(status, "MISS");
    // The flight's driver stores the answer once its body has ended: wait for it to land.
    let stored = poll_until(Duration::from_secs(5), || async {
        let text = client().get(gw.url("/metrics")).send().await.ok()?.text().await.ok()?;
        text.lines()
            .any(|line| line.trim() == "groxy_cache_entries 1")
            .then_some(())
    })
    .await;
    assert!(stored.is_some(), "the answer was stored");
    let (status, requests, tokens) = send_as("alice").await;
    assert_eq!(status, "HIT");
    assert_eq!(requests, "98", "a hit counts as a request");
    let tokens: i64 = tokens.parse().expect("n");
    let before: i64 = tokens_after_miss.parse().expect("n");
    assert!(
        tokens > before,
        "a hit spends no tokens (the miss's reservation was settled down to its usage)"
    );
    assert_eq!(send_as("bob").await.0, "MISS", "bob never sees alice's entry");
    assert_eq!(send_as("ci").await.0, "BYPASS");
    assert_eq!(send_as("ci").await.0, "BYPASS");
    assert_eq!(call_count(&sim), 4);
}

#[tokio::test]
async fn mode_all_and_mode_off() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.cache.mode = CacheMode::All;
    let gw = gateway(config).await;
    assert_eq!(send(&gw, chat_body(false), &[]).await.0, "MISS");
    assert_eq!(send(&gw, chat_body(false), &[]).await.0, "HIT");
    let mut config = config_for(&sim);
    config.cache.mode = CacheMode::Off;
    let gw = gateway(config).await;
    assert_eq!(send(&gw, det(false), &[]).await.0, "BYPASS");
    assert_eq!(send(&gw, det(false), &[]).await.0, "BYPASS");
    let _ = Simulator::start;
}
