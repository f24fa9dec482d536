//! `POST /responses`: Groq's Responses API (a stateless beta), as a JSON `response` object or, with `"stream": true`, named events ending in `response.completed` with the usage.
//!
//! The answer is text (a `message` item with one `output_text` part), or a `function_call` item
//! when the request has tools and `tool_choice` allows one (its arguments fill the function's
//! first declared parameter, streamed in pieces). `"store": true` and a `previous_response_id`
//! are refused as Groq refuses them (the API is stateless; wording from `groq_wire::responses`).
//! Scripted replies, `x-sim-reply` faults and retired models work as on chat completions; the
//! rate-limit budget does not apply.
//! The shape follows OpenAI's Responses API, which Groq's implements (composed here, not captured).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use groq_wire::responses::{PREVIOUS_RESPONSE_UNSUPPORTED, STORE_UNSUPPORTED};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::body::{Paced, SimBody, SimError, Units};
use super::chat::{encode, label, play, requested_fault, reshape, set_request_id, streamed};
use super::frames::{Ids, WORDS};
use super::record::Track;
use super::reply::{SliceMode, Slicer, StreamEnd};
use super::retired;
use super::routes::{full, groq_error};
use super::state::{State, ok_headers};

const DEFAULT_MODEL: &str = "openai/gpt-oss-20b";
/// Output tokens of a function call, as on chat completions.
const CALL_TOKENS: usize = 15;

pub(crate) async fn responses(
    state: &State,
    headers: &HeaderMap,
    body: Bytes,
    track: Track,
) -> Result<Response<SimBody>, SimError> {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => {
            let message = "request body must be a JSON object";
            return Ok(groq_error(StatusCode::BAD_REQUEST, message, None, track));
        }
        Err(e) => {
            let message = format!("failed to parse the request body as JSON: {e}");
            return Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track));
        }
    };
    if let Some(reply) = state.next_scripted() {
        return play(reply, track).await;
    }
    if let Some((message, param)) = stateful(&request) {
        return Ok(refusal(message, param, track));
    }
    let fault = match requested_fault(state, headers) {
        Ok(fault) => fault,
        Err(message) => return Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track)),
    };
    if let Some(reply) = fault.reply.clone() {
        return play(reply, track).await;
    }
    let model = request["model"].as_str().unwrap_or(DEFAULT_MODEL);
    if let Some(reply) = retired::answer(model) {
        return play(reply, track).await;
    }
    let answer = Answer::new(&request, body.len() / 4, state.next_seq());
    let config = &state.config;
    let stream = request["stream"].as_bool().unwrap_or(false);
    let (body, content_type, pause) = if stream {
        (answer.events(), "text/event-stream", config.chunk_interval)
    } else {
        let mut body = serde_json::to_vec(&answer.object(true)).unwrap_or_default();
        body.push(b'\n');
        (Bytes::from(body), "application/json", std::time::Duration::ZERO)
    };
    let first_delay = if stream { config.ttft } else { config.json_latency };
    if !stream && !fault.reshapes_body() && fault.coding.is_none() {
        if !first_delay.is_zero() {
            tokio::time::sleep(first_delay).await;
        }
        let mut headers = ok_headers(content_type);
        set_request_id(&mut headers, Some(&answer.ids.request_id));
        return Ok(full(StatusCode::OK, headers, body, track));
    }
    let (units, end) = if fault.reshapes_body() {
        reshape(body, &fault, stream)
    } else {
        let mode = if stream { SliceMode::PerFrame } else { SliceMode::Whole };
        (Units::Slices(Slicer::new(body, mode)), StreamEnd::Complete)
    };
    let units = encode(units, end, fault.coding.as_ref());
    let paced = Paced::new(units, first_delay, pause, end);
    let mut response = streamed(paced, content_type, Some(&answer.ids.request_id), track);
    label(response.headers_mut(), fault.coding.as_ref());
    Ok(response)
}

