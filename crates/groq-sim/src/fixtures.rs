//! Groq's captured wire fixtures, embedded in the binary and parsed once.
//!
//! The files live in the repository's `tests/fixtures/groq/` (groxy's tests read them too) and
//! are compiled in with `include_bytes!`, so the simulator needs nothing on disk at run time and
//! every reply is a cheap `Bytes` clone.

use std::sync::LazyLock;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::reply::Reply;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/groq/", $file))
    };
}

/// Every `error-*.json` fixture, by the name `error()` accepts.
const ERROR_FILES: &[(&str, &[u8])] = &[
    ("400-decommissioned", fixture!("error-400-decommissioned.json")),
    (
        "400-json-mode-with-tools",
        fixture!("error-400-json-mode-with-tools.json"),
    ),
    ("400-messages-empty", fixture!("error-400-messages-empty.json")),
    ("400-n", fixture!("error-400-n.json")),
    ("400-temperature", fixture!("error-400-temperature.json")),
    ("401", fixture!("error-401.json")),
    ("404-model", fixture!("error-404-model.json")),
    ("404-unknown-url", fixture!("error-404-unknown-url.json")),
    ("413-tpm", fixture!("error-413-tpm.json")),
    ("429-rpd", fixture!("error-429-rpd.json")),
    ("429-tpm", fixture!("error-429-tpm.json")),
    ("498-flex", fixture!("error-498-flex.json")),
    ("503-plain", fixture!("error-503-plain.json")),
];

const STREAM_FILES: &[(&str, &[u8])] = &[
    ("content", fixture!("stream-content.sse")),
    ("include-usage", fixture!("stream-include-usage.sse")),
    ("tool-call", fixture!("stream-tool-call.sse")),
    ("midstream-error", fixture!("stream-midstream-error.sse")),
];

const CHAT_COMPLETION: &[u8] = fixture!("chat-completion.json");
const MODELS: &[u8] = fixture!("models.json");
const HEADERS_OK: &[u8] = fixture!("headers-ok.json");

/// An `error-*.json` file: what Groq answered, headers and body byte for byte.
#[derive(Deserialize)]
struct ErrorFile {
    status: u16,
    headers: serde_json::Map<String, serde_json::Value>,
    body: String,
}

struct ErrorFixture {
    name: &'static str,
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Parsed once: a fixture that fails to parse is left out (and a unit test says so loudly).
static ERRORS: LazyLock<Vec<ErrorFixture>> = LazyLock::new(|| {
    ERROR_FILES
        .iter()
        .filter_map(|(name, raw)| {
            let file: ErrorFile = serde_json::from_slice(raw).ok()?;
            Some(ErrorFixture {
                name,
                status: file.status,
                headers: string_pairs(file.headers),
                body: Bytes::from(file.body),
            })
        })
        .collect()
});

static OK_HEADERS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(HEADERS_OK)
        .map(string_pairs)
        .unwrap_or_default()
});

/// `(id, compact JSON of that model object)`, sliced verbatim out of models.json.
static MODEL_OBJECTS: LazyLock<Vec<(String, Bytes)>> = LazyLock::new(|| {
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(borrow)]
        data: Vec<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let Ok(list) = serde_json::from_slice::<List<'static>>(MODELS) else {
        return Vec::new();
    };
    list.data
        .into_iter()
        .filter_map(|raw| {
            let id: Id = serde_json::from_str(raw.get()).ok()?;
            let text: &'static str = raw.get();
            Some((id.id, Bytes::from_static(text.as_bytes())))
        })
        .collect()
});

fn string_pairs(map: serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    map.into_iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_owned())))
        .collect()
}

/// A `Reply::Full` replaying `error-<name>.json` (e.g. `"429-tpm"`; the `error-` prefix and
/// `.json` suffix are optional): its status, every header in the file, and the body exactly.
pub fn error(name: &str) -> Option<Reply> {
    let name = name.strip_prefix("error-").unwrap_or(name);
    let name = name.strip_suffix(".json").unwrap_or(name);
    ERRORS.iter().find(|e| e.name == name).map(|e| Reply::Full {
        status: e.status,
        headers: e.headers.clone(),
        body: e.body.clone(),
    })
}

/// The names `error()` accepts, for help texts and error messages.
pub fn error_names() -> impl Iterator<Item = &'static str> {
    ERROR_FILES.iter().map(|(name, _)| *name)
}

/// The bytes of `stream-<name>.sse`, or `None` for an unknown name.
pub fn try_stream(name: &str) -> Option<Bytes> {
    STREAM_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, raw)| Bytes::from_static(raw))
}

/// The bytes of `stream-<name>.sse`: `content`, `include-usage`, `tool-call` or
/// `midstream-error`.
///
/// # Panics
/// On any other name: this is a test helper and a typo should fail the test at once.
pub fn stream(name: &str) -> Bytes {
    match try_stream(name) {
        Some(bytes) => bytes,
        None => panic!(
            "no stream fixture {name:?}; known: {:?}",
            STREAM_FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>()
        ),
    }
}

/// The non-streaming chat completion body (chat-completion.json), exactly as captured.
pub fn chat_completion() -> Bytes {
    Bytes::from_static(CHAT_COMPLETION)
}

/// The `GET /models` body (models.json), exactly as captured.
pub fn models() -> Bytes {
    Bytes::from_static(MODELS)
}

/// One model object from models.json, verbatim, by id (`openai/gpt-oss-20b`).
pub fn model(id: &str) -> Option<Bytes> {
    MODEL_OBJECTS.iter().find(|(m, _)| m == id).map(|(_, b)| b.clone())
}

/// The headers of a successful Groq response (headers-ok.json), including the ones a gateway
/// must strip (`set-cookie`, `cf-ray`, `server`, `via`, `alt-svc`).
pub fn ok_headers() -> Vec<(String, String)> {
    OK_HEADERS.clone()
}

/// The `x_groq.id` of the first frame that carries one: Groq's `x-request-id` equals it.
pub(crate) fn request_id_in(body: &[u8]) -> Option<&str> {
    const NEEDLE: &[u8] = br#""x_groq":{"id":""#;
    let head = &body[..body.len().min(4096)];
    let start = head.windows(NEEDLE.len()).position(|w| w == NEEDLE)? + NEEDLE.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&head[start..start + len]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses() {
        assert_eq!(ERRORS.len(), ERROR_FILES.len());
        for name in error_names() {
            let Some(Reply::Full { status, headers, body }) = error(name) else {
                panic!("{name}");
            };
            assert!(status >= 400, "{name}");
            assert!(headers.iter().any(|(k, _)| k == "content-type"), "{name}");
            assert!(!body.is_empty(), "{name}");
        }
        assert!(error("error-429-tpm.json").is_some());
        assert!(ok_headers().len() > 10);
        assert_eq!(MODEL_OBJECTS.len(), 5);
        let one = model("openai/gpt-oss-20b").unwrap_or_default();
        assert!(one.starts_with(br#"{"id":"openai/gpt-oss-20b""#));
        assert!(model("nope").is_none());
    }

    #[test]
    fn request_id_is_found_in_streams() {
        assert_eq!(
            request_id_in(&stream("content")),
            Some("req_01kztw3k7d9r8m2p4q6s8t0v1x")
        );
        assert_eq!(request_id_in(b"data: [DONE]\n\n"), None);
    }
}
