//! Request validation through the real gateway: one line per case, request JSON → status, message, param.
//!
//! Every rejected case also asserts the simulator was never called; every accepted case that it
//! was called exactly once with the bytes Groq must receive.

use crate::support::*;

const M: &str = r#""model":"openai/gpt-oss-20b""#;
const MSG: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

/// `{M, MSG, extra}` as a body.
fn req(extra: &str) -> String {
    if extra.is_empty() {
        format!("{{{M},{MSG}}}")
    } else {
        format!("{{{M},{MSG},{extra}}}")
    }
}

/// Expected outcome: 200 = forwarded; otherwise the status, a substring of the message, and the param.
struct Case {
    body: String,
    status: u16,
    message: &'static str,
    param: Option<&'static str>,
}

fn ok(body: impl Into<String>) -> Case {
    Case {
        body: body.into(),
        status: 200,
        message: "",
        param: None,
    }
}

fn bad(body: impl Into<String>, message: &'static str, param: Option<&'static str>) -> Case {
    Case {
        body: body.into(),
        status: 400,
        message,
        param,
    }
}

fn status(body: impl Into<String>, status: u16, message: &'static str, param: Option<&'static str>) -> Case {
    Case {
        body: body.into(),
        status,
        message,
        param,
    }
}

fn cases() -> Vec<Case> {
    let many_tools = format!(
        r#""tools":[{}]"#,
        (0..129)
            .map(|i| format!(r#"{{"type":"function","function":{{"name":"f{i}"}}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let max_tools = format!(
        r#""tools":[{}]"#,
        (0..128)
            .map(|i| format!(r#"{{"type":"function","function":{{"name":"f{i}"}}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge_prompt = format!(
        r#"{{{M},"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(140_000)
    );
    let tool = r#"{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}"#;
    vec![
        // --- well-formed requests Groq accepts: forwarded ---
        ok(req("")),
        ok(req(r#""temperature":0"#)),
        ok(req(r#""temperature":2"#)),
        ok(req(r#""temperature":0.7,"top_p":1,"seed":42"#)),
        ok(req(r#""top_p":0"#)),
        ok(req(r#""frequency_penalty":-2,"presence_penalty":2"#)),
        ok(req(r#""n":1"#)),
        ok(req(r#""stop":"END""#)),
        ok(req(r#""stop":["a","b","c","d"]"#)),
        ok(req(r#""stop":null"#)),
        ok(req(r#""max_completion_tokens":65536"#)),
        ok(req(r#""max_tokens":1"#)),
        ok(req(r#""stream":false"#)),
        ok(req(r#""stream":true,"stream_options":{"include_usage":true}"#)),
        ok(req(r#""response_format":{"type":"json_object"}"#)),
        ok(req(r#""response_format":{"type":"text"}"#)),
        ok(req(
            r#""response_format":{"type":"json_schema","json_schema":{"name":"answer_v1","schema":{"type":"object"}}}"#,
        )),
        ok(req(&format!(r#""tools":[{tool}],"tool_choice":"auto""#))),
        ok(req(&format!(
            r#""tools":[{tool}],"tool_choice":{{"type":"function","function":{{"name":"weather"}}}}"#
        ))),
        ok(req(&max_tools)),
        ok(req(r#""tools":[{"type":"browser_search"}]"#)),
        ok(req(r#""reasoning_format":"parsed""#)),
        ok(req(r#""reasoning_format":"raw""#)),
        ok(req(r#""include_reasoning":false"#)),
        ok(req(r#""reasoning_effort":"high""#)),
        ok(req(r#""service_tier":"flex""#)),
        // Groq's chat parameters of late 2026.
        ok(req(r#""service_tier":"auto""#)),
        ok(req(r#""service_tier":"performance""#)),
        ok(req(r#""include_reasoning":true"#)),
        ok(req(r#""reasoning_effort":"none""#)),
        ok(req(r#""reasoning_effort":"default""#)),
        ok(req(
            r#""response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":true,"schema":{"type":"object","properties":{"a":{"type":"string"}},"required":["a"],"additionalProperties":false}}}"#,
        )),
        ok(req(r#""logprobs":true,"top_logprobs":20,"logit_bias":{"123":-100}"#)),
        ok(req(r#""user":"u-1","parallel_tool_calls":false"#)),
        ok(req(r#""some_future_groq_field":{"x":1}"#)),
        ok(format!(
            r#"{{{M},"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"hi","name":"bob"}}]}}"#
        )),
        ok(format!(
            r#"{{{M},"messages":[{{"role":"developer","content":"x"}},{{"role":"user","content":[{{"type":"text","text":"what is this"}},{{"type":"image_url","image_url":{{"url":"https://x/y.png"}}}}]}}]}}"#
        )),
        ok(format!(
            r#"{{{M},"messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":null,"tool_calls":[{{"id":"c1","type":"function","function":{{"name":"weather","arguments":"{{}}"}}}}]}},{{"role":"tool","tool_call_id":"c1","content":"sunny"}}]}}"#
        )),
        ok(format!(
            r#"{{{M},"messages":[{{"role":"user","content":"hi"}},{{"role":"assistant","content":"hello","reasoning":"thinking"}}]}}"#
        )),
        ok(format!(
            r#"{{{M},"messages":[{{"role":"user","content":"caf\u00e9 \ud83d\ude80 <&>"}}]}}"#
        )),
        ok(format!(
            r#"{{"model":"qwen/qwen3.8-27b",{MSG},"max_completion_tokens":16384}}"#
        )),
        ok(format!("  {{ {M} , {MSG} }}\n")),
        // --- required fields and types ---
        bad("{}", "missing properties: 'model'", Some("model")),
        bad(format!("{{{MSG}}}"), "missing properties: 'model'", Some("model")),
        bad(format!("{{{M}}}"), "missing properties: 'messages'", Some("messages")),
        bad(
            format!(r#"{{{M},"messages":[]}}"#),
            "'messages' : minimum number of items is 1",
            Some("messages"),
        ),
        bad(
            format!(r#"{{{M},"messages":"hi"}}"#),
            "'messages' : expected array, but got string",
            Some("messages"),
        ),
        bad(
            format!(r#"{{"model":"",{MSG}}}"#),
            "'model' : length must be >= 1",
            Some("model"),
        ),
        bad(
            format!(r#"{{"model":42,{MSG}}}"#),
            "'model' : expected string, but got number",
            Some("model"),
        ),
        bad("[]", "must be a JSON object, but got array", None),
        bad("\"hi\"", "must be a JSON object, but got string", None),
        bad("null", "must be a JSON object, but got null", None),
        // --- ranges ---
        bad(
            req(r#""temperature":2.01"#),
            "'temperature' : number must be at most 2",
            Some("temperature"),
        ),
        bad(
            req(r#""temperature":-0.1"#),
            "'temperature' : number must be at least 0",
            Some("temperature"),
        ),
        bad(
            req(r#""temperature":"hot""#),
            "'temperature' : expected number, but got string",
            Some("temperature"),
        ),
        bad(
            req(r#""top_p":1.5"#),
            "'top_p' : number must be at most 1",
            Some("top_p"),
        ),
        bad(
            req(r#""frequency_penalty":-2.5"#),
            "'frequency_penalty' : number must be at least -2",
            Some("frequency_penalty"),
        ),
        bad(
            req(r#""presence_penalty":3"#),
            "'presence_penalty' : number must be at most 2",
            Some("presence_penalty"),
        ),
        bad(req(r#""n":2"#), "'n' : number must be at most 1", Some("n")),
        bad(req(r#""n":0"#), "'n' : number must be at least 1", Some("n")),
        bad(req(r#""n":1.5"#), "'n' : expected integer, but got number", Some("n")),
        bad(
            req(r#""top_logprobs":21"#),
            "'top_logprobs' : number must be at most 20",
            Some("top_logprobs"),
        ),
        bad(
            req(r#""max_completion_tokens":0"#),
            "'max_completion_tokens' : number must be at least 1",
            Some("max_completion_tokens"),
        ),
        bad(
            req(r#""max_tokens":-5"#),
            "'max_tokens' : number must be at least 1",
            Some("max_tokens"),
        ),
        bad(
            req(r#""max_tokens":"many""#),
            "'max_tokens' : expected integer, but got string",
            Some("max_tokens"),
        ),
        bad(
            req(r#""seed":"abc""#),
            "'seed' : expected integer, but got string",
            Some("seed"),
        ),
        bad(
            req(r#""stream":"yes""#),
            "'stream' : expected boolean, but got string",
            Some("stream"),
        ),
        bad(
            req(r#""logprobs":1"#),
            "'logprobs' : expected boolean, but got number",
            Some("logprobs"),
        ),
        bad(
            req(r#""stream_options":{"include_usage":"yes"}"#),
            "'stream_options.include_usage' : expected boolean",
            Some("stream_options.include_usage"),
        ),
        bad(req(r#""temperature":1e400"#), "number out of range", None),
        // --- stop ---
        bad(
            req(r#""stop":["a","b","c","d","e"]"#),
            "'stop' : maximum 4 items allowed, but found 5 items",
            Some("stop"),
        ),
        bad(
            req(r#""stop":[1]"#),
            "'stop.0' : expected string, but got number",
            Some("stop.0"),
        ),
        bad(
            req(r#""stop":5"#),
            "'stop' : expected string or array, but got number",
            Some("stop"),
        ),
        // --- tools ---
        bad(
            req(&many_tools),
            "'tools' : maximum 128 items allowed, but found 129 items",
            Some("tools"),
        ),
        bad(
            req(r#""tools":[{"type":"function","function":{"name":"bad name"}}]"#),
            "'tools.0.function.name' : does not match pattern",
            Some("tools.0.function.name"),
        ),
        bad(
            req(&format!(
                r#""tools":[{{"type":"function","function":{{"name":"{}"}}}}]"#,
                "x".repeat(65)
            )),
            "does not match pattern '^[a-zA-Z0-9_-]{1,64}$'",
            Some("tools.0.function.name"),
        ),
        bad(
            req(r#""tools":[{"type":"function"}]"#),
            "'tools.0' : missing properties: 'function'",
            Some("tools.0"),
        ),
        bad(
            req(r#""tools":[{"type":"function","function":{}}]"#),
            "'tools.0.function' : missing properties: 'name'",
            Some("tools.0.function"),
        ),
        bad(
            req(r#""tools":[{"type":"function","function":{"name":"f","parameters":"x"}}]"#),
            "'tools.0.function.parameters' : expected object",
            Some("tools.0.function.parameters"),
        ),
        bad(
            req(r#""tools":{}"#),
            "'tools' : expected array, but got object",
            Some("tools"),
        ),
        bad(
            req(r#""tools":[3]"#),
            "'tools.0' : expected object, but got number",
            Some("tools.0"),
        ),
        bad(
            req(r#""tool_choice":"always""#),
            "'tool_choice' : value must be one of 'none', 'auto', 'required'",
            Some("tool_choice"),
        ),
        bad(
            req(r#""tool_choice":{"type":"function"}"#),
            "'tool_choice.function' : missing properties: 'name'",
            Some("tool_choice.function"),
        ),
        bad(
            req(r#""tool_choice":{"type":"x","function":{"name":"f"}}"#),
            "'tool_choice.type' : value must be one of 'function'",
            Some("tool_choice.type"),
        ),
        bad(
            req(&format!(
                r#""tools":[{tool}],"response_format":{{"type":"json_object"}}"#
            )),
            "json mode cannot be combined with tool/function calling",
            Some("response_format"),
        ),
        // --- response_format and reasoning ---
        bad(
            req(r#""response_format":{"type":"xml"}"#),
            "'response_format.type' : value must be one of 'text', 'json_object', 'json_schema'",
            Some("response_format.type"),
        ),
        bad(
            req(r#""response_format":{}"#),
            "'response_format' : missing properties: 'type'",
            Some("response_format"),
        ),
        bad(
            req(r#""response_format":"json""#),
            "'response_format' : expected object, but got string",
            Some("response_format"),
        ),
        bad(
            req(r#""response_format":{"type":"json_schema"}"#),
            "missing properties: 'json_schema'",
            Some("response_format"),
        ),
        bad(
            req(r#""response_format":{"type":"json_schema","json_schema":{"name":"has space"}}"#),
            "'response_format.json_schema.name' : does not match pattern",
            Some("response_format.json_schema.name"),
        ),
        bad(
            req(r#""response_format":{"type":"json_schema","json_schema":{"name":"answer","strict":"yes"}}"#),
            "'response_format.json_schema.strict' : expected boolean, but got string",
            Some("response_format.json_schema.strict"),
        ),
        bad(
            req(r#""response_format":{"type":"json_schema","json_schema":{"name":"answer","schema":[]}}"#),
            "'response_format.json_schema.schema' : expected object, but got array",
            Some("response_format.json_schema.schema"),
        ),
        bad(
            req(r#""include_reasoning":"yes""#),
            "'include_reasoning' : expected boolean, but got string",
            Some("include_reasoning"),
        ),
        bad(
            req(r#""reasoning_format":"verbose""#),
            "'reasoning_format' : value must be one of 'hidden', 'raw', 'parsed'",
            Some("reasoning_format"),
        ),
        bad(
            req(r#""reasoning_format":"raw","response_format":{"type":"json_object"}"#),
            "'raw' cannot be used with JSON mode or tool calling",
            Some("reasoning_format"),
        ),
        bad(
            req(&format!(r#""reasoning_format":"raw","tools":[{tool}]"#)),
            "'raw' cannot be used with JSON mode or tool calling",
            Some("reasoning_format"),
        ),
        bad(
            req(r#""reasoning_format":"parsed","include_reasoning":true"#),
            "cannot be used together",
            Some("reasoning_format"),
        ),
        bad(
            req(r#""reasoning_effort":"extreme""#),
            "'reasoning_effort' : value must be one of 'none', 'default', 'low', 'medium', 'high'",
            Some("reasoning_effort"),
        ),
        bad(
            req(r#""service_tier":"priority""#),
            "'service_tier' : value must be one of 'auto', 'on_demand', 'flex', 'performance'",
            Some("service_tier"),
        ),
        bad(
            req(r#""service_tier":"scale""#),
            "'service_tier' : value must be one of",
            Some("service_tier"),
        ),
        // --- messages, per role ---
        bad(
            format!(r#"{{{M},"messages":[{{"content":"hi"}}]}}"#),
            "'messages.0' : missing properties: 'role'",
            Some("messages.0"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"robot","content":"hi"}}]}}"#),
            "'messages.0.role' : value must be one of",
            Some("messages.0.role"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user"}}]}}"#),
            "'messages.0' : for 'role:user' the following must be satisfied[('messages.0' : missing properties: 'content')]",
            Some("messages.0"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":5}}]}}"#),
            "expected string or array, but got number",
            Some("messages.0.content"),
        ),
        bad(
            format!(r#"{{{M},"messages":["hi"]}}"#),
            "'messages.0' : expected object, but got string",
            Some("messages.0"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":"a"}},{{"role":"tool","content":"x"}}]}}"#),
            "for 'role:tool' the following must be satisfied[('messages.1' : missing properties: 'tool_call_id')]",
            Some("messages.1"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":"a"}},{{"role":"assistant","content":null}}]}}"#),
            "for 'role:assistant'",
            Some("messages.1"),
        ),
        bad(
            format!(
                r#"{{{M},"messages":[{{"role":"user","content":"a"}},{{"role":"assistant","tool_calls":[{{"type":"function","function":{{"name":"f"}}}}]}}]}}"#
            ),
            "missing properties: 'id'",
            Some("messages.1.tool_calls.0"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"function","content":"x"}}]}}"#),
            "for 'role:function' the following must be satisfied[('messages.0' : missing properties: 'name')]",
            Some("messages.0"),
        ),
        bad(
            format!(
                r#"{{{M},"messages":[{{"role":"system","content":[{{"type":"image_url","image_url":{{"url":"x"}}}}]}}]}}"#
            ),
            "value must be 'text' for role system",
            Some("messages.0.content.0.type"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":[{{"type":"text"}}]}}]}}"#),
            "missing properties: 'text'",
            Some("messages.0.content.0"),
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":"hi","name":7}}]}}"#),
            "'messages.0.name' : expected string, but got number",
            Some("messages.0.name"),
        ),
        // --- hostile input ---
        bad("", "request body is empty", None),
        bad("{", "unexpected end of input", None),
        bad(format!("{{{M},{MSG}}} trailing"), "trailing characters", None),
        bad(
            format!("{{{M},{MSG},\"model\":\"x\"}}"),
            "duplicate key \"model\"",
            None,
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","role":"system","content":"x"}}]}}"#),
            "duplicate key \"role\"",
            None,
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":"\ud800"}}]}}"#),
            "surrogates must come in pairs",
            None,
        ),
        bad(
            format!(r#"{{{M},"messages":[{{"role":"user","content":"a\u0000b"}}]}}"#),
            "'messages.0.content' : string contains a NUL character",
            Some("messages.0.content"),
        ),
        bad(
            req(&format!(r#""x":{}1{}"#, "[".repeat(200), "]".repeat(200))),
            "recursion limit exceeded",
            None,
        ),
        bad(
            req(r#""seed":99999999999999999999999"#),
            "'seed' : expected integer, but got number",
            Some("seed"),
        ),
        // --- model catalogue ---
        status(
            format!(r#"{{"model":"gpt-9-imaginary",{MSG}}}"#),
            404,
            "The model `gpt-9-imaginary` does not exist or you do not have access to it.",
            Some("model"),
        ),
        bad(
            req(r#""max_completion_tokens":65537"#),
            "`max_completion_tokens` must be less than or equal to `65536`",
            Some("max_completion_tokens"),
        ),
        bad(
            format!(r#"{{"model":"qwen/qwen3.8-27b",{MSG},"max_tokens":16385}}"#),
            "`max_tokens` must be less than or equal to `16384`",
            Some("max_tokens"),
        ),
        status(
            huge_prompt,
            400,
            "maximum context length is 131072 tokens",
            Some("messages"),
        ),
        bad(
            req(r#""max_completion_tokens":65536,"messages":[{"role":"user","content":"x"}]"#),
            "duplicate key \"messages\"",
            None,
        ),
        // --- OpenAI-only fields: stripped by default (forwarded, so 200) ---
        ok(req(r#""store":true,"metadata":{"a":"b"},"prompt_cache_key":"k""#)),
        ok(req(r#""service_tier":"default","reasoning_effort":"minimal""#)),
    ]
}

#[tokio::test]
async fn the_validation_table() {
    let (sim, gw) = pair().await;
    let table = cases();
    assert!(table.len() >= 80, "{} cases", table.len());
    let mut failures = Vec::new();
    for (line, case) in table.iter().enumerate() {
        let before = call_count(&sim);
        let response = post_chat(&gw, case.body.clone()).await;
        let got = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        let after = call_count(&sim);
        let label = format!("case {line}: {}", case.body.chars().take(160).collect::<String>());
        if got != case.status {
            failures.push(format!(
                "{label}\n  status {got}, want {}: {}",
                case.status,
                String::from_utf8_lossy(&body)
            ));
            continue;
        }
        if case.status == 200 {
            if after != before + 1 {
                failures.push(format!("{label}\n  accepted but forwarded {} times", after - before));
            }
            continue;
        }
        if after != before {
            failures.push(format!("{label}\n  rejected, yet the simulator was called"));
        }
        let error = assert_openai_error(&body);
        let message = error["message"].as_str().unwrap_or("");
        if !message.contains(case.message) {
            failures.push(format!("{label}\n  message {message:?} lacks {:?}", case.message));
        }
        if error["param"].as_str() != case.param {
            failures.push(format!("{label}\n  param {:?}, want {:?}", error["param"], case.param));
        }
        if case.status == 400 && error["type"] != "invalid_request_error" {
            failures.push(format!("{label}\n  type {}", error["type"]));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn valid_requests_reach_groq_byte_for_byte() {
    let (sim, gw) = pair().await;
    let body = format!("{{ {M},\n  {MSG}, \"temperature\" : 0.50, \"stop\": [\"\\u003c\"] }}");
    assert_eq!(post_chat(&gw, body.clone()).await.status(), 200);
    assert_eq!(last_request(&sim).body, body.as_bytes());
}

#[tokio::test]
async fn aliases_and_openai_only_fields_are_rewritten_and_reported() {
    let (sim, gw) = pair().await;
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo","refusal":null}],"store":false,"metadata":{"k":"v"},"service_tier":"default","stream_options":{"include_usage":true,"include_obfuscation":false},"temperature":0.5}"#;
    let response = post_chat(&gw, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-groxy-stripped"],
        "store,metadata,stream_options.include_obfuscation,messages[].refusal"
    );
    assert_eq!(response.headers()["x-groxy-mapped"], "model,service_tier");
    let sent = json(&last_request(&sim).body);
    assert_eq!(sent["model"], "openai/gpt-oss-20b");
    assert_eq!(sent["service_tier"], "on_demand");
    assert!(sent.get("store").is_none() && sent.get("metadata").is_none());
    assert_eq!(sent["stream_options"], serde_json::json!({"include_usage": true}));
    assert!(sent["messages"][1].get("refusal").is_none());
    // Key order is kept in the rewritten body.
    let text = String::from_utf8_lossy(&last_request(&sim).body).into_owned();
    assert!(
        text.starts_with(r#"{"model":"openai/gpt-oss-20b","messages":"#),
        "{text}"
    );
}

#[tokio::test]
async fn openai_field_policies_reject_and_forward() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.validation.openai_fields = groxy::config::FieldPolicy::Reject;
    let gw = gateway(config).await;
    let response = post_chat(&gw, req(r#""store":true"#)).await;
    assert_eq!(response.status(), 400);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["param"], "store");
    let response = post_chat(&gw, req(r#""reasoning_effort":"minimal""#)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(call_count(&sim), 0);

    let mut config = config_for(&sim);
    config.validation.openai_fields = groxy::config::FieldPolicy::Forward;
    config.validation.unknown_fields = groxy::config::FieldPolicy::Reject;
    let gw = gateway(config).await;
    let body = req(r#""store":true"#);
    assert_eq!(post_chat(&gw, body.clone()).await.status(), 200);
    assert_eq!(last_request(&sim).body, body.as_bytes());
    let response = post_chat(&gw, req(r#""temprature":1"#)).await;
    assert_eq!(response.status(), 400);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(
        error["message"],
        "property 'temprature' is unsupported, did you mean 'temperature'?"
    );
}

#[tokio::test]
async fn wrong_content_type_is_a_415() {
    let (sim, gw) = pair().await;
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let response = client()
            .post(gw.url(CHAT))
            .header("content-type", content_type)
            .body(req(""))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 415, "{content_type}");
        assert_openai_error(&response.bytes().await.expect("body"));
    }
    let response = client().post(gw.url(CHAT)).body(req("")).send().await.expect("send");
    assert_eq!(response.status(), 200, "no content type at all is accepted");
    assert_eq!(call_count(&sim), 1);
}

#[tokio::test]
async fn without_a_catalogue_model_checks_are_skipped_not_failed() {
    // The simulator expects another key, so groxy's catalogue fetch gets 401 and never loads.
    let sim = groq_sim::Simulator::start(groq_sim::SimConfig {
        api_key: Some("gsk_some_other_key".into()),
        ..Default::default()
    })
    .await
    .expect("sim");
    let gw = gateway(config_for(&sim)).await;
    let ready = json(
        &client()
            .get(gw.url("/readyz"))
            .send()
            .await
            .expect("send")
            .bytes()
            .await
            .expect("body"),
    );
    assert_eq!(
        ready["status"], "ready",
        "an unloadable catalogue does not make groxy unready"
    );
    assert_eq!(ready["catalog"], "loading");
    // An unknown model is forwarded (Groq answers), not refused on a guess.
    let response = post_chat(&gw, format!(r#"{{"model":"nope",{MSG},"max_tokens":999999}}"#)).await;
    assert_eq!(response.status(), 401, "Groq's own answer");
    assert_eq!(call_count(&sim), 1);
    // Rules that need no catalogue still apply.
    assert_eq!(post_chat(&gw, req(r#""n":3"#)).await.status(), 400);
    assert_eq!(call_count(&sim), 1);
}

#[tokio::test]
async fn an_unknown_model_is_a_local_404() {
    let (sim, gw) = pair().await;
    let response = post_chat(&gw, format!(r#"{{"model":"nope",{MSG}}}"#)).await;
    assert_eq!(response.status(), 404);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(call_count(&sim), 0);
}
