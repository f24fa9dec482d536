//! The drain: readiness flips at once, in-flight streams finish, streams still open at the deadline get an error frame.

use std::time::{Duration, Instant};

use groq_sim::{Reply, Slicing, StreamEnd, fixtures};
use groxy::config::HumanDuration;

use crate::support::*;

#[tokio::test]
async fn in_flight_streams_finish_and_readiness_flips_at_once() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.drain_timeout = HumanDuration::secs(5);
    let mut gw = gateway(config).await;
    let fixture = fixtures::stream("content");
    sim.push(Reply::Stream {
        body: fixture.clone(),
        slicing: Slicing {
            pause: Duration::from_millis(30),
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    // The head of a stream arrives with its first bytes: the stream is in flight from here on.
    let response = post_chat(&gw, chat_body(true)).await;
    let reader = tokio::spawn(read_timed(response));

    let started = Instant::now();
    let done = gw.begin_shutdown();
    let ready = poll_until(Duration::from_secs(2), || async {
        let ready = client()
            .get(gw.url("/readyz"))
            .send()
            .await
            .expect("still answering while draining");
        (ready.status() == 503).then_some(ready)
    })
    .await
    .expect("readiness flips once the drain starts");
    assert_eq!(ready.headers()["connection"], "close");

    let (body, _, error) = reader.await.expect("join");
    assert_eq!(error, None);
    assert_eq!(body, fixture.to_vec(), "the in-flight stream completed untouched");
    tokio::time::timeout(Duration::from_secs(2), done)
        .await
        .expect("exits once idle")
        .expect("join")
        .expect("ok");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn streams_open_at_the_drain_deadline_get_an_error_frame() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.server.drain_timeout = HumanDuration::millis(500);
    config.upstream.idle_timeout = HumanDuration::secs(30);
    let mut gw = gateway(config).await;
    let body = fixtures::stream("content").slice(..700);
    sim.push(Reply::Stream {
        body: body.clone(),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let response = post_chat(&gw, chat_body(true)).await;
    let reader = tokio::spawn(read_timed(response));
    let started = Instant::now();
    let done = gw.begin_shutdown();
    let (received, _, _) = reader.await.expect("join");
    let text = String::from_utf8_lossy(&received);
    assert!(received.starts_with(&body));
    assert!(
        text.contains("server_shutting_down") && !text.contains("[DONE]"),
        "{text}"
    );
    tokio::time::timeout(Duration::from_secs(2), done)
        .await
        .expect("exits")
        .expect("join")
        .expect("ok");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}
