//! Invariant 6: Groq's errors pass through intact; the gateway's own errors are OpenAI-shaped with the right status.

use std::time::Duration;

use groq_sim::{Reply, fixtures};
use groxy::config::HumanDuration;

use crate::support::*;

#[tokio::test]
async fn every_groq_error_fixture_passes_through_intact() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    // Otherwise the 429 fixtures teach groxy that Groq's budget is spent, and it (rightly)
    // stops forwarding; that behaviour has its own tests in `ratelimit`.
    config.rate_limits.upstream_aware = false;
    // Each fixture is Groq's last word here, not a first attempt to retry (see `retries`).
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    let mut checked = 0;
    for name in fixtures::error_names() {
        if name == "503-plain" {
            continue;
        }
        let raw: serde_json::Value = json(
            &std::fs::read(format!(
                "{}/tests/fixtures/groq/error-{name}.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("fixture"),
        );
        for stream in [false, true] {
            sim.push(fixtures::error(name).expect("fixture"));
            let response = post_chat(&gw, chat_body(stream)).await;
            assert_eq!(
                u64::from(response.status().as_u16()),
                raw["status"].as_u64().expect("status"),
                "{name}"
            );
            let headers = response.headers().clone();
            let body = response.bytes().await.expect("body");
            assert_eq!(
                body,
                raw["body"].as_str().expect("body").as_bytes(),
                "{name}: body unchanged"
            );
            for (header, value) in raw["headers"].as_object().expect("headers") {
                // Groq's request id moves aside for groxy's own.
                let header = if header == "x-request-id" {
                    "x-groq-request-id"
                } else {
                    header
                };
                assert_eq!(
                    headers.get(header).map(|v| v.to_str().expect("ascii")),
                    value.as_str(),
                    "{name}: {header}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 24, "all error fixtures were exercised ({checked})");
}

#[tokio::test]
async fn a_plain_text_upstream_error_becomes_a_json_502() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    sim.push(fixtures::error("503-plain").expect("fixture"));
    let response = post_chat(&gw, chat_body(false)).await;
    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "application/json");
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["code"], "upstream_error");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("503")));
}

#[tokio::test]
async fn unreachable_upstream_is_a_502() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.url = format!("http://127.0.0.1:{port}/openai/v1");
    let gw = gateway(config).await;
    for stream in [false, true] {
        let response = post_chat(&gw, chat_body(stream)).await;
        assert_eq!(response.status(), 502);
        assert_eq!(
            assert_openai_error(&response.bytes().await.expect("body"))["code"],
            "upstream_unreachable"
        );
    }
}

#[tokio::test]
async fn a_tls_handshake_stalled_past_the_connect_timeout_is_a_502_not_a_504() {
    // TCP connects, then the server never answers the ClientHello: `upstream.connect_timeout`
    // bounds the whole connect, the handshake included, well before the first-byte deadline.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.url = format!("https://127.0.0.1:{port}/openai/v1");
    config.upstream.connect_timeout = HumanDuration::millis(300);
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    let started = std::time::Instant::now();
    let response = post_chat(&gw, chat_body(false)).await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        assert_openai_error(&response.bytes().await.expect("body"))["code"],
        "upstream_unreachable"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the connect timeout, not the 5 s first-byte deadline: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn no_headers_by_the_first_byte_deadline_is_a_504() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.first_byte_timeout = HumanDuration::millis(300);
    let gw = gateway(config).await;
    for stream in [false, true] {
        sim.push(Reply::Stall);
        let started = std::time::Instant::now();
        let response = post_chat(&gw, chat_body(stream)).await;
        assert_eq!(response.status(), 504);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            assert_openai_error(&response.bytes().await.expect("body"))["code"],
            "upstream_timeout"
        );
    }
    // A stream whose headers come at once but whose first event never does: also 504.
    sim.push(Reply::Stream {
        body: fixtures::stream("content"),
        slicing: groq_sim::Slicing {
            first_delay: Duration::from_secs(30),
            ..Default::default()
        },
        end: groq_sim::StreamEnd::Complete,
    });
    let response = post_chat(&gw, chat_body(true)).await;
    assert_eq!(response.status(), 504);
}

#[tokio::test]
async fn upstream_closing_without_a_response_is_a_502() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    sim.push(Reply::Drop);
    let response = post_chat(&gw, chat_body(false)).await;
    assert_eq!(response.status(), 502);
    assert_openai_error(&response.bytes().await.expect("body"));
}

#[tokio::test]
async fn malformed_json_is_a_local_400() {
    let (sim, gw) = pair().await;
    for body in ["", "{", "not json", "{\"model\": }", "[1,2]", "{\"stream\": \"yes\"}"] {
        let response = post_chat(&gw, body).await;
        assert_eq!(response.status(), 400, "{body:?}");
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert_eq!(error["type"], "invalid_request_error");
    }
    assert_eq!(call_count(&sim), 0, "bad JSON never reaches Groq");
}
