//! The usage ledger and money (issue 15, items 3 and 4): per key × model × hour, written in batches, read back by key, model or day as JSON and CSV, priced, and the same after a restart (usage, per-day counts and spend) on SQLite and PostgreSQL.

use serde_json::{Value, json};

use super::{
    accounts::{Backend, accounts_config, admin, chat_with},
    support::{client, gateway, sim},
};

/// Requests-per-day remaining, as the caller's headers say.
async fn remaining_per_day(gw: &super::support::Gateway, key: &str) -> (u16, u64) {
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":50}"#)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let remaining = response
        .headers()
        .get("x-ratelimit-remaining-requests")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    (status, remaining)
}

fn row<'a>(report: &'a Value, field: &str, value: &str) -> &'a Value {
    report["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|r| r[field] == json!(value))
        .unwrap_or_else(|| panic!("no {field} = {value} in {report}"))
}

async fn usage_survives_a_restart(backend: Backend) {
    let sim = sim().await;
    let mut config = accounts_config(&sim, &backend);
    config.rate_limits.keys.insert(
        "alice".into(),
        groxy::config::LimitSet {
            requests_per_day: Some(10),
            ..Default::default()
        },
    );
    let gw = gateway(config.clone()).await;
    let (_, bob) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bob", "limits": {"requests_per_day": 5}})),
    )
    .await;
    let bob_key = bob["key"].as_str().expect("key").to_owned();
    let bob_id = bob["id"].as_str().expect("id").to_owned();
    for expected in [9, 8, 7] {
        assert_eq!(remaining_per_day(&gw, "gxy_alice").await, (200, expected));
    }
    assert_eq!(remaining_per_day(&gw, &bob_key).await, (200, 4));
    assert_eq!(chat_with(&gw, &bob_key, "qwen/qwen3.8-27b").await.0, 200);

    // The ledger, before any flush: what is buffered counts.
    let (status, before) = admin(&gw, "GET", "/admin/usage?group=key", None).await;
    assert_eq!(status, 200, "{before}");
    let alice = row(&before, "key", "alice");
    assert_eq!(alice["requests"], 3);
    assert!(
        alice["prompt_tokens"].as_u64() > Some(0) && alice["completion_tokens"].as_u64() > Some(0),
        "{before}"
    );
    assert!(alice["cost_usd"].as_f64() > Some(0.0), "priced: {before}");
    let bob_row = row(&before, "key", &bob_id);
    assert_eq!(
        (bob_row["name"].clone(), bob_row["requests"].clone()),
        (json!("bob"), json!(2))
    );
    let (_, by_model) = admin(&gw, "GET", "/admin/usage?group=model", None).await;
    assert_eq!(row(&by_model, "model", "qwen/qwen3.8-27b")["requests"], 1);
    assert_eq!(row(&by_model, "model", "openai/gpt-oss-20b")["requests"], 4);
    let csv = client()
        .get(gw.url("/admin/usage?group=day,key&format=csv"))
        .bearer_auth(super::accounts::ADMIN_KEY)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.expect("text");
    assert!(
        csv.starts_with("day,key,name,requests,prompt_tokens,completion_tokens,cached_tokens,refusals,cost_usd\n"),
        "{csv}"
    );
    assert!(csv.lines().any(|l| l.contains(",alice,alice,3,")), "{csv}");
    // The cost reaches /metrics too.
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("groxy_cost_usd_total{model=\"openai/gpt-oss-20b\"}"),
        "{metrics}"
    );

    // A graceful restart: the drain writes what is buffered.
    let mut gw = gw;
    gw.begin_shutdown().await.expect("join").expect("clean exit");
    let gw = gateway(config).await;
    let (_, after) = admin(&gw, "GET", "/admin/usage?group=key", None).await;
    for key in ["alice", bob_id.as_str()] {
        assert_eq!(
            row(&after, "key", key),
            row(&before, "key", key),
            "{key} before and after"
        );
    }
    assert_eq!(before["total"], after["total"]);
    // Per-day counts carry on from where they were.
    assert_eq!(remaining_per_day(&gw, "gxy_alice").await, (200, 6));
    assert_eq!(remaining_per_day(&gw, &bob_key).await, (200, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_per_day_counts_survive_a_restart_sqlite() {
    usage_survives_a_restart(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_per_day_counts_survive_a_restart_postgres() {
    usage_survives_a_restart(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_passthrough_keys_leave_no_rows_in_the_ledger() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.auth.mode = groxy::config::AuthMode::Passthrough;
    let gw = gateway(config).await;
    for i in 0..20 {
        let (status, _) = chat_with(&gw, &format!("gsk_made_up_{i}"), "openai/gpt-oss-20b").await;
        assert_eq!(status, 401, "Groq refuses a made-up key");
    }
    let (status, _) = chat_with(&gw, super::support::UPSTREAM_KEY, "openai/gpt-oss-20b").await;
    assert_eq!(status, 200);
    let (_, report) = admin(&gw, "GET", "/admin/usage?group=key", None).await;
    let rows = report["data"].as_array().expect("data");
    assert_eq!(rows.len(), 1, "only the key Groq accepted: {report}");
    assert_eq!(rows[0]["requests"], 1);
}
