//! Managed-Redis connections: `rediss://` (TLS, a private CA in `redis.ca_file`) with an ACL user, against a real TLS-only `redis-server`; a wrong password, an untrusted certificate or plain TCP leave Redis down and requests served.

use std::time::{Duration, Instant};

use groxy::{
    Config,
    config::{HumanDuration, LimitSet, RedisUrl},
};

use crate::{redis_server::RedisServer, support::*};

const USER: &str = "groxy-app";
const PASSWORD: &str = "tls-canary-pw";
/// The least a groxy user needs, as the README recommends it: its own keys, the commands of
/// the cache (GET, SET), the Lua scripts (EVALSHA, SCRIPT LOAD, and what they call: hashes,
/// sorted sets, PEXPIRE, TIME) and PING; nothing `@dangerous` (FLUSHALL, KEYS, CONFIG, ...).
const ACL: &str = "~groxy:* resetchannels +@read +@write +@scripting +@connection +time -@dangerous";

fn replica(sim: &groq_sim::Simulator, url: String, ca_file: Option<std::path::PathBuf>) -> Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice"), ("bob", "gxy_bob")]);
    config.redis.url = Some(RedisUrl::new(url));
    config.redis.ca_file = ca_file;
    config.redis.replicas = 2;
    // A TLS handshake on a busy 2-core machine must not trip the breaker by accident.
    config.redis.timeout = HumanDuration::secs(2);
    config.redis.probe_interval = HumanDuration::millis(100);
    config.redis.max_probe_interval = HumanDuration::millis(500);
    config
}

/// Waits until `/readyz` names Redis `want`; the last state seen otherwise.
async fn redis_becomes(gw: &Gateway, want: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let response = client().get(gw.url("/readyz")).send().await.expect("readyz");
        assert_eq!(response.status(), 200, "readyz stays 200 whatever Redis does");
        let state = json(&response.bytes().await.expect("body"))["redis"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if state == want {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(state);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn det() -> String {
    r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"Say hi"}],"temperature":0}"#.to_owned()
}

#[tokio::test]
async fn two_replicas_share_one_limit_and_one_cache_through_a_tls_redis_as_an_acl_user() {
    let redis = RedisServer::start_tls(USER, PASSWORD, ACL);
    let sim = sim().await;
    let url = format!("rediss://{USER}:{PASSWORD}@{}/0", redis.tls_address());
    let mut config = replica(&sim, url, Some(redis.ca_file()));
    config.rate_limits.keys.insert(
        "alice".to_owned(),
        LimitSet {
            requests_per_day: Some(3),
            ..LimitSet::default()
        },
    );
    let a = gateway(config.clone()).await;
    let b = gateway(config).await;
    for gw in [&a, &b] {
        redis_becomes(gw, "up", Duration::from_secs(10))
            .await
            .unwrap_or_else(|state| panic!("TLS Redis with an ACL user never came up: {state:?}"));
    }
    // One budget across both replicas: A, B, A take the 3; B then refuses the 4th.
    for (i, remaining) in ["2", "1", "0"].into_iter().enumerate() {
        let gw = if i % 2 == 0 { &a } else { &b };
        let response = chat_as(gw, "alice", chat_body(false)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-remaining-requests"), remaining);
        // Let the settlement land before the next request (Redis settles in the background).
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = chat_as(&b, "alice", chat_body(false)).await;
    assert_eq!(refused.status(), 429, "replica B saw what replica A spent, over TLS");
    assert_eq!(call_count(&sim), 3, "Groq saw the limit, not the limit per replica");
    // One cache: what A stored is a HIT on B.
    let first = chat_as(&a, "bob", det()).await;
    assert_eq!(header(&first, "x-groxy-cache"), "MISS");
    let sent = first.bytes().await.expect("body");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.keys("groxy:c:*").is_empty() {
        assert!(Instant::now() < deadline, "the answer never reached Redis");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = chat_as(&b, "bob", det()).await;
    assert_eq!(header(&second, "x-groxy-cache"), "HIT");
    assert_eq!(second.bytes().await.expect("body"), sent);
    assert_eq!(call_count(&sim), 4, "replica B did not call Groq");
    assert!(
        !redis.keys("groxy:rl:*").is_empty(),
        "the buckets live in the TLS Redis"
    );
}

#[tokio::test]
async fn a_wrong_password_an_untrusted_certificate_or_plain_tcp_leave_redis_down_and_requests_served() {
    let redis = RedisServer::start_tls(USER, PASSWORD, ACL);
    let sim = sim().await;
    let address = redis.tls_address();
    let cases = [
        (
            "wrong password",
            format!("rediss://{USER}:not-{PASSWORD}@{address}/0"),
            Some(redis.ca_file()),
        ),
        (
            "the default user, which is off",
            format!("rediss://:{PASSWORD}@{address}/0"),
            Some(redis.ca_file()),
        ),
        (
            "the system roots, which do not know the test's CA",
            format!("rediss://{USER}:{PASSWORD}@{address}/0"),
            None,
        ),
        (
            "plain TCP to a TLS port",
            format!("redis://{USER}:{PASSWORD}@{address}/0"),
            None,
        ),
    ];
    for (case, url, ca_file) in cases {
        let gw = gateway(replica(&sim, url, ca_file)).await;
        redis_becomes(&gw, "down", Duration::from_secs(10))
            .await
            .unwrap_or_else(|state| panic!("{case}: Redis should be down, /readyz says {state:?}"));
        let response = chat_as(&gw, "alice", chat_body(false)).await;
        assert_eq!(response.status(), 200, "{case}: a Redis refusal never fails a request");
    }
    // The right user, password and CA on the same server: up, so the refusals above were its.
    let url = format!("rediss://{USER}:{PASSWORD}@{address}/0");
    let gw = gateway(replica(&sim, url, Some(redis.ca_file()))).await;
    redis_becomes(&gw, "up", Duration::from_secs(10))
        .await
        .unwrap_or_else(|state| panic!("the right credentials: {state:?}"));
}