/// One synthesized answer: its ids, what it says, and what the request asked that it echoes.
struct Answer {
    ids: Ids,
    response_id: String,
    item_id: String,
    model: String,
    /// The function to call instead of answering with text.
    tool: Option<String>,
    /// Its arguments (JSON text).
    arguments: String,
    input_tokens: usize,
    created_at: u64,
    echo: Vec<(&'static str, Value)>,
}

impl Answer {
    fn new(request: &Value, input_tokens: usize, seq: u64) -> Answer {
        let ids = Ids::new(seq);
        let tool = function_to_call(request);
        let arguments = tool
            .as_deref()
            .map_or_else(String::new, |name| arguments_for(request, name));
        let item_id = match tool {
            Some(_) => format!("fc_01sim{seq:021}"),
            None => format!("msg_01sim{seq:021}"),
        };
        let field = |name: &str, default: Value| match request.get(name) {
            None | Some(Value::Null) => default,
            Some(value) => value.clone(),
        };
        let echo = vec![
            ("instructions", field("instructions", Value::Null)),
            ("max_output_tokens", field("max_output_tokens", Value::Null)),
            ("parallel_tool_calls", field("parallel_tool_calls", json!(true))),
            ("service_tier", field("service_tier", json!("on_demand"))),
            ("temperature", field("temperature", json!(1.0))),
            ("tool_choice", field("tool_choice", json!("auto"))),
            ("tools", field("tools", json!([]))),
            ("top_p", field("top_p", json!(1.0))),
        ];
        Answer {
            response_id: format!("resp_01sim{seq:021}"),
            item_id,
            model: request["model"].as_str().unwrap_or(DEFAULT_MODEL).to_owned(),
            tool,
            arguments,
            input_tokens: input_tokens.max(1),
            created_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            echo,
            ids,
        }
    }

    fn text(&self) -> String {
        WORDS.concat()
    }

    fn output_tokens(&self) -> usize {
        if self.tool.is_some() { CALL_TOKENS } else { WORDS.len() }
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens(),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens(),
        })
    }

    /// The output item, complete or just begun.
    fn item(&self, complete: bool) -> Value {
        let status = if complete { "completed" } else { "in_progress" };
        match &self.tool {
            Some(name) => json!({
                "id": self.item_id,
                "type": "function_call",
                "status": status,
                "arguments": if complete { self.arguments.as_str() } else { "" },
                "call_id": self.ids.call_id,
                "name": name,
            }),
            None => json!({
                "id": self.item_id,
                "type": "message",
                "status": status,
                "content": if complete { vec![self.part(true)] } else { Vec::new() },
                "role": "assistant",
            }),
        }
    }

    fn part(&self, complete: bool) -> Value {
        json!({
            "type": "output_text",
            "annotations": [],
            "logprobs": [],
            "text": if complete { self.text() } else { String::new() },
        })
    }

    /// The `response` object: in progress (no output, no usage yet) or complete.
    fn object(&self, complete: bool) -> Value {
        let mut object = serde_json::Map::new();
        let mut put = |key: &str, value: Value| {
            object.insert(key.to_owned(), value);
        };
        put("id", json!(self.response_id));
        put("object", json!("response"));
        put("created_at", json!(self.created_at));
        put("status", json!(if complete { "completed" } else { "in_progress" }));
        put("background", json!(false));
        put("error", Value::Null);
        put("incomplete_details", Value::Null);
        put("model", json!(self.model));
        put("output", if complete { json!([self.item(true)]) } else { json!([]) });
        put("previous_response_id", Value::Null);
        put("reasoning", Value::Null);
        put("store", json!(false));
        put("text", json!({"format": {"type": "text"}}));
        put("truncation", json!("disabled"));
        put("usage", if complete { self.usage() } else { Value::Null });
        put("user", Value::Null);
        put("metadata", json!({}));
        for (key, value) in &self.echo {
            put(key, value.clone());
        }
        Value::Object(object)
    }

    /// The whole event stream: `event: <type>` and `data: <JSON>` per event.
    fn events(&self) -> Bytes {
        let mut events: Vec<Value> = vec![
            json!({"type": "response.created", "response": self.object(false)}),
            json!({"type": "response.in_progress", "response": self.object(false)}),
            json!({"type": "response.output_item.added", "output_index": 0, "item": self.item(false)}),
        ];
        let at = |mut event: Value| {
            if let Some(map) = event.as_object_mut() {
                map.insert("item_id".into(), json!(self.item_id));
                map.insert("output_index".into(), json!(0));
            }
            event
        };
        match &self.tool {
            Some(_) => {
                for piece in pieces(&self.arguments) {
                    events.push(at(
                        json!({"type": "response.function_call_arguments.delta", "delta": piece}),
                    ));
                }
                events.push(at(
                    json!({"type": "response.function_call_arguments.done", "arguments": self.arguments}),
                ));
            }
            None => {
                events.push(at(
                    json!({"type": "response.content_part.added", "content_index": 0, "part": self.part(false)}),
                ));
                for word in WORDS {
                    events.push(at(json!({
                        "type": "response.output_text.delta",
                        "content_index": 0,
                        "delta": word,
                        "logprobs": [],
                    })));
                }
                events.push(at(json!({
                    "type": "response.output_text.done",
                    "content_index": 0,
                    "text": self.text(),
                    "logprobs": [],
                })));
                events.push(at(
                    json!({"type": "response.content_part.done", "content_index": 0, "part": self.part(true)}),
                ));
            }
        }
        events.push(json!({"type": "response.output_item.done", "output_index": 0, "item": self.item(true)}));
        events.push(json!({"type": "response.completed", "response": self.object(true)}));
        let mut out = BytesMut::new();
        for (sequence, mut event) in events.into_iter().enumerate() {
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            if let Some(map) = event.as_object_mut() {
                map.insert("sequence_number".into(), json!(sequence));
            }
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(kind.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(&serde_json::to_vec(&event).unwrap_or_default());
            out.extend_from_slice(b"\n\n");
        }
        out.freeze()
    }
}

