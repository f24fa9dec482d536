//! Rate-limit state as headers, in the form Groq and OpenAI use: `x-ratelimit-*` with Go-style durations.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// A duration as Go prints it, which is what Groq sends: `285ms`, `7.66s`, `2m59.56s`, `1h4m48s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let total_centis = (d.as_secs_f64() * 100.0).round() as u64;
    let hours = total_centis / 360_000;
    let minutes = (total_centis / 6_000) % 60;
    let centis = total_centis % 6_000;
    let seconds = trim_seconds(centis);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

fn trim_seconds(centis: u64) -> String {
    let whole = centis / 100;
    let frac = centis % 100;
    match frac {
        0 => whole.to_string(),
        f if f % 10 == 0 => format!("{whole}.{}", f / 10),
        f => format!("{whole}.{f:02}"),
    }
}

/// One dimension's state (requests or tokens) as the client should see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dimension {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// The state to report on a response: each dimension that groxy limits for this caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Dimension>,
    pub tokens: Option<Dimension>,
}

impl RateHeaders {
    /// Writes the headers, replacing Groq's for each dimension groxy limits (the client's own
    /// budget is what its retry logic needs).
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, dim) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(dim) = dim else { continue };
            let mut set = |suffix: &str, value: String| {
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::try_from(format!("x-ratelimit-{suffix}-{name}")),
                    HeaderValue::try_from(value),
                ) {
                    headers.insert(name, value);
                }
            };
            set("limit", dim.limit.to_string());
            set("remaining", dim.remaining.to_string());
            set("reset", go_duration(dim.reset));
        }
    }
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
    fn go_durations_like_groqs() {
        let check = |ms: u64, want: &str| assert_eq!(go_duration(Duration::from_millis(ms)), want, "{ms}");
        check(0, "0s");
        check(285, "285ms");
        check(7_660, "7.66s");
        check(18_060, "18.06s");
        check(60_000, "1m0s");
        check(179_560, "2m59.56s");
        check(86_400, "1m26.4s");
        check(3_888_000, "1h4m48s");
        check(5_000, "5s");
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
        }
        .apply(&mut h);
        assert_eq!(h["x-ratelimit-limit-requests"], "10");
        assert_eq!(h["x-ratelimit-remaining-requests"], "3");
        assert_eq!(h["x-ratelimit-reset-requests"], "42s");
        assert!(h.get("x-ratelimit-limit-tokens").is_none());
        retry_after(&mut h, Duration::from_millis(1_500));
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["retry-after-ms"], "1500");
    }
}
