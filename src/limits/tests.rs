//! Unit tests of the limiter under tokio's paused clock.

use futures_util::FutureExt;

use super::*;
use crate::{
    config::{LimitSet, Preset},
    error::{Kind, Window},
};

fn caller(name: &str) -> Caller {
    Caller {
        name: name.into(),
        partition: crate::digest::sha256(name.as_bytes()),
        upstream_authorization: None,
        account: None,
    }
}

/// A memory limiter and the config every admission brings.
struct Configured {
    limiter: Limits,
    config: RateLimitsConfig,
}

impl Configured {
    fn admit(&self, caller: &Caller, model: &str, tokens: u64) -> Result<Admission, Box<LimitExceeded>> {
        self.limiter
            .admit(&self.config, caller, Some(model), tokens)
            .now_or_never()
            .expect("a memory admission never waits")
    }
    fn sweep(&self) {
        self.limiter.sweep();
    }
    fn scope_count(&self) -> usize {
        self.limiter.scope_count()
    }
}

fn limiter(config: RateLimitsConfig) -> Configured {
    Configured {
        limiter: Limits::in_memory(),
        config,
    }
}

fn per_minute(requests: u64) -> RateLimitsConfig {
    RateLimitsConfig {
        default: LimitSet {
            requests_per_minute: Some(requests),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_config_applies_to_the_next_request_and_keeps_the_counts() {
    let mut l = limiter(per_minute(5));
    let alice = caller("alice");
    for _ in 0..4 {
        l.admit(&alice, "m", 1).expect("fits").settle(Some(1));
    }
    l.config = per_minute(10);
    let admitted = l.admit(&alice, "m", 1).expect("the new limit");
    assert_eq!(
        admitted.headers.requests.map(|d| (d.limit, d.remaining)),
        Some((10, 5)),
        "4 used before the reload, 1 now"
    );
    l.config = per_minute(3);
    let refused = l.admit(&alice, "m", 1).expect_err("5 used of 3");
    assert_eq!((refused.limit, refused.used), (3, 3));
    l.config = RateLimitsConfig::default();
    assert!(l.admit(&alice, "m", 1).is_ok(), "no limit any more");
}

#[test]
fn the_local_share_divides_every_limit_rounding_up() {
    let config = RateLimitsConfig {
        default: LimitSet {
            requests_per_minute: Some(10),
            requests_per_day: Some(1),
            tokens_per_minute: Some(1001),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    };
    let plan = Plan::new(&config, &caller("alice"), Some("m")).local_share(2);
    let set = plan.scopes[0].set;
    assert_eq!(
        (
            set.requests_per_minute,
            set.requests_per_day,
            set.tokens_per_minute,
            set.tokens_per_day
        ),
        (Some(5), Some(1), Some(501), None)
    );
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let l = limiter(RateLimitsConfig {
        default: LimitSet {
            requests_per_minute: Some(2),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    });
    let (alice, bob) = (caller("alice"), caller("bob"));
    let a1 = l.admit(&alice, "m", 10).expect("1");
    assert_eq!(a1.headers.requests.map(|d| d.remaining), Some(1));
    let _a2 = l.admit(&alice, "m", 10).expect("2");
    let refused = l.admit(&alice, "m", 10).expect_err("3rd");
    assert_eq!(refused.kind, Kind::Requests);
    assert_eq!(refused.window, Window::Minute);
    assert_eq!((refused.limit, refused.used), (2, 2));
    assert_eq!(refused.wait, Some(Duration::from_secs(30)));
    assert!(l.admit(&bob, "m", 10).is_ok(), "bob is unaffected");
}

#[tokio::test(start_paused = true)]
async fn tokens_are_reserved_then_settled() {
    let l = limiter(RateLimitsConfig {
        default: LimitSet {
            tokens_per_minute: Some(1000),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    });
    let alice = caller("alice");
    let first = l.admit(&alice, "m", 800).expect("fits");
    assert_eq!(first.headers.tokens.map(|d| d.remaining), Some(200));
    assert_eq!(l.admit(&alice, "m", 300).expect_err("over").kind, Kind::Tokens);
    first.settle(Some(100)); // used 100 of 800
    let second = l.admit(&alice, "m", 300).expect("fits after settling");
    assert_eq!(second.headers.tokens.map(|d| d.remaining), Some(600));
    drop(second); // cancelled: everything comes back
    let third = l.admit(&alice, "m", 0).expect("ok");
    assert_eq!(third.headers.tokens.map(|d| d.remaining), Some(900));
    let never = l.admit(&alice, "m", 5000).expect_err("bigger than the limit");
    assert_eq!(never.wait, None);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_released_when_the_admission_ends() {
    let l = limiter(RateLimitsConfig {
        default: LimitSet {
            max_concurrent: Some(1),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    });
    let alice = caller("alice");
    let held = l.admit(&alice, "m", 1).expect("first");
    assert_eq!(l.admit(&alice, "m", 1).expect_err("second").kind, Kind::Concurrency);
    held.settle(Some(1));
    assert!(l.admit(&alice, "m", 1).is_ok());
}

#[tokio::test(start_paused = true)]
async fn presets_apply_per_model_and_per_key_overrides_win() {
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(
        "vip".to_owned(),
        LimitSet {
            requests_per_minute: Some(100),
            ..LimitSet::default()
        },
    );
    let l = limiter(RateLimitsConfig {
        preset: Preset::Free,
        default: LimitSet {
            requests_per_minute: Some(5),
            ..LimitSet::default()
        },
        keys,
        ..RateLimitsConfig::default()
    });
    let alice = caller("alice");
    for _ in 0..5 {
        let admission = l.admit(&alice, "a", 1).expect("fits");
        admission.settle(Some(1));
    }
    assert_eq!(
        l.admit(&alice, "b", 1)
            .expect_err("default: 5 per minute across models")
            .limit,
        5
    );
    let vip = caller("vip");
    for _ in 0..30 {
        l.admit(&vip, "a", 1).expect("fits").settle(Some(1));
    }
    let refused = l
        .admit(&vip, "a", 1)
        .expect_err("the free tier's 30 per minute per model");
    assert_eq!((refused.limit, refused.model.as_deref()), (30, Some("a")));
    assert!(l.admit(&vip, "b", 1).is_ok(), "another model has its own budget");
}

#[tokio::test(start_paused = true)]
async fn idle_scopes_are_swept() {
    let l = limiter(RateLimitsConfig {
        default: LimitSet {
            requests_per_minute: Some(60),
            ..LimitSet::default()
        },
        ..RateLimitsConfig::default()
    });
    for i in 0..100 {
        l.admit(&caller(&format!("k{i}")), "m", 1)
            .expect("fits")
            .settle(Some(1));
    }
    assert_eq!(l.scope_count(), 100);
    tokio::time::advance(Duration::from_secs(61)).await;
    l.sweep();
    assert_eq!(l.scope_count(), 0);
}
