//! Invariants 1 and 4: streams are byte-exact and flushed per chunk; truncation is visible.

use std::time::Duration;

use groq_sim::{Reply, SliceMode, Slicing, StreamEnd, fixtures};

use crate::support::*;

const STREAMS: [&str; 4] = ["content", "include-usage", "tool-call", "midstream-error"];

fn sliced(body: bytes::Bytes, mode: SliceMode, pause: Duration) -> Reply {
    Reply::Stream {
        body,
        slicing: Slicing {
            first_delay: Duration::ZERO,
            pause,
            mode,
        },
        end: StreamEnd::Complete,
    }
}

#[tokio::test]
async fn every_fixture_stream_is_relayed_byte_exact_however_it_is_sliced() {
    let (sim, gw) = pair().await;
    let modes = [
        SliceMode::PerFrame,
        SliceMode::Whole,
        SliceMode::Random {
            min: 1,
            max: 1,
            seed: 1,
        },
        SliceMode::Random {
            min: 1,
            max: 7,
            seed: 2,
        },
        SliceMode::Random {
            min: 1,
            max: 64,
            seed: 3,
        },
        SliceMode::Random {
            min: 16,
            max: 64,
            seed: 4,
        },
    ];
    for name in STREAMS {
        for mode in &modes {
            let fixture = fixtures::stream(name);
            sim.push(sliced(fixture.clone(), mode.clone(), Duration::ZERO));
            let response = post_chat(&gw, chat_body(true)).await;
            assert_eq!(response.status(), 200, "{name} {mode:?}");
            let headers = response.headers().clone();
            let (body, _, error) = read_timed(response).await;
            assert_eq!(error, None, "{name} {mode:?}");
            let sent = last_request(&sim).sent_bytes();
            assert_eq!(sent, fixture.to_vec(), "the simulator sent the fixture");
            assert_eq!(body, sent, "{name} {mode:?}: bytes differ from what the simulator sent");
            assert_eq!(headers["content-type"], "text/event-stream");
            assert_eq!(headers["cache-control"], "no-cache");
            assert_eq!(headers["x-accel-buffering"], "no");
            assert!(headers.get("content-encoding").is_none());
            assert!(headers.get("set-cookie").is_none());
        }
    }
}

#[tokio::test]
async fn each_slice_reaches_the_client_before_the_next_is_written() {
    let (sim, gw) = pair().await;
    let fixture = fixtures::stream("include-usage");
    let pause = Duration::from_millis(25);
    sim.push(sliced(
        fixture.clone(),
        SliceMode::Random {
            min: 1,
            max: 64,
            seed: 9,
        },
        pause,
    ));
    let response = post_chat(&gw, chat_body(true)).await;
    let (body, arrivals, error) = read_timed(response).await;
    assert_eq!(error, None);
    assert_eq!(body, fixture.to_vec());
    let sent = last_request(&sim).sent;
    assert!(sent.len() > 10, "the fixture was cut into many slices");
    let mut cumulative = 0;
    for window in sent.windows(2) {
        let (_, slice) = &window[0];
        let (next_written_at, _) = window[1];
        cumulative += slice.len();
        let arrived = arrivals
            .iter()
            .find(|(_, total)| *total >= cumulative)
            .map(|(at, _)| *at)
            .expect("slice arrived");
        assert!(
            arrived < next_written_at,
            "bytes up to {cumulative} reached the client only after the next slice was written"
        );
    }
}

#[tokio::test]
async fn stream_choice_follows_the_body_not_the_accept_header() {
    let (sim, gw) = pair().await;
    let response = client()
        .post(gw.url(CHAT))
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(chat_body(true))
        .send()
        .await
        .expect("send");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = response.bytes().await.expect("body");
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    assert_eq!(last_request(&sim).header("accept"), Some("application/json"));
}

