//! `POST /chat/completions`: a scripted reply, a header-chosen fault, or Groq's default answer
//! (admitted against the budget, if one is configured).

use std::borrow::Cow;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use super::body::{Paced, SimBody, SimError, Units};
use super::budget::{Limits, Usage, Verdict};
use super::coding::{self, Coding, GzipWriter};
use super::completion::{self, completion};
use super::faults::{self, Fault};
use super::fixtures;
use super::frames::{self, Ids, Intent, SynthStream};
use super::record::Track;
use super::reply::{Reply, SliceMode, Slicer, StreamEnd, first_events};
use super::retired;
use super::routes::{full, full_reply, groq_error};
use super::state::{State, ok_headers};

/// The only fields the simulator needs; serde skips the rest without building values.
#[derive(Deserialize)]
struct ChatProbe<'a> {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default, borrow)]
    response_format: Option<Named<'a>>,
    #[serde(default, borrow)]
    tools: Option<Vec<Tool<'a>>>,
    #[serde(default)]
    tool_choice: Option<ToolChoice>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// `{"type": …}` of `response_format`.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(default, borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Tool<'a> {
    #[serde(default, borrow)]
    function: Option<Function<'a>>,
}

#[derive(Deserialize)]
struct Function<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ToolChoice {
    Mode(String),
    Function { function: OwnedFunction },
}

#[derive(Deserialize)]
struct OwnedFunction {
    name: String,
}

impl ChatProbe<'_> {
    fn intent(&self, headers: &HeaderMap) -> Intent {
        let first_tool = || {
            self.tools
                .as_ref()?
                .iter()
                .find_map(|t| t.function.as_ref()?.name.as_deref())
                .map(str::to_owned)
        };
        let tool = match &self.tool_choice {
            Some(ToolChoice::Mode(mode)) if mode == "none" => None,
            Some(ToolChoice::Function { function }) => Some(function.name.clone()),
            _ => first_tool(),
        };
        let json_mode = self
            .response_format
            .as_ref()
            .is_some_and(|f| matches!(f.kind.as_deref(), Some("json_object" | "json_schema")));
        Intent {
            tool,
            json_mode,
            include_usage: self
                .stream_options
                .as_ref()
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            stamp: headers.get("x-sim-stamp").is_some_and(|v| v.as_bytes() == b"1"),
        }
    }
}

const DEFAULT_MODEL: &str = "openai/gpt-oss-20b";

