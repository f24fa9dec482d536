//! End-to-end checks of the simulator over raw TCP: routes, byte-exact streams, faults, and
//! the detection of clients that hang up.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const CHAT: &str = "/openai/v1/chat/completions";
const STREAM_BODY: &str = r#"{"model":"openai/gpt-oss-20b","stream":true,"messages":[]}"#;
const JSON_BODY: &str = r#"{"model":"openai/gpt-oss-20b","messages":[]}"#;

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

async fn send(sim: &Simulator, raw: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(sim.addr()).await.unwrap_or_else(|e| panic!("{e}"));
    stream.write_all(raw).await.unwrap_or_else(|e| panic!("{e}"));
    stream
}

struct Answer {
    head: String,
    /// De-chunked body.
    body: Vec<u8>,
    /// Whether a chunked body ended with its terminating zero-length chunk.
    terminated: bool,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }
    fn has_header(&self, line: &str) -> bool {
        self.head.lines().any(|l| l.eq_ignore_ascii_case(line))
    }
}

/// Sends a `connection: close` request and reads until the server closes or resets.
async fn call(sim: &Simulator, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = send(sim, &request(method, path, headers, body)).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer within 5 s"),
        }
    }
    parse(&raw)
}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = &raw[split..];
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Answer {
            head,
            body: rest.to_vec(),
            terminated: true,
        };
    }
    let mut body = Vec::new();
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Answer {
                head,
                body,
                terminated: false,
            };
        };
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return Answer {
                head,
                body,
                terminated: true,
            };
        }
        let chunk = &rest[eol + 2..];
        let take = size.min(chunk.len());
        body.extend_from_slice(&chunk[..take]);
        if take < size || chunk.len() < size + 2 {
            return Answer {
                head,
                body,
                terminated: false,
            };
        }
        rest = &chunk[size + 2..];
    }
}

