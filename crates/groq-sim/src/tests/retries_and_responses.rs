//! Faults that end after N requests, a reset before the headers, retired models, and the Responses API over raw TCP.

use super::*;

const RESPONSES: &str = "/openai/v1/responses";

#[tokio::test]
async fn fail_n_times_then_succeed_counts_per_header_value_and_per_key() {
    let sim = sim(SimConfig::default()).await;
    let statuses = |answers: Vec<Answer>| answers.iter().map(Answer::status).collect::<Vec<_>>();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(call(&sim, "POST", CHAT, &[("x-sim-reply", "fail:503:2")], JSON_BODY).await);
    }
    assert_eq!(statuses(got), [503, 503, 200, 200]);
    // Another value counts on its own; 498 is Groq's flex answer.
    let flex = call(&sim, "POST", CHAT, &[("x-sim-reply", "fail:498:1")], JSON_BODY).await;
    assert_eq!(flex.status(), 498);
    assert!(String::from_utf8_lossy(&flex.body).contains("\"code\":\"capacity_exceeded\""));
    assert_eq!(
        call(&sim, "POST", CHAT, &[("x-sim-reply", "fail:498:1")], JSON_BODY)
            .await
            .status(),
        200
    );
    // per-key: each Authorization has its own first N.
    let mut got = Vec::new();
    for key in ["Bearer a", "Bearer a", "Bearer b"] {
        let headers = [("x-sim-reply", "fail:500:1,per-key"), ("authorization", key)];
        got.push(call(&sim, "POST", CHAT, &headers, JSON_BODY).await);
    }
    assert_eq!(statuses(got), [500, 200, 500]);
    // first:N reshapes a stream the same way: the first one fails before its first byte.
    let cut = call(
        &sim,
        "POST",
        CHAT,
        &[("x-sim-reply", "first:1,drop-after:0")],
        STREAM_BODY,
    )
    .await;
    assert_eq!(cut.status(), 200);
    assert!(cut.body.is_empty() && !cut.terminated);
    let whole = call(
        &sim,
        "POST",
        CHAT,
        &[("x-sim-reply", "first:1,drop-after:0")],
        STREAM_BODY,
    )
    .await;
    assert_eq!(whole.body, fixtures::stream("content").to_vec());
}

#[tokio::test]
async fn drop_resets_the_connection_before_any_byte() {
    let sim = sim(SimConfig::default()).await;
    let mut stream = send(&sim, &request("POST", CHAT, &[("x-sim-reply", "drop")], JSON_BODY)).await;
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no reset within 5 s"));
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    assert_eq!(sim.requests()[0].outcome, Outcome::Completed);
}

#[tokio::test]
async fn retired_models_get_groqs_decommissioned_answer() {
    let sim = sim(SimConfig::default()).await;
    for path in [CHAT, RESPONSES] {
        let body = r#"{"model":"llama3-8b-8192","messages":[{"role":"user","content":"hi"}],"input":"hi"}"#;
        let answer = call(&sim, "POST", path, &[], body).await;
        assert_eq!(answer.status(), 400, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "model_decommissioned");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("The model `llama3-8b-8192` has been decommissioned")),
            "{v}"
        );
    }
    assert_eq!(retired::replacement("llama3-8b-8192"), Some(Some("openai/gpt-oss-20b")));
}

#[tokio::test]
async fn the_responses_api_answers_json_and_named_events() {
    let sim = sim(SimConfig::default()).await;
    let json = call(
        &sim,
        "POST",
        RESPONSES,
        &[],
        r#"{"model":"openai/gpt-oss-20b","input":"hi"}"#,
    )
    .await;
    assert_eq!(json.status(), 200);
    assert!(json.has_header("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap_or_default();
    assert_eq!(v["object"], "response");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap_or(0) + usage["output_tokens"].as_u64().unwrap_or(0))
    );

    let body = r#"{"model":"openai/gpt-oss-20b","input":"hi","stream":true}"#;
    let sse = call(&sim, "POST", "/v1/responses", &[], body).await;
    assert!(sse.has_header("content-type: text/event-stream"));
    let text = String::from_utf8_lossy(&sse.body).into_owned();
    assert!(
        text.starts_with("event: response.created\ndata: {\"type\":\"response.created\""),
        "{text}"
    );
    assert!(text.contains("event: response.output_text.delta\n"));
    assert!(text.ends_with("\n\n") && !text.contains("[DONE]"));
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or("");
    assert!(last.starts_with("event: response.completed\ndata: "), "{last}");
    assert!(last.contains("\"usage\":{\"input_tokens\":"));
    // One event per slice, as Groq sends them.
    assert_eq!(sim.requests()[1].sent.len(), text.matches("\n\n").count());

    let tools = r#"{"model":"m","input":"?","tools":[{"type":"function","name":"get_weather","parameters":{}}]}"#;
    let call_answer = call(&sim, "POST", RESPONSES, &[], tools).await;
    let v: serde_json::Value = serde_json::from_slice(&call_answer.body).unwrap_or_default();
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["name"], "get_weather");

    // Faults work there as on chat: a stream cut after two events, then an error fixture.
    let cut = call(&sim, "POST", RESPONSES, &[("x-sim-reply", "drop-after:2")], body).await;
    assert!(!cut.terminated);
    assert_eq!(String::from_utf8_lossy(&cut.body).matches("\n\n").count(), 2);
    let limited = call(&sim, "POST", RESPONSES, &[("x-sim-reply", "error:429-tpm")], body).await;
    assert_eq!(limited.status(), 429);
    sim.push(Reply::json(503, &b"{\"error\":{\"message\":\"busy\"}}\n"[..]));
    assert_eq!(call(&sim, "POST", RESPONSES, &[], body).await.status(), 503);
}
