//! Request dispatch: read and record the body, check the key, pick the route, answer.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Paced, SimBody, SimError, Units};
use super::chat;
use super::fixtures;
use super::frames::go_json_string;
use super::record::{RECORDED_BODY_CAP, Track};
use super::reply::{Reply, StreamEnd};
use super::responses;
use super::state::{State, ok_headers};

/// Chat bodies are kept whole (they are parsed); beyond this the simulator answers 413.
const CHAT_BODY_LIMIT: usize = 64 << 20;
const DEFAULT_DOWNLOAD_BYTES: u64 = 1 << 20;

enum Route<'a> {
    Chat,
    /// `POST responses`: the Responses API.
    Responses,
    Models,
    Model(&'a str),
    /// Uploads, batches, files: answered with a description of what arrived.
    Echo,
    /// `GET …/files/{id}/content`: a body of `x-sim-bytes` bytes.
    Download,
    Unknown,
}

impl<'a> Route<'a> {
    /// Groq's routes under `/openai/v1/` (and `/v1/`, as gateways often mount them).
    fn parse(method: &Method, path: &'a str) -> Route<'a> {
        let Some(rest) = path.strip_prefix("/openai/v1/").or_else(|| path.strip_prefix("/v1/")) else {
            return Route::Unknown;
        };
        let get = method == Method::GET;
        match rest {
            "chat/completions" if method == Method::POST => return Route::Chat,
            "responses" if method == Method::POST => return Route::Responses,
            "models" if get => return Route::Models,
            _ => {}
        }
        if let Some(id) = rest.strip_prefix("models/") {
            return if get && !id.is_empty() {
                Route::Model(id)
            } else {
                Route::Unknown
            };
        }
        let mut segments = rest.split('/');
        let parts = [segments.next(), segments.next(), segments.next()];
        if segments.next().is_some() || parts.iter().flatten().any(|s| s.is_empty()) {
            return Route::Unknown;
        }
        match parts {
            [Some("files"), Some(_), Some("content")] if get => Route::Download,
            [Some("audio"), Some("transcriptions" | "translations" | "speech"), None]
            | [Some("responses" | "files" | "batches"), None, None]
            | [Some("files" | "batches"), Some(_), None]
            | [Some("files"), Some(_), Some("content")]
            | [Some("batches"), Some(_), Some("cancel")] => Route::Echo,
            _ => Route::Unknown,
        }
    }
}

/// The hyper service: one call per request. An `Err` makes hyper close the connection without
/// a response, which is how `Reply::Drop` is played (with a reset: see `server`).
/// `reset` makes the connection end with a reset rather than a FIN once hyper drops it.
pub(crate) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    reset: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Response<SimBody>, SimError> {
    let answer = answer(&state, req).await;
    match &answer {
        Ok(response) => state.count_if_rate_limited(response.status()),
        Err(SimError::Dropped) => reset.store(true, std::sync::atomic::Ordering::Relaxed),
        Err(_) => {}
    }
    answer
}

async fn answer(state: &State, req: Request<Incoming>) -> Result<Response<SimBody>, SimError> {
    let (parts, body) = req.into_parts();
    let mut track = Track::new(&state.recorder, &parts);
    let route = Route::parse(&parts.method, parts.uri.path());
    let keep = match route {
        Route::Chat | Route::Responses => CHAT_BODY_LIMIT,
        _ => RECORDED_BODY_CAP,
    };
    // Reading to the end also matters for cancellation: only then does hyper watch the socket
    // for the client's EOF while we wait.
    let (body, body_len) = read_body(body, keep).await?;
    track.set_body(body.clone(), body_len);
    track.publish();

    if !state.authorized(&parts.headers) {
        let reply = fixtures::error("401")
            .unwrap_or_else(|| Reply::json(401, &b"{\"error\":{\"message\":\"Invalid API Key\"}}\n"[..]));
        return chat::play(reply, track).await;
    }
    match route {
        Route::Chat if body_len > CHAT_BODY_LIMIT => Ok(groq_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            None,
            track,
        )),
        Route::Chat => chat::chat(state, &parts.headers, body, track).await,
        Route::Responses if body_len > CHAT_BODY_LIMIT => Ok(groq_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            None,
            track,
        )),
        Route::Responses => responses::responses(state, &parts.headers, body, track).await,
        Route::Models => Ok(full(
            StatusCode::OK,
            ok_headers("application/json"),
            fixtures::models(),
            track,
        )),
        Route::Model(id) => Ok(model(id, track)),
        Route::Echo => match chat::requested_fault(state, &parts.headers) {
            // Uploads fail as chat does (error, stall, drop, fail), so a test can see that a
            // request whose body is gone once sent is not sent again.
            Ok(fault) => match fault.reply {
                Some(reply) => chat::play(reply, track).await,
                None => Ok(echo(&parts, body_len, track)),
            },
            Err(message) => Ok(groq_error(StatusCode::BAD_REQUEST, &message, None, track)),
        },
        Route::Download => Ok(download(&parts.headers, track)),
        Route::Unknown => {
            let message = format!(
                "Unknown request URL: {} {}. Please check the URL for typos, or see the docs at \
                 https://console.groq.com/docs/",
                parts.method,
                parts.uri.path()
            );
            Ok(groq_error(StatusCode::NOT_FOUND, &message, Some("unknown_url"), track))
        }
    }
}

