//! `x-request-id`: the client's own when it is a sane token, otherwise a fresh one; returned on every response.

use std::cell::Cell;

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

thread_local! {
    /// splitmix64 state, seeded once per thread from the OS: ids need to be unique and
    /// unguessable enough for tracing, not secret, and a syscall per request costs more than
    /// the rest of the id.
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: the clock and the thread's stack address still differ per thread.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let here = &bytes as *const _ as u64;
        return nanos ^ here.rotate_left(32);
    }
    u64::from_le_bytes(bytes)
}

fn next() -> u64 {
    STATE.with(|state| {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A random UUID (version 4), the form most tracing systems expect.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&next().to_le_bytes());
    bytes[8..].copy_from_slice(&next().to_le_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0x0f)] as char);
    }
    out
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
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(id.matches('-').count(), 4);
        let many: std::collections::HashSet<String> = (0..10_000).map(|_| generate()).collect();
        assert_eq!(many.len(), 10_000);
    }
}
