//! The Responses API (`/v1/responses`, `/openai/v1/responses`) through chat's path: validation in Groq's words, the caller's limits settled from its usage, the cache and coalescing, byte-exact named-event streams, a visible truncation, cancellation, and the ledger.

use std::time::Duration;

use bytes::Bytes;
use groq_sim::{Outcome, Reply, SimConfig, Slicing, StreamEnd};
use groxy::config::LimitSet;
use serde_json::{Value, json};

use super::{
    accounts::{Backend, accounts_config, admin},
    support::*,
};

const RESPONSES: &str = "/v1/responses";
const MODEL: &str = "openai/gpt-oss-20b";

async fn post(gw: &Gateway, path: &str, key: &str, body: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send")
}

fn body(extra: &str) -> String {
    format!(r#"{{"model":"{MODEL}","input":[{{"role":"user","content":"Say hi"}}]{extra}}}"#)
}

/// The events of a Responses stream: (name, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    String::from_utf8_lossy(bytes)
        .split_terminator("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in event.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or(Value::Null);
                }
            }
            (name, data)
        })
        .collect()
}

fn completed_usage(bytes: &[u8]) -> Value {
    let all = events(bytes);
    let (name, data) = all.last().expect("events");
    assert_eq!(name, "response.completed");
    data["response"]["usage"].clone()
}

fn remaining_tokens(response: &reqwest::Response) -> i64 {
    header(response, "x-ratelimit-remaining-tokens")
        .parse()
        .expect("remaining tokens")
}

