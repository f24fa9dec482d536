//! A string that never prints itself: upstream and client keys live in this type.

use std::fmt;

use serde::{
    Deserialize, Deserializer,
    de::{SeqAccess, Visitor},
};

/// Every config key whose value is secret (a key, a password-bearing URL, a key's hash), as
/// dotted paths with list indices left out. A field of type [`Secret`] or `RedisUrl` must be
/// listed here: config messages never show what is written under these keys, whatever its type,
/// and every value found under them is scrubbed from every message (`example_keys_exist` checks
/// that each is a real key of the example config).
pub const SECRET_KEYS: &[&str] = &[
    "upstream.api_key",
    "upstream.api_keys",
    "redis.url",
    "database.url",
    "admin.key_sha256",
    "auth.keys.sha256",
];

/// Shorter values are not scrubbed: replacing every `a` or `10` in a message would garble it,
/// and no real key or password is that short.
const MIN_SCRUBBED: usize = 6;

/// Adds `value` (and the password of a URL) to the values [`scrub`] removes.
pub fn collect(value: &str, out: &mut Vec<String>) {
    let value = value.trim();
    if value.len() >= MIN_SCRUBBED && !out.iter().any(|known| known == value) {
        out.push(value.to_owned());
    }
    if let Ok(url) = reqwest::Url::parse(value) {
        if let Some(password) = url.password() {
            if password.len() >= MIN_SCRUBBED / 2 && !out.iter().any(|known| known == password) {
                out.push(password.to_owned());
            }
        }
    }
}

/// Replaces every known secret value in `messages` with `***`, longest first (so a key that
/// contains another is replaced whole).
pub fn scrub(messages: &mut [String], secrets: &[String]) {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for message in messages.iter_mut() {
        for secret in &secrets {
            if message.contains(secret.as_str()) {
                *message = message.replace(secret.as_str(), "***");
            }
        }
    }
}

/// `Vec<Secret>` with an error that says what is expected (`a list of strings`) rather than
/// serde's `a sequence`.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Secret>, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<Secret>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Secret>, A::Error> {
            let mut out = Vec::new();
            while let Some(secret) = seq.next_element::<Secret>()? {
                out.push(secret);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(List)
}

/// Debug and Display print `***`, so a key cannot leak through `{:?}` in logs, panics or
/// `check-config` output. The only way to the text is [`Secret::expose`], which is easy to grep.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_formats_its_value() {
        let s = Secret::new("gsk_canary_123");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "gsk_canary_123");
    }

    #[test]
    fn scrub_removes_every_known_value() {
        let mut secrets = Vec::new();
        collect("gsk_canary_123", &mut secrets);
        collect("redis://:pw_canary@h:6379", &mut secrets);
        collect("ab", &mut secrets);
        let mut messages = vec![
            "a gsk_canary_123 b".to_owned(),
            "p pw_canary q".to_owned(),
            "ab".to_owned(),
        ];
        scrub(&mut messages, &secrets);
        assert_eq!(messages, ["a *** b", "p *** q", "ab"]);
    }
}
