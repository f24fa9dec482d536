//! Upstream answers under faults (issue 14, items 8, 9, 10 and 13's cache part): what is stored, coded answers, slow readers of a flight, and the rate-limit headers of cached answers.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use bytes::Bytes;
use groq_sim::{Reply, SimConfig, fixtures};
use groxy::config::{ByteSize, LimitSet};

use crate::support::*;

/// A deterministic request (temperature 0), so the default `deterministic` mode caches it;
/// `tag` makes its cache key its own.
fn det(stream: bool, tag: &str) -> String {
    format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"Say hi {tag}"}}],"temperature":0,"stream":{stream}}}"#
    )
}

/// A client that never decodes a content coding, so the test sees the bytes groxy sent.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .no_deflate()
        .build()
        .expect("client")
}

async fn post(gw: &Gateway, body: &str, extra: &[(&str, &str)]) -> reqwest::Response {
    let mut request = raw_client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.send().await.expect("send")
}

/// Sends until the answer is not `COALESCED`, i.e. until the previous identical request's
/// flight has finished (and made its storing decision); returns the response and its body.
async fn settled(gw: &Gateway, body: &str, extra: &[(&str, &str)]) -> (reqwest::Response, Bytes) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = post(gw, body, extra).await;
        let coalesced = header(&response, "x-groxy-cache") == "COALESCED";
        if !coalesced || Instant::now() > deadline {
            let headers = clone_head(&response);
            let bytes = response.bytes().await.expect("body");
            return (headers, bytes);
        }
        let _ = response.bytes().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A bodiless copy of a response's status and headers, so the body can be read separately.
fn clone_head(response: &reqwest::Response) -> reqwest::Response {
    let mut head = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        head = head.header(name, value);
    }
    reqwest::Response::from(head.body(Vec::<u8>::new()).expect("response"))
}

/// The default answers of the simulator (and so of Groq's captures).
fn default_answer(stream: bool) -> Bytes {
    if stream {
        fixtures::stream("content")
    } else {
        fixtures::chat_completion()
    }
}

// Item 8: only whole answers are stored.

#[tokio::test]
async fn a_200_that_is_not_a_whole_answer_is_relayed_but_never_stored() {
    let sim = sim().await;
    let gw = gateway(config_for(&sim)).await;
    let html = Bytes::from_static(b"<html><body><h1>502 Bad Gateway</h1></body></html>\n");
    let content = fixtures::stream("content");
    let without_done = content.slice(..content.len() - b"data: [DONE]\n\n".len());
    assert!(without_done.ends_with(b"\n\n") && !without_done.ends_with(b"[DONE]\n\n"));
    let full = |content_type: &str, body: &Bytes| Reply::Full {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: body.clone(),
    };
    let cases = [
        ("an HTML page", false, full("text/html", &html), html.clone()),
        (
            "HTML labelled JSON",
            false,
            full("application/json", &html),
            html.clone(),
        ),
        (
            "JSON cut short",
            false,
            full("application/json", &fixtures::chat_completion().slice(..100)),
            fixtures::chat_completion().slice(..100),
        ),
        (
            "a stream without [DONE]",
            true,
            Reply::stream(without_done.clone()),
            without_done.clone(),
        ),
    ];
    for (i, (what, stream, reply, relayed)) in cases.into_iter().enumerate() {
        let body = det(stream, &i.to_string());
        sim.push(reply);
        let response = post(&gw, &body, &[]).await;
        assert_eq!(response.status(), 200, "{what}");
        assert_eq!(header(&response, "x-groxy-cache"), "MISS", "{what}");
        assert_eq!(
            response.bytes().await.expect("body"),
            relayed,
            "{what}: relayed as sent"
        );

        let (response, bytes) = settled(&gw, &body, &[]).await;
        assert_eq!(
            header(&response, "x-groxy-cache"),
            "MISS",
            "{what}: not stored, so Groq is asked again"
        );
        assert_eq!(bytes, default_answer(stream), "{what}: Groq's recovered answer");
        let (response, bytes) = settled(&gw, &body, &[]).await;
        assert_eq!(
            header(&response, "x-groxy-cache"),
            "HIT",
            "{what}: the good answer is stored"
        );
        assert_eq!(bytes, default_answer(stream), "{what}");
    }
    assert_eq!(call_count(&sim), 8);
}

// Item 9: groxy asks for identity, decodes gzip, and passes other codings through unstored.