/// The stateful feature the request asks for, which Groq refuses: its message and field.
fn stateful(request: &Value) -> Option<(&'static str, &'static str)> {
    if request["store"] == true {
        return Some((STORE_UNSUPPORTED, "store"));
    }
    match &request["previous_response_id"] {
        Value::Null => None,
        _ => Some((PREVIOUS_RESPONSE_UNSUPPORTED, "previous_response_id")),
    }
}

/// A 400 naming the field, as Groq's refusals of a field do.
fn refusal(message: &str, param: &str, track: Track) -> Response<SimBody> {
    let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param}});
    let mut body = serde_json::to_vec(&body).unwrap_or_default();
    body.push(b'\n');
    full(
        StatusCode::BAD_REQUEST,
        ok_headers("application/json"),
        Bytes::from(body),
        track,
    )
}

/// The arguments of the call: the function's first declared parameter set to a value of its
/// type, like a model filling in what it was asked; `{}` when it declares none.
fn arguments_for(request: &Value, name: &str) -> String {
    let tool = request["tools"]
        .as_array()
        .and_then(|tools| {
            tools
                .iter()
                .find(|t| t["name"] == name || t["function"]["name"] == name)
        })
        .map(|tool| match &tool["parameters"] {
            Value::Null => &tool["function"]["parameters"],
            parameters => parameters,
        });
    let first = tool
        .and_then(|p| p["properties"].as_object())
        .and_then(|properties| properties.iter().next());
    match first {
        Some((key, schema)) => {
            let value = match schema["type"].as_str() {
                Some("number" | "integer") => json!(42),
                Some("boolean") => json!(true),
                _ => json!("Paris"),
            };
            json!({ key.as_str(): value }).to_string()
        }
        None => "{}".to_owned(),
    }
}

/// The arguments as a model streams them: a few pieces.
fn pieces(arguments: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = arguments;
    while !rest.is_empty() {
        let mut cut = rest.len().min(6);
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(piece);
        rest = tail;
    }
    out
}

