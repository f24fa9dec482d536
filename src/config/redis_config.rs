//! The `[redis]` section: where the shared state of several replicas lives, and how long groxy waits for it.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Deserializer};

use super::{secret::Secret, units::HumanDuration};

/// Shared rate-limit, budget and cache state for several replicas. Without a `url` everything
/// stays in memory, per process (the default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host:port[/db]`, or `rediss://` for TLS; env `GROXY_REDIS_URL`.
    /// May carry a password, so it is a [`RedisUrl`], which prints with the password masked.
    pub url: Option<RedisUrl>,
    /// PEM file of the certificate authorities that may sign a `rediss://` server's
    /// certificate, in place of the system's roots: for a managed Redis whose CA is private
    /// (or a test's own). The server's name is still checked against the certificate.
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
    /// The client for `url` (TLS settings included), or `None` without a URL. Never connects.
    /// Each message names the setting at fault and never the password.
    pub fn client(&self) -> Result<Option<::redis::Client>, String> {
        let Some(url) = &self.url else {
            if self.ca_file.is_some() {
                return Err("redis.ca_file is set but redis.url is not".to_owned());
            }
            return Ok(None);
        };
        let shown = url.redacted();
        let parsed = reqwest::Url::parse(url.expose()).ok();
        let scheme = parsed.as_ref().map(|u| u.scheme().to_owned()).unwrap_or_default();
        if scheme == "rediss" && parsed.as_ref().and_then(|u| u.fragment()).is_some() {
            // redis-rs reads `#insecure` as "skip certificate checks": not offered, use ca_file.
            return Err(format!(
                "redis.url {shown}: a fragment such as #insecure is not supported; to trust a private CA set redis.ca_file"
            ));
        }
        let not_a_url = |e: ::redis::RedisError| {
            // The parse error names the part that is wrong, never the URL itself.
            format!(
                "redis.url {shown} is not a Redis URL such as redis://host:6379 or rediss://user:password@host:6380 ({})",
                e.category()
            )
        };
        let Some(path) = &self.ca_file else {
            return ::redis::Client::open(url.expose()).map(Some).map_err(not_a_url);
        };
        if scheme != "rediss" {
            return Err(format!(
                "redis.ca_file is set but redis.url {shown} is not a rediss:// (TLS) URL"
            ));
        }
        let pem = std::fs::read(path).map_err(|e| format!("cannot read redis.ca_file {}: {e}", path.display()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(format!("redis.ca_file {} holds no PEM certificate", path.display()));
        }
        let certificates = ::redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        };
        ::redis::Client::build_with_tls(url.expose(), certificates)
            .map(Some)
            .map_err(|e| match e.kind() {
                ::redis::ErrorKind::InvalidClientConfig => not_a_url(e),
                // A PEM or trust-anchor problem: about the CA file, which holds no secret.
                _ => format!("redis.ca_file {}: {e}", path.display()),
            })
    }

    /// Every problem with the section, appended to `errors`.
    pub(super) fn validate(&self, errors: &mut Vec<String>) {
        if let Err(problem) = self.client() {
            errors.push(problem);
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
            ca_file: None,
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

    #[test]
    fn ca_file_problems_are_named_without_the_password() {
        let dir = std::env::temp_dir().join(format!("groxy-ca-file-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let bad_cert = dir.join("bad.pem");
        std::fs::write(
            &bad_cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let tls = "rediss://app:hunter2-canary@cache.internal:6380/0";
        let cases = [
            (None, Some(not_pem.clone()), "redis.url is not"),
            (
                Some("redis://app:hunter2-canary@h:6379"),
                Some(not_pem.clone()),
                "not a rediss:// (TLS) URL",
            ),
            (Some(tls), Some(dir.join("missing.pem")), "cannot read redis.ca_file"),
            (Some(tls), Some(not_pem), "holds no PEM certificate"),
            (Some(tls), Some(bad_cert), "redis.ca_file"),
            (
                Some("rediss://app:hunter2-canary@h:6380/#insecure"),
                None,
                "#insecure is not supported",
            ),
        ];
        for (url, ca_file, expected) in cases {
            let config = RedisConfig {
                url: url.map(RedisUrl::new),
                ca_file,
                ..RedisConfig::default()
            };
            let mut errors = Vec::new();
            config.validate(&mut errors);
            let joined = errors.join("\n");
            assert_eq!(errors.len(), 1, "{url:?}: {joined}");
            assert!(joined.contains(expected), "{url:?}: {joined}");
            assert!(!joined.contains("hunter2"), "{joined}");
        }
        // TLS and an ACL user name without a CA file: the system's roots, no problem to report.
        let config = RedisConfig {
            url: Some(RedisUrl::new(tls)),
            ..RedisConfig::default()
        };
        assert!(matches!(config.client(), Ok(Some(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