/// Streams the body in, keeping at most `keep` bytes (without copying when it arrives in one
/// frame) and counting all of them.
async fn read_body(mut body: Incoming, keep: usize) -> Result<(Bytes, usize), SimError> {
    let mut len = 0usize;
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| SimError::RequestBody)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = keep.saturating_sub(len);
        len = len.saturating_add(data.len());
        if room == 0 {
            continue;
        }
        let data = data.slice(..data.len().min(room));
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(earlier) => {
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok((first.unwrap_or_else(|| joined.freeze()), len))
}

fn model(id: &str, track: Track) -> Response<SimBody> {
    let id = percent_decode(id);
    match fixtures::model(&id) {
        Some(body) => full(StatusCode::OK, ok_headers("application/json"), body, track),
        None => groq_error(
            StatusCode::NOT_FOUND,
            &format!("The model `{id}` does not exist or you do not have access to it."),
            Some("model_not_found"),
            track,
        ),
    }
}

fn echo(parts: &http::request::Parts, body_len: usize, track: Track) -> Response<SimBody> {
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = serde_json::json!({
        "object": "sim.echo",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "content_type": content_type,
        "bytes": body_len,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    full(StatusCode::OK, ok_headers("application/json"), body.into(), track)
}

fn download(headers: &HeaderMap, track: Track) -> Response<SimBody> {
    let total = headers
        .get("x-sim-bytes")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_DOWNLOAD_BYTES);
    let units = Units::Download {
        remaining: total,
        offset: 0,
    };
    let paced = Paced::new(units, Default::default(), Default::default(), StreamEnd::Complete);
    let mut response = Response::new(SimBody::paced(paced, Some(total), track));
    *response.headers_mut() = ok_headers("application/octet-stream");
    response
}

pub(crate) fn full(status: StatusCode, headers: HeaderMap, body: Bytes, track: Track) -> Response<SimBody> {
    let mut response = Response::new(SimBody::full(body, track));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// A `Reply::Full`: exactly the given status, headers and body.
pub(crate) fn full_reply(status: u16, headers: &[(String, String)], body: Bytes, track: Track) -> Response<SimBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => tracing::warn!(header = %name, "groq-sim: skipping an invalid scripted header"),
        }
    }
    full(status, map, body, track)
}

/// An error in Groq's shape: `{"error":{"message","type","code"?}}` and a newline.
pub(crate) fn groq_error(status: StatusCode, message: &str, code: Option<&str>, track: Track) -> Response<SimBody> {
    let mut body = String::with_capacity(message.len() + 96);
    body.push_str("{\"error\":{\"message\":");
    go_json_string(message, &mut body);
    body.push_str(",\"type\":\"invalid_request_error\"");
    if let Some(code) = code {
        body.push_str(",\"code\":");
        go_json_string(code, &mut body);
    }
    body.push_str("}}\n");
    let mut headers = HeaderMap::new();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    full(status, headers, body.into(), track)
}

/// `%2F` and friends, for clients that encode the `/` in model ids; bad escapes stay as they are.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> &'static str {
        match Route::parse(&method, path) {
            Route::Chat => "chat",
            Route::Responses => "responses",
            Route::Models => "models",
            Route::Model(_) => "model",
            Route::Echo => "echo",
            Route::Download => "download",
            Route::Unknown => "unknown",
        }
    }

    #[test]
    fn routes() {
        use Method as M;
        let cases = [
            (M::POST, "/openai/v1/chat/completions", "chat"),
            (M::POST, "/v1/chat/completions", "chat"),
            (M::GET, "/openai/v1/chat/completions", "unknown"),
            (M::GET, "/openai/v1/models", "models"),
            (M::GET, "/openai/v1/models/openai/gpt-oss-20b", "model"),
            (M::GET, "/openai/v1/models/", "unknown"),
            (M::POST, "/openai/v1/audio/transcriptions", "echo"),
            (M::POST, "/v1/audio/speech", "echo"),
            (M::POST, "/openai/v1/responses", "responses"),
            (M::POST, "/v1/responses", "responses"),
            (M::GET, "/openai/v1/files", "echo"),
            (M::DELETE, "/openai/v1/files/file_1", "echo"),
            (M::GET, "/openai/v1/files/file_1/content", "download"),
            (M::POST, "/openai/v1/batches/b_1/cancel", "echo"),
            (M::GET, "/openai/v1/batches//cancel", "unknown"),
            (M::POST, "/openai/v1/completions", "unknown"),
            (M::POST, "/chat/completions", "unknown"),
            (M::GET, "/openai/v1/files/a/content/x", "unknown"),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(method.clone(), path), want, "{method} {path}");
        }
        assert_eq!(percent_decode("openai%2Fgpt-oss-20b"), "openai/gpt-oss-20b");
        assert_eq!(percent_decode("a%zz%"), "a%zz%");
    }
}
