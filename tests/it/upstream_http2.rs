//! `upstream.http2`: groxy speaks HTTP/2 to Groq when told to, streams stay byte-exact over it, and a server's stream cap makes requests wait instead of failing.

use std::time::Duration;

use groq_sim::{Reply, SimConfig, SliceMode, Slicing, StreamEnd, fixtures};
use groxy::config::UpstreamHttp2;

use crate::support::*;

#[tokio::test]
async fn always_speaks_h2c_and_streams_stay_byte_exact() {
    let sim = sim().await;
    let mut config = config_for(&sim);
    config.upstream.http2 = UpstreamHttp2::Always;
    let gw = gateway(config).await;
    for (seed, name) in ["content", "include-usage", "tool-call"].into_iter().enumerate() {
        let fixture = fixtures::stream(name);
        sim.push(Reply::Stream {
            body: fixture.clone(),
            slicing: Slicing {
                first_delay: Duration::ZERO,
                pause: Duration::ZERO,
                mode: SliceMode::Random {
                    min: 1,
                    max: 64,
                    seed: seed as u64 + 1,
                },
            },
            end: StreamEnd::Complete,
        });
        let response = post_chat(&gw, chat_body(true)).await;
        assert_eq!(response.status(), 200, "{name}");
        let (body, _, error) = read_timed(response).await;
        assert_eq!(error, None, "{name}");
        let request = last_request(&sim);
        assert_eq!(request.version, http::Version::HTTP_2, "{name}");
        assert_eq!(request.sent_bytes(), fixture.to_vec());
        assert_eq!(
            body,
            fixture.to_vec(),
            "{name}: bytes differ from what the simulator sent"
        );
    }
    let answer = post_chat(&gw, chat_body(false)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(last_request(&sim).version, http::Version::HTTP_2);
    // The catalogue fetch went the same way.
    assert!(sim.requests().iter().all(|r| r.version == http::Version::HTTP_2));
}

#[tokio::test]
async fn auto_and_never_speak_http1_to_a_plain_http_upstream() {
    for mode in [UpstreamHttp2::Auto, UpstreamHttp2::Never] {
        let sim = sim().await;
        let mut config = config_for(&sim);
        config.upstream.http2 = mode;
        let gw = gateway(config).await;
        let response = post_chat(&gw, chat_body(true)).await;
        assert_eq!(response.status(), 200, "{mode:?}");
        let (_, _, error) = read_timed(response).await;
        assert_eq!(error, None, "{mode:?}");
        assert_eq!(last_request(&sim).version, http::Version::HTTP_11, "{mode:?}");
    }
}

/// Over HTTP/2 every request shares one connection: with the server's stream cap reached, the
/// next request waits for a stream to end (it is not refused, and no second connection opens).
#[tokio::test]
async fn a_request_over_the_servers_stream_cap_waits_for_a_free_stream() {
    let sim = sim_with(SimConfig {
        h2_max_concurrent_streams: Some(1),
        stream_chunks: Some(3),
        chunk_interval: Duration::from_millis(150),
        ..SimConfig::default()
    })
    .await;
    let mut config = config_for(&sim);
    config.upstream.http2 = UpstreamHttp2::Always;
    let gw = gateway(config).await;
    let (first, second) = tokio::join!(
        async { read_timed(post_chat(&gw, chat_body(true)).await).await },
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            read_timed(post_chat(&gw, chat_body(true)).await).await
        }
    );
    assert_eq!(first.2, None);
    assert_eq!(second.2, None);
    assert!(first.0.ends_with(b"data: [DONE]\n\n"));
    assert!(second.0.ends_with(b"data: [DONE]\n\n"));
    let mut streams = calls(&sim);
    streams.sort_by_key(|r| r.received_at);
    assert_eq!(streams.len(), 2);
    let first_done = streams[0]
        .sent
        .last()
        .map(|(at, _)| *at)
        .expect("the first stream sent");
    assert!(
        streams[1].received_at >= first_done,
        "the second stream reached the simulator while the first was still open"
    );
}
