//! Groq's budget under paused time: waiting for resets, rotation across keys, 429 cool-downs and following the shared view.

use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, v.parse().expect("value"));
    }
    h
}

#[tokio::test(start_paused = true)]
async fn waits_for_the_reset_instead_of_sending_into_a_429() {
    let budget = UpstreamBudget::new(1, LimitSet::default(), Duration::from_secs(10), 16);
    assert_eq!(budget.acquire("m", 100).await, Ok(0));
    budget.observe(
        0,
        "m",
        StatusCode::OK,
        &headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2s"),
            ("x-ratelimit-remaining-tokens", "5000"),
            ("x-ratelimit-reset-tokens", "1s"),
        ]),
    );
    let started = Instant::now();
    assert_eq!(budget.acquire("m", 100).await, Ok(0));
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "waited exactly for the reset"
    );
    // Another model is not affected.
    let started = Instant::now();
    assert_eq!(budget.acquire("other", 100).await, Ok(0));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_request_larger_than_groqs_whole_budget_is_left_to_groq() {
    let budget = UpstreamBudget::new(1, LimitSet::default(), Duration::from_secs(10), 16);
    budget.observe(
        0,
        "m",
        StatusCode::OK,
        &headers(&[
            ("x-ratelimit-limit-tokens", "8000"),
            ("x-ratelimit-remaining-tokens", "7965"),
            ("x-ratelimit-reset-tokens", "262ms"),
        ]),
    );
    let started = Instant::now();
    assert_eq!(budget.acquire("m", 65_538).await, Ok(0));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn answers_at_once_when_waiting_cannot_help() {
    let budget = UpstreamBudget::new(1, LimitSet::default(), Duration::from_secs(10), 16);
    budget.observe(
        0,
        "m",
        StatusCode::OK,
        &headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1m26.4s"),
        ]),
    );
    let started = Instant::now();
    let refused = budget.acquire("m", 1).await.expect_err("refused");
    assert_eq!(refused.retry_after, Duration::from_millis(86_400));
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn rotates_away_from_a_key_that_got_a_429() {
    let budget = UpstreamBudget::new(2, LimitSet::default(), Duration::from_secs(10), 16);
    budget.observe(
        0,
        "m",
        StatusCode::TOO_MANY_REQUESTS,
        &headers(&[("retry-after", "19")]),
    );
    for _ in 0..4 {
        assert_eq!(budget.acquire("m", 1).await, Ok(1));
    }
    tokio::time::advance(Duration::from_secs(19)).await;
    let picks: Vec<_> = [(); 4]
        .iter()
        .map(|_| budget.try_pick(&"m".into(), 1, Instant::now()))
        .collect();
    assert!(picks.contains(&Ok(0)) && picks.contains(&Ok(1)), "{picks:?}");
}

#[tokio::test(start_paused = true)]
async fn a_preset_is_the_budget_before_groq_says_anything() {
    let preset = LimitSet {
        requests_per_day: Some(2),
        tokens_per_minute: Some(1000),
        ..LimitSet::default()
    };
    let budget = UpstreamBudget::new(1, preset, Duration::from_secs(1), 16);
    assert!(budget.acquire("m", 600).await.is_ok());
    assert!(
        budget.acquire("m", 600).await.is_err(),
        "the second would exceed 1000 tokens this minute"
    );
    assert!(budget.acquire("m", 300).await.is_ok());
    assert!(budget.acquire("m", 1).await.is_err(), "2 requests per day");
}

#[tokio::test(start_paused = true)]
async fn following_redis_only_makes_this_replicas_view_more_careful() {
    let budget = UpstreamBudget::new(2, LimitSet::default(), Duration::from_secs(1), 16);
    let model: Arc<str> = "m".into();
    budget.observe(
        1,
        "m",
        StatusCode::OK,
        &headers(&[
            ("x-ratelimit-limit-requests", "10"),
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", "2s"),
        ]),
    );
    let spent = shared::Dim {
        limit: Some(10),
        remaining: Some(0),
        reset: Some(Duration::from_secs(2)),
    };
    let stale = shared::Dim {
        remaining: Some(9),
        ..spent
    };
    let granted = Granted {
        picked: None,
        wait: Duration::from_secs(2),
        seen: vec![
            shared::Seen {
                requests: stale,
                ..Default::default()
            },
            shared::Seen {
                requests: spent,
                cool: Some(Duration::from_secs(5)),
                ..Default::default()
            },
        ],
    };
    // Asked in the order key 1, key 0.
    budget.follow(&model, &[1, 0], &granted, Instant::now());
    let state = budget.state.lock().expect("state");
    let key0 = state.get(&(0, model.clone())).expect("key 0");
    let key1 = state.get(&(1, model.clone())).expect("key 1");
    assert_eq!(
        key1.requests.remaining,
        Some(3),
        "a higher shared count never raises it"
    );
    assert_eq!(key0.requests.remaining, Some(0), "what Redis holds is learned");
    assert!(key0.cool_until.is_some(), "and its cool-down");
}
