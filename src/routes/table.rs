//! Groq's endpoints as one table (method + path pattern, under `/v1` and `/openai/v1`): the only way a request reaches the upstream.
//!
//! The raw path is checked before anything is matched: a backslash, a percent-encoded `/`, `\`
//! or `.`, a dot segment, a control character or a byte outside printable ASCII is refused
//! with a 400, because another server along the way (or Groq's) could read it as a different
//! path than the one checked here. What is left must match a pattern of the table exactly
//! (no empty segments) or it is Groq's `unknown_url` 404; a known path with a method Groq does
//! not define is a 405. The upstream path is then built from the matched pattern and the ids
//! it captured (each checked against the characters Groq's ids use), never copied from the
//! client's bytes.

use std::borrow::Cow;

use http::{Method, Uri};

use crate::error::GatewayError;

/// The prefixes Groq's API lives under: Groq's own (`/openai/v1`) and the OpenAI SDKs' (`/v1`).
pub const API_PREFIXES: [&str; 2] = ["/openai/v1", "/v1"];

/// Longest query string forwarded (list endpoints take `limit`, `after`, `purpose`).
const MAX_QUERY: usize = 1024;

/// One of Groq's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Models,
    Model,
    AudioTranscriptions,
    AudioTranslations,
    AudioSpeech,
    Files,
    File,
    FileContent,
    Batches,
    Batch,
    BatchCancel,
}

/// What a request to an endpoint may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Nothing: a body is refused.
    Empty,
    /// A JSON document, read whole (it is validated before anything is sent).
    Json,
    /// A `multipart/form-data` upload, streamed to Groq as it arrives.
    Multipart,
}

/// A part of a path pattern.
#[derive(Debug, Clone, Copy)]
enum Part {
    Literal(&'static str),
    /// One id segment (`file_01h…`, `batch_01h…`).
    Id,
    /// A model id: the rest of the path, segments joined by `/` (`openai/gpt-oss-20b`).
    ModelId,
}

use Part::{Id, Literal as L, ModelId};

/// For each method Groq defines on a path, the body it takes.
type Methods = &'static [(Method, BodyKind)];

/// Groq's API surface: pattern, endpoint, methods.
const TABLE: &[(&[Part], Endpoint, Methods)] = &[
    (
        &[L("chat"), L("completions")],
        Endpoint::ChatCompletions,
        &[(Method::POST, BodyKind::Json)],
    ),
    (
        &[L("responses")],
        Endpoint::Responses,
        &[(Method::POST, BodyKind::Json)],
    ),
    (&[L("models")], Endpoint::Models, &[(Method::GET, BodyKind::Empty)]),
    (
        &[L("models"), ModelId],
        Endpoint::Model,
        &[(Method::GET, BodyKind::Empty)],
    ),
    (
        &[L("audio"), L("transcriptions")],
        Endpoint::AudioTranscriptions,
        &[(Method::POST, BodyKind::Multipart)],
    ),
    (
        &[L("audio"), L("translations")],
        Endpoint::AudioTranslations,
        &[(Method::POST, BodyKind::Multipart)],
    ),
    (
        &[L("audio"), L("speech")],
        Endpoint::AudioSpeech,
        &[(Method::POST, BodyKind::Json)],
    ),
    (
        &[L("files")],
        Endpoint::Files,
        &[(Method::GET, BodyKind::Empty), (Method::POST, BodyKind::Multipart)],
    ),
    (
        &[L("files"), Id],
        Endpoint::File,
        &[(Method::GET, BodyKind::Empty), (Method::DELETE, BodyKind::Empty)],
    ),
    (
        &[L("files"), Id, L("content")],
        Endpoint::FileContent,
        &[(Method::GET, BodyKind::Empty)],
    ),
    (
        &[L("batches")],
        Endpoint::Batches,
        &[(Method::GET, BodyKind::Empty), (Method::POST, BodyKind::Json)],
    ),
    (&[L("batches"), Id], Endpoint::Batch, &[(Method::GET, BodyKind::Empty)]),
    (
        &[L("batches"), Id, L("cancel")],
        Endpoint::BatchCancel,
        &[(Method::POST, BodyKind::Empty)],
    ),
];

impl Endpoint {
    /// The `route` label of metrics and access lines: a fixed set, whatever paths clients send.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::Models | Endpoint::Model => "models",
            Endpoint::AudioTranscriptions | Endpoint::AudioTranslations | Endpoint::AudioSpeech => "audio",
            Endpoint::Files | Endpoint::File | Endpoint::FileContent => "files",
            Endpoint::Batches | Endpoint::Batch | Endpoint::BatchCancel => "batches",
        }
    }
}