#[tokio::test]
async fn groxy_asks_for_identity_and_a_gzip_answer_reaches_the_client_decoded_json_and_sse() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    let gw = gateway(config).await;
    for stream in [false, true] {
        let body = det(stream, "gzip");
        let response = post(&gw, &body, &[("accept-encoding", "gzip, br"), ("x-sim-reply", "gzip")]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "content-encoding"),
            "",
            "stream={stream}: plain bytes"
        );
        assert_eq!(header(&response, "x-groxy-cache"), "MISS");
        let content_type = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        assert_eq!(header(&response, "content-type"), content_type);
        let bytes = response.bytes().await.expect("body");
        assert_eq!(bytes, default_answer(stream), "stream={stream}: decoded byte-exact");

        let upstream = last_request(&sim);
        assert_eq!(
            upstream.header("accept-encoding"),
            Some("identity"),
            "the client's gzip is not passed on: groxy asks for identity"
        );
        assert!(
            wait_outcome(&sim, false, Duration::from_secs(5)).await.is_some(),
            "the simulator finished its answer"
        );
        let sent = last_request(&sim).sent_bytes();
        assert_eq!(sent[..2], [0x1f, 0x8b], "the simulator did answer in gzip");
        assert_ne!(sent, bytes.to_vec());

        // Decoded, it is an ordinary answer: stored, and replayed plain.
        let (response, bytes) = settled(&gw, &body, &[]).await;
        assert_eq!(header(&response, "x-groxy-cache"), "HIT", "stream={stream}");
        assert_eq!(header(&response, "content-encoding"), "");
        assert_eq!(bytes, default_answer(stream));
    }
    assert_eq!(call_count(&sim), 2);
    let catalogue = sim
        .requests()
        .into_iter()
        .find(|r| r.method == http::Method::GET && r.path.ends_with("/models"))
        .expect("the catalogue was fetched");
    assert_eq!(catalogue.header("accept-encoding"), Some("identity"));
    // The usage was read from the decoded answer.
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let completion: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("groxy_tokens_total{") && l.contains("kind=\"completion\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(completion >= 19.0, "usage read from both gzip answers: {completion}");
}

#[tokio::test]
async fn a_coding_groxy_cannot_decode_passes_through_labelled_and_is_never_stored() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    // The coded 503 below is Groq's last word, not a first attempt to retry (see `retries`).
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    let body = det(false, "br");
    let response = post(&gw, &body, &[("x-sim-reply", "encoding:br")]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-encoding"),
        "br",
        "the client is told how to read the bytes"
    );
    assert_eq!(
        response.bytes().await.expect("body"),
        fixtures::chat_completion(),
        "bytes untouched"
    );
    let (response, bytes) = settled(&gw, &body, &[]).await;
    assert_eq!(
        header(&response, "x-groxy-cache"),
        "MISS",
        "a coded answer is not stored"
    );
    assert_eq!(header(&response, "content-encoding"), "");
    assert_eq!(bytes, fixtures::chat_completion());

    // A coded error that is not JSON becomes groxy's own 502, which is not coded.
    sim.push(Reply::Full {
        status: 503,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("content-encoding".into(), "br".into()),
        ],
        body: Bytes::from_static(b"\x8b\x02\x80upstream connect error"),
    });
    let response = post(&gw, &det(false, "br-error"), &[]).await;
    assert_eq!(response.status(), 502);
    assert_eq!(header(&response, "content-encoding"), "", "groxy's JSON is plain");
    assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(call_count(&sim), 3);
}

// Item 10: the lag bound never truncates the reader that started the flight.

