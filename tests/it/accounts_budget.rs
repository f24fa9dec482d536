//! Budgets in dollars (issue 15, item 5): a spent budget is a 429 `insufficient_quota` with `x-should-retry: false`; the gateway's own budget; spend that survives a restart; and two replicas sharing one budget through Redis and PostgreSQL never pass it by more than one request's worst case under a concurrent burst.

use std::time::Duration;

use groxy::config::{HumanDuration, RedisUrl};
use serde_json::{Value, json};

use super::{
    accounts::{ADMIN_KEY, Backend, accounts_config, admin},
    redis_server::RedisServer,
    support::{Gateway, client, gateway, json, sim},
};

/// A chat request capped at 50 completion tokens; the status, headers and body.
async fn spend(gw: &Gateway, key: &str) -> (u16, http::HeaderMap, Value) {
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":50}"#)
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, json(&response.bytes().await.expect("body")))
}

/// Nanodollars the ledger says `key` spent (what this replica has not written included).
async fn spent(gw: &Gateway, key: &str) -> f64 {
    let (_, report) = admin(gw, "GET", "/admin/usage?group=key", None).await;
    report["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|r| r["key"] == json!(key))
        .map(|r| r["cost_usd"].as_f64().unwrap_or(0.0))
        .sum()
}

/// The worst case groxy reserves for [`spend`]'s request: every body byte a prompt token at
/// $0.075/M and 50 completion tokens at $0.30/M.
fn worst_case_usd() -> f64 {
    let body =
        r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"max_completion_tokens":50}"#;
    (body.len() as f64 * 0.075 + 50.0 * 0.30) / 1e6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_is_insufficient_quota_and_survives_a_restart() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.budgets.monthly_usd = Some(1.0);
    let gw = gateway(config.clone()).await;
    let budget = worst_case_usd() * 3.5;
    let (_, bob) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bob", "daily_budget_usd": budget})),
    )
    .await;
    let key = bob["key"].as_str().expect("key").to_owned();
    let id = bob["id"].as_str().expect("id").to_owned();
    let mut admitted = 0;
    let refusal = loop {
        let (status, headers, body) = spend(&gw, &key).await;
        if status == 429 {
            break (headers, body);
        }
        assert_eq!(status, 200, "{body}");
        admitted += 1;
        assert!(admitted < 1000, "the budget never ran out");
    };
    let (headers, body) = refusal;
    assert_eq!(body["error"]["type"], "insufficient_quota", "{body}");
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("daily budget of key `bob`")),
        "{body}"
    );
    assert_eq!(headers["x-should-retry"], "false");
    assert!(headers.contains_key("retry-after"));
    let spent_before = spent(&gw, &id).await;
    assert!(spent_before <= budget + 1e-12, "spent {spent_before} of {budget}");
    println!("budget ${budget:.8}: {admitted} requests admitted, ${spent_before:.8} spent");
    // Another key is not refused; the admin API shows the spend.
    let (status, _, _) = spend(&gw, "gxy_alice").await;
    assert_eq!(status, 200);
    let (_, shown) = admin(&gw, "GET", &format!("/admin/keys/{id}"), None).await;
    assert!(
        (shown["spend"]["today_usd"].as_f64().expect("spend") - spent_before).abs() < 1e-12,
        "{shown}"
    );

    // After a restart the budget is still spent.
    let mut gw = gw;
    gw.begin_shutdown().await.expect("join").expect("clean exit");
    let gw = gateway(config).await;
    assert!((spent(&gw, &id).await - spent_before).abs() < 1e-12);
    let (status, _, body) = spend(&gw, &key).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("insufficient_quota"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_budget_refuses_every_key() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.budgets.daily_usd = Some(worst_case_usd() * 2.5);
    let gw = gateway(config).await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(spend(&gw, "gxy_alice").await.0);
    }
    let (status, headers, body) = spend(&gw, "gxy_alice").await;
    assert_eq!(status, 429, "{statuses:?}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("the gateway")),
        "{body}"
    );
    assert_eq!(headers["x-should-retry"], "false");
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(
        metrics.contains("groxy_rate_limited_total{limit=\"budget\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_through_redis_and_postgres() {
    let sim = sim().await;
    let redis = RedisServer::start();
    let backend = Backend::postgres().await;
    let replica = |sim: &groq_sim::Simulator| {
        let mut config = accounts_config(sim, &backend);
        config.redis.url = Some(RedisUrl::new(redis.url()));
        config.redis.replicas = 2;
        config.redis.timeout = HumanDuration::secs(2);
        config
    };
    let a = gateway(replica(&sim)).await;
    let b = gateway(replica(&sim)).await;
    let worst = worst_case_usd();
    let budget = worst * 20.0;
    let (_, bob) = admin(
        &a,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bob", "daily_budget_usd": budget})),
    )
    .await;
    let key = bob["key"].as_str().expect("key").to_owned();
    let id = bob["id"].as_str().expect("id").to_owned();
    // B learns the key within a second.
    let started = std::time::Instant::now();
    while spend(&b, &key).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bursts of 40 at once, alternating replicas, until every request is refused.
    let (mut ok, mut refused) = (1, 0);
    for _ in 0..20 {
        let burst = (0..40).map(|i| {
            let gw = if i % 2 == 0 { &a } else { &b };
            let key = key.clone();
            async move { spend(gw, &key).await.0 }
        });
        let statuses = futures_util::future::join_all(burst).await;
        ok += statuses.iter().filter(|s| **s == 200).count();
        refused += statuses.iter().filter(|s| **s == 429).count();
        assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
        if statuses.iter().all(|s| *s == 429) {
            break;
        }
    }
    // Every answer is settled (in the background) and every row written: stop both.
    let (mut a, mut b) = (a, b);
    a.begin_shutdown().await.expect("join").expect("exit");
    b.begin_shutdown().await.expect("join").expect("exit");
    let c = gateway(replica(&sim)).await;
    let total = spent(&c, &id).await;
    println!(
        "two replicas, budget ${budget:.8} (worst case ${worst:.8} a request): {ok} admitted, {refused} refused, ${total:.8} spent, {:+.8} over",
        total - budget
    );
    assert!(refused > 0, "the budget ran out");
    assert!(
        total <= budget + worst,
        "spent {total} of {budget} (worst case {worst})"
    );
    let _ = ADMIN_KEY;
}

const BIG: &str = "openai/gpt-oss-120b";
const SMALL: &str = "openai/gpt-oss-20b";

/// A gateway (stored keys on SQLite) whose `BIG` falls back to `SMALL`, letting the test pick
/// the simulator's faults; the simulator and the database live as long as the tuple.
async fn falling_back() -> (groq_sim::Simulator, Backend, Gateway) {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    config.upstream.retries.backoff = HumanDuration(Duration::from_millis(20));
    config.models.fallbacks.insert(BIG.into(), vec![SMALL.into()]);
    let gw = gateway(config).await;
    (sim, backend, gw)
}

/// A chat request for `BIG` capped at 50 completion tokens, with the simulator's `fault`.
async fn big_failing_once(gw: &Gateway, key: &str, fault: &str) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("x-sim-reply", fault)
        .body(format!(
            r#"{{"model":"{BIG}","messages":[{{"role":"user","content":"Say hi"}}],"max_completion_tokens":50}}"#
        ))
        .send()
        .await
        .expect("send")
}

