//! Groq's free-tier rate limits: a request budget and a token budget per API key and model,
//! enforced at admission and reported in `x-ratelimit-*` headers on every chat completion.
//!
//! Windows are fixed: each starts at the first request of its (key, model) and, once over, the
//! next request starts a new one. Time is `tokio::time::Instant`, so tests can pause it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use groq_wire::ratelimit;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;

use super::frames::go_json_string;

/// A rate-limit budget, tracked separately for each (`Authorization` header value, model).
///
/// Admission of a chat completion costs one request and `prompt_tokens + completion_tokens` of
/// the usage its answer reports. In order: no request left → 429 `requests`; a cost above the
/// whole `tokens` limit → 413; a cost above the tokens left → 429 `tokens`; otherwise both are
/// charged. Refusals charge nothing. Every chat completion answer (200, 429, 413) carries the
/// six `x-ratelimit-*` headers with the state after admission; resets are Go durations rounded
/// up to 10 ms (1 ms below one second), and `retry-after` is the wait in whole seconds, rounded
/// up.
///
/// Scripted replies (`Simulator::push`) and `x-sim-reply` `error:`, `stall` and `drop` bypass the
/// budget; `drop-after`, `stall-after` and `slice` reshape a default answer and cost what it
/// costs. Answers given before admission (401, malformed JSON, the JSON-mode-with-tools 400)
/// cost nothing and keep their own headers.
#[derive(Clone, Debug)]
pub struct SimBudget {
    /// Requests allowed per `request_window`.
    pub requests: u64,
    pub request_window: Duration,
    /// Tokens allowed per `token_window`.
    pub tokens: u64,
    pub token_window: Duration,
}

/// What admission decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Admitted,
    /// 429 `requests`: the request window is used up.
    Requests,
    /// 413: the request alone costs more than the whole token limit.
    TooLarge,
    /// 429 `tokens`: not enough tokens left in this window.
    Tokens,
}

/// The budget of one (key, model) after an admission: what the `x-ratelimit-*` headers say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) requests: u64,
    pub(crate) remaining_requests: u64,
    pub(crate) reset_requests: Duration,
    pub(crate) tokens: u64,
    pub(crate) remaining_tokens: u64,
    pub(crate) reset_tokens: Duration,
}

#[derive(Clone, Debug)]
pub(crate) struct Decision {
    pub(crate) verdict: Verdict,
    pub(crate) limits: Limits,
    /// The tokens the request would cost (charged only if admitted).
    pub(crate) cost: u64,
}

/// One fixed window: its end and what is left in it.
#[derive(Clone, Copy, Debug)]
struct Window {
    end: Instant,
    remaining: u64,
}

impl Window {
    fn start(now: Instant, len: Duration, limit: u64) -> Window {
        Window {
            end: deadline(now, len),
            remaining: limit,
        }
    }

    /// Starts a new window if this one is over.
    fn refresh(&mut self, now: Instant, len: Duration, limit: u64) {
        if now >= self.end {
            *self = Window::start(now, len, limit);
        }
    }

    fn reset(&self, now: Instant) -> Duration {
        self.end.saturating_duration_since(now)
    }
}

