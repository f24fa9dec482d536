//! Who may call: client keys (401 in Groq's words, identical for missing and unknown keys), passthrough of the caller's Groq key, throttled failures.

use groxy::config::AuthMode;

use crate::support::*;

const GROQ_401: &str =
    r#"{"error":{"message":"Invalid API Key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;

fn keys_config(sim: &groq_sim::Simulator, keys: &[(&str, &str)]) -> groxy::Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, keys);
    config
}

async fn chat_with(gw: &Gateway, authorization: Option<&str>) -> reqwest::Response {
    let mut request = client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .body(chat_body(false));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("send")
}

#[tokio::test]
async fn keys_mode_admits_configured_keys_only_with_one_401_for_every_failure() {
    let sim = sim().await;
    let gw = gateway(keys_config(&sim, &[("alice", "gxy_alice_key"), ("bob", "gxy_bob_key")])).await;
    assert_eq!(chat_with(&gw, Some("Bearer gxy_alice_key")).await.status(), 200);
    assert_eq!(chat_with(&gw, Some("bearer gxy_bob_key")).await.status(), 200);
    let mut bodies = Vec::new();
    for auth in [
        None,
        Some("Bearer gxy_wrong"),
        Some("Bearer "),
        Some("Basic Z3h5"),
        Some("Bearer gxy_alice_key2"),
    ] {
        let response = chat_with(&gw, auth).await;
        assert_eq!(response.status(), 401, "{auth:?}");
        let body = response.text().await.expect("body");
        assert!(!body.contains("gxy_"), "the key is never echoed");
        bodies.push(body);
    }
    assert!(bodies.iter().all(|b| b.trim_end() == GROQ_401), "{bodies:?}");
    // Every API route is protected; health checks are not.
    assert_eq!(
        client().get(gw.url("/v1/models")).send().await.expect("send").status(),
        401
    );
    assert_eq!(
        client().get(gw.url("/healthz")).send().await.expect("send").status(),
        200
    );
    assert_eq!(
        client().get(gw.url("/readyz")).send().await.expect("send").status(),
        200
    );
    // Only the two admitted calls reached Groq, with the upstream key.
    let forwarded = calls(&sim);
    assert_eq!(forwarded.len(), 2);
    assert!(
        forwarded
            .iter()
            .all(|r| r.header("authorization") == Some(&*format!("Bearer {UPSTREAM_KEY}")))
    );
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_throttled() {
    let sim = sim().await;
    let mut config = keys_config(&sim, &[("alice", "gxy_alice_key")]);
    config.auth.failures_per_minute = 5;
    let gw = gateway(config).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(chat_with(&gw, Some("Bearer nope")).await.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    let throttled = chat_with(&gw, Some("Bearer nope")).await;
    assert!(throttled.headers().get("retry-after").is_some());
    assert_openai_error(&throttled.bytes().await.expect("body"));
    assert_eq!(
        chat_with(&gw, Some("Bearer gxy_alice_key")).await.status(),
        200,
        "a valid key still works"
    );
}

#[tokio::test]
async fn passthrough_forwards_the_callers_own_groq_key() {
    // The simulator accepts any key here and records which one it got.
    let sim = groq_sim::Simulator::start(groq_sim::SimConfig::default())
        .await
        .expect("sim");
    let mut config = config_for(&sim);
    config.upstream.api_key = None;
    config.auth.mode = AuthMode::Passthrough;
    let gw = gateway(config).await;
    assert_eq!(chat_with(&gw, Some("Bearer gsk_caller_one")).await.status(), 200);
    assert_eq!(
        last_request(&sim).header("authorization"),
        Some("Bearer gsk_caller_one")
    );
    let models = client()
        .get(gw.url("/v1/models"))
        .header("authorization", "Bearer gsk_caller_two")
        .send()
        .await;
    assert_eq!(models.expect("send").status(), 200);
    assert_eq!(
        last_request(&sim).header("authorization"),
        Some("Bearer gsk_caller_two")
    );
    assert_eq!(chat_with(&gw, None).await.status(), 401);
}
