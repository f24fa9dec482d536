//! The access line: one per request, written straight as JSON when logs are JSON.
//!
//! Why not only `tracing::info!`: its JSON formatter costs some 30,000 instructions for a line
//! of twenty fields, which at full load was a tenth of groxy's CPU. The same line serialised
//! from a struct costs a fraction of that. The `tracing` event is still the path for the human
//! format, and the filter (`RUST_LOG`, `log.level`) decides for both.

use std::{
    io::Write,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::telemetry::{LineWriter, json_output};

pub struct Line<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub key: Option<&'a str>,
    pub model: Option<&'a str>,
    pub stream: bool,
    pub cache: Option<&'a str>,
    pub latency_ms: f64,
    pub overhead_ms: f64,
    pub upstream_ms: Option<f64>,
    pub queued_ms: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// What Groq's usage cost in US dollars, priced with the price table.
    pub cost_usd: Option<f64>,
    pub upstream_key: Option<&'a str>,
    pub upstream_status: Option<u16>,
    pub upstream_request_id: Option<&'a str>,
    /// Requests sent to Groq for this one; absent when none was.
    pub attempts: Option<u32>,
    /// The fallback model that answered.
    pub upstream_model: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub outcome: &'a str,
    pub trace_id: Option<&'a str>,
}

/// A JSON object written field by field: the line's shape is fixed, so a serializer's
/// generality (and its per-character escaping of strings that need none) is not needed.
struct Object {
    out: Vec<u8>,
    first: bool,
}

impl Object {
    fn new() -> Self {
        let mut out = Vec::with_capacity(640);
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push(b'"');
        escape_into(&mut self.out, value);
        self.out.push(b'"');
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        use std::io::Write as _;
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn opt_num(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.num(key, value);
        }
    }

    fn int(&mut self, key: &str, value: u64) {
        self.key(key);
        write_u64(&mut self.out, value);
    }

    fn opt_int(&mut self, key: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.int(key, value);
        }
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    fn millis(&mut self, key: &str, value: f64) {
        self.key(key);
        write_millis(&mut self.out, value);
    }

    fn opt_millis(&mut self, key: &str, value: Option<f64>) {
        if let Some(value) = value {
            self.millis(key, value);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(b"}\n");
        self.out
    }
}

/// The bytes a JSON string must escape: `"`, `\` and the control characters.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// JSON string escaping; most values (ids, names, paths) need none and are copied whole.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    if !value.bytes().any(|b| NEEDS_ESCAPE[usize::from(b)]) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            b => out.push(b),
        }
    }
}

/// Writes `value` in decimal, as `Display` would, without the formatting machinery.
fn write_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The largest whole number of thousandths written without `Display`: below it every multiple
/// of 0.001 is a double of its own, more than 0.001 from any other decimal as short.
const MILLIS_EXACT_BELOW: f64 = 4_000_000_000_000_000.0;

/// Writes a time in milliseconds rounded to the microsecond (`observer::ms`: a whole number of
/// thousandths over 1000) exactly as `Display` writes it, at a tenth of the cost.
///
/// Why it is the same text: `Display` writes the shortest decimal that reads back as the
/// same double. For `value` = n / 1000 (correctly rounded), n's decimal with three places, its
/// trailing zeros dropped, reads back as `value`, and no shorter or other decimal of that
/// length does while n < [`MILLIS_EXACT_BELOW`] (the double's spacing is below 0.001 there,
/// and any other such decimal is at least 0.001 away). Anything else goes to `Display`.
fn write_millis(out: &mut Vec<u8>, value: f64) {
    use std::io::Write as _;
    let thousandths = (value * 1000.0).round();
    let exact = (0.0..MILLIS_EXACT_BELOW).contains(&thousandths) && thousandths / 1000.0 == value;
    if !exact || value.is_sign_negative() {
        let _ = write!(out, "{value}");
        return;
    }
    let n = thousandths as u64;
    write_u64(out, n / 1000);
    let mut fraction = n % 1000;
    if fraction == 0 {
        return;
    }
    out.push(b'.');
    let mut scale = 100;
    while fraction > 0 {
        out.push(b'0' + (fraction / scale) as u8);
        fraction %= scale;
        scale /= 10;
    }
}