/// `now + len`, capped about a century ahead instead of overflowing.
fn deadline(now: Instant, len: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(len.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

#[derive(Clone, Copy, Debug)]
struct Windows {
    requests: Window,
    tokens: Window,
}

/// Every (key, model)'s windows. The lock is held for a lookup and a few comparisons only.
pub(crate) struct Budgets {
    config: SimBudget,
    /// Key (the `Authorization` value, empty when absent), then model: nested so a lookup
    /// borrows the request's bytes instead of allocating a tuple key.
    windows: Mutex<HashMap<Vec<u8>, HashMap<String, Windows>>>,
}

impl Budgets {
    pub(crate) fn new(config: SimBudget) -> Budgets {
        Budgets {
            config,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Decides whether a request of `cost` tokens from `key` for `model` goes through, and
    /// charges it if so.
    pub(crate) fn admit(&self, key: &[u8], model: &str, cost: u64) -> Decision {
        let c = &self.config;
        let now = Instant::now();
        let mut all = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let per_model = match all.get_mut(key) {
            Some(per_model) => per_model,
            None => all.entry(key.to_vec()).or_default(),
        };
        let fresh = || Windows {
            requests: Window::start(now, c.request_window, c.requests),
            tokens: Window::start(now, c.token_window, c.tokens),
        };
        let w = match per_model.get_mut(model) {
            Some(w) => w,
            None => per_model.entry(model.to_owned()).or_insert_with(fresh),
        };
        w.requests.refresh(now, c.request_window, c.requests);
        w.tokens.refresh(now, c.token_window, c.tokens);
        let verdict = if w.requests.remaining == 0 {
            Verdict::Requests
        } else if cost > c.tokens {
            Verdict::TooLarge
        } else if cost > w.tokens.remaining {
            Verdict::Tokens
        } else {
            w.requests.remaining -= 1;
            w.tokens.remaining -= cost;
            Verdict::Admitted
        };
        Decision {
            verdict,
            limits: Limits {
                requests: c.requests,
                remaining_requests: w.requests.remaining,
                reset_requests: w.requests.reset(now),
                tokens: c.tokens,
                remaining_tokens: w.tokens.remaining,
                reset_tokens: w.tokens.reset(now),
            },
            cost,
        }
    }
}

impl Limits {
    /// Sets the six `x-ratelimit-*` headers, replacing any already there.
    pub(crate) fn write_headers(&self, headers: &mut HeaderMap) {
        headers.insert(ratelimit::LIMIT_REQUESTS, HeaderValue::from(self.requests));
        headers.insert(ratelimit::LIMIT_TOKENS, HeaderValue::from(self.tokens));
        headers.insert(
            ratelimit::REMAINING_REQUESTS,
            HeaderValue::from(self.remaining_requests),
        );
        headers.insert(ratelimit::REMAINING_TOKENS, HeaderValue::from(self.remaining_tokens));
        for (name, reset) in [
            (ratelimit::RESET_REQUESTS, self.reset_requests),
            (ratelimit::RESET_TOKENS, self.reset_tokens),
        ] {
            if let Ok(value) = HeaderValue::from_str(&reset_text(reset)) {
                headers.insert(name, value);
            }
        }
    }
}

/// The organisation named in the simulator's rate-limit messages.
pub(crate) const ORG: &str = "org_01sim000000000000000000000";

const UPGRADE: &str = "Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing";

impl Decision {
    /// The 429 or 413 of a refusal, in Groq's shape (error-429-tpm.json, error-429-rpd.json,
    /// error-413-tpm.json): status, headers in the captured order, body. `None` if admitted.
    pub(crate) fn refusal(&self, model: &str, request_id: &str) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let l = &self.limits;
        let (status, kind, wait) = match self.verdict {
            Verdict::Admitted => return None,
            Verdict::Requests => (StatusCode::TOO_MANY_REQUESTS, "requests", l.reset_requests),
            Verdict::Tokens => (StatusCode::TOO_MANY_REQUESTS, "tokens", l.reset_tokens),
            Verdict::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "tokens", l.reset_tokens),
        };
        let what = match self.verdict {
            Verdict::TooLarge => "Request too large",
            _ => "Rate limit reached",
        };
        let mut message = format!("{what} for model `{model}` in organization `{ORG}` service tier `on_demand` on ");
        let _ = match self.verdict {
            Verdict::Requests => write!(
                message,
                "requests per day (RPD): Limit {}, Used {}, Requested 1. Please try again in {}. {UPGRADE}",
                l.requests,
                l.requests - l.remaining_requests,
                reset_text(wait)
            ),
            Verdict::Tokens => write!(
                message,
                "tokens per minute (TPM): Limit {}, Used {}, Requested {}. Please try again in {}. {UPGRADE}",
                l.tokens,
                l.tokens - l.remaining_tokens,
                self.cost,
                reset_text(wait)
            ),
            _ => write!(
                message,
                "tokens per minute (TPM): Limit {}, Requested {}, please reduce your message size and try again. \
                 {UPGRADE}",
                l.tokens, self.cost
            ),
        };
        let mut body = String::with_capacity(message.len() + 80);
        body.push_str("{\"error\":{\"message\":");
        go_json_string(&message, &mut body);
        let _ = writeln!(body, ",\"type\":\"{kind}\",\"code\":\"rate_limit_exceeded\"}}}}");

        let mut headers = HeaderMap::with_capacity(12);
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after(wait)));
        self.limits.write_headers(&mut headers);
        if let Ok(id) = HeaderValue::from_str(request_id) {
            headers.insert("x-request-id", id);
        }
        Some((status, headers, Bytes::from(body)))
    }
}

