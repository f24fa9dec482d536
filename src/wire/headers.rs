//! Which headers cross the gateway in each direction: allowlists, so nothing new leaks by default.

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Request headers a client may pass on to Groq. Everything else (cookies, the client's own
/// `Authorization`, proxy and hop-by-hop headers, `Accept-Encoding`) stays here.
///
/// The client's `accept-encoding` is deliberately not forwarded: groxy asks for
/// [`accept_identity`] instead, so the bytes it relays, inspects and caches are the bytes the
/// client decodes, and SSE is never compressed.
const FORWARDED_REQUEST: &[&str] = &[
    "content-type",
    "accept",
    "user-agent",
    "openai-organization",
    "openai-project",
    "groq-organization",
    "idempotency-key",
    // W3C trace context: the client's, or (when groxy traces) groxy's own upstream span's.
    "traceparent",
    "tracestate",
];

/// Forwarded when the body is streamed (pass-through routes): Groq's upload endpoints want the
/// length up front, and the body we send is byte-for-byte the one that was announced.
pub const CONTENT_LENGTH: &str = "content-length";

pub fn forward_request_header(name: &HeaderName, extra: &[String]) -> bool {
    let name = name.as_str();
    FORWARDED_REQUEST.contains(&name) || name.starts_with("x-stainless-") || extra.iter().any(|e| e == name)
}

/// What groxy asks Groq for: without any `Accept-Encoding` a server may pick any coding
/// (RFC 9110 §12.5.3), and a coded body could not be inspected, cached or framed as SSE.
pub fn accept_identity() -> HeaderValue {
    HeaderValue::from_static("identity")
}

/// Copies the allowed request headers and asks for an uncoded answer. `with_length` forwards
/// `content-length` too.
pub fn request_headers(incoming: &HeaderMap, extra: &[String], with_length: bool) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(incoming.len() + 1);
    for (name, value) in incoming {
        if forward_request_header(name, extra) || (with_length && name.as_str() == CONTENT_LENGTH) {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(header::ACCEPT_ENCODING, accept_identity());
    out
}

/// Response headers worth keeping from Groq: what the OpenAI SDKs read (request id, rate-limit
/// state, retry hints) and what describes the body. Cloudflare's cookies and routing headers,
/// `server`, `via` and `alt-svc` are dropped.
///
/// `content-encoding` describes the body too: gzip and deflate are decoded by the upstream
/// client (which then removes the header), so one that is still here names a coding groxy
/// cannot decode, and without it the client could not read the bytes it is given.
fn keep_response_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    matches!(
        name,
        "content-type"
            | "content-disposition"
            | "content-encoding"
            | "retry-after"
            | "retry-after-ms"
            | "x-should-retry"
    ) || name.starts_with("x-ratelimit-")
        || name.starts_with("x-groq-")
        || name.starts_with("openai-")
}

/// Groq's `x-request-id` is renamed `x-groq-request-id`: the client's `x-request-id` is
/// groxy's own (the one in its access log), and Groq's stays at hand for Groq's support.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if name.as_str() == "x-request-id" {
            out.append(GROQ_REQUEST_ID, value.clone());
        } else if keep_response_header(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

pub const GROQ_REQUEST_ID: HeaderName = HeaderName::from_static("x-groq-request-id");

pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
        })
}

/// Whether the body is in some content coding other than `identity` (one groxy could not
/// decode): its bytes mean nothing to a JSON or SSE reader.
pub fn is_coded(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONTENT_ENCODING).iter().any(|value| {
        value.to_str().map_or(true, |v| {
            v.split(',')
                .any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            // The prefix compared in place: lowercasing a copy of the value cost an allocation
            // on every response.
            let prefix = b"text/event-stream";
            ct.trim_start()
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn request_allowlist() {
        let incoming = map(&[
            ("authorization", "Bearer client"),
            ("cookie", "a=b"),
            ("content-type", "application/json"),
            ("x-stainless-lang", "python"),
            ("connection", "keep-alive"),
            ("accept-encoding", "gzip"),
            ("content-length", "12"),
            ("x-custom", "1"),
        ]);
        let out = request_headers(&incoming, &["x-custom".to_owned()], false);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "x-stainless-lang", "x-custom", "accept-encoding"]
        );
        assert_eq!(out["accept-encoding"], "identity", "never the client's gzip");
        assert!(request_headers(&incoming, &[], true).contains_key("content-length"));
    }

    #[test]
    fn response_allowlist() {
        let upstream = map(&[
            ("set-cookie", "__cf_bm=1"),
            ("cf-ray", "x"),
            ("server", "cloudflare"),
            ("via", "1.1 google"),
            ("alt-svc", "h3"),
            ("x-request-id", "req_1"),
            ("x-ratelimit-remaining-tokens", "10"),
            ("retry-after", "3"),
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ]);
        let out = response_headers(&upstream);
        let names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-groq-request-id",
                "x-ratelimit-remaining-tokens",
                "retry-after",
                "content-type",
                "content-encoding"
            ]
        );
    }

    #[test]
    fn content_types() {
        assert!(is_json(&map(&[("content-type", "application/json; charset=utf-8")])));
        assert!(!is_json(&map(&[("content-type", "text/plain")])));
        assert!(is_event_stream(&map(&[("content-type", "text/event-stream")])));
        assert!(!is_event_stream(&HeaderMap::new()));
        assert!(is_event_stream(&map(&[(
            "content-type",
            "  Text/Event-Stream; charset=utf-8"
        )])));
        assert!(!is_event_stream(&map(&[("content-type", "text/event-strea")])));
        assert!(!is_event_stream(&map(&[("content-type", "application/json")])));
        assert!(is_coded(&map(&[("content-encoding", "br")])));
        assert!(is_coded(&map(&[("content-encoding", "identity, gzip")])));
        assert!(!is_coded(&map(&[("content-encoding", "identity")])));
        assert!(!is_coded(&HeaderMap::new()));
    }
}