/// Writes `value` with at least `width` digits, zeros in front.
fn write_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let start = out.len();
    write_u64(out, value);
    let written = out.len() - start;
    if written < width {
        let pad = width - written;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

/// Writes `line` as JSON if logs are JSON (then returns `true`, whether or not the level is
/// enabled for `groxy::access`); `false` tells the caller to emit the `tracing` event instead.
pub fn write_json(line: &Line<'_>, info: bool) -> bool {
    if !json_output() {
        return false;
    }
    let enabled = if info {
        tracing::enabled!(target: "groxy::access", tracing::Level::INFO)
    } else {
        tracing::enabled!(target: "groxy::access", tracing::Level::DEBUG)
    };
    if enabled {
        let _ = (LineWriter { urgent: false }).write_all(&render(line, info, SystemTime::now()));
    }
    true
}

fn render(line: &Line<'_>, info: bool, now: SystemTime) -> Vec<u8> {
    let mut o = Object::new();
    o.key("timestamp");
    o.out.push(b'"');
    rfc3339_into(&mut o.out, now);
    o.out.push(b'"');
    // Fixed fields, written as they would be escaped (they need none).
    o.out.extend_from_slice(if info {
        br#","level":"INFO","message":"request","target":"groxy::access""#
    } else {
        br#","level":"DEBUG","message":"request","target":"groxy::access""#
    });
    o.str("request_id", line.request_id);
    o.str("method", line.method);
    o.str("path", line.path);
    o.str("route", line.route);
    o.int("status", u64::from(line.status));
    o.opt_str("key", line.key);
    o.opt_str("model", line.model);
    o.bool("stream", line.stream);
    o.opt_str("cache", line.cache);
    o.millis("latency_ms", line.latency_ms);
    o.millis("overhead_ms", line.overhead_ms);
    o.opt_millis("upstream_ms", line.upstream_ms);
    o.opt_millis("queued_ms", line.queued_ms);
    o.opt_int("prompt_tokens", line.prompt_tokens);
    o.opt_int("completion_tokens", line.completion_tokens);
    o.opt_num("cost_usd", line.cost_usd);
    o.opt_str("upstream_key", line.upstream_key);
    o.opt_int("upstream_status", line.upstream_status.map(u64::from));
    o.opt_str("upstream_request_id", line.upstream_request_id);
    o.opt_int("attempts", line.attempts.map(u64::from));
    o.opt_str("upstream_model", line.upstream_model);
    o.opt_str("limit", line.limit);
    o.str("outcome", line.outcome);
    o.opt_str("trace_id", line.trace_id);
    o.finish()
}

/// `2026-11-24T23:54:39.674895Z`, as tracing-subscriber writes it.
#[cfg(test)]
fn rfc3339(t: SystemTime) -> String {
    let mut out = Vec::new();
    rfc3339_into(&mut out, t);
    String::from_utf8_lossy(&out).into_owned()
}

/// Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm): year, month, day.
fn civil_date(days: u64) -> (i64, i64, i64) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// [`rfc3339`], written digit by digit.
fn rfc3339_into(out: &mut Vec<u8>, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let rem = secs % 86_400;
    let (year, month, day) = civil_date(secs / 86_400);
    // Years before 1 would need a sign; SystemTime before the epoch reads as the epoch above.
    write_padded(out, year.max(0) as u64, 4);
    for (separator, value, width) in [
        (b'-', month as u64, 2),
        (b'-', day as u64, 2),
        (b'T', rem / 3600, 2),
        (b':', rem % 3600 / 60, 2),
        (b':', rem % 60, 2),
        (b'.', u64::from(since.subsec_micros()), 6),
    ] {
        out.push(separator);
        write_padded(out, value, width);
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_valid_json_with_hostile_values_escaped() {
        let line = Line {
            request_id: "id-1",
            method: "POST",
            path: "/v1/\"quoted\"\\path\n\u{1}",
            route: "chat_completions",
            status: 200,
            key: Some("alice"),
            model: None,
            stream: true,
            cache: Some("HIT"),
            latency_ms: 1.25,
            overhead_ms: 0.5,
            upstream_ms: None,
            queued_ms: None,
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            cost_usd: None,
            upstream_key: None,
            upstream_status: None,
            upstream_request_id: Some("req_1"),
            attempts: Some(2),
            upstream_model: None,
            limit: None,
            outcome: "complete",
            trace_id: None,
        };
        let bytes = render(&line, true, UNIX_EPOCH);
        assert!(bytes.ends_with(b"}\n"));
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        assert_eq!(v["path"], "/v1/\"quoted\"\\path\n\u{1}");
        assert_eq!(v["status"], 200);
        assert_eq!(v["stream"], true);
        assert_eq!(v["latency_ms"], 1.25);
        assert_eq!(v["attempts"], 2);
        assert_eq!(v["target"], "groxy::access");
        assert!(v.get("model").is_none(), "absent fields are left out");
    }

    /// The line as it was written before the digits were written by hand: `Display` for every
    /// number and `format!` for the timestamp.
    fn render_with_display(line: &Line<'_>, info: bool, now: SystemTime) -> Vec<u8> {
        let mut o = Object::new();
        o.str("timestamp", &rfc3339_with_format(now));
        o.str("level", if info { "INFO" } else { "DEBUG" });
        o.str("message", "request");
        o.str("target", "groxy::access");
        o.str("request_id", line.request_id);
        o.str("method", line.method);
        o.str("path", line.path);
        o.str("route", line.route);
        o.num("status", line.status);
        o.opt_str("key", line.key);
        o.opt_str("model", line.model);
        o.num("stream", line.stream);
        o.opt_str("cache", line.cache);
        o.num("latency_ms", line.latency_ms);
        o.num("overhead_ms", line.overhead_ms);
        o.opt_num("upstream_ms", line.upstream_ms);
        o.opt_num("queued_ms", line.queued_ms);
        o.opt_num("prompt_tokens", line.prompt_tokens);
        o.opt_num("completion_tokens", line.completion_tokens);
        o.opt_num("cost_usd", line.cost_usd);
        o.opt_str("upstream_key", line.upstream_key);
        o.opt_num("upstream_status", line.upstream_status);
        o.opt_str("upstream_request_id", line.upstream_request_id);
        o.opt_num("attempts", line.attempts);
        o.opt_str("upstream_model", line.upstream_model);
        o.opt_str("limit", line.limit);
        o.str("outcome", line.outcome);
        o.opt_str("trace_id", line.trace_id);
        o.finish()
    }

    /// The timestamp as `format!` wrote it.
    fn rfc3339_with_format(t: SystemTime) -> String {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let rem = secs % 86_400;
        let (year, month, day) = super::civil_date(secs / 86_400);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            since.subsec_micros()
        )
    }

    /// `observer::ms`: a duration in milliseconds, rounded to the microsecond.
    fn ms(d: Duration) -> f64 {
        (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
    }

    fn millis_text(value: f64) -> String {
        let mut out = Vec::new();
        write_millis(&mut out, value);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn milliseconds_are_written_as_display_writes_them() {
        for (value, text) in [
            (0.0, "0"),
            (0.001, "0.001"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (1.25, "1.25"),
            (1000.0, "1000"),
            (12.345, "12.345"),
            (-0.0, "-0"),
            (0.0005, "0.0005"),
            (f64::NAN, "NaN"),
            (1e300, &format!("{}", 1e300)),
        ] {
            assert_eq!(millis_text(value), text, "{value:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn milliseconds_match_display(
            nanos in 0u64..=u64::MAX / 4,
            thousandths in 0u64..4_000_000_000_000_000,
            any in proptest::num::f64::ANY,
        ) {
            let from_duration = ms(Duration::from_nanos(nanos));
            proptest::prop_assert_eq!(millis_text(from_duration), format!("{from_duration}"));
            let exact = thousandths as f64 / 1000.0;
            proptest::prop_assert_eq!(millis_text(exact), format!("{exact}"));
            proptest::prop_assert_eq!(millis_text(any), format!("{any}"));
        }

        #[test]
        fn lines_are_the_lines_display_wrote(
            micros in 0u64..253_402_300_800_000_000,
            latency in 0u64..10_000_000_000_000,
            overhead in 0u64..10_000_000_000,
            upstream in proptest::option::of(0u64..10_000_000_000_000),
            tokens in proptest::option::of(proptest::num::u64::ANY),
            status in proptest::num::u16::ANY,
            attempts in proptest::option::of(proptest::num::u32::ANY),
            stream in proptest::bool::ANY,
            info in proptest::bool::ANY,
        ) {
            let now = UNIX_EPOCH + Duration::from_micros(micros);
            let line = Line {
                request_id: "6f1c2a4e-0b7d-4c1e-9a53-2f8e7d6c5b4a",
                method: "POST",
                path: "/v1/chat/completions",
                route: "chat_completions",
                status,
                key: Some("team-a"),
                model: Some("openai/gpt-oss-20b"),
                stream,
                cache: Some("BYPASS"),
                latency_ms: ms(Duration::from_nanos(latency)),
                overhead_ms: ms(Duration::from_nanos(overhead)),
                upstream_ms: upstream.map(|n| ms(Duration::from_nanos(n))),
                queued_ms: upstream.map(|n| ms(Duration::from_nanos(n / 3))),
                prompt_tokens: tokens,
                completion_tokens: tokens.map(|t| t / 7),
                cost_usd: tokens.map(|t| t as f64 / 1e9),
                upstream_key: Some("key-1"),
                upstream_status: Some(status),
                upstream_request_id: Some("req_01"),
                attempts,
                upstream_model: None,
                limit: None,
                outcome: "complete",
                trace_id: None,
            };
            proptest::prop_assert_eq!(
                String::from_utf8(render(&line, info, now)).expect("utf-8"),
                String::from_utf8(render_with_display(&line, info, now)).expect("utf-8")
            );
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_996_479_674_895);
        assert_eq!(rfc3339(t), "2026-11-29T23:54:39.674895Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000000Z");
    }
}