/// Polls the log until the first request's outcome is `ClientGone`; returns how long it took.
async fn client_gone_within(sim: &Simulator, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(r) = sim.requests().first() {
            if matches!(r.outcome, Outcome::ClientGone { .. }) {
                return Some(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

async fn sim(config: SimConfig) -> Simulator {
    Simulator::start(config).await.unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn default_answers_are_groq_fixtures() {
    let sim = sim(SimConfig::default()).await;
    let json = call(&sim, "POST", CHAT, &[], JSON_BODY).await;
    assert_eq!(json.status(), 200);
    assert_eq!(json.body, fixtures::chat_completion().to_vec());
    assert!(json.has_header("content-type: application/json"));
    assert!(json.head.contains("set-cookie: __cf_bm"));
    let sse = call(&sim, "POST", "/v1/chat/completions", &[], STREAM_BODY).await;
    assert_eq!(sse.status(), 200);
    assert!(sse.has_header("content-type: text/event-stream"));
    assert!(sse.has_header("x-request-id: req_01kztw3k7d9r8m2p4q6s8t0v1x"));
    assert!(sse.terminated);
    assert_eq!(sse.body, fixtures::stream("content").to_vec());

    let model = call(&sim, "GET", "/openai/v1/models/openai/gpt-oss-20b", &[], "").await;
    assert_eq!(model.status(), 200);
    assert!(model.body.starts_with(br#"{"id":"openai/gpt-oss-20b""#));
    let missing = call(&sim, "GET", "/openai/v1/models/llama-3.3-70b-versatile", &[], "").await;
    assert_eq!(missing.status(), 404);
    assert!(missing.body.ends_with(b"\"code\":\"model_not_found\"}}\n"));
    let unknown = call(&sim, "GET", "/openai/v1/completions", &[], "").await;
    assert_eq!(
        unknown.body,
        fixtures::error("404-unknown-url").map_or_else(Vec::new, |r| match r {
            Reply::Full { body, .. } => body.to_vec(),
            _ => Vec::new(),
        })
    );
    let bad = call(&sim, "POST", CHAT, &[], "{nope").await;
    assert_eq!(bad.status(), 400);

    let recorded = sim.requests();
    assert_eq!(recorded.len(), 6);
    assert_eq!(sim.request_count(), 6);
    assert_eq!(recorded[0].body, JSON_BODY.as_bytes());
    assert_eq!(recorded[1].path, "/v1/chat/completions");
    assert!(recorded.iter().all(|r| r.outcome == Outcome::Completed));
    assert_eq!(recorded[1].sent.len(), 22);
}

#[tokio::test]
async fn synthesized_streams_and_echo() {
    let sim = sim(SimConfig {
        stream_chunks: Some(3),
        ..SimConfig::default()
    })
    .await;
    let body = r#"{"model":"qwen/qwen3.8-27b","stream":true}"#;
    let sse = call(&sim, "POST", CHAT, &[("x-sim-stamp", "1")], body).await;
    let text = String::from_utf8_lossy(&sse.body).into_owned();
    assert_eq!(text.matches("\n\n").count(), 6, "{text}");
    assert_eq!(text.matches(r#""model":"qwen/qwen3.8-27b""#).count(), 5);
    assert_eq!(text.matches(r#"{"content":"t1"#).count(), 3, "{text}");

    let upload = "x".repeat(100_000);
    let echo = call(&sim, "POST", "/openai/v1/audio/transcriptions", &[], &upload).await;
    let echo: serde_json::Value = serde_json::from_slice(&echo.body).unwrap_or_default();
    assert_eq!(echo["bytes"], 100_000);
    assert_eq!(echo["path"], "/openai/v1/audio/transcriptions");
    let download = call(
        &sim,
        "GET",
        "/openai/v1/files/f1/content",
        &[("x-sim-bytes", "70000")],
        "",
    )
    .await;
    assert_eq!(download.body.len(), 70_000);
    assert!(download.has_header("content-length: 70000"));
}

#[tokio::test]
async fn scripted_replies_and_auth() {
    let sim = sim(SimConfig {
        api_key: Some("k".into()),
        ..SimConfig::default()
    })
    .await;
    let denied = call(&sim, "POST", CHAT, &[], JSON_BODY).await;
    assert_eq!(denied.status(), 401);
    assert!(denied.body.ends_with(b"\"code\":\"invalid_api_key\"}}\n"));
    let auth = [("authorization", "Bearer k")];
    sim.push(fixtures::error("429-tpm").unwrap_or(Reply::Drop));
    sim.push(Reply::Drop);
    let limited = call(&sim, "POST", CHAT, &auth, JSON_BODY).await;
    assert_eq!(limited.status(), 429);
    assert!(limited.has_header("retry-after: 19"));
    let dropped = call(&sim, "POST", CHAT, &auth, JSON_BODY).await;
    assert!(dropped.head.is_empty() && dropped.body.is_empty(), "{}", dropped.head);
    let fine = call(&sim, "POST", CHAT, &auth, JSON_BODY).await;
    assert_eq!(fine.status(), 200);
    assert!(sim.wait_for_requests(4, Duration::from_secs(1)).await);
    assert!(!sim.wait_for_requests(5, Duration::from_millis(50)).await);
}

#[tokio::test]
async fn truncated_streams_end_without_a_proper_ending() {
    let sim = sim(SimConfig::default()).await;
    let cut = call(&sim, "POST", CHAT, &[("x-sim-reply", "drop-after:3")], STREAM_BODY).await;
    assert_eq!(cut.status(), 200);
    assert!(!cut.terminated);
    assert_eq!(cut.body, reply::first_events(&fixtures::stream("content"), 3).to_vec());
    let sliced = call(&sim, "POST", CHAT, &[("x-sim-reply", "slice:1-7")], STREAM_BODY).await;
    assert_eq!(sliced.body, fixtures::stream("content").to_vec());
    assert!(sim.requests()[1].sent.len() > 500);
    let bad = call(&sim, "POST", CHAT, &[("x-sim-reply", "explode")], STREAM_BODY).await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn answers_follow_json_mode_and_tools() {
    let sim = sim(SimConfig::default()).await;
    let tools = r#""tools":[{"type":"function","function":{"name":"weather","parameters":{}}}]"#;
    let call_body = format!(r#"{{"model":"m","messages":[],{tools}}}"#);
    let called = call(&sim, "POST", CHAT, &[], &call_body).await;
    let v: serde_json::Value = serde_json::from_slice(&called.body).unwrap_or_default();
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "weather"
    );
    let id = v["x_groq"]["id"].as_str().unwrap_or("?");
    assert!(called.has_header(&format!("x-request-id: {id}")), "{}", called.head);

    let stream_body = format!(r#"{{"model":"m","stream":true,{tools}}}"#);
    let streamed = call(&sim, "POST", CHAT, &[], &stream_body).await;
    assert_eq!(streamed.body, fixtures::stream("tool-call").to_vec());

    let both = format!(r#"{{"model":"m","response_format":{{"type":"json_object"}},{tools}}}"#);
    let refused = call(&sim, "POST", CHAT, &[], &both).await;
    assert_eq!(refused.status(), 400);
    assert!(refused.body.ends_with(b"\"param\":\"response_format\"}}\n"));

    let json_mode = r#"{"model":"m","response_format":{"type":"json_object"}}"#;
    let answered = call(&sim, "POST", CHAT, &[], json_mode).await;
    let v: serde_json::Value = serde_json::from_slice(&answered.body).unwrap_or_default();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
    assert!(serde_json::from_str::<serde_json::Value>(content).is_ok(), "{content}");
}

async fn hang_up_is_seen(config: SimConfig, reply: Option<Reply>, read_first: bool, body: &str) {
    let sim = sim(config).await;
    if let Some(reply) = reply {
        sim.push(reply);
    }
    let mut stream = send(&sim, &request("POST", CHAT, &[], body)).await;
    assert!(sim.wait_for_requests(1, Duration::from_secs(2)).await);
    if read_first {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(n)) if n > 0));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sim.requests()[0].outcome, Outcome::InProgress);
    drop(stream);
    let seen = client_gone_within(&sim, Duration::from_secs(1)).await;
    assert!(seen.is_some(), "hang-up not observed within 1 s");
}

#[tokio::test]
async fn hang_up_while_stalled_before_headers() {
    hang_up_is_seen(SimConfig::default(), Some(Reply::Stall), false, JSON_BODY).await;
}

#[tokio::test]
async fn hang_up_during_slow_json() {
    let config = SimConfig {
        json_latency: Duration::from_secs(30),
        ..SimConfig::default()
    };
    hang_up_is_seen(config, None, false, JSON_BODY).await;
}

#[tokio::test]
async fn hang_up_mid_stream() {
    let config = SimConfig {
        chunk_interval: Duration::from_secs(5),
        ..SimConfig::default()
    };
    hang_up_is_seen(config, None, true, STREAM_BODY).await;
}

#[tokio::test]
async fn hang_up_during_a_stalled_stream() {
    let reply = Reply::Stream {
        body: fixtures::stream("content"),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    };
    hang_up_is_seen(SimConfig::default(), Some(reply), true, STREAM_BODY).await;
}

/// The budget, as a client sees it: three requests go through, then Groq's 429 with exact
/// headers. Time is paused, and a parked blocking task keeps tokio from auto-advancing it while
/// the runtime waits on sockets, so every reset is exact; `advance` moves it by hand.
#[tokio::test(start_paused = true)]
async fn budget_of_three_requests_over_http() {
    let sim = sim(SimConfig {
        budget: Some(SimBudget {
            requests: 3,
            request_window: Duration::from_secs(86_400),
            tokens: 10_000,
            token_window: Duration::from_secs(60),
        }),
        ..SimConfig::default()
    })
    .await;
    let (release, held) = std::sync::mpsc::channel::<()>();
    let hold = tokio::task::spawn_blocking(move || held.recv());
    let start = tokio::time::Instant::now();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", sim.base_url());
    let mut answers = Vec::new();
    for _ in 0..5 {
        let response = client
            .post(&url)
            .header("authorization", "Bearer k1")
            .header("content-type", "application/json")
            .body(JSON_BODY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        answers.push((status, headers, body));
        tokio::time::advance(Duration::from_millis(1_500)).await;
    }
    let header = |i: usize, name: &str| {
        answers[i]
            .1
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("<none>")
            .to_owned()
    };
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // chat-completion.json reports 16 prompt + 19 completion tokens: each admission costs 35.
    let want = [
        ("2", "9965", "24h0m0s", "1m0s"),
        ("1", "9930", "23h59m58.5s", "58.5s"),
        ("0", "9895", "23h59m57s", "57s"),
        ("0", "9895", "23h59m55.5s", "55.5s"),
        ("0", "9895", "23h59m54s", "54s"),
    ];
    for (i, (requests, tokens, reset_requests, reset_tokens)) in want.into_iter().enumerate() {
        assert_eq!(header(i, "x-ratelimit-limit-requests"), "3", "#{i}");
        assert_eq!(header(i, "x-ratelimit-limit-tokens"), "10000", "#{i}");
        assert_eq!(header(i, "x-ratelimit-remaining-requests"), requests, "#{i}");
        assert_eq!(header(i, "x-ratelimit-remaining-tokens"), tokens, "#{i}");
        assert_eq!(header(i, "x-ratelimit-reset-requests"), reset_requests, "#{i}");
        assert_eq!(header(i, "x-ratelimit-reset-tokens"), reset_tokens, "#{i}");
    }
    for (i, answer) in answers.iter().take(3).enumerate() {
        assert_eq!(answer.2, fixtures::chat_completion(), "#{i}");
        assert_eq!(header(i, "x-request-id"), "req_01m48tqzdve5v8d97j7jgm40as");
        assert_eq!(header(i, "retry-after"), "<none>");
        assert!(header(i, "set-cookie").starts_with("__cf_bm"));
    }
    assert_eq!(header(3, "retry-after"), "86396");
    assert_eq!(header(4, "retry-after"), "86394");
    assert_eq!(header(3, "content-type"), "application/json");
    assert!(
        header(3, "x-request-id").starts_with("req_01sim"),
        "{}",
        header(3, "x-request-id")
    );
    assert_ne!(header(3, "x-request-id"), header(4, "x-request-id"));
    assert_eq!(
        String::from_utf8_lossy(&answers[3].2),
        "{\"error\":{\"message\":\"Rate limit reached for model `openai/gpt-oss-20b` in organization \
         `org_01sim000000000000000000000` service tier `on_demand` on requests per day (RPD): Limit 3, Used 3, \
         Requested 1. Please try again in 23h59m55.5s. Need more tokens? Upgrade to Dev Tier today at \
         https://console.groq.com/settings/billing\",\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}\n"
    );
    assert_eq!(sim.rate_limited_count(), 2);
    assert_eq!(sim.request_count(), 5);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(7_500),
        "the clock moved by itself"
    );
    drop(release);
    let _ = hold.await;
}

fn budget(requests: u64, tokens: u64) -> Option<SimBudget> {
    Some(SimBudget {
        requests,
        request_window: Duration::from_secs(86_400),
        tokens,
        token_window: Duration::from_secs(60),
    })
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn remaining_tokens(&self) -> u64 {
        self.header("x-ratelimit-remaining-tokens")
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    }

    /// `prompt_tokens + completion_tokens` of the usage in a JSON body or in an SSE body's last
    /// frame that has one (checked against `total_tokens`).
    fn reported_tokens(&self) -> u64 {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        let usage = std::iter::once(text.as_str())
            .chain(text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")))
            .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .filter_map(|v| v.get("usage").filter(|u| u.is_object()).cloned())
            .last()
            .unwrap_or_else(|| panic!("no usage in {text}"));
        let field = |k: &str| usage[k].as_u64().unwrap_or_else(|| panic!("{k} in {usage}"));
        assert_eq!(
            field("prompt_tokens") + field("completion_tokens"),
            field("total_tokens")
        );
        field("total_tokens")
    }
}

/// Every kind of default answer charges exactly the usage it reports.
#[tokio::test]
async fn budget_charges_the_reported_usage() {
    let tools = r#""tools":[{"type":"function","function":{"name":"weather","parameters":{}}}]"#;
    let tool_json = format!(r#"{{"model":"openai/gpt-oss-20b","messages":[],{tools}}}"#);
    let tool_stream = format!(r#"{{"model":"openai/gpt-oss-20b","stream":true,{tools}}}"#);
    let json_mode = r#"{"model":"openai/gpt-oss-20b","response_format":{"type":"json_object"}}"#;
    let include_usage = r#"{"model":"openai/gpt-oss-20b","stream":true,"stream_options":{"include_usage":true}}"#;
    let prompt = |body: &str| (body.len() / 4).max(1) as u64;
    for stream_chunks in [None, Some(4)] {
        let sim = sim(SimConfig {
            stream_chunks,
            budget: budget(100, 100_000),
            ..SimConfig::default()
        })
        .await;
        let synth = stream_chunks.is_some();
        let cases: [(&str, u64); 6] = [
            (JSON_BODY, 35),
            (STREAM_BODY, if synth { prompt(STREAM_BODY) + 4 } else { 99 }),
            (include_usage, if synth { prompt(include_usage) + 4 } else { 99 }),
            (&tool_json, prompt(&tool_json) + 15),
            (json_mode, prompt(json_mode) + 11),
            (&tool_stream, if synth { prompt(&tool_stream) + 1 } else { 225 }),
        ];
        let mut remaining = 100_000;
        for (i, (body, cost)) in cases.into_iter().enumerate() {
            let answer = call(&sim, "POST", CHAT, &[], body).await;
            assert_eq!(answer.status(), 200, "{stream_chunks:?} #{i}");
            assert_eq!(answer.reported_tokens(), cost, "{stream_chunks:?} #{i}");
            remaining -= cost;
            assert_eq!(answer.remaining_tokens(), remaining, "{stream_chunks:?} #{i}");
            assert_eq!(
                answer.header("x-ratelimit-remaining-requests"),
                Some(&*(99 - i).to_string())
            );
            assert_eq!(answer.header("x-ratelimit-limit-tokens"), Some("100000"));
        }
        // A cut stream still costs the whole answer's usage.
        let cut = call(&sim, "POST", CHAT, &[("x-sim-reply", "drop-after:1")], STREAM_BODY).await;
        assert!(!cut.terminated);
        remaining -= if synth { prompt(STREAM_BODY) + 4 } else { 99 };
        assert_eq!(cut.remaining_tokens(), remaining);
        assert_eq!(sim.rate_limited_count(), 0);
    }
}

#[tokio::test]
async fn budget_refusals_over_http() {
    let sim = sim(SimConfig {
        budget: budget(5, 50),
        ..SimConfig::default()
    })
    .await;
    let a = [("authorization", "Bearer a")];
    // The captured stream reports 99 tokens: more than the whole limit.
    let too_large = call(&sim, "POST", CHAT, &a, STREAM_BODY).await;
    assert_eq!(too_large.status(), 413);
    assert!(too_large.has_header("content-type: application/json"));
    assert!(too_large.has_header("retry-after: 60"));
    assert!(too_large.has_header("x-ratelimit-remaining-tokens: 50"));
    assert!(too_large.has_header("x-ratelimit-remaining-requests: 5"));
    let text = String::from_utf8_lossy(&too_large.body).into_owned();
    assert!(
        text.contains("on tokens per minute (TPM): Limit 50, Requested 99, please reduce"),
        "{text}"
    );
    assert!(text.ends_with("\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}\n"));

    let ok = call(&sim, "POST", CHAT, &a, JSON_BODY).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.has_header("x-ratelimit-remaining-tokens: 15"));
    assert!(ok.has_header("x-ratelimit-remaining-requests: 4"));
    assert!(ok.has_header("x-ratelimit-limit-requests: 5"));
    let limited = call(&sim, "POST", CHAT, &a, JSON_BODY).await;
    assert_eq!(limited.status(), 429);
    let text = String::from_utf8_lossy(&limited.body).into_owned();
    assert!(
        text.contains("(TPM): Limit 50, Used 35, Requested 35. Please try again in "),
        "{text}"
    );
    assert!(text.contains("\"type\":\"tokens\""));
    let retry: u64 = limited.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=60).contains(&retry), "{retry}");

    // Scripted replies bypass the budget (and carry only their own headers); another key has
    // its own budget.
    sim.push(Reply::json(200, &b"{}"[..]));
    let scripted = call(&sim, "POST", CHAT, &a, JSON_BODY).await;
    assert_eq!(scripted.status(), 200);
    assert_eq!(scripted.header("x-ratelimit-remaining-tokens"), None);
    let b = call(&sim, "POST", CHAT, &[("authorization", "Bearer b")], JSON_BODY).await;
    assert_eq!(b.remaining_tokens(), 15);
    let again = call(&sim, "POST", CHAT, &a, JSON_BODY).await;
    assert_eq!(again.status(), 429);
    assert!(again.has_header("x-ratelimit-remaining-requests: 4"));
    assert_eq!(sim.rate_limited_count(), 3);
    // The count covers every 429 and 413 sent, scripted ones included.
    sim.push(fixtures::error("429-tpm").unwrap_or(Reply::Drop));
    assert_eq!(call(&sim, "POST", CHAT, &a, JSON_BODY).await.status(), 429);
    assert_eq!(sim.rate_limited_count(), 4);
}

mod retries_and_responses;