#[tokio::test]
async fn refusals_are_groqs_words_and_never_reach_groq() {
    let (sim, gw) = pair().await;
    let m = format!(r#""model":"{MODEL}","input":"hi""#);
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            format!(r#"{{{m},"store":true}}"#),
            400,
            groq_wire::responses::STORE_UNSUPPORTED,
            "store",
        ),
        (
            format!(r#"{{{m},"previous_response_id":"resp_01abc"}}"#),
            400,
            groq_wire::responses::PREVIOUS_RESPONSE_UNSUPPORTED,
            "previous_response_id",
        ),
        (
            format!(r#"{{{m},"temprature":0}}"#),
            400,
            "property 'temprature' is unsupported, did you mean 'temperature'?",
            "temprature",
        ),
        (
            format!(r#"{{{m},"max_output_tokens":70000}}"#),
            400,
            "`max_output_tokens` must be less than or equal to `65536`, the maximum value for `max_output_tokens` is less than the `context_window` for this model",
            "max_output_tokens",
        ),
        (
            format!(r#"{{{m},"top_p":2}}"#),
            400,
            "'top_p' : number must be at most 1",
            "top_p",
        ),
        (
            format!(r#"{{"model":"{MODEL}","input":[{{"role":"tool","content":"x"}}]}}"#),
            400,
            "'input.0.role' : value must be one of 'user', 'system', 'developer', 'assistant'",
            "input.0.role",
        ),
        (
            format!(r#"{{{m},"tools":[{{"type":"function","name":"get weather"}}]}}"#),
            400,
            "'tools.0.name' : does not match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            "tools.0.name",
        ),
        (
            format!(r#"{{{m},"model":"x"}}"#),
            400,
            "request body is not valid JSON: duplicate key \"model\" at line 1 column 50",
            "",
        ),
        (
            r#"{"model":"no/such-model","input":"hi"}"#.to_owned(),
            404,
            "The model `no/such-model` does not exist or you do not have access to it.",
            "model",
        ),
    ];
    for (path, (body, status, message, param)) in [RESPONSES, "/openai/v1/responses"].into_iter().cycle().zip(cases) {
        let response = post(&gw, path, "client-key", &body, &[]).await;
        assert_eq!(response.status(), status, "{body}");
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert_eq!(error["message"], message, "{body}");
        if !param.is_empty() {
            assert_eq!(error["param"], param, "{body}");
        }
    }
    // A prompt over the context window names `input`, where a chat request names `messages`.
    let long = format!(
        r#"{{"model":"{MODEL}","input":"{}","max_output_tokens":1000}}"#,
        "a ".repeat(300_000)
    );
    let response = post(&gw, RESPONSES, "client-key", &long, &[]).await;
    assert_eq!(response.status(), 400);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(
        (error["code"].as_str(), error["param"].as_str()),
        (Some("context_length_exceeded"), Some("input")),
        "{error}"
    );
    assert_eq!(call_count(&sim), 0, "no refused request reached Groq");

    // A valid request reaches Groq byte for byte, on either spelling of the path.
    let valid = body(
        r#","instructions":"Be brief","max_output_tokens":64,"reasoning":{"effort":"low"},"text":{"format":{"type":"text"}},"store":false,"tools":[{"type":"mcp","server_label":"docs","server_url":"https://example.com/mcp"}]"#,
    );
    for path in [RESPONSES, "/openai/v1/responses"] {
        let response = post(&gw, path, "client-key", &valid, &[]).await;
        assert_eq!(response.status(), 200);
        let answer = json(&response.bytes().await.expect("body"));
        assert_eq!(answer["object"], "response");
        let sent = last_request(&sim);
        assert_eq!(sent.path, "/openai/v1/responses");
        assert_eq!(&sent.body[..], valid.as_bytes());
    }
}

#[tokio::test]
async fn tokens_are_reserved_from_the_estimate_and_settled_from_the_usage() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.rate_limits.default = LimitSet {
        tokens_per_day: Some(100_000),
        ..LimitSet::default()
    };
    let gw = gateway(config).await;
    let plain = body(r#","max_output_tokens":200"#);
    let streamed = body(r#","max_output_tokens":200,"stream":true"#);
    // "Say hi" is at least 2 tokens, plus the 200 the request caps.
    let reservation = 202;

    let first = post(&gw, RESPONSES, "gxy_alice", &plain, &[]).await;
    assert_eq!(remaining_tokens(&first), 100_000 - reservation);
    let usage = json(&first.bytes().await.expect("body"))["usage"].clone();
    let json_total = usage["total_tokens"].as_i64().expect("total");
    assert_eq!(
        json_total,
        usage["input_tokens"].as_i64().unwrap() + usage["output_tokens"].as_i64().unwrap()
    );

    let second = post(&gw, RESPONSES, "gxy_alice", &streamed, &[]).await;
    let expected = 100_000 - json_total - reservation;
    let remaining = remaining_tokens(&second);
    assert!(
        (expected..=expected + 2).contains(&remaining),
        "{remaining} vs {expected}"
    );
    let stream_total = completed_usage(&second.bytes().await.expect("body"))["total_tokens"]
        .as_i64()
        .expect("total");

    // A Groq refusal spends nothing.
    sim.push(Reply::json(
        400,
        r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#,
    ));
    assert_eq!(post(&gw, RESPONSES, "gxy_alice", &plain, &[]).await.status(), 400);

    let third = post(&gw, RESPONSES, "gxy_alice", &plain, &[]).await;
    let expected = 100_000 - json_total - stream_total - reservation;
    let remaining = remaining_tokens(&third);
    assert!(
        (expected..=expected + 3).contains(&remaining),
        "{remaining} vs {expected}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_and_cost_get_the_responses_usage() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let gw = gateway(accounts_config(&sim, &backend)).await;
    // A JSON answer with cached input, then a stream whose usage is in `response.completed`.
    let answer = json!({
        "id": "resp_1", "object": "response", "status": "completed", "model": MODEL, "output": [],
        "usage": {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 16},
                  "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 49},
    });
    sim.push(Reply::json(200, answer.to_string()));
    let response = post(&gw, RESPONSES, "gxy_alice", &body(""), &[]).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");
    let completed = json!({"type": "response.completed", "sequence_number": 1, "response": {
        "id": "resp_2", "object": "response", "status": "completed", "model": MODEL,
        "usage": {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 7, "total_tokens": 37},
    }});
    let stream = format!(
        "event: response.created\ndata: {}\n\nevent: response.completed\ndata: {completed}\n\n",
        json!({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_2", "usage": null}})
    );
    sim.push(Reply::stream(stream));
    let response = post(&gw, RESPONSES, "gxy_alice", &body(r#","stream":true"#), &[]).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("body");

    let (status, report) = admin(&gw, "GET", "/admin/usage?group=key,model", None).await;
    assert_eq!(status, 200, "{report}");
    let row = report["data"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["key"] == "alice")
        .unwrap_or_else(|| panic!("alice in {report}"))
        .clone();
    assert_eq!(row["model"], MODEL);
    assert_eq!(row["requests"], 2);
    assert_eq!(row["prompt_tokens"], 70);
    assert_eq!(row["completion_tokens"], 16);
    assert_eq!(row["cached_tokens"], 16);
    // Priced as chat is: (24 input + 16 cached at half) × $0.075 + 16 × $0.30 per million.
    let cost = row["cost_usd"].as_f64().expect("cost");
    let expected = ((70.0 - 16.0) * 0.075 + 16.0 * 0.0375 + 16.0 * 0.30) / 1e6;
    assert!((cost - expected).abs() < 1e-9, "{cost} vs {expected}");
}

#[tokio::test]
async fn a_stored_answer_is_a_hit_and_identical_requests_coalesce() {
    let sim = sim_with(SimConfig {
        ttft: Duration::from_millis(300),
        chunk_interval: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(config_for(&sim)).await;
    let plain = body(r#","temperature":0"#);
    let first = post(&gw, RESPONSES, "client-key", &plain, &[]).await;
    assert_eq!(header(&first, "x-groxy-cache"), "MISS");
    let first = first.bytes().await.expect("body");
    // Either spelling of the path is the same endpoint: the same entry.
    let second = post(&gw, "/openai/v1/responses", "client-key", &plain, &[]).await;
    assert_eq!(header(&second, "x-groxy-cache"), "HIT");
    assert_eq!(second.bytes().await.expect("body"), first);
    assert_eq!(call_count(&sim), 1);

    // Not deterministic: never cached.
    let random = post(&gw, RESPONSES, "client-key", &body(""), &[]).await;
    assert_eq!(header(&random, "x-groxy-cache"), "BYPASS");
    random.bytes().await.expect("body");
    assert_eq!(call_count(&sim), 2);

    // Two identical streams at once: one call to Groq, the same bytes to both, and a hit after.
    let streamed = body(r#","temperature":0,"stream":true"#);
    let (a, b) = tokio::join!(
        post(&gw, RESPONSES, "client-key", &streamed, &[]),
        post(&gw, RESPONSES, "client-key", &streamed, &[])
    );
    let mut statuses = [header(&a, "x-groxy-cache"), header(&b, "x-groxy-cache")];
    statuses.sort();
    assert_eq!(statuses, ["COALESCED", "MISS"]);
    let (a, b) = (a.bytes().await.expect("a"), b.bytes().await.expect("b"));
    assert_eq!(a, b);
    assert_eq!(call_count(&sim), 3);
    assert_eq!(&a[..], &last_request(&sim).sent_bytes()[..], "byte-exact");
    let hit = post(&gw, RESPONSES, "client-key", &streamed, &[]).await;
    assert_eq!(header(&hit, "x-groxy-cache"), "HIT");
    assert_eq!(hit.bytes().await.expect("hit"), a, "the stream replays byte-exact");
    assert_eq!(call_count(&sim), 3);
}

fn forwarding_sim_reply(sim: &groq_sim::Simulator) -> groxy::Config {
    let mut config = config_for(sim);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    config
}

#[tokio::test]
async fn streams_are_relayed_byte_exact_however_they_are_sliced() {
    let sim = sim().await;
    let gw = gateway(forwarding_sim_reply(&sim)).await;
    let tools = r#","stream":true,"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}]"#;
    for (extra, slicing) in [
        (r#","stream":true"#, "slice:1-3"),
        (r#","stream":true"#, "slice:whole"),
        (r#","stream":true"#, "slice:5-64:9"),
        (tools, "slice:1-7"),
    ] {
        let response = post(&gw, RESPONSES, "client-key", &body(extra), &[("x-sim-reply", slicing)]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "text/event-stream");
        let (received, _, error) = read_timed(response).await;
        assert_eq!(error, None);
        assert_eq!(received, last_request(&sim).sent_bytes(), "{slicing}");
        let all = events(&received);
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"response.created"));
        assert_eq!(names.last(), Some(&"response.completed"));
        for (i, (name, data)) in all.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
        if extra == tools {
            let (_, done) = all
                .iter()
                .find(|(n, _)| n == "response.function_call_arguments.done")
                .expect("a function call");
            assert_eq!(done["arguments"], r#"{"city":"Paris"}"#);
        } else {
            assert!(names.contains(&"response.output_text.delta"));
        }
    }
}

#[tokio::test]
async fn truncation_is_one_error_event_and_no_completed_and_is_never_stored() {
    let sim = sim().await;
    let gw = gateway(forwarding_sim_reply(&sim)).await;
    let streamed = body(r#","temperature":0,"stream":true"#);
    for fault in ["drop-after:5", "drop-after:5,slice:1-9"] {
        let response = post(&gw, RESPONSES, "client-key", &streamed, &[("x-sim-reply", fault)]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-groxy-cache"),
            "MISS",
            "{fault}: a cut stream is not stored"
        );
        let (received, _, error) = read_timed(response).await;
        assert_eq!(error, None, "the stream ends cleanly after the error event");
        let sent = last_request(&sim).sent_bytes();
        assert!(received.starts_with(&sent), "what Groq sent comes first");
        let tail = String::from_utf8_lossy(&received[sent.len()..]).into_owned();
        let data = tail
            .strip_prefix("event: error\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("one error event: {tail:?}"));
        assert!(!data.contains('\n'), "{tail:?}");
        let event: Value = serde_json::from_str(data).expect("json");
        assert_eq!(event["type"], "error");
        assert_eq!(event["code"], "upstream_truncated");
        assert_eq!(event["sequence_number"], 5, "numbered after the 5 events relayed");
        assert_eq!(event["error"]["code"], "upstream_truncated");
        assert!(!String::from_utf8_lossy(&received).contains("response.completed"));
    }

    // Cut inside an event: the error event still starts on a fresh line and counts it.
    let whole = {
        let response = post(&gw, RESPONSES, "client-key", &body(r#","stream":true"#), &[]).await;
        response.bytes().await.expect("body")
    };
    let cut = whole.len() / 2 + 3;
    sim.push(Reply::Stream {
        body: whole.slice(..cut),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let response = post(&gw, RESPONSES, "client-key", &body(r#","stream":true"#), &[]).await;
    let received = response.bytes().await.expect("body");
    assert!(received.starts_with(&whole[..cut]));
    let tail = String::from_utf8_lossy(&received[cut..]).into_owned();
    assert!(tail.starts_with("\n\nevent: error\ndata: "), "{tail:?}");
    let complete_events = events(&whole[..cut]).len() as u64;
    let (_, error) = events(&received).pop().expect("the error event");
    assert_eq!(
        error["sequence_number"], complete_events,
        "the partial one took a number"
    );
}

#[tokio::test]
async fn a_client_hanging_up_cancels_the_upstream() {
    let (sim, gw) = pair().await;
    let whole = post(&gw, RESPONSES, "client-key", &body(r#","stream":true"#), &[])
        .await
        .bytes()
        .await
        .expect("body");
    sim.push(Reply::Stream {
        body: Bytes::from(whole.to_vec()),
        slicing: Slicing {
            pause: Duration::from_millis(100),
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    let url = gw.url(RESPONSES);
    let request_body = body(r#","stream":true"#);
    let request = tokio::spawn(async move {
        let response = client().post(url).body(request_body).send().await;
        if let Ok(response) = response {
            let _ = read_timed(response).await;
        }
    });
    assert!(wait_for_calls(&sim, 2, Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(250)).await;
    request.abort();
    let hung_up = std::time::Instant::now();
    let _ = request.await;
    match wait_outcome(&sim, true, Duration::from_secs(3)).await {
        Some(Outcome::ClientGone { at }) => {
            let latency = at.saturating_duration_since(hung_up);
            assert!(latency < Duration::from_secs(1), "{latency:?}");
        }
        other => panic!("the simulator did not see the cancellation: {other:?}"),
    }
    assert!(!last_request(&sim).sent.is_empty(), "the stream had started");
}
