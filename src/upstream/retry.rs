//! Which failures before the first byte earn another attempt, and how long to wait before it: a jittered, doubling backoff or Groq's own `retry-after`, within one budget of waiting per request.

use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::{config::RetryConfig, error::GatewayError};

/// Why an attempt was given up while nothing of its answer had reached the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection to Groq.
    Unreachable,
    /// The connection closed or was reset before Groq's headers, or a stream's first bytes.
    Reset,
    /// 498 (flex capacity), 500, 502, 503 or 504.
    Status(u16),
}

impl Failure {
    /// A transport failure worth another attempt; a timeout is not (its deadline is spent),
    /// nor is anything the client's body caused.
    pub fn of_error(error: &GatewayError) -> Option<Failure> {
        match error {
            GatewayError::UpstreamUnreachable => Some(Failure::Unreachable),
            GatewayError::UpstreamTruncated => Some(Failure::Reset),
            _ => None,
        }
    }

    /// Groq's statuses that say "not now" rather than "not this request".
    pub fn of_status(status: StatusCode) -> Option<Failure> {
        matches!(status.as_u16(), 498 | 500 | 502 | 503 | 504).then_some(Failure::Status(status.as_u16()))
    }

    /// Over capacity: the same model will likely refuse again soon, so a fallback goes first.
    pub fn over_capacity(self) -> bool {
        matches!(self, Failure::Status(498 | 503))
    }

    /// The `reason` label of `groxy_upstream_retries_total`.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Unreachable => "unreachable",
            Failure::Reset => "reset",
            Failure::Status(498) => "status_498",
            Failure::Status(500) => "status_500",
            Failure::Status(502) => "status_502",
            Failure::Status(503) => "status_503",
            Failure::Status(504) => "status_504",
            Failure::Status(_) => "status_other",
        }
    }
}

/// One request's retry budget: how many retries each model may still take, and how much waiting
/// is left in total.
#[derive(Debug, Clone)]
pub struct Waits {
    config: RetryConfig,
    waited: Duration,
}

impl Waits {
    pub fn new(config: RetryConfig) -> Self {
        Self {
            config,
            waited: Duration::ZERO,
        }
    }

    /// Retries one model may take after its first attempt.
    pub fn attempts(&self) -> u32 {
        self.config.attempts
    }

    /// The wait before retry number `retry` (0 for the first) of one model: Groq's
    /// `retry-after` when it sent one, else the backoff doubled per retry and jittered to a random
    /// 50–100 %, cut to what is left of the budget. `None` when Groq asks for longer than what is
    /// left: waiting that long is not a retry any more.
    pub fn next(&mut self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let left = self.config.max_wait.0.saturating_sub(self.waited);
        let wait = match retry_after {
            Some(asked) if asked > left => return None,
            Some(asked) => asked,
            None => jitter(self.config.backoff.0.saturating_mul(1u32 << retry.min(16))).min(left),
        };
        self.waited += wait;
        Some(wait)
    }
}

/// What Groq asks a client to wait, from `retry-after-ms` or `retry-after` (seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    text("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

/// A random 50–100 % of `base`, so clients that failed together do not retry together.
fn jitter(base: Duration) -> Duration {
    let random = getrandom::u32().unwrap_or(u32::MAX / 2);
    let fraction = 0.5 + f64::from(random) / f64::from(u32::MAX) / 2.0;
    base.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn waits(attempts: u32, backoff_ms: u64, max_wait_ms: u64) -> Waits {
        Waits::new(RetryConfig {
            attempts,
            backoff: HumanDuration(Duration::from_millis(backoff_ms)),
            max_wait: HumanDuration(Duration::from_millis(max_wait_ms)),
        })
    }

    #[test]
    fn backoff_doubles_with_jitter_and_never_exceeds_the_budget() {
        for _ in 0..200 {
            let mut w = waits(5, 100, 1000);
            let first = w.next(0, None).unwrap_or_default();
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let second = w.next(1, None).unwrap_or_default();
            assert!((100..=200).contains(&second.as_millis()), "{second:?}");
            let mut total = first + second;
            for retry in 2..5 {
                total += w.next(retry, None).unwrap_or_default();
            }
            assert!(total <= Duration::from_millis(1000), "{total:?}");
        }
    }

    #[test]
    fn groqs_retry_after_is_honoured_only_within_the_budget() {
        let mut w = waits(3, 100, 1000);
        assert_eq!(
            w.next(0, Some(Duration::from_millis(700))),
            Some(Duration::from_millis(700))
        );
        assert_eq!(w.next(1, Some(Duration::from_millis(400))), None, "300 ms left");
        assert_eq!(
            w.next(1, Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        assert_eq!(w.next(2, None), Some(Duration::ZERO), "nothing left to wait");
    }

    #[test]
    fn retry_after_headers_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", http::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", http::HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        h.insert("retry-after-ms", http::HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_not_now_failures_are_retried() {
        for code in [498, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            assert_eq!(Failure::of_status(status), Some(Failure::Status(code)));
        }
        for code in [200, 400, 401, 404, 413, 422, 429] {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            assert_eq!(Failure::of_status(status), None, "{code}");
        }
        assert_eq!(Failure::of_error(&GatewayError::UpstreamTimeout { seconds: 1 }), None);
        assert_eq!(Failure::of_error(&GatewayError::BodyRead), None);
        assert!(Failure::Status(498).over_capacity() && !Failure::Status(500).over_capacity());
    }
}
