//! Issue 7: `/metrics` after known traffic, `x-request-id`, usage accounting, JSON access lines,
//! the canary scan for secrets, hot reload, and readiness.

use std::{collections::BTreeMap, time::Duration};

use groq_sim::{Reply, SimConfig, Simulator, Slicing, StreamEnd, fixtures};
use groxy::{config::LimitSet, hex, sha256};

use crate::{process::*, support::*};

const MODEL: &str = "openai/gpt-oss-20b";
const ALICE: &str = "gxy_alice_observability_key";
const BOB: &str = "gxy_bob_observability_key";
const ADMIN: &str = "admin_observability_key";

/// One sample of the exposition: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Label values here never contain `",`; a tiny split is enough.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label");
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push(Sample {
            name: name.to_owned(),
            labels: map,
            value: value.parse().expect("value"),
        });
    }
    out
}

/// The sum of every series of `name` whose labels include `want`.
fn metric(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// An admin endpoint's JSON, fetched with the admin key.
async fn admin_json(base: &str, path: &str) -> serde_json::Value {
    let response = client()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("admin request");
    assert_eq!(response.status(), 200, "{path}");
    json(&response.bytes().await.expect("body"))
}

async fn scrape(base: &str) -> Vec<Sample> {
    let response = client().get(format!("{base}/metrics")).send().await.expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .contains("openmetrics-text")
    );
    let text = response.text().await.expect("text");
    assert!(text.trim_end().ends_with("# EOF"));
    parse_metrics(&text)
}

/// `(prompt, completion)` from a JSON body or the last usage in an SSE stream.
fn usage_of(body: &[u8]) -> (u64, u64) {
    let text = String::from_utf8_lossy(body);
    let mut found = (0, 0);
    let documents: Vec<&str> = if text.trim_start().starts_with('{') {
        vec![text.as_ref()]
    } else {
        text.lines().filter_map(|l| l.strip_prefix("data: ")).collect()
    };
    for doc in documents {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(doc) {
            let usage = if v["usage"].is_object() {
                &v["usage"]
            } else {
                &v["x_groq"]["usage"]
            };
            if let (Some(p), Some(c)) = (usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()) {
                found = (p, c);
            }
        }
    }
    found
}

async fn send_chat(
    gw_base: &str,
    key: &str,
    body: &str,
    request_id: Option<&str>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = client()
        .post(format!("{gw_base}{CHAT}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

fn deterministic_body() -> String {
    format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"cache me"}}],"temperature":0}}"#)
}

fn streaming_body() -> String {
    format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"Say hi"}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#
    )
}