/// `retry-after`: whole seconds, rounded up.
pub(crate) fn retry_after(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 { secs + 1 } else { secs }
}

/// A reset as Groq prints it: a Go duration rounded up to 10 ms (to 1 ms below one second),
/// e.g. `18.06s`, `2m59.56s`, `285ms`. Rounding up means a client that waits exactly this long
/// finds the window over.
pub(crate) fn reset_text(d: Duration) -> String {
    let step = if d >= Duration::from_secs(1) {
        10_000_000
    } else {
        1_000_000
    };
    let ns = d.as_nanos();
    let rounded = ns.div_ceil(step) * step;
    groq_wire::duration::format(Duration::new(
        u64::try_from(rounded / 1_000_000_000).unwrap_or(u64::MAX),
        (rounded % 1_000_000_000) as u32,
    ))
}

/// Prompt and completion tokens, as a response's `usage` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
}

impl Usage {
    pub(crate) fn new(prompt: usize, completion: usize) -> Usage {
        Usage {
            prompt: prompt as u64,
            completion: completion as u64,
        }
    }

    pub(crate) fn cost(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }
}

/// The usage a canned body reports: a JSON body's `usage`, or the last `usage` (or
/// `x_groq.usage`) of an SSE body's events; zero if there is none.
pub(crate) fn usage_in(body: &[u8]) -> Usage {
    #[derive(Deserialize)]
    struct Carrier {
        #[serde(default)]
        usage: Option<Counts>,
        #[serde(default)]
        x_groq: Option<XGroq>,
    }
    #[derive(Deserialize)]
    struct XGroq {
        #[serde(default)]
        usage: Option<Counts>,
    }
    #[derive(Deserialize)]
    struct Counts {
        #[serde(default)]
        prompt_tokens: u64,
        #[serde(default)]
        completion_tokens: u64,
    }
    let usage = |c: Carrier| {
        c.usage.or(c.x_groq.and_then(|x| x.usage)).map(|u| Usage {
            prompt: u.prompt_tokens,
            completion: u.completion_tokens,
        })
    };
    if let Ok(carrier) = serde_json::from_slice::<Carrier>(body) {
        return usage(carrier).unwrap_or_default();
    }
    body.rsplit(|&b| b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data: "))
        .filter_map(|json| serde_json::from_slice::<Carrier>(json).ok())
        .find_map(usage)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    const MINUTE: Duration = Duration::from_secs(60);
    const DAY: Duration = Duration::from_secs(86_400);

    fn budgets(requests: u64, tokens: u64) -> Budgets {
        Budgets::new(SimBudget {
            requests,
            request_window: DAY,
            tokens,
            token_window: MINUTE,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn resets_round_up_to_groq_precision() {
        assert_eq!(reset_text(Duration::ZERO), "0s");
        assert_eq!(reset_text(Duration::from_nanos(1)), "1ms");
        assert_eq!(reset_text(Duration::from_micros(284_001)), "285ms");
        assert_eq!(reset_text(Duration::from_micros(999_500)), "1s");
        assert_eq!(reset_text(Duration::from_micros(18_050_001)), "18.06s");
        assert_eq!(reset_text(ms(179_560)), "2m59.56s");
        assert_eq!(retry_after(ms(18_060)), 19);
        assert_eq!(retry_after(Duration::from_secs(60)), 60);
        assert_eq!(retry_after(Duration::ZERO), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_run_out_and_come_back_after_the_window() {
        let b = budgets(2, 1_000);
        let first = b.admit(b"Bearer a", "m", 10);
        assert_eq!(first.verdict, Verdict::Admitted);
        assert_eq!(
            first.limits,
            Limits {
                requests: 2,
                remaining_requests: 1,
                reset_requests: DAY,
                tokens: 1_000,
                remaining_tokens: 990,
                reset_tokens: MINUTE,
            }
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(b"Bearer a", "m", 10).verdict, Verdict::Admitted);
        tokio::time::advance(Duration::from_secs(1)).await;
        let refused = b.admit(b"Bearer a", "m", 10);
        assert_eq!(refused.verdict, Verdict::Requests);
        assert_eq!(refused.limits.remaining_requests, 0);
        assert_eq!(refused.limits.remaining_tokens, 980);
        assert_eq!(refused.limits.reset_requests, DAY - Duration::from_secs(2));
        assert_eq!(refused.limits.reset_tokens, MINUTE - Duration::from_secs(2));

        let Some((status, headers, body)) = refused.refusal("m", "req_x") else {
            panic!("admitted");
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
        assert_eq!(header("retry-after"), "86398");
        assert_eq!(header("x-ratelimit-reset-requests"), "23h59m58s");
        assert_eq!(header("x-ratelimit-reset-tokens"), "58s");
        assert_eq!(header("x-ratelimit-remaining-requests"), "0");
        assert_eq!(header("x-request-id"), "req_x");
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "retry-after",
                "x-ratelimit-limit-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-requests",
                "x-ratelimit-reset-tokens",
                "x-request-id",
            ]
        );
        let want = format!(
            "{{\"error\":{{\"message\":\"Rate limit reached for model `m` in organization `{ORG}` service tier \
             `on_demand` on requests per day (RPD): Limit 2, Used 2, Requested 1. Please try again in 23h59m58s. \
             {UPGRADE}\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}}}\n"
        );
        assert_eq!(String::from_utf8_lossy(&body), want);

        // Requests come back only after the day. The refusal just before still started a new
        // token window, since the first one had ended.
        tokio::time::advance(DAY - Duration::from_secs(2) - ms(1)).await;
        let refused = b.admit(b"Bearer a", "m", 10);
        assert_eq!(refused.verdict, Verdict::Requests);
        assert_eq!(refused.limits.remaining_tokens, 1_000);
        assert_eq!(refused.limits.reset_requests, ms(1));
        tokio::time::advance(ms(1)).await;
        let again = b.admit(b"Bearer a", "m", 10);
        assert_eq!(again.verdict, Verdict::Admitted);
        assert_eq!(again.limits.remaining_requests, 1);
        assert_eq!(again.limits.reset_requests, DAY);
        assert_eq!(again.limits.remaining_tokens, 990);
        assert_eq!(again.limits.reset_tokens, MINUTE - ms(1));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_run_out_and_refusals_cost_nothing() {
        let b = budgets(100, 100);
        assert_eq!(b.admit(b"k", "m", 60).verdict, Verdict::Admitted);
        tokio::time::advance(ms(18_060)).await;
        let refused = b.admit(b"k", "m", 41);
        assert_eq!(refused.verdict, Verdict::Tokens);
        assert_eq!(refused.limits.remaining_tokens, 40);
        assert_eq!(refused.limits.remaining_requests, 99);
        assert_eq!(refused.limits.reset_tokens, ms(41_940));
        let Some((status, headers, body)) = refused.refusal("openai/gpt-oss-20b", "req_y") else {
            panic!("admitted");
        };
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers.get("retry-after").map(HeaderValue::as_bytes), Some(&b"42"[..]));
        assert_eq!(
            headers.get("x-ratelimit-reset-tokens").map(HeaderValue::as_bytes),
            Some(&b"41.94s"[..])
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("on tokens per minute (TPM): Limit 100, Used 60, Requested 41. Please try again in 41.94s."),
            "{text}"
        );
        assert!(
            text.ends_with(",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}\n"),
            "{text}"
        );
        // What is left still fits exactly.
        let exact = b.admit(b"k", "m", 40);
        assert_eq!(exact.verdict, Verdict::Admitted);
        assert_eq!(exact.limits.remaining_tokens, 0);
        assert_eq!(exact.limits.remaining_requests, 98);
        assert_eq!(b.admit(b"k", "m", 1).verdict, Verdict::Tokens);
        // A new token window starts with the first request after the old one ended.
        tokio::time::advance(ms(41_940)).await;
        let renewed = b.admit(b"k", "m", 1);
        assert_eq!(renewed.verdict, Verdict::Admitted);
        assert_eq!(renewed.limits.remaining_tokens, 99);
        assert_eq!(renewed.limits.reset_tokens, MINUTE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_oversized_request_gets_413_and_costs_nothing() {
        let b = budgets(10, 100);
        let refused = b.admit(b"k", "qwen/qwen3-32b", 101);
        assert_eq!(refused.verdict, Verdict::TooLarge);
        assert_eq!(refused.limits.remaining_tokens, 100);
        assert_eq!(refused.limits.remaining_requests, 10);
        let Some((status, headers, body)) = refused.refusal("qwen/qwen3-32b", "req_z") else {
            panic!("admitted");
        };
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers.get("retry-after").map(HeaderValue::as_bytes), Some(&b"60"[..]));
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.starts_with("{\"error\":{\"message\":\"Request too large for model `qwen/qwen3-32b`"),
            "{text}"
        );
        assert!(text.contains("(TPM): Limit 100, Requested 101, please reduce your message size"));
        // The whole limit is fine, and an empty bucket still answers 413 to an oversized one.
        assert_eq!(b.admit(b"k", "qwen/qwen3-32b", 100).verdict, Verdict::Admitted);
        assert_eq!(b.admit(b"k", "qwen/qwen3-32b", 101).verdict, Verdict::TooLarge);
        assert_eq!(b.admit(b"k", "qwen/qwen3-32b", 1).verdict, Verdict::Tokens);
        // No request left wins over a request that is too large.
        let b = budgets(1, 100);
        assert_eq!(b.admit(b"k", "m", 1).verdict, Verdict::Admitted);
        assert_eq!(b.admit(b"k", "m", 500).verdict, Verdict::Requests);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_and_models_have_their_own_budgets() {
        let b = budgets(1, 100);
        assert_eq!(b.admit(b"Bearer a", "m1", 100).verdict, Verdict::Admitted);
        assert_eq!(b.admit(b"Bearer a", "m1", 0).verdict, Verdict::Requests);
        tokio::time::advance(Duration::from_secs(5)).await;
        for (key, model) in [(&b"Bearer a"[..], "m2"), (b"Bearer b", "m1"), (b"", "m1")] {
            let d = b.admit(key, model, 100);
            assert_eq!(d.verdict, Verdict::Admitted, "{model}");
            assert_eq!(d.limits.reset_requests, DAY, "its own window starts now");
            assert_eq!(d.limits.remaining_tokens, 0);
        }
        let a = b.admit(b"Bearer a", "m1", 0);
        assert_eq!(a.verdict, Verdict::Requests);
        assert_eq!(a.limits.reset_requests, DAY - Duration::from_secs(5));
    }

    #[test]
    fn usage_is_read_from_canned_bodies() {
        assert_eq!(usage_in(&fixtures::chat_completion()), Usage::new(16, 19));
        assert_eq!(usage_in(&fixtures::stream("content")), Usage::new(73, 26));
        assert_eq!(usage_in(&fixtures::stream("tool-call")), Usage::new(210, 15));
        assert_eq!(usage_in(&fixtures::stream("include-usage")), Usage::new(75, 1));
        assert_eq!(usage_in(b"{\"id\":1}"), Usage::default());
        assert_eq!(usage_in(b"not json"), Usage::default());
        assert_eq!(Usage::new(16, 19).cost(), 35);
    }
}
