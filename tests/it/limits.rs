//! Invariant 9: finite limits. Slow headers are cut off; oversized bodies are refused before Groq is called.

use std::time::{Duration, Instant};

use groxy::config::{ByteSize, HumanDuration};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test]
async fn a_client_dribbling_header_bytes_is_cut_off_at_the_deadline() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.header_read_timeout = HumanDuration::millis(800);
    let gw = gateway(config).await;
    let mut socket = tokio::net::TcpStream::connect(gw.addr).await.expect("connect");
    let started = Instant::now();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_at = None;
    for byte in head.iter() {
        if socket.write_all(&[*byte]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        // Each byte well inside any per-read timeout, but the headers never complete.
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), socket.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed_at = Some(started.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let closed_at = closed_at.expect("the connection was closed before the headers were done");
    assert!(
        closed_at >= Duration::from_millis(700) && closed_at < Duration::from_secs(3),
        "{closed_at:?}"
    );
    assert_eq!(call_count(&sim), 0);
}

#[tokio::test]
async fn an_oversized_chat_body_is_a_413_and_groq_is_never_called() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.limits.chat_body = ByteSize(64 * 1024);
    let gw = gateway(config).await;
    let big = format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(100 * 1024)
    );

    // Announced length: refused before reading.
    let response = post_chat(&gw, big.clone()).await;
    assert_eq!(response.status(), 413);
    let error = assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(error["code"], "request_too_large");

    // Chunked, no length: refused once the limit is crossed.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let response = client()
        .post(gw.url(CHAT))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    assert_openai_error(&response.bytes().await.expect("body"));
    assert_eq!(call_count(&sim), 0, "the simulator was never called");

    // Just under the limit is fine.
    let fits = format!(
        r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(60 * 1024)
    );
    assert_eq!(post_chat(&gw, fits).await.status(), 200);
}

#[tokio::test]
async fn an_oversized_upload_is_a_413() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.limits.upload_body = ByteSize(1024 * 1024);
    let gw = gateway(config).await;
    let response = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    assert_eq!(
        call_count(&sim),
        0,
        "refused on its announced length before calling Groq"
    );

    // Streamed without a length: cut off at the limit, still a 413.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..32).map(|_| Ok(vec![0u8; 64 * 1024])).collect();
    let response = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 413);
    assert_openai_error(&response.bytes().await.expect("body"));
}