/// A fallback's answer is charged to the budget at the price of the model that gave it, as
/// the ledger charges it: the requested model's price would charge twice as much here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_is_charged_at_the_price_of_the_model_that_answered() {
    let (_sim, _backend, gw) = falling_back().await;
    let (_, bob) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bob", "daily_budget_usd": 1.0})),
    )
    .await;
    let key = bob["key"].as_str().expect("key").to_owned();
    let id = bob["id"].as_str().expect("id").to_owned();
    let response = big_failing_once(&gw, &key, "fail:503:1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-groxy-model"], SMALL);
    let answer = json(&response.bytes().await.expect("body"));
    let usage = &answer["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_f64().expect("prompt"),
        usage["completion_tokens"].as_f64().expect("completion"),
    );
    let at_small = (prompt * 0.075 + completion * 0.30) / 1e6;
    let at_big = (prompt * 0.15 + completion * 0.60) / 1e6;
    // The budget is settled in the background once the answer has ended.
    let budget_spend = super::support::poll_until(Duration::from_secs(5), || async {
        let (_, shown) = admin(&gw, "GET", &format!("/admin/keys/{id}"), None).await;
        let today = shown["spend"]["today_usd"].as_f64().unwrap_or(-1.0);
        ((today - at_small).abs() < 1e-9 || (today - at_big).abs() < 1e-9).then_some(today)
    })
    .await
    .expect("the spend is settled");
    assert!(
        (budget_spend - at_small).abs() < 1e-9,
        "charged ${budget_spend:.9}: {SMALL} costs ${at_small:.9}, {BIG} ${at_big:.9}"
    );
    assert!((spent(&gw, &id).await - at_small).abs() < 1e-9, "the ledger agrees");
}

