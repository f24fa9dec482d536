//! Reading token usage from Groq's answers as they pass: the finish chunk of a stream, or the JSON body; and, until a stream's usage arrives, the completion tokens its deltas carried.
//!
//! Both of Groq's dialects: chat's (`usage` or `x_groq.usage` with `prompt_tokens` and
//! `completion_tokens`; `choices[].delta`) and the Responses API's (`usage` of the response
//! object, in the JSON body or the `response.completed` event, with `input_tokens` and
//! `output_tokens`; `response.*.delta` events; `error` and `response.failed` events).
//!
//! Why count deltas: a stream cut short (the client hung up, Groq or the network failed) never
//! reaches its finish chunk, yet Groq charged for every token it generated; the client limits
//! must charge them too, or hanging up would dodge the token limit.

use std::{borrow::Cow, sync::LazyLock};

use bytes::Bytes;
use http::HeaderMap;
use memchr::memmem::Finder;
use serde::Deserialize;

use crate::wire::{
    json::Raw,
    sse::{LineSplitter, data_payload},
    tokens::text_tokens,
};

/// Token counts as Groq reports them (the Responses API's names read as chat's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// Prompt tokens Groq served from its prompt cache (`prompt_tokens_details.cached_tokens`,
    /// `input_tokens_details.cached_tokens`), billed at a discount.
    #[serde(
        default,
        rename = "prompt_tokens_details",
        alias = "input_tokens_details",
        deserialize_with = "cached_tokens"
    )]
    pub cached_tokens: u64,
}

fn cached_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    struct Details {
        cached_tokens: Option<u64>,
    }
    Ok(Option::<Details>::deserialize(d)?
        .and_then(|details| details.cached_tokens)
        .unwrap_or(0))
}

#[derive(Deserialize)]
struct Carrier {
    usage: Option<Usage>,
    x_groq: Option<XGroq>,
    error: Option<serde::de::IgnoredAny>,
    /// A Responses event's type, and the response object its lifecycle events carry.
    #[serde(rename = "type")]
    kind: Option<String>,
    response: Option<ResponseObject>,
}

#[derive(Deserialize)]
struct ResponseObject {
    usage: Option<Usage>,
}

/// A Responses stream event's generated text (`response.output_text.delta`,
/// `response.function_call_arguments.delta`, `response.reasoning_text.delta`, …).
#[derive(Deserialize)]
struct NamedDelta<'a> {
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
}

/// The Responses events that end a stream without a whole answer.
const FAILED_EVENTS: &[&str] = &["error", "response.failed"];

#[derive(Deserialize)]
struct XGroq {
    usage: Option<Usage>,
}

/// The generated text one stream event carries: only the fields that count, borrowed.
#[derive(Deserialize)]
struct DeltaEvent<'a> {
    #[serde(default, borrow)]
    choices: Vec<DeltaChoice<'a>>,
}

#[derive(Deserialize)]
struct DeltaChoice<'a> {
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
struct ToolCallDelta<'a> {
    #[serde(borrow)]
    function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct FunctionDelta<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    arguments: Option<Cow<'a, str>>,
}

// Searchers built once: building one costs about as much as searching a kilobyte.
static DELTA: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"delta\""));
static USAGE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"usage\""));
// The Responses API's named events, searched in every event of every stream (chat's too).
static RESPONSE_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"response."));
static ERROR_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"error\""));
static FAILED_EVENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\":\"response.failed\""));

/// Completion tokens in one stream event: its content, reasoning and tool-call deltas, counted
/// like the prompt estimate (a lower bound per piece of text).
fn delta_tokens(json: &[u8]) -> u64 {
    if DELTA.find(json).is_none() {
        return 0;
    }
    if RESPONSE_EVENT.find(json).is_some() {
        return serde_json::from_slice::<NamedDelta<'_>>(json)
            .ok()
            .and_then(|event| event.delta)
            .map_or(0, |text| text_tokens(&text));
    }
    let Ok(event) = serde_json::from_slice::<DeltaEvent<'_>>(json) else {
        return 0;
    };
    let mut tokens = 0;
    for delta in event.choices.iter().filter_map(|c| c.delta.as_ref()) {
        for text in [&delta.content, &delta.reasoning].into_iter().flatten() {
            tokens += text_tokens(text);
        }
        for function in delta.tool_calls.iter().flatten().filter_map(|c| c.function.as_ref()) {
            for text in [&function.name, &function.arguments].into_iter().flatten() {
                tokens += text_tokens(text);
            }
        }
    }
    tokens
}

/// Longest SSE line or JSON body examined; usage lives in small frames, so longer ones are skipped.
const MAX_INSPECTED: usize = 1 << 20;

