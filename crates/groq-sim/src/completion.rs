//! Synthesized non-streaming chat completions, for requests the captured fixture cannot answer
//! (JSON mode, tool calls).

use std::fmt::Write as _;

use bytes::Bytes;

use super::frames::{FINGERPRINT, Ids, Intent, WORDS, go_json_string, usage};

/// A Groq-shaped `chat.completion` body (ending in a newline, as Groq's do) and its request id.
pub(crate) fn completion(model: &str, intent: &Intent, prompt_tokens: usize, seq: u64) -> (Bytes, String) {
    let ids = Ids::new(seq);
    let mut b = String::with_capacity(700);
    let _ = write!(
        b,
        "{{\"id\":\"{}\",\"object\":\"chat.completion\",\"created\":{},\"model\":",
        ids.completion_id, ids.created
    );
    go_json_string(model, &mut b);
    b.push_str(",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",");
    let (reason, completion_tokens) = match &intent.tool {
        Some(name) => {
            let _ = write!(
                b,
                "\"tool_calls\":[{{\"id\":\"{}\",\"type\":\"function\",\"function\":{{\"name\":",
                ids.call_id
            );
            go_json_string(name, &mut b);
            b.push_str(",\"arguments\":\"{}\"}}]}");
            ("tool_calls", completion_tokens(intent))
        }
        None => {
            let text: String = WORDS.concat();
            let content = if intent.json_mode {
                let mut json = String::from("{\"answer\":");
                go_json_string(&text, &mut json);
                json.push('}');
                json
            } else {
                text
            };
            b.push_str("\"content\":");
            go_json_string(&content, &mut b);
            b.push('}');
            ("stop", completion_tokens(intent))
        }
    };
    let _ = writeln!(
        b,
        ",\"logprobs\":null,\"finish_reason\":\"{reason}\"}}],\"usage\":{},\
         \"usage_breakdown\":null,\"system_fingerprint\":\"{FINGERPRINT}\",\
         \"x_groq\":{{\"id\":\"{}\",\"seed\":{}}},\"service_tier\":\"on_demand\"}}",
        usage(prompt_tokens, completion_tokens),
        ids.request_id,
        ids.seed
    );
    (Bytes::from(b), ids.request_id)
}

/// The `completion_tokens` of `completion()`'s answer: 15 for a tool call (as in the captured
/// tool-call stream), one per word otherwise.
pub(crate) fn completion_tokens(intent: &Intent) -> usize {
    if intent.tool.is_some() { 15 } else { WORDS.len() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(body: &Bytes) -> Value {
        assert!(body.ends_with(b"}\n"));
        serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn json_mode_content_is_json() {
        let intent = Intent {
            json_mode: true,
            ..Intent::default()
        };
        let (body, id) = completion("qwen/qwen3.8-27b", &intent, 10, 3);
        let v = parse(&body);
        assert_eq!(v["model"], "qwen/qwen3.8-27b");
        assert_eq!(v["x_groq"]["id"], id.as_str());
        let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
        let inner: Value = serde_json::from_str(content).unwrap_or_default();
        assert!(inner["answer"].is_string(), "{content}");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn tool_calls_name_the_function() {
        let intent = Intent {
            tool: Some("weather".into()),
            ..Intent::default()
        };
        let v = parse(&completion("m", &intent, 10, 3).0);
        let message = &v["choices"][0]["message"];
        assert_eq!(message["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{}");
        assert!(message.get("content").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 25);
    }
}