/// A key limited to some models is never answered by a fallback outside its list: the
/// model it asked for keeps being retried instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_outside_the_keys_allowed_models_is_skipped() {
    let (_sim, _backend, gw) = falling_back().await;
    let mut answered_by = Vec::new();
    // The simulator counts `fail:` per exact header value: one value per key.
    for (name, models, fault) in [
        ("only-big", json!([BIG]), "fail:503:1"),
        ("both", json!([BIG, SMALL]), "fail:503:1,slice:whole"),
    ] {
        let (_, created) = admin(
            &gw,
            "POST",
            "/admin/keys",
            Some(json!({"name": name, "allowed_models": models})),
        )
        .await;
        let response = big_failing_once(&gw, created["key"].as_str().expect("key"), fault).await;
        assert_eq!(response.status(), 200);
        answered_by.push(
            response
                .headers()
                .get("x-groxy-model")
                .map(|v| v.to_str().expect("ascii").to_owned()),
        );
    }
    assert_eq!(
        answered_by,
        [None, Some(SMALL.to_owned())],
        "only the key allowed it falls back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_resets_no_per_day_count_and_no_budget() {
    let sim = sim().await;
    let mut redis = RedisServer::start();
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.redis.url = Some(RedisUrl::new(redis.url()));
    config.redis.timeout = HumanDuration::secs(2);
    config.redis.probe_interval = HumanDuration::millis(100);
    config.database.flush_interval = HumanDuration::millis(100);
    config.rate_limits.keys.insert(
        "alice".into(),
        groxy::config::LimitSet {
            requests_per_day: Some(10),
            ..Default::default()
        },
    );
    let gw = gateway(config).await;
    let budget = worst_case_usd() * 2.5;
    let (_, bob) = admin(
        &gw,
        "POST",
        "/admin/keys",
        Some(json!({"name": "bob", "daily_budget_usd": budget})),
    )
    .await;
    let bob = bob["key"].as_str().expect("key").to_owned();
    let remaining = |headers: &http::HeaderMap| {
        headers["x-ratelimit-remaining-requests"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    for expected in ["9", "8", "7"] {
        let (status, headers, _) = spend(&gw, "gxy_alice").await;
        assert_eq!((status, remaining(&headers).as_str()), (200, expected));
    }
    while spend(&gw, &bob).await.0 == 200 {}
    // Wait until both keys' rows are in the database, and one more flush for the reload.
    let db = backend_file(&backend);
    let started = std::time::Instant::now();
    loop {
        let written: i64 = {
            let mut connection = <sqlx::SqliteConnection as sqlx::Connection>::connect(&db)
                .await
                .expect("sqlite");
            sqlx::query_scalar("SELECT CAST(COALESCE(SUM(requests), 0) AS BIGINT) FROM groxy_usage")
                .fetch_one(&mut connection)
                .await
                .expect("sum")
        };
        if written >= 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the ledger was not written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    redis.restart();
    assert!(redis.keys("*").is_empty(), "Redis came back empty");
    let started = std::time::Instant::now();
    let (status, headers, _) = loop {
        let answer = spend(&gw, "gxy_alice").await;
        if !redis.keys("*rl:*").is_empty() || started.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200);
    assert!(
        remaining(&headers).parse::<u64>().expect("number") <= 6,
        "per-day count kept: {headers:?}"
    );
    let (status, _, body) = spend(&gw, &bob).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (429, json!("insufficient_quota")),
        "budget kept"
    );
}

fn backend_file(backend: &Backend) -> String {
    match backend {
        Backend::Sqlite(dir) => format!("sqlite://{}", dir.0.join("groxy.db").display()),
        Backend::Postgres(db) => db.url.clone(),
    }
}
