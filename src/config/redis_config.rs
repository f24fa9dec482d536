//! The `[redis]` section: where the shared state of several replicas lives, and how long groxy waits for it.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::{secret::Secret, units::HumanDuration};

/// Shared rate-limit, budget and cache state for several replicas. Without a `url` everything
/// stays in memory, per process (the default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; env `GROXY_REDIS_URL`. May carry a password, so it
    /// is a [`RedisUrl`], which prints with the password masked.
    pub url: Option<RedisUrl>,
    /// Longest wait for any one Redis call; past it the call counts as failed and the request
    /// goes on without Redis. Bounds the latency a slow or paused Redis can add.
    pub timeout: HumanDuration,
    /// How many replicas share the limits: while Redis is down each replica enforces
    /// `limit / replicas` (rounded up) of every limit on its own. Env `GROXY_REDIS_REPLICAS`.
    pub replicas: u64,
    /// Prefix of every key groxy writes, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Consecutive failed calls that mark Redis down (one timed-out call always does).
    pub failures_to_open: u32,
    /// While Redis is down it is probed (PING) after this long, then after twice as long each
    /// time the probe fails, up to `max_probe_interval`.
    pub probe_interval: HumanDuration,
    pub max_probe_interval: HumanDuration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout: HumanDuration::millis(50),
            replicas: 1,
            key_prefix: "groxy:".to_owned(),
            failures_to_open: 3,
            probe_interval: HumanDuration::secs(1),
            max_probe_interval: HumanDuration::secs(10),
        }
    }
}

impl RedisConfig {
    /// Every problem with the section, appended to `errors`.
    pub(super) fn validate(&self, errors: &mut Vec<String>) {
        if let Some(url) = &self.url {
            if let Err(e) = ::redis::Client::open(url.expose()) {
                // The parse error names the part that is wrong, never the URL itself.
                errors.push(format!(
                    "redis.url {} is not a Redis URL such as redis://host:6379 ({})",
                    url.redacted(),
                    e.category()
                ));
            }
        }
        if self.timeout.0.is_zero() {
            errors.push("redis.timeout must be greater than zero (every timeout is finite and non-zero)".to_owned());
        }
        if self.replicas == 0 {
            errors.push("redis.replicas must be at least 1".to_owned());
        }
        if self.key_prefix.is_empty() || self.key_prefix.chars().any(char::is_whitespace) {
            errors.push("redis.key_prefix must be non-empty and without spaces".to_owned());
        }
        if self.failures_to_open == 0 {
            errors.push("redis.failures_to_open must be at least 1".to_owned());
        }
        if self.probe_interval.0.is_zero() || self.max_probe_interval < self.probe_interval {
            errors
                .push("redis.probe_interval must be greater than zero and at most redis.max_probe_interval".to_owned());
        }
    }
}

/// A Redis URL, which may carry a password: Debug and Display mask it
/// (`redis://:***@host:6379/0`); the clear text is only reachable through [`RedisUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Secret);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with any password (and user name) replaced by `***`; `***` alone if it does not
    /// even parse, since then there is no telling which part is secret.
    pub fn redacted(&self) -> String {
        let Ok(mut url) = reqwest::Url::parse(self.expose()) else {
            return "***".to_owned();
        };
        let had_credentials = !url.username().is_empty() || url.password().is_some();
        if had_credentials {
            let _ = url.set_username("");
            let _ = url.set_password(Some("***"));
        }
        url.to_string()
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for RedisUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(RedisUrl::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_prints() {
        let url = RedisUrl::new("redis://:hunter2-canary@cache.internal:6380/2");
        let shown = format!("{url:?} {url}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(url.redacted(), "redis://:***@cache.internal:6380/2");
        let user = RedisUrl::new("redis://admin:hunter2-canary@h:6379");
        assert!(!user.redacted().contains("hunter2") && !user.redacted().contains("admin"));
        assert_eq!(RedisUrl::new("redis://h:6379").redacted(), "redis://h:6379");
        assert_eq!(RedisUrl::new("not a url hunter2").redacted(), "***");
    }

    #[test]
    fn problems_are_all_reported() {
        let config = RedisConfig {
            url: Some(RedisUrl::new("http://:hunter2@x")),
            timeout: HumanDuration::millis(0),
            replicas: 0,
            key_prefix: String::new(),
            failures_to_open: 0,
            probe_interval: HumanDuration::secs(20),
            max_probe_interval: HumanDuration::secs(10),
        };
        let mut errors = Vec::new();
        config.validate(&mut errors);
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 6, "{joined}");
        assert!(!joined.contains("hunter2"), "{joined}");
    }
}