/// Finds the usage (and any error event) in the answer as it passes, whatever its slicing.
#[derive(Default)]
pub struct UsageReader {
    sse: bool,
    lines: Option<LineSplitter>,
    json: Vec<u8>,
    json_overflow: bool,
    usage: Option<Usage>,
    error_event: bool,
    /// Completion tokens the stream's deltas carried, counted until Groq's usage arrived.
    streamed: u64,
}

/// Records the usage or error a JSON document carries. Only documents that can carry one are
/// parsed, so content deltas cost a substring search and nothing else.
fn inspect(json: &[u8], usage: &mut Option<Usage>, error_event: &mut bool) {
    let interesting = USAGE.find(json).is_some()
        || json.starts_with(b"{\"error\"")
        || ERROR_EVENT.find(json).is_some()
        || FAILED_EVENT.find(json).is_some();
    if !interesting {
        return;
    }
    if let Some(found) = usage_member(json) {
        *usage = Some(found);
        return;
    }
    if let Ok(carrier) = serde_json::from_slice::<Carrier>(json) {
        let found = carrier
            .usage
            .or(carrier.x_groq.and_then(|x| x.usage))
            .or(carrier.response.and_then(|r| r.usage));
        if let Some(found) = found {
            *usage = Some(found);
        }
        if carrier.error.is_some() || carrier.kind.is_some_and(|kind| FAILED_EVENTS.contains(&kind.as_str())) {
            *error_event = true;
        }
    }
}

/// The usage of a document shaped as Groq's answers are (a top-level `usage`, or `x_groq.usage`
/// in a stream's last chunk, and no `error`), read without parsing the rest of it: the answer's
/// content is most of its bytes. `None` leaves the document to the full parse in [`inspect`],
/// which gives the same answer for these shapes and handles every other.
fn usage_member(json: &[u8]) -> Option<Usage> {
    let (mut top, mut x_groq, mut plain) = (None, None, true);
    let whole = Raw::members_of_whole(json, |key, value| match key.raw() {
        b"usage" => top = Some(value),
        b"x_groq" => x_groq = Some(value),
        // An error, or a key only a parser can compare.
        name if name == b"error" || name.contains(&b'\\') => plain = false,
        _ => {}
    });
    if !whole || !plain {
        return None;
    }
    let value = top.filter(|usage| !usage.is_null()).or_else(|| x_groq?.get("usage"))?;
    serde_json::from_slice(value.bytes()).ok()
}

impl UsageReader {
    pub fn start(&mut self, headers: &HeaderMap) {
        self.sse = crate::wire::headers::is_event_stream(headers);
    }

    pub fn chunk(&mut self, chunk: &Bytes) {
        if self.sse {
            let Self {
                lines,
                usage,
                error_event,
                streamed,
                ..
            } = self;
            lines
                .get_or_insert_with(|| LineSplitter::new(MAX_INSPECTED))
                .feed(chunk, |line| {
                    if let Some(payload) = data_payload(line) {
                        // Once Groq has said what it charged, counting is no longer needed.
                        if usage.is_none() {
                            *streamed += delta_tokens(payload);
                        }
                        inspect(payload, usage, error_event);
                    }
                });
        } else if !self.json_overflow {
            if self.json.len() + chunk.len() > MAX_INSPECTED {
                self.json_overflow = true;
                self.json = Vec::new();
            } else {
                self.json.extend_from_slice(chunk);
            }
        }
    }

    /// The usage and whether an error event was seen. A JSON body is read only when it
    /// arrived whole (`complete`).
    pub fn finish(&mut self, complete: bool) -> (Option<Usage>, bool) {
        if !self.sse && complete && !self.json_overflow {
            let json = std::mem::take(&mut self.json);
            inspect(&json, &mut self.usage, &mut self.error_event);
        }
        (self.usage, self.error_event)
    }

