//! Issue 16, item 2: models Groq retired, through the real gateway: `remap` sends the live replacement (upstream sees it, the answer is Groq's bytes, limits and the ledger count the model sent, one warning an hour), `reject` answers Groq's 400 with zero upstream calls, chains resolve transitively, and `/v1/models` is unchanged.

use std::time::Duration;

use groq_sim::{SimConfig, Simulator, fixtures};
use groxy::config::{CacheMode, LimitSet, RetiredPolicy};
use serde_json::json;

use crate::accounts::{Backend, accounts_config, admin};
use crate::process::{Running, free_port, groxy_command};
use crate::support::*;

const OLD: &str = "llama3-8b-8192";
const LIVE: &str = "openai/gpt-oss-20b";
const MAPPED: &str = "model=llama3-8b-8192->openai/gpt-oss-20b";

fn body_for(model: &str, extra: &str) -> String {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"Explain the importance of fast language models"}}]{extra}}}"#
    )
}

async fn post(gw: &Gateway, path: &str, body: &str) -> reqwest::Response {
    client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("send")
}

/// Groq's own answer to `model` (the simulator answers retired models as Groq does).
async fn groqs_answer(sim: &Simulator, model: &str) -> (u16, Vec<u8>) {
    let response = client()
        .post(format!("{}/chat/completions", sim.base_url()))
        .bearer_auth(UPSTREAM_KEY)
        .header("content-type", "application/json")
        .body(body_for(model, ""))
        .send()
        .await
        .expect("send to the simulator");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

fn with_policy(sim: &Simulator, policy: RetiredPolicy) -> groxy::Config {
    let mut config = config_for(sim);
    config.models.retired = policy;
    config
}

#[tokio::test]
async fn remap_sends_the_live_replacement_and_relays_groqs_bytes() {
    let sim = sim().await;
    let gw = gateway(config_for(&sim)).await;
    let sent = body_for(OLD, r#","temperature":0.5"#);
    let response = post(&gw, CHAT, &sent).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-mapped"), MAPPED);
    assert_eq!(header(&response, "x-groxy-attempts"), "1");
    assert_eq!(
        response.bytes().await.expect("body"),
        fixtures::chat_completion(),
        "Groq's answer, byte for byte"
    );
    // Only the model string changed on the way up.
    assert_eq!(
        String::from_utf8_lossy(&last_request(&sim).body),
        sent.replace(OLD, LIVE)
    );

    // A stream: the same, and the frames are Groq's.
    let response = post(&gw, CHAT, &body_for(OLD, r#","stream":true"#)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-groxy-mapped"), MAPPED);
    let streamed = response.bytes().await.expect("stream");
    assert_eq!(streamed, calls(&sim)[1].sent_bytes(), "relayed as sent");
    assert_eq!(streamed, fixtures::stream("content"));
    assert_eq!(last_request(&sim).json().expect("json")["model"], LIVE);

    // The Responses API names its model the same way.
    let response = post(&gw, "/v1/responses", &format!(r#"{{"model":"{OLD}","input":"hi"}}"#)).await;
    assert_eq!(header(&response, "x-groxy-mapped"), MAPPED);
    assert_eq!(last_request(&sim).json().expect("json")["model"], LIVE);

    // An alias and a live model keep what they had.
    let aliased = post(&gw, CHAT, &body_for("gpt-4o-mini", "")).await;
    assert_eq!(header(&aliased, "x-groxy-mapped"), "model");
    let live = post(&gw, CHAT, &body_for(LIVE, "")).await;
    assert_eq!(header(&live, "x-groxy-mapped"), "");
    assert_eq!(call_count(&sim), 5);
}

#[tokio::test]
async fn chains_resolve_transitively_and_config_rows_join_the_table() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config
        .models
        .retired_ids
        .insert("mistral-saba-24b".into(), "qwen/qwen3.8-27b".into());
    let gw = gateway(config).await;
    for (old, live) in [
        // gemma-7b-it -> gemma2-9b-it -> llama-3.1-8b-instant -> openai/gpt-oss-20b
        ("gemma-7b-it", LIVE),
        // qwen-qwq-32b -> qwen/qwen3-32b -> openai/gpt-oss-120b
        ("qwen-qwq-32b", "openai/gpt-oss-120b"),
        ("llama-3.1-70b-versatile", "openai/gpt-oss-120b"),
        ("qwen/qwen3.6-27b", "qwen/qwen3.8-27b"),
        // No replacement in Groq's table; one in the config's.
        ("mistral-saba-24b", "qwen/qwen3.8-27b"),
    ] {
        let response = post(&gw, CHAT, &body_for(old, "")).await;
        assert_eq!(response.status(), 200, "{old}");
        assert_eq!(header(&response, "x-groxy-mapped"), format!("model={old}->{live}"));
        assert_eq!(last_request(&sim).json().expect("json")["model"], live, "{old}");
    }
}

#[tokio::test]
async fn reject_answers_groqs_400_naming_the_replacement_with_no_upstream_call() {
    let sim = sim().await;
    let gw = gateway(with_policy(&sim, RetiredPolicy::Reject)).await;
    let response = post(&gw, CHAT, &body_for(OLD, "")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert_eq!(header(&response, "x-groxy-mapped"), "");
    let body = response.bytes().await.expect("body");
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"error\":{\"message\":\"The model `llama3-8b-8192` has been decommissioned and is no longer supported. Please refer to https://console.groq.com/docs/deprecations for a recommendation on which model to use instead. Its replacement is `openai/gpt-oss-20b`.\",\"type\":\"invalid_request_error\",\"code\":\"model_decommissioned\"}}\n"
    );
    // Streaming or not, on every JSON endpoint.
    let streamed = post(&gw, CHAT, &body_for(OLD, r#","stream":true"#)).await;
    assert_eq!(streamed.status(), 400);
    let responses = post(&gw, "/v1/responses", &format!(r#"{{"model":"{OLD}","input":"hi"}}"#)).await;
    assert_eq!(responses.status(), 400);
    assert_eq!(call_count(&sim), 0, "nothing reached Groq");

    // Groq's words exactly, then the replacement.
    let (status, groq) = groqs_answer(&sim, OLD).await;
    assert_eq!(status, 400);
    let groq = json(&groq);
    let ours = json(&body);
    assert_eq!(ours["error"]["type"], groq["error"]["type"]);
    assert_eq!(ours["error"]["code"], groq["error"]["code"]);
    assert_eq!(
        ours["error"]["message"],
        format!(
            "{} Its replacement is `{LIVE}`.",
            groq["error"]["message"].as_str().expect("message")
        )
    );
}

#[tokio::test]
async fn models_without_a_replacement_are_groqs_400_in_both_modes() {
    let sim = sim().await;
    for policy in [RetiredPolicy::Remap, RetiredPolicy::Reject] {
        let gw = gateway(with_policy(&sim, policy)).await;
        for model in ["groq/compound", "groq/compound-mini", "mistral-saba-24b"] {
            let response = post(&gw, CHAT, &body_for(model, "")).await;
            assert_eq!(response.status(), 400, "{model} {policy:?}");
            let ours = response.bytes().await.expect("body");
            let (_, groq) = groqs_answer(&sim, model).await;
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&groq),
                "Groq's body, byte for byte"
            );
        }
    }
    // Only the direct questions to the simulator above: none came from groxy.
    assert_eq!(call_count(&sim), 6);
}

#[tokio::test]
async fn a_replacement_this_key_cannot_use_is_named_instead_of_sent() {
    // The simulator's catalogue has no Orpheus model: playai-tts's replacement is not live here.
    let sim = sim().await;
    let gw = gateway(config_for(&sim)).await;
    let speech = r#"{"model":"playai-tts","input":"hi","voice":"Fritz-PlayAI"}"#;
    let response = post(&gw, "/v1/audio/speech", speech).await;
    assert_eq!(response.status(), 400);
    let error = json(&response.bytes().await.expect("body"));
    assert_eq!(error["error"]["code"], "model_decommissioned");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("Its replacement is `canopylabs/orpheus-v1-english`.")),
        "{error}"
    );
    assert_eq!(call_count(&sim), 0);
}

#[tokio::test]
async fn the_model_list_is_unchanged() {
    let sim = sim().await;
    for policy in [RetiredPolicy::Remap, RetiredPolicy::Reject] {
        let gw = gateway(with_policy(&sim, policy)).await;
        let response = client().get(gw.url("/v1/models")).send().await.expect("models");
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.expect("body"), fixtures::models());
    }
}

#[tokio::test]
async fn limits_the_ledger_and_the_cache_count_the_model_sent() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.cache.mode = CacheMode::All;
    config.rate_limits.models.insert(
        LIVE.into(),
        LimitSet {
            requests_per_day: Some(3),
            ..LimitSet::default()
        },
    );
    let gw = gateway(config).await;
    let chat = |model: &'static str| {
        let gw = &gw;
        async move {
            client()
                .post(gw.url(CHAT))
                .bearer_auth("gxy_alice")
                .header("content-type", "application/json")
                .body(body_for(model, r#","max_completion_tokens":50"#))
                .send()
                .await
                .expect("send")
        }
    };
    // The old name and the live one share the live model's per-day limit.
    let first = chat(OLD).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-groxy-cache"), "MISS");
    // The same request by its new name is the same cache entry.
    let hit = chat(LIVE).await;
    assert_eq!(header(&hit, "x-groxy-cache"), "HIT");
    let hit = chat(OLD).await;
    assert_eq!(header(&hit, "x-groxy-cache"), "HIT");
    assert_eq!(call_count(&sim), 1);
    let refused = chat(OLD).await;
    assert_eq!(refused.status(), 429, "the live model's 3 per day are spent");
    let refusal = json(&refused.bytes().await.expect("body"));
    assert!(
        refusal["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(LIVE) && !m.contains(OLD)),
        "{refusal}"
    );
    let (status, by_model) = admin(&gw, "GET", "/admin/usage?group=model", None).await;
    assert_eq!(status, 200, "{by_model}");
    let rows = by_model["data"].as_array().expect("rows");
    assert!(rows.iter().all(|r| r["model"] != json!(OLD)), "{by_model}");
    let live = rows
        .iter()
        .find(|r| r["model"] == json!(LIVE))
        .expect("a row for the live model");
    assert!(live["requests"].as_u64() >= Some(1), "{by_model}");
}

/// A warning once an hour per model, however many requests; a reload switches to `reject`.
#[tokio::test]
async fn one_warning_for_many_requests_and_a_reload_switches_to_reject() {
    let sim = Simulator::start(SimConfig::default()).await.expect("sim");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("groxy-retired-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("groxy.toml");
    std::fs::write(&path, "[models]\nretired = \"remap\"\n").expect("write");
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let groxy = Running::start(command, port).await;
    let send = |model: &'static str| {
        let url = groxy.url(CHAT);
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body_for(model, ""))
                .send()
                .await
                .expect("send")
        }
    };
    for _ in 0..20 {
        assert_eq!(send(OLD).await.status(), 200);
    }
    assert_eq!(send("gemma2-9b-it").await.status(), 200);
    assert!(
        groxy
            .wait_for_output("\"model\":\"gemma2-9b-it\"", Duration::from_secs(5))
            .await
    );
    let warned = |output: &str, model: &str| {
        output
            .lines()
            .filter(|l| l.contains("a model Groq retired") && l.contains(&format!("\"model\":\"{model}\"")))
            .count()
    };
    let output = groxy.output();
    assert_eq!(warned(&output, OLD), 1, "{output}");
    assert_eq!(warned(&output, "gemma2-9b-it"), 1, "{output}");
    assert!(output.contains("\"level\":\"WARN\""), "{output}");
    assert_eq!(call_count(&sim), 21);

    std::fs::write(&path, "[models]\nretired = \"reject\"\n").expect("write");
    groxy.signal("HUP");
    assert!(
        groxy.wait_for_output("config reloaded", Duration::from_secs(5)).await,
        "{}",
        groxy.output()
    );
    let refused = send(OLD).await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        json(&refused.bytes().await.expect("body"))["error"]["code"],
        "model_decommissioned"
    );
    assert_eq!(call_count(&sim), 21, "refused without a call");
}
