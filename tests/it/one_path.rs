//! One request path with no way around it: path spellings, methods, every route under the caller's limits, the passthrough cache, housekeeping of client-fed tables, and reload of a secret-only change.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use groq_sim::SimConfig;
use groxy::config::{AuthMode, CacheMode, HumanDuration, LimitSet, RedisUrl};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpSocket,
};

use crate::support::*;

/// Sends exactly these bytes (no client-side path normalisation) from `from`, returns the
/// status and the body.
async fn raw(addr: SocketAddr, from: IpAddr, request: String) -> (u16, Vec<u8>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = socket.connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").as_bytes().to_vec();
    (status, body)
}

fn request(method: &str, path: &str, key: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: groxy\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn path_spellings_that_could_mean_another_path_never_reach_groq() {
    let (sim, gw) = pair().await;
    let invalid = r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"hi"}],"temperature":7}"#;
    for path in [
        "/v1/chat\\completions",
        "/v1/..\\..\\admin",
        "/v1/../admin",
        "/v1/../../admin",
        "/openai/v1/./chat/completions",
        "/v1/chat%2Fcompletions",
        "/v1/chat%2fcompletions",
        "/v1/chat%5Ccompletions",
        "/v1/%2e%2e/%2e%2e/admin",
        "/v1/chat/%2E/completions",
        "/v1/chat/completions%00",
    ] {
        for method in ["POST", "GET"] {
            let (status, body) = raw(gw.addr, LOCALHOST, request(method, path, "k", invalid)).await;
            assert_eq!(status, 400, "{method} {path}");
            let error = assert_openai_error(&body);
            assert_eq!(error["code"], "invalid_path", "{method} {path}");
        }
    }
    for path in [
        "/v1//chat/completions",
        "/v1/chat/completions/",
        "/v1/chat//completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/admin",
        "/openai/v1/models/",
    ] {
        let (status, body) = raw(gw.addr, LOCALHOST, request("POST", path, "k", invalid)).await;
        assert!(status == 404 || status == 405, "{path}: {status}");
        assert_openai_error(&body);
    }
    // The proper spelling is validated: temperature 7 is refused locally too.
    let (status, _) = raw(
        gw.addr,
        LOCALHOST,
        request("POST", "/v1/chat/completions", "k", invalid),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(call_count(&sim), 0, "nothing reached Groq: {:?}", calls(&sim));
}

#[tokio::test]
async fn methods_groq_does_not_define_are_405_and_never_forwarded() {
    let (sim, gw) = pair().await;
    for (method, path) in [
        ("TRACE", "/v1/chat/completions"),
        ("PROPFIND", "/v1/chat/completions"),
        ("GET", "/v1/chat/completions"),
        ("PUT", "/v1/chat/completions"),
        ("DELETE", "/openai/v1/models/openai/gpt-oss-20b"),
        ("PATCH", "/v1/files/file_01abc"),
        ("PROPFIND", "/v1/models"),
        ("TRACE", "/v1/responses"),
    ] {
        let (status, body) = raw(gw.addr, LOCALHOST, request(method, path, "k", "")).await;
        assert_eq!(status, 405, "{method} {path}");
        let error = assert_openai_error(&body);
        assert_eq!(error["code"], "method_not_allowed");
    }
    // A body where Groq defines none is refused, not forwarded.
    let (status, body) = raw(gw.addr, LOCALHOST, request("GET", "/v1/models", "k", "{\"x\":1}")).await;
    assert_eq!(status, 400);
    assert_eq!(assert_openai_error(&body)["code"], "body_not_allowed");
    // An upload route takes multipart only.
    let (status, _) = raw(
        gw.addr,
        LOCALHOST,
        request("POST", "/v1/audio/transcriptions", "k", "{}"),
    )
    .await;
    assert_eq!(status, 415);
    assert_eq!(call_count(&sim), 0, "{:?}", calls(&sim));
}

