//! Retries before the first byte, fallbacks and flex at on-demand, through the real gateway: statuses, `x-groxy-attempts`, `x-groxy-model`, upstream calls, the access line and the metric.

use std::time::{Duration, Instant};

use groq_sim::{Reply, SimConfig, Simulator, fixtures};
use groxy::config::{HumanDuration, LimitSet, Secret};

use crate::process::{Running, free_port, groxy_command};
use crate::support::*;

const BIG: &str = "openai/gpt-oss-120b";
const SMALL: &str = "openai/gpt-oss-20b";

/// A gateway config for `sim` that forwards `x-sim-reply`, with short retry waits.
fn retrying(sim: &Simulator) -> groxy::Config {
    let mut config = config_for(sim);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    config.upstream.retries.backoff = HumanDuration(Duration::from_millis(20));
    config
}

/// Two upstream keys, in front of a simulator that takes any key.
async fn two_keys() -> (Simulator, groxy::Config) {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let mut config = retrying(&sim);
    config.upstream.api_keys = vec![Secret::new("gsk_second_upstream_key")];
    (sim, config)
}

async fn post(gw: &Gateway, body: &str, reply: &str) -> reqwest::Response {
    let mut request = client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if !reply.is_empty() {
        request = request.header("x-sim-reply", reply);
    }
    request.send().await.expect("send")
}

fn chat_for(model: &str, extra: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hi"}}]{extra}}}"#)
}

/// One top-level string field of every request the simulator received, in order.
fn sent(sim: &Simulator, field: &str) -> Vec<String> {
    calls(sim)
        .iter()
        .map(|r| {
            r.json()
                .map(|v| v[field].as_str().unwrap_or("").to_owned())
                .unwrap_or_default()
        })
        .collect()
}

fn models_sent(sim: &Simulator) -> Vec<String> {
    sent(sim, "model")
}