pub(crate) async fn chat(
    state: &State,
    headers: &HeaderMap,
    body: Bytes,
    track: Track,
) -> Result<Response<SimBody>, SimError> {
    let probe: ChatProbe<'_> = match serde_json::from_slice(&body) {
        Ok(probe) => probe,
        Err(e) => {
            let message = format!("failed to parse the request body as JSON: {e}");
            return Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track));
        }
    };
    if let Some(reply) = state.next_scripted() {
        return play(reply, track).await;
    }
    let fault = match requested_fault(state, headers) {
        Ok(fault) => fault,
        Err(message) => return Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track)),
    };
    if let Some(reply) = fault.reply {
        return play(reply, track).await;
    }
    if let Some(reply) = probe.model.as_deref().and_then(retired::answer) {
        return play(reply, track).await;
    }
    let intent = probe.intent(headers);
    if intent.tool.is_some() && intent.json_mode {
        if let Some(reply) = fixtures::error("400-json-mode-with-tools") {
            return play(reply, track).await;
        }
    }
    let config = &state.config;
    let model = probe.model.as_deref().unwrap_or(DEFAULT_MODEL);
    let prompt_tokens = (body.len() / 4).max(1);
    let stream = probe.stream.unwrap_or(false);
    // A configured body wins: the caller chose exactly what to answer.
    let synth_json = config.json_body.is_none() && (intent.tool.is_some() || intent.json_mode);

    // Charged at admission: exactly the usage the answer below reports.
    let limits = match state.budget.as_ref() {
        None => None,
        Some(budget) => {
            let usage = match (stream, config.stream_chunks) {
                (false, _) if synth_json => Usage::new(prompt_tokens, completion::completion_tokens(&intent)),
                (false, _) => budget.json_usage,
                (true, Some(n)) => Usage::new(prompt_tokens, frames::completion_tokens(n, &intent)),
                (true, None) if intent.tool.is_some() => budget.tool_stream_usage,
                (true, None) => budget.content_stream_usage,
            };
            let decision = budget.admit(headers, model, usage);
            if decision.verdict != Verdict::Admitted {
                let request_id = Ids::new(state.next_seq()).request_id;
                if let Some((status, headers, body)) = decision.refusal(model, &request_id) {
                    return Ok(full(status, headers, body, track));
                }
            }
            Some(decision.limits)
        }
    };

    if !stream {
        let (body, request_id) = if synth_json {
            let (body, id) = completion(model, &intent, prompt_tokens, state.next_seq());
            (body, Some(id))
        } else {
            (state.json_body.clone(), None)
        };
        if fault.reshapes_body() {
            let (units, end) = reshape(body, &fault, false);
            let units = encode(units, end, fault.coding.as_ref());
            let paced = Paced::new(units, config.json_latency, Duration::ZERO, end);
            let mut response = streamed(paced, "application/json", request_id.as_deref(), track);
            write_limits(response.headers_mut(), limits.as_ref());
            label(response.headers_mut(), fault.coding.as_ref());
            return Ok(response);
        }
        if !config.json_latency.is_zero() {
            tokio::time::sleep(config.json_latency).await;
        }
        let mut headers = ok_headers("application/json");
        set_request_id(&mut headers, request_id.as_deref());
        write_limits(&mut headers, limits.as_ref());
        label(&mut headers, fault.coding.as_ref());
        let body = match fault.coding {
            Some(Coding::Gzip) => coding::gzip(&body),
            _ => body,
        };
        return Ok(full(StatusCode::OK, headers, body, track));
    }

    let (units, request_id) = match config.stream_chunks {
        Some(n) => {
            let synth = SynthStream::new(model, n, prompt_tokens, intent, state.next_seq());
            let id = synth.request_id().to_owned();
            (Units::Synth(synth), Some(id))
        }
        None => {
            let name = if intent.tool.is_some() { "tool-call" } else { "content" };
            let body = fixtures::stream(name);
            let id = fixtures::request_id_in(&body).map(str::to_owned);
            (Units::Slices(Slicer::new(body, SliceMode::PerFrame)), id)
        }
    };
    let (units, end) = if fault.reshapes_body() {
        let whole = match units {
            Units::Synth(synth) => synth.collect_all(),
            Units::Slices(slicer) => slicer.fold(BytesMut::new(), join).freeze(),
            Units::Download { .. } | Units::Gzip { .. } => Bytes::new(),
        };
        reshape(whole, &fault, true)
    } else {
        (units, StreamEnd::Complete)
    };
    let units = encode(units, end, fault.coding.as_ref());
    let paced = Paced::new(units, config.ttft, config.chunk_interval, end);
    let mut response = streamed(paced, "text/event-stream", request_id.as_deref(), track);
    write_limits(response.headers_mut(), limits.as_ref());
    label(response.headers_mut(), fault.coding.as_ref());
    Ok(response)
}

/// The `x-sim-reply` of this request, or why it is bad. A `first:N` fault past its first N
/// requests is no fault at all.
pub(crate) fn requested_fault(state: &State, headers: &HeaderMap) -> Result<Fault, String> {
    let Some(value) = headers.get("x-sim-reply") else {
        return Ok(Fault::default());
    };
    let text = value.to_str().map_err(|e| e.to_string());
    let fault = text
        .and_then(faults::parse)
        .map_err(|e| format!("groq-sim: bad x-sim-reply ({e}). {}", faults::HELP))?;
    match fault.first {
        Some(n) => {
            let key = fault
                .per_key
                .then(|| headers.get(http::header::AUTHORIZATION).map(HeaderValue::as_bytes))
                .flatten();
            let value = String::from_utf8_lossy(value.as_bytes());
            Ok(if state.among_first(&value, key, n) {
                fault
            } else {
                Fault::default()
            })
        }
        None => Ok(fault),
    }
}

