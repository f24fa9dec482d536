//! `POST /chat/completions`: a scripted reply, a header-chosen fault, or Groq's default answer.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde::Deserialize;

use super::body::{Paced, SimBody, SimError, Units};
use super::faults::{self, Fault};
use super::fixtures;
use super::frames::SynthStream;
use super::record::Track;
use super::reply::{Reply, SliceMode, Slicer, StreamEnd, first_events};
use super::routes::{full, full_reply, groq_error};
use super::state::{State, ok_headers};

/// The only fields the simulator needs; serde skips the rest without building values.
#[derive(Deserialize)]
struct ChatProbe<'a> {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
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
    let fault = match headers.get("x-sim-reply") {
        None => Fault::default(),
        Some(value) => match value.to_str().map_err(|e| e.to_string()).and_then(faults::parse) {
            Ok(fault) => fault,
            Err(e) => {
                let message = format!("groq-sim: bad x-sim-reply ({e}). {}", faults::HELP);
                return Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track));
            }
        },
    };
    if let Some(reply) = fault.reply {
        return play(reply, track).await;
    }
    let config = &state.config;
    if !probe.stream.unwrap_or(false) {
        if fault.reshapes_body() {
            let (units, end) = reshape(state.json_body.clone(), &fault, false);
            let paced = Paced::new(units, config.json_latency, Duration::ZERO, end);
            return Ok(streamed(paced, "application/json", None, track));
        }
        if !config.json_latency.is_zero() {
            tokio::time::sleep(config.json_latency).await;
        }
        let headers = ok_headers("application/json");
        return Ok(full(StatusCode::OK, headers, state.json_body.clone(), track));
    }

    let (mut units, request_id) = match config.stream_chunks {
        Some(n) => {
            let model = probe.model.as_deref().unwrap_or(DEFAULT_MODEL);
            let stamp = headers.get("x-sim-stamp").is_some_and(|v| v.as_bytes() == b"1");
            let prompt_tokens = (body.len() / 4).max(1);
            let synth = SynthStream::new(model, n, prompt_tokens, stamp, state.next_seq());
            let id = synth.request_id().to_owned();
            (Units::Synth(synth), Some(id))
        }
        None => {
            let body = fixtures::stream("content");
            let id = fixtures::request_id_in(&body).map(str::to_owned);
            (Units::Slices(Slicer::new(body, SliceMode::PerFrame)), id)
        }
    };
    let mut end = StreamEnd::Complete;
    if fault.reshapes_body() {
        let whole = match units {
            Units::Synth(synth) => synth.collect_all(),
            Units::Slices(slicer) => slicer.fold(bytes::BytesMut::new(), join).freeze(),
            Units::Download { .. } => Bytes::new(),
        };
        (units, end) = reshape(whole, &fault, true);
    }
    let paced = Paced::new(units, config.ttft, config.chunk_interval, end);
    Ok(streamed(paced, "text/event-stream", request_id.as_deref(), track))
}

fn join(mut acc: bytes::BytesMut, b: Bytes) -> bytes::BytesMut {
    acc.extend_from_slice(&b);
    acc
}

/// Applies `drop-after`/`stall-after` (events for SSE, bytes for JSON) and `slice:`.
fn reshape(body: Bytes, fault: &Fault, sse: bool) -> (Units, StreamEnd) {
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
fn streamed(paced: Paced, content_type: &'static str, request_id: Option<&str>, track: Track) -> Response<SimBody> {
    let mut headers = ok_headers(content_type);
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert("x-request-id", id);
    }
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