#[tokio::test]
async fn a_503_then_success_is_answered_after_two_attempts() {
    let sim = sim().await;
    let gw = gateway(retrying(&sim)).await;
    let response = post(&gw, &chat_body(false), "fail:503:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    assert_eq!(header(&response, "x-groxy-model"), "", "no fallback answered");
    assert_eq!(response.bytes().await.expect("body"), fixtures::chat_completion());
    assert_eq!(call_count(&sim), 2);
    // A first attempt that succeeds says so too.
    let once = post(&gw, &chat_body(false), "").await;
    assert_eq!(header(&once, "x-groxy-attempts"), "1");
}

#[tokio::test]
async fn a_498_is_retried() {
    let sim = sim().await;
    let gw = gateway(retrying(&sim)).await;
    let response = post(&gw, &chat_body(false), "fail:498:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    assert_eq!(call_count(&sim), 2);
}

#[tokio::test]
async fn a_connection_reset_before_the_headers_is_retried_on_the_other_key() {
    let (sim, config) = two_keys().await;
    let gw = gateway(config).await;
    let response = post(&gw, &chat_body(false), "fail:drop:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    let sent = calls(&sim);
    assert_eq!(sent.len(), 2);
    let keys: Vec<_> = sent
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_owned())
        .collect();
    assert_ne!(keys[0], keys[1], "the retry went out on the other upstream key");
    assert!(keys.iter().all(|k| k.starts_with("Bearer gsk_")));
}

#[tokio::test]
async fn an_unreachable_groq_is_tried_a_bounded_number_of_times() {
    let closed = free_port();
    let mut config = groxy::Config::default();
    config.upstream.url = format!("http://127.0.0.1:{closed}/openai/v1");
    config.upstream.api_key = Some(Secret::new(UPSTREAM_KEY));
    config.upstream.retries.backoff = HumanDuration(Duration::from_millis(20));
    let gw = gateway(config).await;
    let started = Instant::now();
    let response = post(&gw, &chat_body(false), "").await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        header(&response, "x-groxy-attempts"),
        "3",
        "the first try and 2 retries"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(
        assert_openai_error(&response.bytes().await.expect("body"))["code"],
        "upstream_unreachable"
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_byte_is_retried() {
    let sim = sim().await;
    let gw = gateway(retrying(&sim)).await;
    let response = post(&gw, &chat_body(true), "first:1,drop-after:0").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    let (body, _, error) = read_timed(response).await;
    assert_eq!(error, None);
    assert_eq!(
        body,
        fixtures::stream("content").to_vec(),
        "the second attempt's stream, whole"
    );
    assert_eq!(call_count(&sim), 2);
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_is_never_retried() {
    let sim = sim().await;
    let gw = gateway(retrying(&sim)).await;
    let response = post(&gw, &chat_body(true), "drop-after:3").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "1");
    let (body, _, _) = read_timed(response).await;
    let text = String::from_utf8_lossy(&body);
    assert_eq!(text.matches("\"error\"").count(), 1, "one error event: {text}");
    assert!(!text.contains("[DONE]"));
    wait_idle(&gw).await;
    assert_eq!(call_count(&sim), 1);
}

#[tokio::test]
async fn an_upload_is_never_retried() {
    let sim = sim().await;
    let gw = gateway(retrying(&sim)).await;
    let boundary = "groxyboundary";
    let body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\nwhisper-large-v3-turbo\r\n\
         --{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         content-type: audio/wav\r\n\r\nRIFF....WAVE\r\n--{boundary}--\r\n"
    );
    let response = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .header("x-sim-reply", "fail:503:5")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503, "Groq's answer, as it was");
    assert_eq!(header(&response, "x-groxy-attempts"), "1");
    assert_eq!(call_count(&sim), 1);
    // The same failure on a JSON route is retried.
    let chat = post(&gw, &chat_body(false), "fail:503:1").await;
    assert_eq!(
        (chat.status().as_u16(), header(&chat, "x-groxy-attempts")),
        (200, "2".into())
    );
}

#[tokio::test]
async fn retries_stop_at_the_attempts_and_the_wait_budget() {
    let sim = sim().await;
    let mut config = retrying(&sim);
    config.upstream.retries.backoff = HumanDuration(Duration::from_millis(100));
    config.upstream.retries.max_wait = HumanDuration(Duration::from_millis(250));
    let gw = gateway(config).await;
    let started = Instant::now();
    let response = post(&gw, &chat_body(false), "error:503").await;
    let took = started.elapsed();
    assert_eq!(response.status(), 503, "Groq's last answer");
    assert_eq!(header(&response, "x-groxy-attempts"), "3");
    assert_eq!(
        response.bytes().await.expect("body"),
        &b"{\"error\":{\"message\":\"Service Unavailable\",\"type\":\"internal_server_error\"}}\n"[..]
    );
    assert_eq!(call_count(&sim), 3);
    // Two waits of 50-100 ms then 100-200 ms, cut to 250 ms in all: well under a second.
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Groq's retry-after is honoured when it fits in the budget...
    sim.push(Reply::Full {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after-ms".into(), "200".into()),
        ],
        body: "{\"error\":{\"message\":\"busy\"}}\n".into(),
    });
    let started = Instant::now();
    let response = post(&gw, &chat_body(false), "").await;
    assert_eq!(
        (response.status().as_u16(), header(&response, "x-groxy-attempts")),
        (200, "2".into())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // ...and ends the retries when it does not.
    sim.push(Reply::Full {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "30".into()),
        ],
        body: "{\"error\":{\"message\":\"busy\"}}\n".into(),
    });
    let response = post(&gw, &chat_body(false), "").await;
    assert_eq!(
        (response.status().as_u16(), header(&response, "x-groxy-attempts")),
        (503, "1".into())
    );
    assert_eq!(
        header(&response, "retry-after"),
        "30",
        "Groq's own advice reaches the client"
    );
}

#[tokio::test]
async fn a_fallback_answers_when_the_model_is_over_capacity() {
    let sim = sim().await;
    let mut config = retrying(&sim);
    config
        .models
        .fallbacks
        .insert(BIG.into(), vec!["not-in-the-catalogue".into(), SMALL.into()]);
    let gw = gateway(config).await;
    let request = chat_for(BIG, r#","temperature":0.5"#);
    let response = post(&gw, &request, "fail:503:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    assert_eq!(header(&response, "x-groxy-model"), SMALL);
    assert_eq!(
        response.bytes().await.expect("body"),
        fixtures::chat_completion(),
        "Groq's bytes"
    );
    assert_eq!(
        models_sent(&sim),
        [BIG, SMALL],
        "the model the catalogue lacks is skipped"
    );
    // The fallback's body is the checked request with only `model` changed.
    let sent = calls(&sim);
    let (mut first, second) = (sent[0].json().expect("json"), sent[1].json().expect("json"));
    first["model"] = SMALL.into();
    assert_eq!(first, second);
    // A fallback's answer is not stored as the answer of the model asked for.
    let deterministic = chat_for(BIG, r#","temperature":0"#);
    for _ in 0..2 {
        sim.push(Reply::json(503, &b"{\"error\":{\"message\":\"busy\"}}\n"[..]));
        let response = post(&gw, &deterministic, "").await;
        assert_eq!(header(&response, "x-groxy-cache"), "MISS");
        assert_eq!(header(&response, "x-groxy-model"), SMALL);
        let _ = response.bytes().await;
        wait_idle(&gw).await;
    }
    assert_eq!(call_count(&sim), 6);
    // A model without a chain keeps retrying itself.
    let plain = post(&gw, &chat_for(SMALL, ""), "fail:503:2").await;
    assert_eq!(header(&plain, "x-groxy-attempts"), "3");
    assert_eq!(header(&plain, "x-groxy-model"), "");
}

#[tokio::test]
async fn a_fallback_the_callers_limits_refuse_is_skipped() {
    let sim = sim().await;
    let mut config = retrying(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.models.fallbacks.insert(BIG.into(), vec![SMALL.into()]);
    config.rate_limits.models.insert(
        SMALL.into(),
        LimitSet {
            requests_per_day: Some(1),
            ..LimitSet::default()
        },
    );
    let gw = gateway(config).await;
    // Alice spends her one request of the small model.
    assert_eq!(chat_as(&gw, "alice", chat_for(SMALL, "")).await.status(), 200);
    let response = client()
        .post(gw.url(CHAT))
        .header("authorization", "Bearer gxy_alice")
        .header("content-type", "application/json")
        .header("x-sim-reply", "fail:503:9")
        .body(chat_for(BIG, ""))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 503);
    assert_eq!(
        header(&response, "x-groxy-attempts"),
        "3",
        "the big model retried itself"
    );
    assert_eq!(header(&response, "x-groxy-model"), "");
    assert_eq!(models_sent(&sim), [SMALL, BIG, BIG, BIG]);
}

#[tokio::test]
async fn a_flex_request_turned_away_goes_on_demand_when_opted_in() {
    let sim = sim().await;
    let mut config = retrying(&sim);
    config.models.flex_fallback_to_on_demand = true;
    let gw = gateway(config).await;
    let response = post(&gw, &chat_for(SMALL, r#","service_tier":"flex""#), "fail:498:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    let tiers = sent(&sim, "service_tier");
    assert_eq!(tiers, ["flex", "on_demand"]);

    // Not opted in: the flex request is retried as it was.
    let sim = sim_with(SimConfig::default()).await;
    let gw = gateway(retrying(&sim)).await;
    let response = post(&gw, &chat_for(SMALL, r#","service_tier":"flex""#), "fail:498:1").await;
    assert_eq!(header(&response, "x-groxy-attempts"), "2");
    let tiers = sent(&sim, "service_tier");
    assert_eq!(tiers, ["flex", "flex"]);
}

#[tokio::test]
async fn the_access_line_and_the_metric_count_the_attempts() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("groxy-retries-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("retries.toml");
    std::fs::write(
        &path,
        "[upstream]\nforward_headers = [\"x-sim-reply\"]\n[upstream.retries]\nbackoff = \"20ms\"\n",
    )
    .expect("write config");
    let port = free_port();
    let mut command = groxy_command();
    command
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let groxy = Running::start(command, port).await;
    let response = client()
        .post(groxy.url(CHAT))
        .header("content-type", "application/json")
        .header("x-sim-reply", "fail:503:2")
        .body(chat_body(false))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-attempts"), "3");
    let _ = response.bytes().await;
    assert!(
        groxy.wait_for_output("\"attempts\":3", Duration::from_secs(10)).await,
        "{}",
        groxy.output()
    );
    let line = groxy
        .output()
        .lines()
        .find(|l| l.contains("\"target\":\"groxy::access\"") && l.contains("\"attempts\":3"))
        .map(str::to_owned)
        .expect("access line");
    let line = json(line.as_bytes());
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream_status"], 200);
    let metrics = client()
        .get(groxy.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("groxy_upstream_retries_total{reason=\"status_503\",next=\"same_model\"} 2"),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_that_leaves_while_groxy_waits_to_retry_is_charged_nothing() {
    let sim = sim().await;
    let mut config = retrying(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice"), ("bob", "gxy_bob")]);
    config.rate_limits.default = LimitSet {
        tokens_per_day: Some(100_000),
        ..LimitSet::default()
    };
    config.upstream.retries.max_wait = HumanDuration::secs(5);
    let gw = gateway(config).await;
    sim.push(Reply::Full {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after-ms".into(), "3000".into()),
        ],
        body: "{\"error\":{\"message\":\"busy\"}}\n".into(),
    });
    let gone = client()
        .post(gw.url(CHAT))
        .header("authorization", "Bearer gxy_alice")
        .header("content-type", "application/json")
        .body(chat_body(false))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(gone.is_err(), "the client left during the wait");
    wait_idle(&gw).await;
    assert_eq!(call_count(&sim), 1, "the retry was never sent");
    // Groq refused the one attempt that left: Alice has spent what Bob has, nothing.
    let alice = chat_as(&gw, "alice", chat_body(false)).await;
    let bob = chat_as(&gw, "bob", chat_body(false)).await;
    assert_eq!(
        header(&alice, "x-ratelimit-remaining-tokens"),
        header(&bob, "x-ratelimit-remaining-tokens")
    );
}