/// Every API route, with a body Groq accepts on it.
fn every_route() -> Vec<(reqwest::Method, &'static str, Option<&'static str>)> {
    use reqwest::Method;
    vec![
        (
            Method::POST,
            "/v1/responses",
            Some(r#"{"model":"openai/gpt-oss-20b","input":"hi","max_output_tokens":10}"#),
        ),
        (Method::GET, "/v1/models", None),
        (Method::GET, "/openai/v1/models/openai/gpt-oss-20b", None),
        (
            Method::POST,
            "/v1/audio/speech",
            Some(r#"{"model":"canopylabs/orpheus-v1-english","input":"hi","voice":"troy"}"#),
        ),
        (Method::GET, "/v1/files", None),
        (Method::GET, "/v1/batches", None),
        (Method::POST, "/v1/batches/batch_01abc/cancel", None),
    ]
}

async fn send(
    gw: &Gateway,
    who: &str,
    route: &(reqwest::Method, &'static str, Option<&'static str>),
) -> reqwest::Response {
    let mut request = client()
        .request(route.0.clone(), gw.url(route.1))
        .header("authorization", format!("Bearer gxy_{who}"));
    if let Some(body) = route.2 {
        request = request.header("content-type", "application/json").body(body);
    }
    request.send().await.expect("send")
}

#[tokio::test]
async fn every_route_is_under_the_callers_requests_per_minute() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice"), ("bob", "gxy_bob")]);
    config.rate_limits.default = LimitSet {
        requests_per_minute: Some(2),
        ..LimitSet::default()
    };
    let gw = gateway(config).await;
    for _ in 0..2 {
        assert_eq!(chat_as(&gw, "alice", chat_body(false)).await.status(), 200);
    }
    let before = call_count(&sim);
    for route in every_route() {
        let response = send(&gw, "alice", &route).await;
        assert_eq!(response.status(), 429, "{} {}", route.0, route.1);
        assert_eq!(
            header(&response, "x-ratelimit-limit-requests"),
            "2",
            "the caller's limit, not Groq's"
        );
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), "0");
        assert_eq!(
            assert_openai_error(&response.bytes().await.expect("body"))["code"],
            "rate_limit_exceeded"
        );
    }
    assert_eq!(call_count(&sim), before, "a spent key reaches Groq on no route");
    // Another key still gets through on each route, with its own rate-limit headers.
    let mut bob_calls = 0;
    for route in every_route() {
        let response = send(&gw, "bob", &route).await;
        assert_ne!(response.status(), 429, "{} {}", route.0, route.1);
        assert!(!header(&response, "x-ratelimit-remaining-requests").is_empty());
        bob_calls += 1;
        if bob_calls == 2 {
            break;
        }
    }
}

#[tokio::test]
async fn every_route_holds_a_concurrency_slot_until_its_answer_ends() {
    let sim = sim_with(SimConfig {
        ttft: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.rate_limits.default = LimitSet {
        max_concurrent: Some(1),
        ..LimitSet::default()
    };
    let gw = gateway(config).await;
    let slow = {
        let url = gw.url(CHAT);
        tokio::spawn(async move {
            let response = client()
                .post(url)
                .header("authorization", "Bearer gxy_alice")
                .body(chat_body(true))
                .send()
                .await
                .expect("send");
            response.bytes().await.expect("stream").len()
        })
    };
    assert!(wait_for_calls(&sim, 1, Duration::from_secs(5)).await);
    for route in every_route() {
        let response = send(&gw, "alice", &route).await;
        assert_eq!(response.status(), 429, "{} {}", route.0, route.1);
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("concurrent")),
            "{error}"
        );
    }
    assert!(slow.await.expect("stream") > 0);
    assert_eq!(call_count(&sim), 1);
    // The slot is free again: the next request on any route goes through.
    assert_eq!(send(&gw, "alice", &every_route()[1]).await.status(), 200);
}

#[tokio::test]
async fn a_shared_cache_answers_only_callers_whose_key_groq_accepted() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.api_key = None;
    config.auth.mode = AuthMode::Passthrough;
    config.cache.mode = CacheMode::All;
    config.cache.shared = true;
    let gw = gateway(config).await;
    let ask = |key: &'static str| {
        let url = gw.url(CHAT);
        async move {
            client()
                .post(url)
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(chat_body(false))
                .send()
                .await
                .expect("send")
        }
    };
    // Until Groq has accepted a key, its requests go upstream; then the cache serves it.
    let first = ask(UPSTREAM_KEY).await;
    assert_eq!(
        (first.status().as_u16(), header(&first, "x-groxy-cache")),
        (200, "BYPASS".to_owned())
    );
    let stored = ask(UPSTREAM_KEY).await;
    assert_eq!(
        (stored.status().as_u16(), header(&stored, "x-groxy-cache")),
        (200, "MISS".to_owned())
    );
    let again = ask(UPSTREAM_KEY).await;
    assert_eq!(
        (again.status().as_u16(), header(&again, "x-groxy-cache")),
        (200, "HIT".to_owned())
    );
    let before = call_count(&sim);
    // A key Groq refuses gets Groq's verdict, never the other caller's stored answer.
    for _ in 0..3 {
        let stranger = ask("gsk_not_a_real_key").await;
        assert_eq!(stranger.status(), 401);
        assert_ne!(header(&stranger, "x-groxy-cache"), "HIT");
    }
    assert_eq!(call_count(&sim), before + 3, "each went to Groq");
    // And a stream is not joined either: same answer, from Groq.
    let stream = client()
        .post(gw.url(CHAT))
        .header("authorization", "Bearer gsk_other_stranger")
        .body(chat_body(true))
        .send()
        .await
        .expect("send");
    assert_eq!(stream.status(), 401);
}