/// A request matched against the table: what it is, and where it goes upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    pub method: Method,
    pub body: BodyKind,
    /// Below Groq's base URL, built from the pattern and the checked ids, with the checked
    /// query: `chat/completions`, `models/openai/gpt-oss-20b`, `files?purpose=batch`. A path
    /// of literals alone (chat, responses) is the table's own text: no allocation.
    pub upstream_path: Cow<'static, str>,
}

/// The most segments a path of the table has (a model id may hold a few `/`).
const MAX_SEGMENTS: usize = 8;

/// Matches a request to one of Groq's endpoints, or says why it cannot go upstream.
pub fn resolve(method: &Method, uri: &Uri) -> Result<Route, GatewayError> {
    let raw = uri.path();
    check_raw_path(raw, model_id_at(raw))?;
    let unknown = || GatewayError::UnknownUrl {
        method: method.to_string(),
        path: raw.to_owned(),
    };
    let rest = API_PREFIXES
        .iter()
        .find_map(|prefix| raw.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')))
        .ok_or_else(unknown)?;
    // The OpenAI SDKs send a model id's `/` percent-encoded (`models/openai%2Fgpt-oss-20b`):
    // there, and only there, it is decoded before the id is checked.
    let decoded = decode_model_id(rest);
    let mut buffer = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in decoded.split('/') {
        if segment == "." || segment == ".." {
            return Err(GatewayError::InvalidPath {
                reason: "the model id holds a `.` or `..` segment".to_owned(),
            });
        }
        let slot = buffer.get_mut(count).ok_or_else(unknown)?;
        *slot = segment;
        count += 1;
    }
    let segments = &buffer[..count];
    let (pattern, endpoint, methods) = TABLE
        .iter()
        .find(|(pattern, _, _)| matches(pattern, segments))
        .ok_or_else(unknown)?;
    let Some((_, body)) = methods.iter().find(|(m, _)| m == method) else {
        return Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: raw.to_owned(),
            allowed: methods.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join(", "),
        });
    };
    let mut upstream_path = build(pattern, segments);
    if let Some(query) = uri.query() {
        check_query(query)?;
        let path = upstream_path.to_mut();
        path.push('?');
        path.push_str(query);
    }
    Ok(Route {
        endpoint: *endpoint,
        method: method.clone(),
        body: *body,
        upstream_path,
    })
}

/// Where a model id starts in a raw path (`/v1/models/<id>`), if the path names one.
fn model_id_at(raw: &str) -> Option<usize> {
    API_PREFIXES.iter().find_map(|prefix| {
        raw.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("/models/"))
            .map(|id| raw.len() - id.len())
    })
}

/// The part of the path below the prefix, with `%2F` decoded inside a model id.
fn decode_model_id(rest: &str) -> std::borrow::Cow<'_, str> {
    match rest.strip_prefix("models/") {
        Some(id) if id.contains('%') => format!("models/{}", id.replace("%2F", "/").replace("%2f", "/")).into(),
        _ => rest.into(),
    }
}