#[tokio::test]
async fn metrics_and_usage_count_known_traffic_exactly() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", ALICE), ("bob", BOB)]);
    config.metrics.per_key_labels = true;
    config.admin.key_sha256 = Some(hex(&sha256(ADMIN.as_bytes())));
    config.auth.failures_per_minute = 100;
    config.rate_limits.keys.insert(
        "bob".to_owned(),
        LimitSet {
            requests_per_minute: Some(2),
            ..LimitSet::default()
        },
    );
    let gw = gateway(config).await;
    let base = gw.url("");

    let mut alice_tokens = (0, 0);
    let mut bob_tokens = (0, 0);
    let add = |sum: &mut (u64, u64), body: &[u8]| {
        let (p, c) = usage_of(body);
        assert!(p > 0 && c > 0, "usage in {}", String::from_utf8_lossy(body));
        sum.0 += p;
        sum.1 += c;
    };
    // alice: 2 plain (cache bypass), 1 stream (bypass), 2 deterministic (miss, then hit), 1 invalid.
    for _ in 0..2 {
        let (status, headers, body) = send_chat(&base, ALICE, &chat_body(false), None).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-groxy-cache"], "BYPASS");
        add(&mut alice_tokens, &body);
    }
    sim.push(Reply::stream(fixtures::stream("content")));
    let (status, _, body) = send_chat(&base, ALICE, &streaming_body(), None).await;
    assert_eq!(status, 200);
    add(&mut alice_tokens, &body);
    let (status, headers, body) = send_chat(&base, ALICE, &deterministic_body(), None).await;
    assert_eq!(
        (status.as_u16(), headers["x-groxy-cache"].to_str().ok()),
        (200, Some("MISS"))
    );
    add(&mut alice_tokens, &body);
    let (status, headers, _) = send_chat(&base, ALICE, &deterministic_body(), None).await;
    assert_eq!(
        (status.as_u16(), headers["x-groxy-cache"].to_str().ok()),
        (200, Some("HIT"))
    );
    let (status, _, _) = send_chat(&base, ALICE, r#"{"model":"openai/gpt-oss-20b"}"#, None).await;
    assert_eq!(status, 400);
    // bob: 2 allowed, the third refused by his requests-per-minute limit.
    for expected in [200, 200, 429] {
        let (status, _, body) = send_chat(&base, BOB, &chat_body(false), None).await;
        assert_eq!(status.as_u16(), expected);
        if expected == 200 {
            add(&mut bob_tokens, &body);
        }
    }
    // A stranger.
    let (status, _, _) = send_chat(&base, "gxy_nobody", &chat_body(false), None).await;
    assert_eq!(status, 401);
    let upstream_chats = calls(&sim)
        .iter()
        .filter(|c| c.path.ends_with("chat/completions"))
        .count();
    assert_eq!(upstream_chats, 6, "2 + 1 + 1 alice, 2 bob");

    let m = scrape(&base).await;
    let chat = ("route", "chat_completions");
    let total = |status: &str, model: &str| {
        metric(
            &m,
            "groxy_requests_total",
            &[chat, ("status", status), ("model", model)],
        )
    };
    assert_eq!(total("200", MODEL), 7.0);
    assert_eq!(total("429", MODEL), 1.0);
    assert_eq!(total("400", ""), 1.0);
    assert_eq!(total("401", ""), 1.0);
    assert_eq!(metric(&m, "groxy_request_duration_seconds_count", &[chat]), 10.0);
    assert_eq!(metric(&m, "groxy_overhead_seconds_count", &[chat]), 10.0);
    assert_eq!(
        metric(&m, "groxy_request_duration_seconds_bucket", &[chat, ("le", "+Inf")]),
        10.0
    );
    assert_eq!(metric(&m, "groxy_cache_requests_total", &[("result", "bypass")]), 5.0);
    assert_eq!(metric(&m, "groxy_cache_requests_total", &[("result", "miss")]), 1.0);
    assert_eq!(metric(&m, "groxy_cache_requests_total", &[("result", "hit")]), 1.0);
    assert_eq!(
        metric(&m, "groxy_rate_limited_total", &[("limit", "requests_per_minute")]),
        1.0
    );
    assert_eq!(
        metric(&m, "groxy_upstream_duration_seconds_count", &[("model", MODEL)]),
        6.0
    );
    assert_eq!(
        metric(
            &m,
            "groxy_upstream_time_to_first_token_seconds_count",
            &[("model", MODEL)]
        ),
        6.0
    );
    let tokens = |kind: &str| metric(&m, "groxy_tokens_total", &[("model", MODEL), ("kind", kind)]);
    assert_eq!(tokens("prompt"), (alice_tokens.0 + bob_tokens.0) as f64);
    assert_eq!(tokens("completion"), (alice_tokens.1 + bob_tokens.1) as f64);
    let key_tokens = |key: &str, kind: &str| metric(&m, "groxy_key_tokens_total", &[("key", key), ("kind", kind)]);
    assert_eq!(key_tokens("alice", "prompt"), alice_tokens.0 as f64);
    assert_eq!(key_tokens("bob", "completion"), bob_tokens.1 as f64);
    assert_eq!(metric(&m, "groxy_key_requests_total", &[("key", "alice")]), 5.0);
    assert_eq!(metric(&m, "groxy_key_requests_total", &[("key", "bob")]), 3.0);
    assert_eq!(metric(&m, "groxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(metric(&m, "groxy_active_streams", &[]), 0.0);
    assert_eq!(
        metric(&m, "groxy_in_flight_requests", &[]),
        1.0,
        "only the scrape itself"
    );
    assert!(metric(&m, "groxy_open_connections", &[]) >= 1.0);
    // Groq's budget as its headers said, per upstream key (never the key itself) and model.
    let remaining_tokens = metric(
        &m,
        "groxy_upstream_remaining",
        &[("upstream_key", "key-1"), ("model", MODEL), ("resource", "tokens")],
    );
    assert!(remaining_tokens > 0.0, "upstream budget gauge");

    // The same figures as usage accounting.
    let usage: serde_json::Value = admin_json(&base, "/admin/usage").await;
    let keys = usage["keys"].as_array().expect("keys");
    let alice = keys.iter().find(|k| k["key"] == "alice").expect("alice");
    let bob = keys.iter().find(|k| k["key"] == "bob").expect("bob");
    for window in ["minute", "day", "total"] {
        assert_eq!(alice[window]["requests"], 5, "{window}: {alice}");
        assert_eq!(alice[window]["cached"], 1);
        assert_eq!(alice[window]["prompt_tokens"], alice_tokens.0);
        assert_eq!(alice[window]["completion_tokens"], alice_tokens.1);
        assert_eq!(bob[window]["requests"], 3);
        assert_eq!(bob[window]["rate_limited"], 1);
        assert_eq!(bob[window]["completion_tokens"], bob_tokens.1);
    }
    assert_eq!(alice["models"][0]["model"], MODEL);

    // The dashboard's document agrees.
    let stats: serde_json::Value = admin_json(&base, "/admin/stats").await;
    assert_eq!(stats["totals"]["requests"], 10);
    assert_eq!(stats["totals"]["rate_limited"], 1);
    assert_eq!(stats["cache"]["hits"], 1);
    assert_eq!(stats["recent"].as_array().map(Vec::len), Some(10));
    assert_eq!(stats["upstream_budget"][0]["key"], "key-1");
    assert_eq!(stats["upstream_budget"][0]["remaining_tokens"], remaining_tokens as u64);
    let by_key = stats["tokens_today"]["by_key"].as_array().expect("by_key");
    assert!(
        by_key
            .iter()
            .any(|k| k["key"] == "bob" && k["completion_tokens"] == bob_tokens.1)
    );
}

#[tokio::test]
async fn admin_endpoints_need_the_admin_key() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    let gw = gateway(config.clone()).await;
    // No admin key configured: the endpoints are off.
    let r = client().get(gw.url("/admin/usage")).send().await.expect("send");
    assert_eq!(r.status(), 403);
    assert_openai_error(&r.bytes().await.expect("body"));

    config.admin.key_sha256 = Some(hex(&sha256(ADMIN.as_bytes())));
    let gw = gateway(config).await;
    for path in ["/admin/usage", "/admin/stats", "/dashboard"] {
        let r = client().get(gw.url(path)).send().await.expect("send");
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .expect("ascii")
                .starts_with("Basic")
        );
        let r = client()
            .get(gw.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 401, "{path}");
        let r = client()
            .get(gw.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path}");
        let r = client()
            .get(gw.url(path))
            .basic_auth("anyone", Some(ADMIN))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 200, "{path} with Basic auth");
    }
    // Without a config source, a reload says so instead of pretending.
    let r = client()
        .post(gw.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn request_ids_are_accepted_generated_and_returned_on_every_answer() {
    let (_sim, gw) = pair().await;
    let (status, headers, _) = send_chat(&gw.url(""), "unused", &chat_body(false), Some("trace-42:a/b")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-request-id"], "trace-42:a/b");
    assert!(
        headers["x-groq-request-id"]
            .to_str()
            .expect("ascii")
            .starts_with("req_")
    );
    // Not a sane token: replaced, not echoed.
    let (_, headers, _) = send_chat(&gw.url(""), "unused", &chat_body(false), Some("evil\" id")).await;
    let id = headers["x-request-id"].to_str().expect("ascii");
    assert_eq!(id.len(), 36);
    assert!(!id.contains("evil"));
    // Errors groxy makes itself carry one too.
    for (path, expected) in [("/v1/nowhere", 404), ("/healthz", 200)] {
        let r = client().get(gw.url(path)).send().await.expect("send");
        assert_eq!(r.status().as_u16(), expected);
        assert_eq!(r.headers()["x-request-id"].len(), 36);
    }
    let (status, headers, _) = send_chat(&gw.url(""), "unused", "{not json", None).await;
    assert_eq!(status, 400);
    assert_eq!(headers["x-request-id"].len(), 36);
}

#[tokio::test]
async fn readyz_names_degraded_parts_and_stays_ready() {
    // A simulator that refuses the catalogue: groxy still serves, and says what is degraded.
    let sim = Simulator::start(SimConfig {
        api_key: Some("a_different_key".to_owned()),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let config = config_for(&sim);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(groxy::run(listener, config, std::future::pending()));
    let url = format!("http://{addr}/readyz");
    let mut body = serde_json::Value::Null;
    for _ in 0..100 {
        if let Ok(r) = client().get(&url).send().await {
            assert_eq!(r.status(), 200, "degraded is still ready");
            body = json(&r.bytes().await.expect("body"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["status"], "ready");
    let degraded = body["degraded"].as_array().expect("degraded list");
    assert!(degraded.iter().any(|d| d == "catalog"), "{body}");
}

/// A stream that takes a while: 20 events, 50 ms apart.
fn slow_stream() -> Reply {
    Reply::Stream {
        body: fixtures::stream("content"),
        slicing: Slicing {
            first_delay: Duration::ZERO,
            pause: Duration::from_millis(50),
            mode: groq_sim::SliceMode::PerFrame,
        },
        end: StreamEnd::Complete,
    }
}

#[tokio::test]
async fn sighup_reload_adds_a_key_at_once_keeps_streams_and_rejects_a_bad_file() {
    let sim = sim().await;
    let port = free_port();
    let keys = |names: &[(&str, &str)]| -> String {
        names
            .iter()
            .map(|(name, key)| {
                format!(
                    "[[auth.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\n",
                    hex(&sha256(key.as_bytes()))
                )
            })
            .collect()
    };
    let dir = std::env::temp_dir().join(format!("groxy-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("groxy.toml");
    let good = |names: &[(&str, &str)], extra: &str| {
        format!(
            "{extra}\n[auth]\nmode = \"keys\"\nfailures_per_minute = 100\n{}",
            keys(names)
        )
    };
    let listen = |port: u16| format!("[server]\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&path, good(&[("alice", ALICE)], &listen(port))).expect("write");
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_ADMIN_KEY", ADMIN)
        .env("GROXY_LOG_FORMAT", "json");
    let groxy = Running::start(command, port).await;
    let base = groxy.base.clone();
    assert_eq!(
        send_chat(&base, BOB, &chat_body(false), None).await.0,
        401,
        "bob unknown yet"
    );

    // A stream in flight across the reload.
    sim.push(slow_stream());
    let response = client()
        .post(groxy.url(CHAT))
        .bearer_auth(ALICE)
        .body(chat_body(true))
        .send()
        .await
        .expect("stream");
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(async move { response.bytes().await });

    let aliases = format!("{}[models.aliases]\nquick = \"openai/gpt-oss-20b\"\n", listen(port));
    std::fs::write(&path, good(&[("alice", ALICE), ("bob", BOB)], &aliases)).expect("write");
    groxy.signal("HUP");
    assert!(
        groxy.wait_for_output("config reloaded", Duration::from_secs(5)).await,
        "{}",
        groxy.output()
    );
    assert_eq!(
        send_chat(&base, BOB, &chat_body(false), None).await.0,
        200,
        "bob's new key works at once"
    );
    let aliased = r#"{"model":"quick","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(send_chat(&base, BOB, aliased, None).await.0, 200, "the new alias works");
    assert_eq!(last_request(&sim).json().expect("json")["model"], MODEL);
    let streamed = reader.await.expect("join").expect("stream body");
    assert_eq!(
        streamed,
        fixtures::stream("content"),
        "the open stream finished untouched"
    );

    // A bad file: every problem logged, the old config still serving.
    std::fs::write(
        &path,
        "[auth]\nmode = \"keys\"\nmystery = 1\n[server]\nheader_read_timeout = \"0s\"\n",
    )
    .expect("write");
    groxy.signal("HUP");
    assert!(
        groxy
            .wait_for_output("config reload rejected", Duration::from_secs(5))
            .await,
        "{}",
        groxy.output()
    );
    // Each problem is its own line: wait for both rather than for a while.
    for problem in ["auth.mystery", "header_read_timeout"] {
        assert!(
            groxy.wait_for_output(problem, Duration::from_secs(5)).await,
            "{problem}"
        );
    }
    let logs = groxy.output();
    assert!(
        logs.contains("auth.mystery") && logs.contains("header_read_timeout"),
        "{logs}"
    );
    assert_eq!(
        send_chat(&base, BOB, &chat_body(false), None).await.0,
        200,
        "old config serves"
    );
    assert_eq!(send_chat(&base, ALICE, &chat_body(false), None).await.0, 200);

    // The same through the admin endpoint, with the problems in the answer.
    let r = client()
        .post(groxy.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 422);
    let error = assert_openai_error(&r.bytes().await.expect("body"));
    assert!(
        error["message"].as_str().is_some_and(|m| m.contains("auth.mystery")),
        "{error}"
    );
    // A listener change is reported as needing a restart, the rest applies.
    std::fs::write(&path, good(&[("alice", ALICE)], &listen(free_port()))).expect("write");
    let r: serde_json::Value = client()
        .post(groxy.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("reload")
        .bytes()
        .await
        .map(|b| json(&b))
        .expect("json");
    assert_eq!(r["status"], "reloaded");
    assert!(
        r["restart_required"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == "server")),
        "{r}"
    );
    assert_eq!(
        send_chat(&base, BOB, &chat_body(false), None).await.0,
        401,
        "bob removed again"
    );

    let m = scrape(&base).await;
    assert_eq!(metric(&m, "groxy_config_reloads_total", &[("result", "applied")]), 2.0);
    assert_eq!(metric(&m, "groxy_config_reloads_total", &[("result", "rejected")]), 2.0);
    groxy.stop().await;
}

const CANARY_UPSTREAM: &str = "gsk_CANARYupstream0123456789abcdef";
const CANARY_CLIENT: &str = "gxy_CANARYclient0123456789abcdef";
const CANARY_ADMIN: &str = "CANARYadmin0123456789abcdef";
const CANARY_WRONG: &str = "gxy_CANARYwrong0123456789abcdef";

/// Every kind of traffic the suite exercises, through the binary with debug logs in JSON; then
/// no secret may appear in the logs, the metrics, the usage or the dashboard's data.
#[tokio::test]
async fn canary_keys_never_reach_logs_metrics_or_admin_output() {
    let sim = Simulator::start(SimConfig {
        api_key: Some(CANARY_UPSTREAM.to_owned()),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("groxy-canary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("groxy.toml");
    let config = format!(
        "[auth]\nmode = \"keys\"\nfailures_per_minute = 3\n[[auth.keys]]\nname = \"canary-holder\"\nsha256 = \"{}\"\n\
         [rate_limits.keys.canary-holder]\nrequests_per_minute = 12\n[cache]\nmode = \"all\"\n[metrics]\nper_key_labels = true\n",
        hex(&sha256(CANARY_CLIENT.as_bytes()))
    );
    std::fs::write(&path, &config).expect("write");
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", CANARY_UPSTREAM)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_ADMIN_KEY", CANARY_ADMIN)
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug");
    let groxy = Running::start(command, port).await;
    let base = groxy.base.clone();

    // Plain, traced, streamed, cached, invalid, unknown model, upstream error, mid-stream failure.
    let (status, _, _) = send_chat(&base, CANARY_CLIENT, &chat_body(false), Some("canary-trace-1")).await;
    assert_eq!(status, 200);
    let (_, headers, _) = send_chat(&base, CANARY_CLIENT, &chat_body(false), None).await;
    assert_eq!(headers["x-groxy-cache"], "HIT");
    sim.push(Reply::stream(fixtures::stream("content")));
    assert_eq!(send_chat(&base, CANARY_CLIENT, &streaming_body(), None).await.0, 200);
    assert_eq!(send_chat(&base, CANARY_CLIENT, "{\"model\":1}", None).await.0, 400);
    let unknown = r#"{"model":"no-such-model","messages":[{"role":"user","content":"x"}]}"#;
    assert_eq!(send_chat(&base, CANARY_CLIENT, unknown, None).await.0, 404);
    // The first attempt and its two retries.
    for _ in 0..3 {
        sim.push(fixtures::error("503-plain").expect("fixture"));
    }
    let other = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"fail please"}]}"#;
    assert_eq!(send_chat(&base, CANARY_CLIENT, other, None).await.0, 502);
    sim.push(Reply::Stream {
        body: fixtures::stream("content").slice(..300),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let broken = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"break"}],"stream":true}"#;
    assert_eq!(send_chat(&base, CANARY_CLIENT, broken, None).await.0, 200);
    // Pass-through routes.
    let models = client()
        .get(groxy.url("/v1/models"))
        .bearer_auth(CANARY_CLIENT)
        .send()
        .await
        .expect("models");
    assert_eq!(models.status(), 200);
    // Wrong keys: client and admin, until the address is throttled.
    for _ in 0..4 {
        send_chat(&base, CANARY_WRONG, &chat_body(false), None).await;
    }
    let admin_wrong = client()
        .get(groxy.url("/admin/usage"))
        .bearer_auth(CANARY_WRONG)
        .send()
        .await
        .expect("admin");
    assert!(matches!(admin_wrong.status().as_u16(), 401 | 429));
    // Rate limited.
    let mut limited = false;
    for i in 0..12 {
        let body = format!(r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"n{i}"}}]}}"#);
        if send_chat(&base, CANARY_CLIENT, &body, None).await.0 == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the requests-per-minute limit refused one");
    // Reloads (SIGHUP and the endpoint), and every operator's view.
    groxy.signal("HUP");
    assert!(groxy.wait_for_output("config reloaded", Duration::from_secs(5)).await);
    let mut seen = String::new();
    let reload = client()
        .post(groxy.url("/admin/reload"))
        .bearer_auth(CANARY_ADMIN)
        .send()
        .await
        .expect("reload");
    assert_eq!(reload.status(), 200);
    seen.push_str(&reload.text().await.expect("text"));
    for path in ["/metrics", "/admin/usage", "/admin/stats", "/dashboard", "/readyz"] {
        let r = client()
            .get(groxy.url(path))
            .bearer_auth(CANARY_ADMIN)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), 200, "{path}");
        seen.push_str(&r.text().await.expect("text"));
    }
    let logs = groxy.stop().await;

    // The access line of the traced request carries every field.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "groxy::access").collect();
    let traced = access
        .iter()
        .find(|l| l["request_id"] == "canary-trace-1")
        .expect("the traced request's access line");
    assert_eq!(traced["key"], "canary-holder");
    assert_eq!(traced["model"], "openai/gpt-oss-20b");
    assert_eq!(traced["status"], 200);
    assert_eq!(traced["cache"], "MISS");
    assert_eq!(traced["route"], "chat_completions");
    assert!(traced["latency_ms"].as_f64().is_some_and(|v| v > 0.0));
    assert!(traced["overhead_ms"].as_f64().is_some_and(|v| v >= 0.0));
    assert!(traced["prompt_tokens"].as_u64().is_some_and(|v| v > 0));
    assert!(traced["completion_tokens"].as_u64().is_some_and(|v| v > 0));
    assert!(
        traced["upstream_request_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("req_"))
    );
    assert_eq!(traced["upstream_key"], "key-1");
    assert!(
        access
            .iter()
            .any(|l| l["status"] == 429 && l["limit"] == "requests_per_minute")
    );
    assert!(access.iter().any(|l| l["status"] == 401));
    assert!(access.iter().any(|l| l["cache"] == "HIT"));

    // Passthrough mode: the caller's own Groq key is forwarded, and must not be written anywhere.
    let port = free_port();
    let mut command = groxy_command();
    command
        .arg("serve")
        .env("GROXY_AUTH_MODE", "passthrough")
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_ADMIN_KEY", CANARY_ADMIN)
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "debug");
    let passthrough = Running::start(command, port).await;
    assert_eq!(
        send_chat(&passthrough.base, CANARY_UPSTREAM, &chat_body(false), None)
            .await
            .0,
        200
    );
    sim.push(Reply::stream(fixtures::stream("content")));
    assert_eq!(
        send_chat(&passthrough.base, CANARY_UPSTREAM, &streaming_body(), None)
            .await
            .0,
        200
    );
    assert_eq!(
        send_chat(&passthrough.base, CANARY_WRONG, &chat_body(false), None)
            .await
            .0,
        401,
        "Groq refuses it"
    );
    for path in ["/metrics", "/admin/usage", "/admin/stats"] {
        let r = client()
            .get(passthrough.url(path))
            .bearer_auth(CANARY_ADMIN)
            .send()
            .await
            .expect("get");
        seen.push_str(&r.text().await.expect("text"));
    }
    let passthrough_logs = passthrough.stop().await;
    assert!(
        passthrough_logs.contains("passthrough-"),
        "callers appear by a hash-derived name"
    );

    let everything = format!("{logs}\n{passthrough_logs}\n{seen}");
    for canary in [CANARY_UPSTREAM, CANARY_CLIENT, CANARY_ADMIN, CANARY_WRONG, "CANARY"] {
        assert!(!everything.contains(canary), "{canary} leaked");
    }
}

#[tokio::test]
async fn a_changed_file_is_reloaded_when_watching_is_on() {
    let sim = sim().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("groxy-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("groxy.toml");
    let config = |keys: &[(&str, &str)]| {
        let mut text =
            format!("[admin]\nwatch_config = true\n[server]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nmode = \"keys\"\n");
        for (name, key) in keys {
            text.push_str(&format!(
                "[[auth.keys]]\nname = \"{name}\"\nsha256 = \"{}\"\n",
                hex(&sha256(key.as_bytes()))
            ));
        }
        text
    };
    std::fs::write(&path, config(&[("alice", ALICE)])).expect("write");
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json");
    let groxy = Running::start(command, port).await;
    assert_eq!(send_chat(&groxy.base, BOB, &chat_body(false), None).await.0, 401);
    std::fs::write(&path, config(&[("alice", ALICE), ("bob", BOB)])).expect("write");
    assert!(
        groxy
            .wait_for_output("config file changed", Duration::from_secs(10))
            .await,
        "{}",
        groxy.output()
    );
    assert!(groxy.wait_for_output("config reloaded", Duration::from_secs(2)).await);
    assert_eq!(send_chat(&groxy.base, BOB, &chat_body(false), None).await.0, 200);
    groxy.stop().await;
}
