//! Who is calling: client keys (stored hashed, compared in constant time), passthrough of the caller's own Groq key, or nobody in particular.

use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, sync::Arc};

use crate::{
    config::{AuthConfig, AuthMode},
    digest::{hex, same, sha256, unhex},
    error::GatewayError,
    keyring::{Account, Keyring},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, HeaderValue, header};

/// The identity a request runs under, put in the request's extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's configured name, `anonymous`, or `passthrough-<8 hex of the key's hash>`:
    /// safe for logs, metrics and messages.
    pub name: Arc<str>,
    /// SHA-256 of the key: partitions rate limits and the cache. Never shown.
    pub partition: [u8; 32],
    /// In passthrough mode, the caller's own `Authorization`, sent to Groq instead of ours.
    pub upstream_authorization: Option<HeaderValue>,
    /// A key made with the admin API: its id, limits, budgets and allowed models.
    pub account: Option<Arc<Account>>,
}

impl Caller {
    /// Who the usage ledger and the budgets count this caller as: a stored key's id (stable
    /// across renames and rotations), or the name.
    pub fn subject(&self) -> &Arc<str> {
        self.account.as_ref().map_or(&self.name, |account| &account.id)
    }
}

/// A new client key and the config lines that admit it.
pub fn new_key(name: &str) -> Result<(String, String), String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("no randomness available: {e}"))?;
    let key = format!("gxy_{}", hex(&random));
    let config = format!(
        "[[auth.keys]]\nname = {name:?}\nsha256 = \"{}\"\n",
        hex(&sha256(key.as_bytes()))
    );
    Ok((key, config))
}

struct KeyEntry {
    name: Arc<str>,
    hash: [u8; 32],
}

/// Checks credentials. Built once from the config (and again on reload).
pub struct Authenticator {
    mode: AuthMode,
    /// By hash: the lookup runs on a SHA-256 of the presented key, so its timing reveals
    /// nothing about any stored key; the final comparison is constant-time all the same.
    keys: HashMap<[u8; 32], KeyEntry>,
    anonymous: Arc<str>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        let keys = config
            .keys
            .iter()
            .filter_map(|k| {
                unhex(&k.sha256).map(|hash| {
                    (
                        hash,
                        KeyEntry {
                            name: k.name.as_str().into(),
                            hash,
                        },
                    )
                })
            })
            .collect();
        let per_minute = NonZeroU32::new(config.failures_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            mode: config.mode,
            keys,
            anonymous: "anonymous".into(),
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// The caller, or the error to answer with. `peer` is the client's address, used to throttle
    /// repeated failures. `stored` holds the keys made at run time (memory only: no database
    /// call here); a revoked or expired one is refused like an unknown one.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
        stored: &Keyring,
    ) -> Result<Caller, GatewayError> {
        match self.mode {
            AuthMode::None => Ok(Caller {
                name: self.anonymous.clone(),
                partition: [0; 32],
                upstream_authorization: None,
                account: None,
            }),
            AuthMode::Keys => {
                let Some(hash) = bearer(headers).map(|token| sha256(token.as_bytes())) else {
                    return Err(self.failed(peer));
                };
                if let Some(entry) = self.keys.get(&hash).filter(|entry| same(&entry.hash, &hash)) {
                    return Ok(Caller {
                        name: entry.name.clone(),
                        partition: entry.hash,
                        upstream_authorization: None,
                        account: None,
                    });
                }
                match stored.find(&hash) {
                    Some(account) => Ok(Caller {
                        name: account.name.clone(),
                        partition: hash,
                        upstream_authorization: None,
                        account: Some(account),
                    }),
                    None => Err(self.failed(peer)),
                }
            }
            AuthMode::Passthrough => match (bearer(headers), headers.get(header::AUTHORIZATION)) {
                (Some(token), Some(value)) => {
                    let partition = sha256(token.as_bytes());
                    let mut value = value.clone();
                    value.set_sensitive(true);
                    Ok(Caller {
                        name: format!("passthrough-{}", &hex(&partition)[..8]).into(),
                        partition,
                        upstream_authorization: Some(value),
                        account: None,
                    })
                }
                _ => Err(self.failed(peer)),
            },
        }
    }

