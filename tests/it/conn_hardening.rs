//! Hostile clients and the drain: silent sockets are closed at their deadline, health probes answer at the connection cap, slow bodies get a 408, bodies read at once are bounded in bytes, and every request open at the drain deadline is answered.

use std::time::{Duration, Instant};

use groq_sim::Reply;
use groxy::config::{ByteSize, HumanDuration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::*;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A SETTINGS frame with no settings.
const H2_EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
const H2_HEADERS: u8 = 0x1;
const H2_GOAWAY: u8 = 0x7;

/// Reads until the peer closes (end of file or an error); returns what was read and when it
/// closed, or `None` if it is still open after `within`.
async fn read_until_closed(socket: &mut TcpStream, within: Duration) -> (Vec<u8>, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return (all, None),
            Ok(Ok(0) | Err(_)) => return (all, Some(Instant::now())),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The (type, stream id) of each whole HTTP/2 frame in `bytes`.
fn h2_frames(bytes: &[u8]) -> Vec<(u8, u32)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
        let stream = u32::from_be_bytes([bytes[at + 5], bytes[at + 6], bytes[at + 7], bytes[at + 8]]) & 0x7fff_ffff;
        frames.push((bytes[at + 3], stream));
        at += 9 + len;
    }
    frames
}

/// A HEADERS frame for `GET <path>` on stream 1, ending the stream (HPACK without Huffman).
fn h2_get(path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
    block.extend([0x04, path.len() as u8]); // :path, literal without indexing
    block.extend_from_slice(path.as_bytes());
    block.extend([0x01, 1, b'x']); // :authority x
    let mut frame = vec![0, 0, block.len() as u8, H2_HEADERS, 0x5, 0, 0, 0, 1];
    frame.extend(block);
    frame
}

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
async fn connections_that_never_send_a_request_are_closed_at_the_header_deadline() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.header_read_timeout = HumanDuration::secs(1);
    config.server.idle_timeout = HumanDuration::secs(60);
    let gw = gateway(config).await;

    let silent = |sent: &'static [u8]| {
        let addr = gw.addr;
        tokio::spawn(async move {
            let mut socket = TcpStream::connect(addr).await.expect("connect");
            let opened = Instant::now();
            socket.write_all(sent).await.expect("write");
            let (read, closed) = read_until_closed(&mut socket, Duration::from_secs(6)).await;
            (closed.map(|at| at - opened), read)
        })
    };
    let preface_and_settings: &'static [u8] = [H2_PREFACE, &H2_EMPTY_SETTINGS].concat().leak();
    let cases = [
        ("nothing at all", silent(b"")),
        ("half an HTTP/2 preface", silent(b"PRI * HTTP/2.0\r\n")),
        ("an HTTP/2 preface and SETTINGS", silent(preface_and_settings)),
    ];
    for (what, case) in cases {
        let (closed, _) = case.await.expect("join");
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after 6 s"));
        assert!(
            within(closed, Duration::from_millis(900), Duration::from_secs(4)),
            "{what}: closed after {closed:?}"
        );
    }

    // A keep-alive HTTP/1.1 connection that says nothing after its answer: hyper starts the
    // header deadline again after every answer.
    let mut socket = TcpStream::connect(gw.addr).await.expect("connect");
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (status, _, _) = read_response(&mut socket, Duration::from_secs(5))
        .await
        .expect("answered");
    assert_eq!(status, 200);
    let answered = Instant::now();
    let (_, closed) = read_until_closed(&mut socket, Duration::from_secs(6)).await;
    let closed = closed.expect("the idle keep-alive connection is closed") - answered;
    assert!(
        within(closed, Duration::from_millis(900), Duration::from_secs(4)),
        "{closed:?}"
    );
    assert_eq!(call_count(&sim), 0);
}

