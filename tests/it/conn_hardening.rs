//! Hostile clients: slow bodies get a 408, and bodies read at once are bounded in bytes.

use std::time::{Duration, Instant};

use groxy::config::{ByteSize, HumanDuration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::*;

/// Reads one HTTP/1.1 response with a `content-length`: status, head, body.
async fn read_response(socket: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Option<(u16, String, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + within;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = all.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&all[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if all.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                return Some((status, head, all[end + 4..end + 4 + length].to_vec()));
            }
        }
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => all.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

/// Opens a connection, sends `head`, then the body one byte every `pace` (until the socket
/// fails), and returns the reading half.
async fn trickle(gw: &Gateway, head: String, body: Vec<u8>, pace: Duration) -> tokio::net::tcp::OwnedReadHalf {
    let socket = TcpStream::connect(gw.addr).await.expect("connect");
    let (reader, mut writer) = socket.into_split();
    tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for byte in body {
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(pace).await;
        }
        // Keep the connection open: the body is complete or the test is over.
        std::future::pending::<()>().await;
    });
    reader
}

fn chat_head(length: usize) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer client-key\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn within(elapsed: Duration, low: Duration, high: Duration) -> bool {
    elapsed >= low && elapsed <= high
}

#[tokio::test]
async fn a_chat_body_trickling_past_its_deadline_is_a_408_and_groq_sees_nothing() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.limits.body_read_timeout = HumanDuration::secs(1);
    let gw = gateway(config).await;
    let body = chat_body(false).into_bytes();
    let started = Instant::now();
    let mut reader = trickle(&gw, chat_head(body.len()), body, Duration::from_millis(200)).await;
    let (status, head, error) = read_response(&mut reader, Duration::from_secs(8))
        .await
        .expect("an answer before the body was whole");
    let took = started.elapsed();
    assert_eq!(status, 408, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: application/json"),
        "{head}"
    );
    let error = assert_openai_error(&error);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "request_timeout");
    assert!(
        within(took, Duration::from_millis(900), Duration::from_secs(4)),
        "{took:?}"
    );
    assert_eq!(call_count(&sim), 0);
}

#[tokio::test]
async fn an_upload_trickling_past_its_deadline_is_a_408_too() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.limits.upload_read_timeout = HumanDuration::secs(1);
    config.upstream.first_byte_timeout = HumanDuration::secs(20);
    let gw = gateway(config).await;
    let body = b"--x\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-large-v3\r\n--x--\r\n".to_vec();
    let head = format!(
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer client-key\r\nContent-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    let mut reader = trickle(&gw, head, body, Duration::from_millis(200)).await;
    let (status, head, error) = read_response(&mut reader, Duration::from_secs(10))
        .await
        .expect("an answer");
    let took = started.elapsed();
    assert_eq!(status, 408, "{head}");
    let error = assert_openai_error(&error);
    assert_eq!(error["code"], "request_timeout");
    assert!(
        within(took, Duration::from_millis(900), Duration::from_secs(4)),
        "{took:?}"
    );
}

#[tokio::test]
async fn json_bodies_read_at_once_stay_within_the_byte_budget() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.limits.chat_body = ByteSize(64 * 1024);
    config.server.max_body_bytes_in_flight = ByteSize(64 * 1024);
    config.limits.body_read_timeout = HumanDuration::secs(2);
    let gw = gateway(config).await;

    // A holds 60,000 of the 65,536 bytes: it announces them and sends a trickle.
    let slow_started = Instant::now();
    let mut slow = trickle(&gw, chat_head(60_000), vec![b' '; 60_000], Duration::from_millis(200)).await;
    // Wait until A is being read (the scrape counts itself as well).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        if metrics.lines().any(|l| l == "groxy_in_flight_requests 2") {
            break;
        }
        assert!(Instant::now() < deadline, "A never got in flight: {metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // B is small and sent whole at once, but its 10 KB do not fit beside A's: it waits for A.
    let padded = format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "y".repeat(10_000)
    );
    let fast = tokio::spawn({
        let url = gw.url(CHAT);
        async move {
            let response = client()
                .post(url)
                .header("content-type", "application/json")
                .body(padded)
                .send()
                .await
                .expect("send");
            (response.status(), Instant::now())
        }
    });
    let (status, _, body) = read_response(&mut slow, Duration::from_secs(8))
        .await
        .expect("A is answered");
    let slow_ended = Instant::now();
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert!(slow_ended - slow_started >= Duration::from_millis(1900));
    let (fast_status, fast_answered) = fast.await.expect("join");
    assert_eq!(fast_status, 200);
    assert!(
        fast_answered + Duration::from_millis(50) >= slow_ended,
        "B was read while A held the budget"
    );
    assert_eq!(call_count(&sim), 1, "only B reached Groq");
}