/// Refuses path spellings that another parser could read as a different path. A `%2F` is
/// allowed only inside a model id (from `model_id`, its start), where it is a `/` of the id.
fn check_raw_path(raw: &str, model_id: Option<usize>) -> Result<(), GatewayError> {
    let refuse = |why: String| Err(GatewayError::InvalidPath { reason: why });
    let bytes = raw.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        if !(0x21..=0x7e).contains(&byte) {
            return refuse(format!(
                "the path holds the byte 0x{byte:02x}; only printable ASCII is accepted"
            ));
        }
        if byte == b'\\' {
            return refuse("the path holds a backslash".to_owned());
        }
        if byte != b'%' {
            continue;
        }
        let escaped = match bytes.get(at + 1..at + 3) {
            Some([a, b]) => [a.to_ascii_lowercase(), b.to_ascii_lowercase()],
            _ => continue,
        };
        let what = match &escaped {
            b"2f" if model_id.is_some_and(|start| at >= start) => continue,
            b"2f" => "/",
            b"5c" => "\\",
            b"2e" => ".",
            b"00" => "NUL",
            b"25" => "%",
            _ => continue,
        };
        return refuse(format!("the path holds a percent-encoded `{what}`"));
    }
    if raw.split('/').any(|segment| segment == "." || segment == "..") {
        return refuse("the path holds a `.` or `..` segment".to_owned());
    }
    Ok(())
}

fn matches(pattern: &[Part], segments: &[&str]) -> bool {
    let mut rest = segments;
    for (i, part) in pattern.iter().enumerate() {
        match part {
            Part::Literal(text) => match rest.split_first() {
                Some((first, tail)) if first == text => rest = tail,
                _ => return false,
            },
            Part::Id => match rest.split_first() {
                Some((first, tail)) if is_id(first) => rest = tail,
                _ => return false,
            },
            Part::ModelId => {
                // Always last: it takes every remaining segment.
                return i == pattern.len() - 1 && !rest.is_empty() && rest.iter().all(|s| is_model_segment(s));
            }
        }
    }
    rest.is_empty()
}

fn build(pattern: &[Part], segments: &[&str]) -> Cow<'static, str> {
    if let Some(path) = literal_path(pattern) {
        return Cow::Borrowed(path);
    }
    let mut out = String::new();
    for (i, part) in pattern.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Id => out.push_str(segments[i]),
            Part::ModelId => out.push_str(&segments[i..].join("/")),
        }
    }
    Cow::Owned(out)
}

/// The upstream path of a pattern made of literals only, as static text.
fn literal_path(pattern: &[Part]) -> Option<&'static str> {
    match pattern {
        [Part::Literal("chat"), Part::Literal("completions")] => Some("chat/completions"),
        [Part::Literal("responses")] => Some("responses"),
        [Part::Literal("models")] => Some("models"),
        [Part::Literal("files")] => Some("files"),
        [Part::Literal("batches")] => Some("batches"),
        [Part::Literal("audio"), Part::Literal(kind)] => Some(match *kind {
            "transcriptions" => "audio/transcriptions",
            "translations" => "audio/translations",
            _ => "audio/speech",
        }),
        _ => None,
    }
}

