//! Invariant 3: a client that goes away cancels the upstream request within a second.

use std::time::{Duration, Instant};

use groq_sim::{Outcome, Reply, SimConfig, Slicing, StreamEnd, fixtures};

use crate::support::*;

/// Sends a request, drops the client at `hang_up_after`, and returns how long after the hang-up
/// the simulator saw its caller go away.
async fn cancellation_latency(
    sim: &groq_sim::Simulator,
    gw: &Gateway,
    stream: bool,
    hang_up_after: Duration,
) -> Duration {
    let url = gw.url(CHAT);
    let request = tokio::spawn(async move {
        let response = client().post(url).body(chat_body(stream)).send().await;
        if let Ok(response) = response {
            let _ = read_timed(response).await;
        }
    });
    assert!(wait_for_calls(sim, 1, Duration::from_secs(5)).await);
    tokio::time::sleep(hang_up_after).await;
    request.abort();
    let hung_up = Instant::now();
    let _ = request.await;
    match wait_outcome(sim, true, Duration::from_secs(3)).await {
        Some(Outcome::ClientGone { at }) => at.saturating_duration_since(hung_up),
        other => panic!("the simulator did not see the cancellation: {other:?}"),
    }
}

#[tokio::test]
async fn before_the_first_byte() {
    let (sim, gw) = pair().await;
    sim.push(Reply::Stall);
    let latency = cancellation_latency(&sim, &gw, true, Duration::from_millis(100)).await;
    println!("cancellation before first byte observed after {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
}

#[tokio::test]
async fn mid_stream() {
    let (sim, gw) = pair().await;
    sim.push(Reply::Stream {
        body: fixtures::stream("content"),
        slicing: Slicing {
            pause: Duration::from_millis(50),
            ..Slicing::default()
        },
        end: StreamEnd::Complete,
    });
    let latency = cancellation_latency(&sim, &gw, true, Duration::from_millis(300)).await;
    println!("cancellation mid-stream observed after {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert!(!last_request(&sim).sent.is_empty(), "the stream had started");
}

#[tokio::test]
async fn non_streaming() {
    let sim = sim_with(SimConfig {
        json_latency: Duration::from_secs(20),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(config_for(&sim)).await;
    let latency = cancellation_latency(&sim, &gw, false, Duration::from_millis(100)).await;
    println!("cancellation of a non-streaming call observed after {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    // Nothing is left counted as in flight: a drain now finishes at once.
    let mut gw = gw;
    let started = Instant::now();
    let done = gw.begin_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), done)
        .await
        .expect("drained at once");
    assert!(started.elapsed() < Duration::from_millis(500));
}