#[tokio::test]
async fn upstream_dropping_mid_stream_gives_one_error_frame_and_no_done() {
    let (sim, gw) = pair().await;
    let fixture = fixtures::stream("content");
    // Cut in the middle of an event: the error frame must still start a fresh event.
    let cut = fixture.len() / 2 + 7;
    for (mode, body) in [
        (SliceMode::PerFrame, fixture.slice(..1200)),
        (
            SliceMode::Random {
                min: 5,
                max: 40,
                seed: 5,
            },
            fixture.slice(..cut),
        ),
    ] {
        sim.push(Reply::Stream {
            body: body.clone(),
            slicing: Slicing {
                mode,
                ..Slicing::default()
            },
            end: StreamEnd::DropConnection,
        });
        let response = post_chat(&gw, chat_body(true)).await;
        assert_eq!(response.status(), 200);
        let (received, _, error) = read_timed(response).await;
        assert_eq!(error, None, "the client's stream ends cleanly after the error frame");
        assert!(received.starts_with(&body), "everything Groq sent is relayed first");
        let tail = String::from_utf8_lossy(&received[body.len()..]).into_owned();
        assert!(!String::from_utf8_lossy(&received).contains("[DONE]"));
        let frames: Vec<&str> = tail.split("\n\n").filter(|f| !f.is_empty()).collect();
        assert_eq!(
            frames.len(),
            1,
            "exactly one error event after the relayed bytes: {tail:?}"
        );
        let payload = frames[0].strip_prefix("data: ").expect("a data event");
        let error = assert_openai_error(payload.as_bytes());
        assert_eq!(error["code"], "upstream_truncated");
        assert!(tail.ends_with("\n\n"));
    }
}

#[tokio::test]
async fn upstream_going_silent_past_the_idle_timeout_gives_an_error_frame() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.idle_timeout = groxy::config::HumanDuration::millis(300);
    let gw = gateway(config).await;
    let body = fixtures::stream("content").slice(..900);
    sim.push(Reply::Stream {
        body: body.clone(),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let started = std::time::Instant::now();
    let response = post_chat(&gw, chat_body(true)).await;
    let (received, _, _) = read_timed(response).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(received.starts_with(&body));
    assert!(!text.contains("[DONE]"));
    assert!(
        text.ends_with("\n\n") && text.contains("upstream_idle_timeout"),
        "{text}"
    );
    // The stalled upstream request is cancelled, not left hanging.
    assert!(wait_outcome(&sim, true, Duration::from_secs(1)).await.is_some());
}

#[tokio::test]
async fn an_error_before_the_first_byte_is_plain_json_even_for_stream_requests() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.rate_limits.upstream_aware = false;
    // The early failure is the answer here, not a first attempt to retry (see `retries`).
    config.upstream.retries.attempts = 0;
    let gw = gateway(config).await;
    sim.push(fixtures::error("429-tpm").expect("fixture"));
    let response = post_chat(&gw, chat_body(true)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["retry-after"], "19");

    // A stream that dies before sending any byte is a 502 the SDKs can retry.
    sim.push(Reply::Stream {
        body: bytes::Bytes::new(),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let response = post_chat(&gw, chat_body(true)).await;
    assert_eq!(response.status(), 502);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["code"], "upstream_truncated");
}

#[tokio::test]
async fn a_slow_reader_slows_the_upstream_instead_of_buffering() {
    // 64 MiB of SSE to a client that stops reading. The client's socket buffer is pinned small;
    // kernel buffers between the simulator and groxy can still hold a few MiB. If groxy
    // buffered without bound, the simulator would write everything; with backpressure it stalls.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sim, gw) = pair().await;
    let event = format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(4090));
    let body = bytes::Bytes::from(event.repeat(16 * 1024) + "data: [DONE]\n\n");
    sim.push(sliced(body.clone(), SliceMode::PerFrame, Duration::ZERO));

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
    let mut stream = socket.connect(gw.addr).await.expect("connect");
    let request_body = chat_body(true);
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{request_body}",
        request_body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    while got < 256 * 1024 {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended early");
        got += n;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent_so_far = last_request(&sim).sent_bytes().len();
    assert!(
        sent_so_far < body.len() / 2,
        "the simulator wrote {sent_so_far} of {} bytes while the client had read {got}: no backpressure",
        body.len()
    );
    // Reading on drains everything, byte for byte in length.
    let mut total = got;
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        if n == 0 {
            break;
        }
        total += n;
        if buf[..n].ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    assert!(
        total > body.len(),
        "all {} body bytes arrived (with HTTP framing): {total}",
        body.len()
    );
}