/// A chat completion of about `size` bytes whose content is a long run of text.
fn big_completion(size: usize) -> Bytes {
    let content = "lorem ipsum ".repeat(size / 12);
    let body = serde_json::json!({
        "id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "openai/gpt-oss-20b",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    });
    Bytes::from(serde_json::to_vec(&body).expect("json"))
}

/// Reads the whole body at about `bytes_per_second`, as a slow network would.
async fn read_slowly(response: reqwest::Response, bytes_per_second: f64) -> Result<Vec<u8>, String> {
    let mut response = response;
    let started = Instant::now();
    let mut all = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => all.extend_from_slice(&chunk),
            Ok(None) => return Ok(all),
            Err(e) => return Err(format!("cut off after {} bytes: {e}", all.len())),
        }
        let due = Duration::from_secs_f64(all.len() as f64 / bytes_per_second);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

#[tokio::test]
async fn a_lone_slow_reader_of_a_cacheable_answer_gets_every_byte() {
    const SIZE: usize = 8 << 20;
    let big = big_completion(SIZE);
    let sim = sim_with(SimConfig {
        json_body: Some(big.clone()),
        // About 8 MB of synthesized SSE.
        stream_chunks: Some(60_000),
        ..SimConfig::default()
    })
    .await;
    let mut config = config_for(&sim);
    config.cache.max_entry_bytes = ByteSize(256 << 10);
    let gw = gateway(config).await;
    for stream in [false, true] {
        let response = post(&gw, &det(stream, "big"), &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-groxy-cache"), "MISS");
        let got = read_slowly(response, 8e6).await;
        let got = got.unwrap_or_else(|e| panic!("stream={stream}: {e}"));
        assert!(
            wait_outcome(&sim, false, Duration::from_secs(10)).await.is_some(),
            "stream={stream}: the simulator finished"
        );
        let sent = last_request(&sim).sent_bytes();
        assert!(sent.len() > 6 << 20, "stream={stream}: {} bytes", sent.len());
        assert_eq!(got.len(), sent.len(), "stream={stream}: whole");
        assert!(got == sent, "stream={stream}: byte-exact");
        if !stream {
            assert!(got == big.to_vec());
        }
    }
}

#[tokio::test]
async fn a_joined_reader_that_stops_reading_is_cut_off_and_the_leader_gets_every_byte() {
    let sim = sim_with(SimConfig {
        stream_chunks: Some(30_000),
        // Time for the second client to join before any byte flows.
        ttft: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await;
    let mut config = config_for(&sim);
    config.cache.max_entry_bytes = ByteSize(64 << 10);
    let gw = gateway(config).await;
    let body = det(true, "join");
    let leader = tokio::spawn({
        let url = gw.url(CHAT);
        let body = body.clone();
        async move {
            let response = raw_client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            assert_eq!(header(&response, "x-groxy-cache"), "MISS");
            response.bytes().await.map(|b| b.to_vec())
        }
    });
    assert!(wait_for_calls(&sim, 1, Duration::from_secs(5)).await);
    let joiner = post(&gw, &body, &[]).await;
    assert_eq!(header(&joiner, "x-groxy-cache"), "COALESCED");
    // The joiner reads nothing until the leader has everything.
    let got = leader.await.expect("leader task").expect("the leader is never cut off");
    assert!(wait_outcome(&sim, false, Duration::from_secs(10)).await.is_some());
    let sent = last_request(&sim).sent_bytes();
    assert!(sent.len() > 2 << 20, "{} bytes", sent.len());
    assert!(got == sent, "the leader's answer is whole and byte-exact");
    let joined = joiner.bytes().await;
    assert!(
        joined.is_err() || joined.is_ok_and(|b| b.len() < sent.len()),
        "the joiner fell too far behind and was cut off"
    );
    assert_eq!(call_count(&sim), 1);
}

// Item 13 (cache part): MISS, COALESCED and HIT carry the same rate-limit headers.

fn rate_limit_names(response: &reqwest::Response) -> BTreeSet<String> {
    response
        .headers()
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("x-ratelimit-"))
        .collect()
}

#[tokio::test]
async fn miss_coalesced_and_hit_carry_the_same_rate_limit_headers() {
    for client_limits in [false, true] {
        let sim = sim_with(SimConfig {
            json_latency: Duration::from_secs(1),
            ..SimConfig::default()
        })
        .await;
        let mut config = config_for(&sim);
        if client_limits {
            config.rate_limits.default = LimitSet {
                requests_per_minute: Some(100),
                ..LimitSet::default()
            };
        }
        let gw = gateway(config).await;
        let body = det(false, "headers");
        let leader = tokio::spawn({
            let url = gw.url(CHAT);
            let body = body.clone();
            async move {
                let response = raw_client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("send");
                let head = clone_head(&response);
                let bytes = response.bytes().await.expect("body");
                (head, bytes)
            }
        });
        assert!(wait_for_calls(&sim, 1, Duration::from_secs(5)).await);
        let joiner = post(&gw, &body, &[]).await;
        let (miss, miss_body) = leader.await.expect("leader");
        let joiner_head = clone_head(&joiner);
        assert_eq!(joiner.bytes().await.expect("body"), miss_body);
        let (hit, hit_body) = settled(&gw, &body, &[]).await;
        assert_eq!(hit_body, miss_body);
        assert_eq!(header(&miss, "x-groxy-cache"), "MISS");
        assert_eq!(header(&joiner_head, "x-groxy-cache"), "COALESCED");
        assert_eq!(header(&hit, "x-groxy-cache"), "HIT");
        let want: BTreeSet<String> = if client_limits {
            ["limit", "remaining", "reset"]
                .iter()
                .map(|what| format!("x-ratelimit-{what}-requests"))
                .collect()
        } else {
            BTreeSet::new()
        };
        for (what, response) in [("MISS", &miss), ("COALESCED", &joiner_head), ("HIT", &hit)] {
            assert_eq!(
                rate_limit_names(response),
                want,
                "client limits {client_limits}: {what} carries groxy's own headers and none of Groq's"
            );
        }
        assert_eq!(call_count(&sim), 1);
    }
}
