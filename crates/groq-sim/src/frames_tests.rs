//! Tests of the synthesized frames: Groq's framing, ids, usage, tool calls, JSON mode, stamps.

use serde_json::Value;

use super::*;

fn events(mut s: SynthStream) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(f) = s.next_frame() {
        out.push(String::from_utf8(f.to_vec()).unwrap_or_default());
    }
    out
}

/// Every event is `data: <compact JSON>\n\n`; the last is `data: [DONE]\n\n`.
fn payloads(all: &[String]) -> Vec<Value> {
    assert_eq!(all.last().map(String::as_str), Some("data: [DONE]\n\n"));
    all[..all.len() - 1]
        .iter()
        .map(|event| {
            let json = event
                .strip_prefix("data: ")
                .and_then(|e| e.strip_suffix("\n\n"))
                .unwrap_or_else(|| panic!("not an SSE data event: {event:?}"));
            assert!(!json.contains('\n'));
            let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
            // Compact, as Groq writes it.
            assert!(!json.contains("\": ") && !json.contains(", \""), "{json}");
            value
        })
        .collect()
}

fn content(frames: &[Value]) -> String {
    frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn synthesized_stream_has_groq_framing() {
    let stream = SynthStream::new("openai/gpt-oss-20b", 5, 40, Intent::default(), 9);
    assert_eq!(stream.request_id(), "req_01sim000000000000000000009");
    let all = events(stream);
    assert_eq!(all.len(), 8);
    let frames = payloads(&all);
    for f in &frames {
        assert_eq!(f["model"], "openai/gpt-oss-20b");
        assert_eq!(f["object"], "chat.completion.chunk");
        assert_eq!(f["id"], frames[0]["id"]);
    }
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(frames[0]["x_groq"]["id"], "req_01sim000000000000000000009");
    assert_eq!(content(&frames), "Fast models answer in milli");
    let finish = &frames[6];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["usage"], finish["x_groq"]["usage"]);
    assert_eq!(finish["usage"]["completion_tokens"], 5);
    assert_eq!(finish["usage"]["total_tokens"], 45);
}

#[test]
fn include_usage_adds_the_empty_choices_chunk() {
    let intent = Intent {
        include_usage: true,
        ..Intent::default()
    };
    let frames = payloads(&events(SynthStream::new("m", 2, 1, intent, 1)));
    assert_eq!(frames.len(), 5);
    let last = &frames[4];
    assert_eq!(last["choices"], Value::Array(Vec::new()));
    assert_eq!(last["usage"], frames[3]["usage"]);
    assert_eq!(last["service_tier"], "on_demand");
}

#[test]
fn tool_calls_arrive_whole() {
    let intent = Intent {
        tool: Some("weather".into()),
        ..Intent::default()
    };
    let frames = payloads(&events(SynthStream::new("m", 12, 1, intent, 1)));
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0]["choices"][0]["delta"]["content"], Value::Null);
    let call = &frames[1]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "weather");
    assert_eq!(call["function"]["arguments"], "{}");
    assert_eq!(frames[2]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn json_mode_content_parses() {
    for n in [1, 2, 7] {
        let intent = Intent {
            json_mode: true,
            ..Intent::default()
        };
        let frames = payloads(&events(SynthStream::new("m", n, 1, intent, 1)));
        let text = content(&frames);
        let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert!(parsed["answer"].is_string());
    }
}

#[test]
fn stamps_and_escaping() {
    let intent = Intent {
        stamp: true,
        ..Intent::default()
    };
    let all = events(SynthStream::new("a<b>&\"c\"", 2, 1, intent, 1));
    assert!(all[0].contains(r#""model":"a\u003cb\u003e\u0026\"c\"""#));
    let frames = payloads(&all);
    let stamp = frames[1]["choices"][0]["delta"]["content"].as_str().unwrap_or("");
    assert!(stamp.starts_with('t') && stamp.ends_with(' '), "{stamp}");
    let nanos: u128 = stamp[1..stamp.len() - 1].parse().unwrap_or(0);
    assert!(nanos > 1_600_000_000_000_000_000);
    assert_eq!(frames[0]["model"], "a<b>&\"c\"");
}

#[test]
fn zero_content_frames_and_collect() {
    let all = SynthStream::new("m", 0, 1, Intent::default(), 2).collect_all();
    let text = String::from_utf8(all.to_vec()).unwrap_or_default();
    assert_eq!(text.matches("\n\n").count(), 3);
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(seconds(3_500), "0.0035");
    assert_eq!(seconds(2_000_000), "2");
    assert_eq!(seconds(1_250_000), "1.25");
}
