//! Groq's `x-ratelimit-*` response headers: their names, and the one parser of them ([`RateLimits`]).
//!
//! Groq reports two budgets per key and model on every answer, 429s included: requests (per day
//! on the free tier) and tokens (per minute), each as a limit, what remains, and when it is full
//! again as a Go duration (`x-ratelimit-reset-tokens: 262ms`).

use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::duration;

/// The whole request budget of the window.
pub const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
/// The whole token budget of the window.
pub const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
/// Requests left, after this one.
pub const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
/// Tokens left, after this request's.
pub const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
/// When the request budget is whole again, a Go duration.
pub const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
/// When the token budget is whole again, a Go duration.
pub const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// The six, in the order Groq's captured responses list them.
pub static ALL: [HeaderName; 6] = [
    LIMIT_REQUESTS,
    LIMIT_TOKENS,
    REMAINING_REQUESTS,
    REMAINING_TOKENS,
    RESET_REQUESTS,
    RESET_TOKENS,
];

/// One budget as a response reports it. Each field is `None` when its header is absent or not
/// what Groq sends (a decimal count; a Go duration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset: Option<Duration>,
}

/// Both budgets of one response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub requests: Quota,
    pub tokens: Quota,
}

impl RateLimits {
    /// Reads the six headers of `headers`; whatever is missing or malformed stays `None`.
    pub fn from_headers(headers: &HeaderMap) -> RateLimits {
        let quota = |limit: &HeaderName, remaining: &HeaderName, reset: &HeaderName| Quota {
            limit: number(headers, limit),
            remaining: number(headers, remaining),
            reset: text(headers, reset).and_then(duration::parse),
        };
        RateLimits {
            requests: quota(&LIMIT_REQUESTS, &REMAINING_REQUESTS, &RESET_REQUESTS),
            tokens: quota(&LIMIT_TOKENS, &REMAINING_TOKENS, &RESET_TOKENS),
        }
    }

    /// Whether the response said nothing usable about either budget.
    pub fn is_empty(&self) -> bool {
        *self == RateLimits::default()
    }
}

fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn number(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    text(headers, name)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    use http::HeaderValue;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The headers of a captured response: headers-ok.json is a flat object, the error files
    /// keep theirs under `headers`.
    fn fixture_headers(file: &str) -> HeaderMap {
        let path = format!("{}/../../tests/fixtures/groq/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        let object = json.get("headers").unwrap_or(&json);
        let mut headers = HeaderMap::new();
        for (name, value) in object.as_object().unwrap_or_else(|| panic!("{path}: no headers")) {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{path}: {name} is not a string"));
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
            headers.append(
                name,
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}")),
            );
        }
        headers
    }

    fn quota(limit: u64, remaining: u64, reset: Duration) -> Quota {
        Quota {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(reset),
        }
    }

    #[test]
    fn reads_the_captured_groq_headers() {
        let cases = [
            (
                "headers-ok.json",
                quota(1_000, 999, ms(86_400)),
                quota(8_000, 7_965, ms(262)),
            ),
            (
                "error-429-tpm.json",
                quota(1_000, 981, ms(1_641_600)),
                quota(8_000, 684, ms(18_060)),
            ),
            (
                "error-429-rpd.json",
                quota(1_000, 0, ms(86_400)),
                quota(8_000, 8_000, Duration::ZERO),
            ),
            (
                "error-413-tpm.json",
                quota(1_000, 998, ms(172_800)),
                quota(6_000, 6_000, Duration::ZERO),
            ),
        ];
        for (file, requests, tokens) in cases {
            let limits = RateLimits::from_headers(&fixture_headers(file));
            assert_eq!(limits, RateLimits { requests, tokens }, "{file}");
            assert!(!limits.is_empty(), "{file}");
        }
    }

    #[test]
    fn the_names_are_the_ones_groq_sends() {
        let headers = fixture_headers("headers-ok.json");
        let mut sent: Vec<&str> = headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("x-ratelimit-"))
            .collect();
        let mut ours: Vec<&str> = ALL.iter().map(HeaderName::as_str).collect();
        sent.sort_unstable();
        ours.sort_unstable();
        assert_eq!(sent, ours);
    }

    #[test]
    fn missing_or_malformed_headers_stay_none() {
        assert!(RateLimits::from_headers(&HeaderMap::new()).is_empty());
        let errors_without_budget = fixture_headers("error-401.json");
        assert!(RateLimits::from_headers(&errors_without_budget).is_empty());

        let mut headers = HeaderMap::new();
        headers.insert(LIMIT_REQUESTS, HeaderValue::from_static("-1"));
        headers.insert(REMAINING_REQUESTS, HeaderValue::from_static(" 12 "));
        headers.insert(RESET_REQUESTS, HeaderValue::from_static("soon"));
        headers.insert(REMAINING_TOKENS, HeaderValue::from_static("1.5"));
        headers.insert(RESET_TOKENS, HeaderValue::from_static("1m0s"));
        let limits = RateLimits::from_headers(&headers);
        assert_eq!(
            limits,
            RateLimits {
                requests: Quota {
                    limit: None,
                    remaining: Some(12),
                    reset: None,
                },
                tokens: Quota {
                    limit: None,
                    remaining: None,
                    reset: Some(Duration::from_secs(60)),
                },
            }
        );
        assert!(!limits.is_empty());
    }
}