    /// One failure from `peer`: a 401, or a 429 once the address has failed too often.
    fn failed(&self, peer: Option<IpAddr>) -> GatewayError {
        if let Some(ip) = peer {
            if let Err(not_until) = self.failures.check_key(&ip) {
                let wait =
                    not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
                return GatewayError::AuthThrottled { retry_after: wait };
            }
        }
        GatewayError::InvalidApiKey
    }

    /// A wrong admin key from `peer`: a 401, or a 429 once the address has failed too often
    /// (admin and client keys share one failure budget per address).
    pub fn admin_failed(&self, peer: Option<IpAddr>) -> GatewayError {
        match self.failed(peer) {
            GatewayError::InvalidApiKey => GatewayError::InvalidAdminKey,
            throttled => throttled,
        }
    }

    /// Forgets addresses whose failure budget is full again, so the table stays small.
    pub fn forget_idle(&self) {
        self.failures.retain_recent();
        self.failures.shrink_to_fit();
    }

    /// How many addresses the failure throttle remembers (a gauge: housekeeping keeps it small).
    pub fn throttled_addresses(&self) -> usize {
        self.failures.len()
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientKeyConfig;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).expect("header"));
        h
    }

    #[test]
    fn keys_mode_accepts_only_configured_keys() {
        let (key, line) = new_key("alice").expect("key");
        assert!(key.starts_with("gxy_") && key.len() == 68);
        let sha = line.split('"').nth(3).expect("sha").to_owned();
        let auth = Authenticator::new(&AuthConfig {
            mode: AuthMode::Keys,
            keys: vec![ClientKeyConfig {
                name: "alice".into(),
                sha256: sha,
            }],
            failures_per_minute: 3,
            ..AuthConfig::default()
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let caller = auth
            .authenticate(&headers(&format!("Bearer {key}")), Some(ip), &Keyring::new())
            .expect("valid");
        assert_eq!(&*caller.name, "alice");
        assert!(matches!(
            auth.authenticate(&headers("Bearer gxy_wrong"), Some(ip), &Keyring::new()),
            Err(GatewayError::InvalidApiKey)
        ));
        assert!(matches!(
            auth.authenticate(&HeaderMap::new(), Some(ip), &Keyring::new()),
            Err(GatewayError::InvalidApiKey)
        ));
        assert!(matches!(
            auth.authenticate(&headers("Basic abc"), Some(ip), &Keyring::new()),
            Err(GatewayError::InvalidApiKey)
        ));
        // The fourth failure within the minute is throttled; other addresses are not.
        assert!(matches!(
            auth.authenticate(&headers("Bearer x"), Some(ip), &Keyring::new()),
            Err(GatewayError::AuthThrottled { .. })
        ));
        let other: IpAddr = [127, 0, 0, 2].into();
        assert!(matches!(
            auth.authenticate(&headers("Bearer x"), Some(other), &Keyring::new()),
            Err(GatewayError::InvalidApiKey)
        ));
        // A valid key still works from the throttled address.
        assert!(
            auth.authenticate(&headers(&format!("Bearer {key}")), Some(ip), &Keyring::new())
                .is_ok()
        );
    }

    #[test]
    fn passthrough_partitions_by_the_callers_key() {
        let auth = Authenticator::new(&AuthConfig {
            mode: AuthMode::Passthrough,
            ..AuthConfig::default()
        });
        let a = auth
            .authenticate(&headers("Bearer gsk_a"), None, &Keyring::new())
            .expect("a");
        let b = auth
            .authenticate(&headers("Bearer gsk_b"), None, &Keyring::new())
            .expect("b");
        assert_ne!(a.partition, b.partition);
        assert!(a.name.starts_with("passthrough-") && !a.name.contains("gsk"));
        assert_eq!(
            a.upstream_authorization.as_ref().map(|v| v.as_bytes()),
            Some(&b"Bearer gsk_a"[..])
        );
        assert!(auth.authenticate(&HeaderMap::new(), None, &Keyring::new()).is_err());
    }
}