/// The function the answer calls: the one `tool_choice` names, else the first function tool
/// unless `tool_choice` is `none`. Tools are flat (`{"type":"function","name":…}`); the chat
/// shape (`function.name`) is accepted too.
fn function_to_call(request: &Value) -> Option<String> {
    let choice = &request["tool_choice"];
    if choice == "none" {
        return None;
    }
    if let Some(name) = choice["name"].as_str().or_else(|| choice["function"]["name"].as_str()) {
        return Some(name.to_owned());
    }
    request["tools"].as_array()?.iter().find_map(|tool| {
        let is_function = tool["type"].as_str().is_none_or(|kind| kind == "function");
        let name = tool["name"].as_str().or_else(|| tool["function"]["name"].as_str());
        name.filter(|_| is_function).map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(body: &Bytes) -> Vec<(String, Value)> {
        let text = String::from_utf8_lossy(body);
        text.split_terminator("\n\n")
            .map(|event| {
                let (name, data) = event.split_once('\n').unwrap_or_default();
                let name = name.strip_prefix("event: ").unwrap_or_default().to_owned();
                let data = data.strip_prefix("data: ").unwrap_or_default();
                (name, serde_json::from_str(data).unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn a_text_stream_has_every_event_in_order_and_ends_with_the_usage() {
        let request = json!({"model": "openai/gpt-oss-120b", "input": "hi", "stream": true});
        let answer = Answer::new(&request, 20, 7);
        let all = events(&answer.events());
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ]
        );
        assert_eq!(
            names.iter().filter(|n| **n == "response.output_text.delta").count(),
            WORDS.len()
        );
        assert_eq!(
            names[names.len() - 4..],
            [
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        for (i, (name, data)) in all.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], i);
        }
        let deltas: String = all.iter().filter_map(|(_, d)| d["delta"].as_str()).collect();
        let (_, completed) = &all[all.len() - 1];
        let response = &completed["response"];
        assert_eq!(response["status"], "completed");
        assert_eq!(response["model"], "openai/gpt-oss-120b");
        assert!(response["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
        assert_eq!(response["output"][0]["content"][0]["text"], deltas.as_str());
        assert_eq!(response["usage"]["input_tokens"], 20);
        assert_eq!(response["usage"]["output_tokens"], WORDS.len());
        assert_eq!(response["usage"]["total_tokens"], 20 + WORDS.len());
        assert_eq!(all[0].1["response"]["usage"], Value::Null);
    }

    #[test]
    fn tools_make_a_function_call() {
        let request = json!({
            "model": "m",
            "input": "weather?",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
        });
        let answer = Answer::new(&request, 5, 1);
        let object = answer.object(true);
        let item = &object["output"][0];
        assert_eq!(item["type"], "function_call");
        assert_eq!(item["name"], "get_weather");
        assert!(item["call_id"].as_str().is_some_and(|id| id.starts_with("call_")));
        assert_eq!(object["usage"]["output_tokens"], CALL_TOKENS);
        assert_eq!(item["arguments"], "{}", "no parameters declared");
        let names: Vec<String> = events(&answer.events()).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"response.function_call_arguments.delta".to_owned()));
        let request = json!({
            "model": "m",
            "input": "weather?",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        });
        let answer = Answer::new(&request, 5, 2);
        assert_eq!(answer.object(true)["output"][0]["arguments"], r#"{"city":"Paris"}"#);
        let all = events(&answer.events());
        let streamed: String = all
            .iter()
            .filter(|(n, _)| n == "response.function_call_arguments.delta")
            .filter_map(|(_, d)| d["delta"].as_str())
            .collect();
        assert_eq!(streamed, r#"{"city":"Paris"}"#);
        assert!(
            all.iter()
                .filter(|(n, _)| n == "response.function_call_arguments.delta")
                .count()
                > 1
        );
        assert_eq!(
            function_to_call(&json!({"tools": [{"type": "function", "name": "f"}], "tool_choice": "none"})),
            None
        );
        assert_eq!(
            function_to_call(&json!({"tool_choice": {"type": "function", "name": "g"}})),
            Some("g".to_owned())
        );
    }

    #[test]
    fn stateful_requests_are_refused() {
        assert_eq!(stateful(&json!({"store": true})), Some((STORE_UNSUPPORTED, "store")));
        assert_eq!(
            stateful(&json!({"previous_response_id": "resp_1"})),
            Some((PREVIOUS_RESPONSE_UNSUPPORTED, "previous_response_id"))
        );
        assert_eq!(stateful(&json!({"store": false, "previous_response_id": null})), None);
    }
}
