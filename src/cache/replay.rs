//! Answers from the cache: a stored entry replayed byte-exact, or a flight's body at one reader's pace.

use axum::{body::Body, response::Response};
use http::{HeaderValue, header};

use super::{
    flight::{Head, Reader},
    store::Entry,
};

/// How the cache took part in an answer: the `x-groxy-cache` header, the access line's
/// `cache` field and the metrics' `result` label all come from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// A stored answer, replayed.
    Hit,
    /// Sent to Groq, and stored if it completes.
    Miss,
    /// Joined an identical request already on its way to Groq.
    Coalesced,
    /// Not a request the cache may answer.
    Bypass,
}

impl CacheStatus {
    /// The `x-groxy-cache` header value (and the access line's).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Coalesced => "COALESCED",
            CacheStatus::Bypass => "BYPASS",
        }
    }

    /// The metrics' `result` label.
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Coalesced => "coalesced",
            CacheStatus::Bypass => "bypass",
        }
    }

    pub fn header(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }
}

/// Replays a stored entry: the same status, content type, request id and body chunks.
pub fn replay(entry: &Entry) -> Response {
    let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = entry.chunks.iter().cloned().map(Ok).collect();
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    *response.status_mut() = http::StatusCode::from_u16(entry.status).unwrap_or(http::StatusCode::OK);
    let headers = response.headers_mut();
    if let Some(ct) = &entry.content_type {
        headers.insert(header::CONTENT_TYPE, ct.clone());
    }
    if let Some(id) = &entry.request_id {
        headers.insert(crate::wire::headers::GROQ_REQUEST_ID, id.clone());
    }
    if entry.is_sse {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    headers.insert("x-groxy-cache", CacheStatus::Hit.header());
    headers.insert(header::AGE, HeaderValue::from(entry.age().as_secs()));
    response
}

/// A flight reader's response: the shared head, then the shared body at this reader's pace.
///
/// A successful answer loses Groq's `x-ratelimit-*` headers, so a MISS and a COALESCED answer
/// carry the same set as a HIT of the same request: a stored answer cannot carry Groq's budget
/// as it is now, and a replayed one would be stale, so none of them does. (groxy's own
/// headers for the caller's limits are added to all three afterwards.) Errors keep everything
/// Groq sent: they are never stored, and the client's retry needs them.
pub fn from_reader(head: Head, reader: Reader, status: CacheStatus) -> Response {
    let mut response = Response::new(Body::from_stream(reader.into_stream()));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    if head.status.is_success() {
        drop_groq_rate_limits(response.headers_mut());
    }
    response.headers_mut().insert("x-groxy-cache", status.header());
    response
}

fn drop_groq_rate_limits(headers: &mut http::HeaderMap) {
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-ratelimit-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether a whole body is an answer worth replaying for the TTL: an event stream that ended
/// with `data: [DONE]` (chat) or with `response.completed` or `response.incomplete` (the
/// Responses API, which sends no `[DONE]`) and carried no error event, or a JSON body that
/// parses. Anything else (an HTML page from a proxy, a stream cut short however it ended) would
/// be served long after Groq recovered.
pub fn is_whole_answer(chunks: &[bytes::Bytes], is_sse: bool, is_json: bool) -> bool {
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    if is_sse {
        !has_error_event(&joined) && (ends_with_done(&joined) || ends_with_response_end(&joined))
    } else {
        is_json && serde_json::from_slice::<serde::de::IgnoredAny>(&joined).is_ok()
    }
}

/// Whether the stream's last event is `data: [DONE]`.
fn ends_with_done(body: &[u8]) -> bool {
    let body = body.trim_ascii_end();
    let Some(rest) = body.strip_suffix(b"[DONE]") else {
        return false;
    };
    let Some(rest) = rest.strip_suffix(b"data:").or_else(|| rest.strip_suffix(b"data: ")) else {
        return false;
    };
    rest.is_empty() || rest.ends_with(b"\n")
}

/// Whether the stream's last event is the Responses API's end of a whole answer: named
/// `response.completed` or `response.incomplete` (the output cap was reached), as Groq names
/// every event of these streams.
fn ends_with_response_end(body: &[u8]) -> bool {
    let body = body.trim_ascii_end();
    let start = memchr::memmem::rfind(body, b"\n\n").map_or(0, |at| at + 2);
    let last = &body[start..];
    [&b"event: response.completed\n"[..], b"event: response.incomplete\n"]
        .iter()
        .any(|name| last.starts_with(name))
}

/// Copies the chunks into one allocation of exactly `size` bytes, keeping their boundaries.
///
/// Why: chunks read from a socket are slices of larger read buffers; stored as they are, a
/// 200-byte chunk could keep a 16 KiB buffer alive. Compacted, a cached byte costs one byte.
pub fn compact(chunks: &[bytes::Bytes], size: usize) -> Vec<bytes::Bytes> {
    let mut buffer = bytes::BytesMut::with_capacity(size);
    let mut bounds = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let start = buffer.len();
        buffer.extend_from_slice(chunk);
        bounds.push(start..buffer.len());
    }
    let buffer = buffer.freeze();
    bounds.into_iter().map(|range| buffer.slice(range)).collect()
}

/// Whether an SSE body carries an error event (Groq's mid-stream error, or groxy's truncation
/// frame): such a stream is never stored.
fn has_error_event(joined: &[u8]) -> bool {
    joined.starts_with(b"data: {\"error\"")
        || memchr::memmem::find(joined, b"\ndata: {\"error\"").is_some()
        || joined.starts_with(b"event: error\n")
        || memchr::memmem::find(joined, b"\nevent: error\n").is_some()
        || memchr::memmem::find(joined, b"\nevent: response.failed\n").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_bytes_and_boundaries() {
        let big = bytes::Bytes::from(vec![7u8; 16_384]);
        let chunks = vec![big.slice(0..3), bytes::Bytes::from_static(b"abcd"), big.slice(100..102)];
        let compacted = compact(&chunks, 9);
        assert_eq!(compacted, chunks);
        assert_eq!(compacted.iter().map(|c| c.len()).collect::<Vec<_>>(), [3, 4, 2]);
    }

    #[test]
    fn only_whole_answers_are_worth_storing() {
        let b = |s: &'static [u8]| bytes::Bytes::from_static(s);
        let ok = [b(b"data: {\"x\":1}\n\ndata: [DO"), b(b"NE]\n\n")];
        assert!(is_whole_answer(&ok, true, false));
        let err = [
            b(b"data: {\"x\":1}\n"),
            b(b"\ndata: {\"error\":{}}\n\n"),
            b(b"data: [DONE]\n\n"),
        ];
        assert!(!is_whole_answer(&err, true, false), "an error event anywhere");
        assert!(!is_whole_answer(&[b(b"data: {\"x\":1}\n\n")], true, false), "no [DONE]");
        assert!(!is_whole_answer(&[b(b"data: {\"x\":\"data: [DONE]\"}")], true, false));
        assert!(is_whole_answer(&[b(b"data:[DONE]\n\n")], true, false));
        assert!(is_whole_answer(&[b(b"{\"id\":"), b(b"1}\n")], false, true));
        assert!(!is_whole_answer(&[b(b"<html>bad gateway</html>")], false, true));
        assert!(!is_whole_answer(&[b(b"{\"id\":1")], false, true), "cut short");
        assert!(!is_whole_answer(&[b(b"{}")], false, false), "not labelled JSON");
        let completed = b(b"event: response.created\ndata: {}\n\nevent: response.completed\ndata: {}\n\n");
        assert!(is_whole_answer(
            &[completed.slice(..30), completed.slice(30..)],
            true,
            false
        ));
        let incomplete = b(b"event: response.created\ndata: {}\n\nevent: response.incomplete\ndata: {}\n\n");
        assert!(is_whole_answer(&[incomplete], true, false));
        let cut = b(b"event: response.created\ndata: {}\n\nevent: response.output_text.delta\ndata: {}\n\n");
        assert!(!is_whole_answer(&[cut], true, false), "no response.completed");
        let failed = b(
            b"event: response.created\ndata: {}\n\nevent: error\ndata: {}\n\nevent: response.completed\ndata: {}\n\n",
        );
        assert!(!is_whole_answer(&[failed], true, false), "an error event");
    }
}
