//! `x-request-id`: the client's own when it is a sane token, otherwise a fresh one; returned on every response.

use http::{HeaderMap, HeaderValue};

pub const HEADER: &str = "x-request-id";

/// A client's id is kept when it is 1–128 characters from a conservative set: anything else
/// (control characters, spaces, quotes) could forge or break a log line, so it is replaced.
pub fn accept(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(HEADER)?.to_str().ok()?;
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@'));
    ok.then(|| value.to_owned())
}

/// A random UUID (version 4), the form most tracing systems expect.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: still unique within the process, which is what a log needs.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::auth::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub fn header_value(id: &str) -> HeaderValue {
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn keeps_sane_ids_and_replaces_the_rest() {
        assert_eq!(accept(&with("trace-abc_123:4")).as_deref(), Some("trace-abc_123:4"));
        assert_eq!(accept(&with("has space")), None);
        assert_eq!(accept(&with("quote\"")), None);
        assert_eq!(accept(&with(&"a".repeat(129))), None);
        assert_eq!(accept(&HeaderMap::new()), None);
        let id = generate();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(generate(), id);
    }
}