#[tokio::test]
async fn an_http2_connection_with_no_stream_open_is_closed_at_the_idle_deadline() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.header_read_timeout = HumanDuration::secs(30);
    config.server.idle_timeout = HumanDuration::secs(1);
    let gw = gateway(config).await;
    let mut socket = TcpStream::connect(gw.addr).await.expect("connect");
    let mut hello = [H2_PREFACE, &H2_EMPTY_SETTINGS].concat();
    hello.extend(h2_get("/healthz"));
    let sent = Instant::now();
    socket.write_all(&hello).await.expect("write");
    let (read, closed) = read_until_closed(&mut socket, Duration::from_secs(8)).await;
    let frames = h2_frames(&read);
    assert!(
        frames.contains(&(H2_HEADERS, 1)),
        "the request was answered: {frames:?}"
    );
    assert!(
        frames.iter().any(|(kind, _)| *kind == H2_GOAWAY),
        "a GOAWAY first: {frames:?}"
    );
    let closed = closed.expect("closed within 8 s, not kept for the 30 s header deadline") - sent;
    assert!(
        within(closed, Duration::from_millis(900), Duration::from_secs(5)),
        "{closed:?}"
    );
}

#[tokio::test]
async fn healthz_answers_while_max_connections_silent_sockets_are_open() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.max_connections = 40;
    // Far longer than the test: only the cap's eviction can make room.
    config.server.header_read_timeout = HumanDuration::secs(60);
    let gw = gateway(config).await;
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    let started = Instant::now();
    for attempt in 0..5 {
        let probe = tokio::time::timeout(Duration::from_secs(10), async {
            client().get(gw.url("/healthz")).send().await.expect("send")
        })
        .await
        .unwrap_or_else(|_| panic!("/healthz attempt {attempt} got no answer with 40 silent sockets open"));
        assert_eq!(probe.status(), 200);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let ready = client().get(gw.url("/readyz")).send().await.expect("send");
    assert_eq!(ready.status(), 200);

    // Room was made by closing the silent socket idle the longest, not a busy one.
    let mut closed = 0;
    for socket in &mut silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(20), socket.read(&mut byte)).await {
            closed += 1;
        }
    }
    assert!((1..=5).contains(&closed), "{closed} silent sockets were closed");
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

#[tokio::test]
async fn the_drain_answers_every_request_and_forwards_nothing_after_its_deadline() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    let drain = Duration::from_secs(1);
    config.server.drain_timeout = HumanDuration(drain);
    config.upstream.first_byte_timeout = HumanDuration::secs(30);
    let mut gw = gateway(config).await;
    // Groq reads three requests and never answers them.
    for _ in 0..3 {
        sim.push(Reply::Stall);
    }
    let stalled: Vec<_> = (0..3)
        .map(|_| {
            let url = gw.url(CHAT);
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(chat_body(false))
                    .send()
                    .await
            })
        })
        .collect();
    assert!(wait_for_calls(&sim, 3, Duration::from_secs(5)).await);

    let started = Instant::now();
    let done = gw.begin_shutdown();
    // Until the deadline the drain still serves.
    let served = post_chat(&gw, chat_body(false)).await;
    assert_eq!(served.status(), 200);
    assert!(served.bytes().await.is_ok());
    assert_eq!(call_count(&sim), 4);

    // Requests that arrive once the deadline has passed: nothing of them may reach Groq.
    let late = tokio::spawn({
        let url = gw.url(CHAT);
        async move {
            tokio::time::sleep_until((started + drain + Duration::from_millis(100)).into()).await;
            let mut outcomes = Vec::new();
            for _ in 0..2 {
                outcomes.push(
                    client()
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(chat_body(false))
                        .send()
                        .await,
                );
            }
            outcomes
        }
    });

    for request in stalled {
        let response = request
            .await
            .expect("join")
            .expect("an answer, not a dropped connection");
        let answered = started.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(header(&response, "retry-after"), "1");
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert_eq!(error["code"], "server_shutting_down");
        assert!(
            within(
                answered,
                drain - Duration::from_millis(100),
                drain + Duration::from_secs(2)
            ),
            "{answered:?}"
        );
    }
    // Not accepted any more (refused, or reset before a byte was read), or a 503.
    for response in late.await.expect("join").into_iter().flatten() {
        assert_eq!(response.status(), 503);
        let error = assert_openai_error(&response.bytes().await.expect("body"));
        assert_eq!(error["code"], "server_shutting_down");
    }
    tokio::time::timeout(Duration::from_secs(3), done)
        .await
        .expect("run returns")
        .expect("join")
        .expect("ok");
    assert_eq!(call_count(&sim), 4, "nothing was forwarded after the deadline");
}