/// Scrapes one unlabelled gauge from `/metrics`.
async fn gauge(gw: &Gateway, name: &str) -> f64 {
    let text = metrics_text(&format!("http://{}", gw.addr)).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in the scrape"))
}

async fn wait_for_gauge(gw: &Gateway, name: &str, at_most: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let value = gauge(gw, name).await;
        if value <= at_most || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `n` requests, `parallel` at a time, each from its own loopback address.
async fn from_many_addresses(gw: &Gateway, n: u32, parallel: usize, request: impl Fn(u32) -> String) {
    let mut pending = Vec::new();
    for i in 0..n {
        let from = IpAddr::V4(Ipv4Addr::new(127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8 | 1));
        pending.push(tokio::spawn(raw(gw.addr, from, request(i))));
        if pending.len() >= parallel {
            for task in pending.drain(..) {
                let (status, _) = task.await.expect("request");
                assert!(status == 401 || status == 429, "{status}");
            }
        }
    }
    for task in pending {
        task.await.expect("request");
    }
}

#[tokio::test]
async fn ten_thousand_failing_addresses_and_keys_leave_the_tables_small_after_a_sweep() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    // Every failure is forgotten 1 ms later, so a sweep can drop them all.
    config.auth.failures_per_minute = 60_000;
    config.server.housekeeping_interval = HumanDuration::millis(500);
    let gw = gateway(config).await;
    from_many_addresses(&gw, 10_000, 64, |i| {
        request("GET", "/v1/models", &format!("gxy_wrong_{i}"), "")
    })
    .await;
    let swept = wait_for_gauge(&gw, "groxy_auth_failure_addresses", 0.0, Duration::from_secs(10)).await;
    assert_eq!(swept, 0.0, "the per-address table is swept");

    // Passthrough: every distinct caller key gets a limit scope; Groq refuses them all.
    let mut config = config_for(&sim);
    config.upstream.api_key = None;
    config.auth.mode = AuthMode::Passthrough;
    config.rate_limits.default = LimitSet {
        requests_per_minute: Some(60_000),
        ..LimitSet::default()
    };
    config.server.housekeeping_interval = HumanDuration::millis(500);
    let gw = gateway(config).await;
    from_many_addresses(&gw, 10_000, 64, |i| {
        request("GET", "/v1/models", &format!("gsk_wrong_{i}"), "")
    })
    .await;
    let scopes = wait_for_gauge(&gw, "groxy_limit_scopes", 0.0, Duration::from_secs(10)).await;
    assert_eq!(scopes, 0.0, "idle limit scopes are swept");
    assert_eq!(
        gauge(&gw, "groxy_verified_caller_keys").await,
        0.0,
        "no refused key is trusted"
    );
}

#[tokio::test]
async fn a_secret_only_change_is_reported_as_needing_a_restart() {
    let sim = sim().await;
    let dir = std::env::temp_dir().join(format!("groxy-secret-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("groxy.toml");
    let write = |password: &str| {
        let text = format!(
            "[upstream]\nurl = \"{}\"\napi_key = \"{UPSTREAM_KEY}\"\n[admin]\nkey_sha256 = \"{}\"\n[redis]\nurl = \"redis://:{password}@127.0.0.1:1/0\"\n",
            sim.base_url(),
            groxy::hex(&groxy::sha256(b"admin"))
        );
        std::fs::write(&file, text).expect("write");
    };
    write("first-password");
    let source = groxy::ConfigSource {
        path: Some(file.clone()),
        ..groxy::ConfigSource::default()
    };
    let config = source.load().expect("config");
    assert_eq!(
        config.redis.url,
        Some(RedisUrl::new("redis://:first-password@127.0.0.1:1/0"))
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(groxy::run_with(listener, config, Some(source), std::future::pending()));
    write("second-password");
    let response = client()
        .post(format!("http://{addr}/admin/reload"))
        .header("authorization", "Bearer admin")
        .send()
        .await
        .expect("reload");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    let report = json(text.as_bytes());
    assert_eq!(report["restart_required"], serde_json::json!(["redis"]), "{report}");
    assert!(!text.contains("password"), "{text}");
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