/// Groq's file and batch ids: letters, digits, `_` and `-`.
fn is_id(segment: &str) -> bool {
    (1..=128).contains(&segment.len())
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One segment of a model id (`openai`, `gpt-oss-20b`, `qwen3.8-27b`): no dot segments, which
/// the raw-path check has already refused.
fn is_model_segment(segment: &str) -> bool {
    (1..=128).contains(&segment.len())
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// A query is forwarded only in its plain form: unreserved characters, `=`, `&`, `+`, and
/// well-formed percent escapes.
fn check_query(query: &str) -> Result<(), GatewayError> {
    let bytes = query.as_bytes();
    let mut i = 0;
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'=' | b'&' | b'+');
    while i < bytes.len() {
        match bytes[i] {
            b'%' if bytes.len() > i + 2 && bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit() => {
                i += 3;
            }
            b if plain(b) => i += 1,
            _ => {
                return Err(GatewayError::InvalidPath {
                    reason: "the query string holds a character outside the plain form".to_owned(),
                });
            }
        }
    }
    if query.len() > MAX_QUERY {
        return Err(GatewayError::InvalidPath {
            reason: format!("the query string is longer than {MAX_QUERY} bytes"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(method: &str, uri: &str, expected: Result<&str, u16>) {
        let method: Method = method.parse().expect("method");
        let got = uri
            .parse::<Uri>()
            .map_err(|_| 0)
            .and_then(|uri| resolve(&method, &uri).map_err(|e| e.status().as_u16()));
        assert_eq!(
            got.as_ref().map(|r| r.upstream_path.as_ref()),
            expected.as_ref().copied(),
            "{method} {uri}"
        );
    }

    #[test]
    fn the_table_builds_upstream_paths_from_checked_parts() {
        check("POST", "/v1/chat/completions", Ok("chat/completions"));
        check("POST", "/openai/v1/chat/completions", Ok("chat/completions"));
        check(
            "GET",
            "/openai/v1/models/openai/gpt-oss-20b",
            Ok("models/openai/gpt-oss-20b"),
        );
        check("GET", "/v1/models/qwen/qwen3.8-27b", Ok("models/qwen/qwen3.8-27b"));
        check(
            "GET",
            "/v1/models/openai%2Fgpt-oss-20b",
            Ok("models/openai/gpt-oss-20b"),
        );
        check(
            "GET",
            "/v1/models/openai%2fgpt-oss-20b",
            Ok("models/openai/gpt-oss-20b"),
        );
        check("GET", "/v1/files?purpose=batch", Ok("files?purpose=batch"));
        check(
            "GET",
            "/v1/batches?limit=2&after=batch_01",
            Ok("batches?limit=2&after=batch_01"),
        );
        check(
            "POST",
            "/v1/batches/batch_01abc/cancel",
            Ok("batches/batch_01abc/cancel"),
        );
        check("DELETE", "/v1/files/file_01abc", Ok("files/file_01abc"));
        check("POST", "/v1/audio/transcriptions", Ok("audio/transcriptions"));
    }

    #[test]
    fn spellings_that_could_mean_another_path_are_refused() {
        for uri in [
            "/v1/chat\\completions",
            "/v1/..\\..\\admin",
            "/v1/../admin",
            "/v1/./chat/completions",
            "/v1/chat%2Fcompletions",
            "/v1/chat%2fcompletions",
            "/v1/chat%5Ccompletions",
            "/v1/%2E%2E/admin",
            "/v1/files/%2e%2e",
            "/v1/chat/completions%00",
            "/v1/chat/%2525",
            "/v1/files%2Ffile_1",
            "/v1/models/a%2F..%2Fb",
            "/v1/models/a%2F%2e%2e",
            "/v1/models%2Fopenai",
        ] {
            check("POST", uri, Err(400));
        }
        check("GET", "/v1/models?x=%zz", Err(400));
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405() {
        for uri in [
            "/v1/",
            "/v1",
            "/v2/models",
            "/v1//chat/completions",
            "/v1/chat/completions/",
            "/v1/chat/completions/x",
            "/v1/embeddings",
            "/v1/completions",
            "/openai/v1x/models",
            "/v1/files/file_1/content/x",
            "/v1/models/",
            "/v1/models//x",
            "/v1/models/a%2F%2Fb",
            "/v1/models/a%2F",
        ] {
            check("POST", uri, Err(404));
        }
        check("GET", "/v1/chat/completions", Err(405));
        check("TRACE", "/v1/chat/completions", Err(405));
        check("PROPFIND", "/v1/models", Err(405));
        check("DELETE", "/v1/models/openai/gpt-oss-20b", Err(405));
        check("PUT", "/v1/files", Err(405));
    }

    #[test]
    fn every_endpoint_has_a_label_and_a_body_kind() {
        let route = resolve(&Method::POST, &"/v1/files".parse().expect("uri")).expect("route");
        assert_eq!((route.endpoint.label(), route.body), ("files", BodyKind::Multipart));
        let route = resolve(&Method::GET, &"/v1/files".parse().expect("uri")).expect("route");
        assert_eq!(route.body, BodyKind::Empty);
    }
}
