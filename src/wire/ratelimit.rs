//! Rate-limit state as headers, in the form Groq and OpenAI use: `x-ratelimit-*` with Go-style durations.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::duration::{format as go_duration, parse as parse_go_duration};

/// What one Groq answer's `x-ratelimit-*` headers say, per dimension (`[requests, tokens]`),
/// read once: the budget that paces requests (`budget`) and the operators' report
/// (`observe::groq_budget`) both learn from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroqBudgetHeaders {
    pub limit: [Option<u64>; 2],
    pub remaining: [Option<u64>; 2],
    pub reset: [Option<Duration>; 2],
}

// Names built once: looking up a `&str` parses and validates it on every call.
const LIMIT: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-limit-tokens"),
];
const REMAINING: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
];
const RESET: [HeaderName; 2] = [
    HeaderName::from_static("x-ratelimit-reset-requests"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// A header's value as a whole number (whitespace around it allowed), if it is one.
pub fn header_number(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl GroqBudgetHeaders {
    pub fn read(headers: &HeaderMap) -> Self {
        let reset = |i: usize| parse_go_duration(headers.get(&RESET[i])?.to_str().ok()?);
        Self {
            limit: [header_number(headers, &LIMIT[0]), header_number(headers, &LIMIT[1])],
            remaining: [
                header_number(headers, &REMAINING[0]),
                header_number(headers, &REMAINING[1]),
            ],
            reset: [reset(0), reset(1)],
        }
    }
}

/// One dimension's state (requests or tokens) as the client should see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// Concurrent requests: slots, which have no window and so no reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    pub limit: u64,
    pub remaining: u64,
}

/// The state to report on a response: each dimension that groxy limits for this caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Dimension>,
    pub tokens: Option<Dimension>,
    /// groxy's own dimension (Groq has none): `x-ratelimit-{limit,remaining}-concurrency`.
    pub concurrency: Option<Slots>,
}

impl RateHeaders {
    /// Writes the headers, replacing Groq's for each dimension groxy limits (the client's own
    /// budget is what its retry logic needs).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |suffix: &str, name: &str, value: String| {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::try_from(format!("x-ratelimit-{suffix}-{name}")),
                HeaderValue::try_from(value),
            ) {
                headers.insert(name, value);
            }
        };
        for (name, dim) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(dim) = dim else { continue };
            set("limit", name, dim.limit.to_string());
            set("remaining", name, dim.remaining.to_string());
            set("reset", name, go_duration(dim.reset));
        }
        if let Some(slots) = self.concurrency {
            set("limit", "concurrency", slots.limit.to_string());
            set("remaining", "concurrency", slots.remaining.to_string());
        }
    }
}

/// `x-should-retry`, which the OpenAI SDKs obey before their own status rules: `true` on a 429
/// that waiting resolves, `false` on a refusal no retry can change (a 413 over the whole limit).
pub fn should_retry(headers: &mut HeaderMap, retry: bool) {
    headers.insert(
        "x-should-retry",
        HeaderValue::from_static(if retry { "true" } else { "false" }),
    );
}

/// `retry-after` (whole seconds, rounded up) and `retry-after-ms`, which the OpenAI SDKs honour.
pub fn retry_after(headers: &mut HeaderMap, wait: Duration) {
    let ms = wait.as_millis().max(1);
    let secs = ms.div_ceil(1000);
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs as u64));
    headers.insert("retry-after-ms", HeaderValue::from(ms as u64));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groqs_budget_headers_are_read_per_dimension() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-remaining-requests", " 14370 "),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-remaining-tokens", "5980"),
            ("x-ratelimit-reset-tokens", "not a duration"),
            ("x-ratelimit-limit-tokens", "-1"),
        ] {
            h.insert(name, HeaderValue::from_static(value));
        }
        let seen = GroqBudgetHeaders::read(&h);
        assert_eq!(seen.limit, [Some(14_400), None]);
        assert_eq!(seen.remaining, [Some(14_370), Some(5_980)]);
        assert_eq!(seen.reset, [Some(Duration::from_millis(179_560)), None]);
        assert_eq!(GroqBudgetHeaders::read(&HeaderMap::new()), GroqBudgetHeaders::default());
    }

    #[test]
    fn headers_are_written_per_dimension() {
        let mut h = HeaderMap::new();
        RateHeaders {
            requests: Some(Dimension {
                limit: 10,
                remaining: 3,
                reset: Duration::from_millis(42_000),
            }),
            tokens: None,
            concurrency: Some(Slots { limit: 2, remaining: 0 }),
        }
        .apply(&mut h);
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert_eq!(h["x-ratelimit-remaining-requests"], "3");
        assert_eq!(h["x-ratelimit-reset-requests"], "42s");
        assert!(h.get("x-ratelimit-limit-tokens").is_none());
        assert_eq!(h["x-ratelimit-limit-concurrency"], "2");
        assert_eq!(h["x-ratelimit-remaining-concurrency"], "0");
        assert!(h.get("x-ratelimit-reset-concurrency").is_none());
        retry_after(&mut h, Duration::from_millis(1_500));
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["retry-after-ms"], "1500");
    }
}
