//! Groq's budget under paused time: waiting for resets, rotation across keys, 429 cool-downs and sharing.

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
async fn a_shared_record_round_trips_and_only_makes_a_replica_more_careful() {
    let now = Instant::now();
    let wall = 1_000_000;
    let mut seen = KeyModel::default();
    seen.requests.learn(Some(10), 0, now + Duration::from_secs(2), now);
    seen.cool_until = Some(now + Duration::from_secs(5));
    let record = Record::of(&seen, now, wall);
    assert_eq!(record.to_text(), "10,0,1002000;-,-,-;1005000");
    assert_eq!(Record::parse(&record.to_text()), Some(record));
    assert_eq!(record.ttl_ms(wall), Some(5000));
    for bad in ["", "1,2;3", "x,-,-;-,-,-;-", "-,-,-;-,-,-;-;-"] {
        assert_eq!(Record::parse(bad), None, "{bad:?}");
    }
    let mut other = KeyModel::from_preset(&LimitSet::default(), now);
    other.requests.learn(Some(10), 7, now + Duration::from_secs(2), now);
    record.merge_into(&mut other, now, wall);
    assert_eq!(other.requests.remaining, Some(0), "the lower remaining wins");
    assert!(other.fits(1, now).is_err(), "and the cool-down is shared");
    let mut fresher = KeyModel::default();
    fresher.requests.learn(Some(10), 3, now + Duration::from_secs(2), now);
    let stale = Record::parse("10,9,1002000;-,-,-;-").expect("record");
    stale.merge_into(&mut fresher, now, wall);
    assert_eq!(fresher.requests.remaining, Some(3), "a stale record never raises it");
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