    /// Completion tokens counted from an event stream's deltas so far; `None` for any other
    /// answer (a JSON body is generated whole before its first byte, so its part says nothing).
    pub fn streamed_tokens(&self) -> Option<u64> {
        self.sse.then_some(self.streamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the full parse alone finds in a document.
    fn parsed(json: &[u8]) -> Option<Usage> {
        let carrier = serde_json::from_slice::<Carrier>(json).ok()?;
        carrier.usage.or(carrier.x_groq.and_then(|x| x.usage))
    }

    #[test]
    fn the_member_scan_reads_usage_as_the_full_parse_does() {
        let usage = r#"{"prompt_tokens":18,"completion_tokens":7,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":4}}"#;
        let answer = format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"a \"usage\": {{\"prompt_tokens\": 99}} }}"}},"finish_reason":"stop"}}],"usage":{usage},"system_fingerprint":"fp","x_groq":{{"id":"req_1"}}}}"#
        );
        let last_chunk = format!(
            r#"{{"id":"c","choices":[{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"x_groq":{{"id":"req_1","usage":{usage}}}}}"#
        );
        let found = Some(Usage {
            prompt_tokens: 18,
            completion_tokens: 7,
            total_tokens: 25,
            cached_tokens: 4,
        });
        for (json, expected) in [
            (answer.clone(), found),
            (last_chunk.clone(), found),
            (answer.replace(r#""usage":{"#, r#""usage" : {"#), found),
            (format!(r#"{{"usage":null,"x_groq":{{"usage":{usage}}}}}"#), found),
            (
                r#"{"usage":{"prompt_tokens":1}}"#.to_string(),
                Some(Usage {
                    prompt_tokens: 1,
                    ..Usage::default()
                }),
            ),
        ] {
            assert_eq!(usage_member(json.as_bytes()), expected, "{json}");
            assert_eq!(parsed(json.as_bytes()), expected, "{json}");
        }
        // Shapes the scan leaves to the full parse: no usage where it looks, an error member, a
        // document it cannot follow, a usage that is not one.
        for json in [
            r#"{"choices":[{"delta":{"content":"usage"}}]}"#.to_string(),
            r#"{"x_groq":{"usage":null}}"#.to_string(),
            format!(r#"{{"error":{{"message":"boom"}},"usage":{usage}}}"#),
            format!(r#"{{"usage":{usage}"#),
            r#"{"usage":5}"#.to_string(),
            r#"{"response":{"usage":{"input_tokens":3}}}"#.to_string(),
        ] {
            assert_eq!(usage_member(json.as_bytes()), None, "{json}");
        }
        let (mut seen, mut error) = (None, false);
        inspect(
            format!(r#"{{"error":{{"message":"boom"}},"usage":{usage}}}"#).as_bytes(),
            &mut seen,
            &mut error,
        );
        assert_eq!(
            (seen, error),
            (found, true),
            "an error event still goes through the full parse"
        );
    }

    #[test]
    fn counts_content_reasoning_and_tool_call_deltas() {
        let event = |delta: &str| format!(r#"{{"choices":[{{"index":0,"delta":{delta}}}]}}"#);
        assert_eq!(
            delta_tokens(event(r#"{"role":"assistant","content":""}"#).as_bytes()),
            0
        );
        assert_eq!(delta_tokens(event(r#"{"content":null}"#).as_bytes()), 0);
        assert_eq!(delta_tokens(event(r#"{"content":" models"}"#).as_bytes()), 1);
        assert_eq!(
            delta_tokens(event(r#"{"reasoning":"The user wants a sentence."}"#).as_bytes()),
            6
        );
        assert_eq!(
            delta_tokens(
                event(
                    r#"{"tool_calls":[{"index":0,"function":{"name":"weather","arguments":"{\"city\": \"Paris\"}"}}]}"#
                )
                .as_bytes()
            ),
            1 + 7,
            "the name, and 7 pieces of arguments"
        );
        assert_eq!(
            delta_tokens(br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            0
        );
        assert_eq!(delta_tokens(br#"{"error":{"message":"boom"}}"#), 0);
        assert_eq!(delta_tokens(b"not json \"delta\""), 0);
        let named = |kind: &str, delta: &str| {
            format!(r#"{{"content_index":0,"delta":{delta},"item_id":"msg_1","type":"{kind}"}}"#)
        };
        assert_eq!(
            delta_tokens(named("response.output_text.delta", r#"" models""#).as_bytes()),
            1
        );
        assert_eq!(
            delta_tokens(named("response.function_call_arguments.delta", r#""{\"city\": \"Paris\"}""#).as_bytes()),
            7
        );
        assert_eq!(delta_tokens(named("response.output_text.delta", "null").as_bytes()), 0);
    }

    #[test]
    fn reads_the_responses_usage_and_failures() {
        let mut found = None;
        let mut failed = false;
        let body = br#"{"id":"resp_1","object":"response","error":null,"usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":8},"output_tokens":5,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":25}}"#;
        inspect(body, &mut found, &mut failed);
        let expected = Usage {
            prompt_tokens: 20,
            completion_tokens: 5,
            total_tokens: 25,
            cached_tokens: 8,
        };
        assert_eq!((found, failed), (Some(expected), false));
        let mut found = None;
        inspect(
            br#"{"type":"response.created","response":{"usage":null}}"#,
            &mut found,
            &mut failed,
        );
        assert_eq!(found, None);
        let completed = br#"{"response":{"id":"resp_1","usage":{"input_tokens":20,"input_tokens_details":{"cached_tokens":8},"output_tokens":5,"total_tokens":25}},"sequence_number":9,"type":"response.completed"}"#;
        inspect(completed, &mut found, &mut failed);
        assert_eq!((found, failed), (Some(expected), false));
        inspect(
            br#"{"type":"error","code":"server_error","message":"boom","sequence_number":3}"#,
            &mut found,
            &mut failed,
        );
        assert!(failed);
        let mut failed = false;
        inspect(
            br#"{"response":{"status":"failed","usage":null},"type":"response.failed"}"#,
            &mut found,
            &mut failed,
        );
        assert!(failed);
    }
}