/// gzip-codes each slice as it goes out (the trailer only if the body ends normally: a cut
/// stream is a truncated gzip member, as from a real server).
pub(crate) fn encode(units: Units, end: StreamEnd, coding: Option<&Coding>) -> Units {
    match coding {
        Some(Coding::Gzip) => Units::Gzip {
            inner: Box::new(units),
            writer: GzipWriter::new(),
            trailer: end == StreamEnd::Complete,
        },
        _ => units,
    }
}

/// `content-encoding` for a coded (or labelled) answer.
pub(crate) fn label(headers: &mut HeaderMap, coding: Option<&Coding>) {
    if let Some(value) = coding.and_then(|c| HeaderValue::from_str(c.header_value()).ok()) {
        headers.insert(http::header::CONTENT_ENCODING, value);
    }
}

/// With a budget, its state replaces the fixed `x-ratelimit-*` values of headers-ok.json.
fn write_limits(headers: &mut HeaderMap, limits: Option<&Limits>) {
    if let Some(limits) = limits {
        limits.write_headers(headers);
    }
}

/// Undoes a per-frame `Slicer` (cheap: the fixture streams are a few kB).
pub(crate) fn join(mut acc: BytesMut, b: Bytes) -> BytesMut {
    acc.extend_from_slice(&b);
    acc
}

/// Applies `drop-after`/`stall-after` (events for SSE, bytes for JSON) and `slice:`.
pub(crate) fn reshape(body: Bytes, fault: &Fault, sse: bool) -> (Units, StreamEnd) {
    let (body, end) = match fault.cut {
        Some((n, end)) if sse => (first_events(&body, n), end),
        Some((n, end)) => (body.slice(..n.min(body.len())), end),
        None => (body, StreamEnd::Complete),
    };
    let default_mode = if sse { SliceMode::PerFrame } else { SliceMode::Whole };
    let mode = fault.slicing.clone().unwrap_or(default_mode);
    (Units::Slices(Slicer::new(body, mode)), end)
}

/// A 200 whose body is paced out, with Groq's success headers. `x-request-id` follows the
/// stream's `x_groq.id`, as Groq's does.
pub(crate) fn streamed(
    paced: Paced,
    content_type: &'static str,
    request_id: Option<&str>,
    track: Track,
) -> Response<SimBody> {
    let mut headers = ok_headers(content_type);
    set_request_id(&mut headers, request_id);
    let mut response = Response::new(SimBody::paced(paced, None, track));
    *response.headers_mut() = headers;
    response
}

/// Plays a scripted (or header-chosen) reply. `track` lives in this future, so a stalled reply
/// records `ClientGone` when hyper drops it.
pub(crate) async fn play(reply: Reply, mut track: Track) -> Result<Response<SimBody>, SimError> {
    match reply {
        Reply::Full { status, headers, body } => Ok(full_reply(status, &headers, body, track)),
        Reply::Stream { body, slicing, end } => {
            let request_id = fixtures::request_id_in(&body).map(str::to_owned);
            let units = Units::Slices(Slicer::new(body, slicing.mode));
            let paced = Paced::new(units, slicing.first_delay, slicing.pause, end);
            Ok(streamed(paced, "text/event-stream", request_id.as_deref(), track))
        }
        Reply::Stall => std::future::pending().await,
        Reply::Drop => {
            track.finish();
            Err(SimError::Dropped)
        }
    }
}

/// Groq's `x-request-id` equals the body's `x_groq.id`; keep them in step.
pub(crate) fn set_request_id(headers: &mut HeaderMap, request_id: Option<&str>) {
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("x-request-id", id);
    }
}
