//! Checking a loaded config: each value on its own, then the rules between values; every problem collected.

use super::{
    env,
    schema::{AuthMode, Config, LimitSet},
};

/// Keys the file gave but with unusable values, already reported. Such a field holds its
/// default rather than what was meant, so a rule between it and another value would only report
/// a consequence ("upstream.api_key is not set" after `api_keys = "gsk_…"`): those rules wait.
struct Invalid<'a>(&'a [String]);

impl Invalid<'_> {
    /// Whether any of `keys`, or anything inside one of them, was given an unusable value.
    fn any(&self, keys: &[&str]) -> bool {
        self.0.iter().any(|path| {
            keys.iter().any(|key| {
                path.strip_prefix(key)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
            })
        })
    }
}

impl Config {
    fn validate_auth(&self, errors: &mut Vec<String>, invalid: &Invalid<'_>) {
        let auth = &self.auth;
        let mode_known = !invalid.any(&["auth.mode"]);
        if mode_known
            && auth.mode == AuthMode::None
            && !self.server.listen.ip().is_loopback()
            && !auth.allow_unauthenticated
            && !invalid.any(&["server.listen", "auth.allow_unauthenticated"])
        {
            errors.push(format!(
                "auth.mode = \"none\" while listening on {}, which is not a loopback address: anyone who can reach \
                 it could spend the team's Groq key. Set auth.mode = \"keys\" (see `groxy keys new`), or \
                 auth.allow_unauthenticated = true ({}=1) if a network boundary already restricts access",
                self.server.listen,
                env::ALLOW_UNAUTHENTICATED
            ));
        }
        let keys_known = mode_known && !invalid.any(&["auth.keys"]);
        // Keys may also be made at run time with the admin API, which needs the admin key.
        if keys_known && auth.mode == AuthMode::Keys && auth.keys.is_empty() && self.admin.key_sha256.is_none() {
            errors.push("auth.mode = \"keys\" but no [[auth.keys]] are configured (create one with `groxy keys new --name NAME`), and no admin key is set to create them with `groxy keys create`".to_owned());
        }
        if auth.failures_per_minute == 0 {
            errors.push("auth.failures_per_minute must be at least 1".to_owned());
        }
        let mut names = std::collections::BTreeSet::new();
        for key in &auth.keys {
            if key.name.trim().is_empty() {
                errors.push("auth.keys: every key needs a non-empty name".to_owned());
            } else if !names.insert(key.name.as_str()) {
                errors.push(format!("auth.keys: the name {:?} is used twice", key.name));
            }
            if key.sha256.len() != 64 || !key.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!(
                    "auth.keys: {:?} needs sha256 = 64 hex digits (from `groxy keys new`)",
                    key.name
                ));
            }
        }
        for name in self.rate_limits.keys.keys() {
            if keys_known && auth.mode == AuthMode::Keys && !names.contains(name.as_str()) {
                errors.push(format!("rate_limits.keys.{name}: no [[auth.keys]] has that name"));
            }
        }
    }

    fn validate_rate_limits(&self, errors: &mut Vec<String>) {
        let limits = &self.rate_limits;
        let mut sets: Vec<(String, &LimitSet)> = vec![
            ("rate_limits.default".into(), &limits.default),
            ("rate_limits.per_model".into(), &limits.per_model),
        ];
        sets.extend(limits.keys.iter().map(|(k, v)| (format!("rate_limits.keys.{k}"), v)));
        sets.extend(
            limits
                .models
                .iter()
                .map(|(k, v)| (format!("rate_limits.models.\"{k}\""), v)),
        );
        for (path, set) in sets {
            for (field, value) in set.fields() {
                if value == Some(0) {
                    errors.push(format!("{path}.{field} must be at least 1 (leave it out for no limit)"));
                }
            }
        }
    }

    /// Every problem with the values, appended to `errors`; `invalid` names the keys the file
    /// gave unusable values (see [`Invalid`]).
    fn validate_tracing(&self, errors: &mut Vec<String>) {
        let tracing = &self.tracing;
        if !super::schema::TracingConfig::SAMPLERS.contains(&tracing.sampler.as_str()) {
            errors.push(format!(
                "tracing.sampler {:?} must be one of {} ({})",
                tracing.sampler,
                super::schema::TracingConfig::SAMPLERS.join(", "),
                env::TRACES_SAMPLER
            ));
        }
        if !(0.0..=1.0).contains(&tracing.sample_ratio) {
            errors.push(format!(
                "tracing.sample_ratio must be from 0 to 1 ({})",
                env::TRACES_SAMPLER_ARG
            ));
        }
        if tracing.queue_size == 0 {
            errors.push("tracing.queue_size must be at least 1".to_owned());
        }
        if tracing.export_timeout.0.is_zero() {
            errors.push("tracing.export_timeout must be greater than zero".to_owned());
        }
        for endpoint in std::iter::once(tracing.otlp_endpoint.as_str())
            .chain(tracing.otlp_traces_endpoint.as_deref())
            .filter(|e| !e.is_empty())
        {
            if !reqwest::Url::parse(endpoint).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                errors.push(format!(
                    "tracing endpoint {endpoint:?} is not an http(s) URL such as http://127.0.0.1:4318"
                ));
            }
        }
    }

    fn validate_retries_and_fallbacks(&self, errors: &mut Vec<String>) {
        let retries = &self.upstream.retries;
        if retries.attempts > 10 {
            errors.push(
                "upstream.retries.attempts must be at most 10 (each retry is another request to Groq)".to_owned(),
            );
        }
        if retries.max_wait > self.upstream.first_byte_timeout {
            errors.push(
                "upstream.retries.max_wait must not exceed upstream.first_byte_timeout (every attempt ends by then)"
                    .to_owned(),
            );
        }
        for (model, chain) in &self.models.fallbacks {
            let name = |m: &str| format!("models.fallbacks: {model:?} = {chain:?}: {m}");
            if model.trim().is_empty() || chain.iter().any(|m| m.trim().is_empty()) {
                errors.push(name("every model must be named"));
            }
            if chain.is_empty() {
                errors.push(name("the chain is empty"));
            }
            if chain.iter().any(|m| m == model) {
                errors.push(name("a model cannot be its own fallback"));
            }
            let distinct: std::collections::BTreeSet<_> = chain.iter().collect();
            if distinct.len() != chain.len() {
                errors.push(name("a fallback is listed twice"));
            }
            // Aliases are resolved before the request is checked; a fallback is sent as named.
            for alias in std::iter::once(model)
                .chain(chain)
                .filter(|m| self.models.aliases.contains_key(*m))
            {
                errors.push(name(&format!(
                    "{alias:?} is an alias: name the model it stands for ({:?})",
                    self.models.aliases.get(alias).map_or("", String::as_str)
                )));
            }
        }
    }

    pub(super) fn validate(&mut self, errors: &mut Vec<String>, invalid: &[String]) {
        let invalid = Invalid(invalid);
        let url = self.upstream.url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    errors.push("upstream.url must not have a query or fragment".to_owned());
                }
            }
            _ => errors.push(format!(
                "upstream.url {url:?} is not an http(s) URL such as https://api.groq.com/openai/v1"
            )),
        }
        self.upstream.url = url;
        let upstream_keys = self.upstream_keys();
        if upstream_keys.is_empty()
            && self.auth.mode != AuthMode::Passthrough
            && !invalid.any(&["upstream.api_key", "upstream.api_keys", "auth.mode"])
        {
            errors.push(format!(
                "upstream.api_key is not set: set {} or upstream.api_key (or use auth.mode = \"passthrough\")",
                env::API_KEY
            ));
        }
        for key in upstream_keys {
            if http::HeaderValue::from_str(&format!("Bearer {}", key.expose())).is_err() {
                errors.push("an upstream API key contains characters not allowed in a header".to_owned());
            }
        }
        self.validate_auth(errors, &invalid);
        self.validate_rate_limits(errors);
        self.validate_tracing(errors);
        if let Some(hash) = &self.admin.key_sha256 {
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(format!(
                    "admin.key_sha256 must be 64 hex digits (the sha256 line of `groxy keys new`), or set {} instead",
                    env::ADMIN_KEY
                ));
            }
        }
        let positive = [
            ("server.header_read_timeout", self.server.header_read_timeout),
            ("server.drain_timeout", self.server.drain_timeout),
            ("server.idle_timeout", self.server.idle_timeout),
            (
                "server.http2_keep_alive_interval",
                self.server.http2_keep_alive_interval,
            ),
            ("limits.body_read_timeout", self.limits.body_read_timeout),
            ("limits.upload_read_timeout", self.limits.upload_read_timeout),
            ("server.housekeeping_interval", self.server.housekeeping_interval),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.first_byte_timeout", self.upstream.first_byte_timeout),
            ("upstream.idle_timeout", self.upstream.idle_timeout),
            ("upstream.total_timeout", self.upstream.total_timeout),
            ("upstream.pool_idle_timeout", self.upstream.pool_idle_timeout),
        ];
        for (name, value) in positive {
            if value.0.is_zero() {
                errors.push(format!(
                    "{name} must be greater than zero (every timeout is finite and non-zero)"
                ));
            }
        }
        if self.upstream.first_byte_timeout > self.upstream.total_timeout
            && !invalid.any(&["upstream.first_byte_timeout", "upstream.total_timeout"])
        {
            errors.push("upstream.first_byte_timeout must not exceed upstream.total_timeout".to_owned());
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections must be at least 1".to_owned());
        }
        if self.limits.chat_body.0 == 0 || self.limits.upload_body.0 == 0 {
            errors.push("limits.chat_body and limits.upload_body must be greater than zero".to_owned());
        }
        // A body is reserved whole before it is read, so a largest one must fit.
        if self.server.max_body_bytes_in_flight < self.limits.chat_body
            && !invalid.any(&["server.max_body_bytes_in_flight", "limits.chat_body"])
        {
            errors.push(
                "server.max_body_bytes_in_flight must be at least limits.chat_body (a largest chat body must fit)"
                    .to_owned(),
            );
        }
        for origin in &self.server.cors_allow_origins {
            if origin != "*" && http::HeaderValue::from_str(origin).is_err() {
                errors.push(format!("server.cors_allow_origins: {origin:?} is not a valid origin"));
            }
        }
        for name in &mut self.upstream.forward_headers {
            *name = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.push(format!("upstream.forward_headers: {name:?} is not a header name"));
            } else if matches!(
                name.as_str(),
                "authorization" | "host" | "cookie" | "proxy-authorization"
            ) {
                errors.push(format!("upstream.forward_headers: {name:?} may not be forwarded"));
            }
        }
        if self.models.refresh_interval.0 < std::time::Duration::from_secs(1) {
            errors.push("models.refresh_interval must be at least 1s".to_owned());
        }
        if self.cache.ttl.0.is_zero()
            || (self.cache.max_ttl < self.cache.ttl && !invalid.any(&["cache.ttl", "cache.max_ttl"]))
        {
            errors.push("cache.ttl must be greater than zero and at most cache.max_ttl".to_owned());
        }
        if self.cache.max_entries == 0 || self.cache.max_bytes.0 == 0 || self.cache.max_entry_bytes.0 == 0 {
            errors.push(
                "cache.max_entries, cache.max_bytes and cache.max_entry_bytes must be greater than zero".to_owned(),
            );
        }
        if self.validation.max_messages == 0 {
            errors.push("validation.max_messages must be at least 1".to_owned());
        }
        if self.validation.max_bytes_in_flight.0 == 0 {
            errors.push("validation.max_bytes_in_flight must be greater than zero".to_owned());
        }
        for (alias, target) in &self.models.aliases {
            if alias.trim().is_empty() || target.trim().is_empty() {
                errors.push(format!(
                    "models.aliases: {alias:?} = {target:?} must name two non-empty models"
                ));
            } else if self.models.aliases.contains_key(target) {
                errors.push(format!(
                    "models.aliases: {alias:?} points to {target:?}, which is itself an alias"
                ));
            }
        }
        self.validate_retries_and_fallbacks(errors);
        self.models.validate_retired(errors);
        self.redis.validate(errors);
        self.database.validate(errors);
        super::accounts_config::validate_money(&self.budgets, &self.prices, errors);
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errors.push(format!(
                "log.level {:?} is not a valid filter such as \"info\"",
                self.log.level
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::{RedisUrl, Secret};

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn problems(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
        Config::from_text(Some(toml), &vars(env))
            .err()
            .map(|e| e.0)
            .unwrap_or_default()
    }

    #[test]
    fn defaults_need_only_a_key() {
        assert!(problems("", &[("GROQ_API_KEY", "gsk_x")]).is_empty());
        let all = problems("", &[]);
        assert_eq!(all.len(), 1);
        assert!(all[0].contains("GROQ_API_KEY"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let toml = r#"
            colour = "blue"
            [server]
            listne = "x"
            drain_timeout = "0s"
            [upstream]
            url = "ftp://nope"
            api_key = "gsk_x"
            idle_timeout = "0ms"
            [limits]
            chat_body = 0
        "#;
        let errors = problems(toml, &[]);
        let joined = errors.join("\n");
        for needle in [
            "colour: unknown key",
            "server.listne: unknown key",
            "drain_timeout",
            "upstream.url",
            "idle_timeout",
            "limits.chat_body",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }

    #[test]
    fn retries_are_bounded_and_fallback_chains_name_real_models() {
        let toml = r#"
            [upstream.retries]
            attempts = 11
            max_wait = "10m"
            [models.fallbacks]
            "a" = ["a", "b", "b"]
            "c" = []
            "d" = ["gpt-4o"]
        "#;
        let joined = problems(toml, &[("GROQ_API_KEY", "k")]).join("\n");
        for needle in [
            "upstream.retries.attempts must be at most 10",
            "upstream.retries.max_wait must not exceed upstream.first_byte_timeout",
            "a model cannot be its own fallback",
            "a fallback is listed twice",
            "the chain is empty",
            "\"gpt-4o\" is an alias: name the model it stands for (\"openai/gpt-oss-120b\")",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
        let fine =
            "[upstream.retries]\nattempts = 0\n[models.fallbacks]\n\"openai/gpt-oss-120b\" = [\"openai/gpt-oss-20b\"]";
        assert!(problems(fine, &[("GROQ_API_KEY", "k")]).is_empty());
    }

    #[test]
    fn connection_and_body_deadlines_are_finite_and_the_body_budget_fits_a_body() {
        let toml = "[server]\nidle_timeout = \"0s\"\nhttp2_keep_alive_interval = \"0s\"\nmax_body_bytes_in_flight = \"1MiB\"\n[limits]\nbody_read_timeout = \"0s\"\nupload_read_timeout = \"0ms\"";
        let joined = problems(toml, &[("GROQ_API_KEY", "k")]).join("\n");
        for needle in [
            "server.idle_timeout must be greater than zero",
            "server.http2_keep_alive_interval must be greater than zero",
            "limits.body_read_timeout must be greater than zero",
            "limits.upload_read_timeout must be greater than zero",
            "server.max_body_bytes_in_flight must be at least limits.chat_body",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
        let fits = "[server]\nmax_body_bytes_in_flight = \"1MiB\"\n[limits]\nchat_body = \"1MiB\"";
        assert!(problems(fits, &[("GROQ_API_KEY", "k")]).is_empty());
    }

    #[test]
    fn problems_that_follow_from_a_bad_value_are_not_reported() {
        let toml = "[upstream]\napi_keys = \"gsk_canary_key\"\n[auth]\nmode = \"keyz\"\n[server]\nlisten = 5";
        let all = problems(toml, &[("GROXY_LISTEN", "")]);
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(!all.join("\n").contains("not set"), "{all:?}");
        let keys = "[auth]\nmode = \"keys\"\n[[auth.keys]]\nname = 1\nsha256 = \"00\"";
        let all = problems(keys, &[("GROQ_API_KEY", "k")]);
        assert_eq!(all, ["auth.keys[0].name: expected a string, found an integer"]);
        // Unrelated checks still run.
        let all = problems("[upstream]\napi_keys = 1\nurl = \"ftp://x\"", &[]);
        assert_eq!(all.len(), 2, "{all:?}");
    }

    #[test]
    fn messages_never_hold_a_secret_from_the_file_or_the_environment() {
        let env = [
            ("GROQ_API_KEY", "gsk_env\u{1}canary"),
            ("GROXY_REDIS_URL", "redis://:pw_env_canary@h:6379"),
        ];
        let all = problems("[upstream]\napi_keys = \"gsk_file_canary\"", &env).join("\n");
        assert!(
            all.contains("upstream.api_keys:") && all.contains("not allowed in a header"),
            "{all}"
        );
        assert!(!all.contains("canary"), "{all}");
    }

    #[test]
    fn env_overrides_file() {
        let c = Config::from_text(
            Some("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\napi_key=\"a\""),
            &vars(&[
                ("GROXY_LISTEN", "127.0.0.1:9"),
                ("GROQ_API_KEY", "b"),
                ("GROXY_UPSTREAM_URL", "http://x/v1/"),
            ]),
        );
        let mut c = c.expect("valid");
        assert_eq!(c.server.listen.port(), 9);
        assert_eq!(c.upstream.api_key.as_ref().map(Secret::expose), Some("b"));
        assert_eq!(c.upstream.url, "http://x/v1");
        let mut errors = Vec::new();
        c.apply_env(
            &vars(&[
                ("GROXY_REDIS_URL", "redis://127.0.0.1:6390/1"),
                ("GROXY_REDIS_REPLICAS", "3"),
            ]),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            c.redis.url.as_ref().map(RedisUrl::expose),
            Some("redis://127.0.0.1:6390/1")
        );
        assert_eq!(c.redis.replicas, 3);
    }

    #[test]
    fn unauthenticated_on_a_public_address_needs_consent() {
        let public = [("GROQ_API_KEY", "k"), ("GROXY_LISTEN", "0.0.0.0:8080")];
        assert!(
            problems("", &public)
                .iter()
                .any(|p| p.contains("not a loopback address"))
        );
        assert!(problems("[auth]\nallow_unauthenticated = true", &public).is_empty());
        let consent = [
            ("GROQ_API_KEY", "k"),
            ("GROXY_LISTEN", "0.0.0.0:8080"),
            ("GROXY_ALLOW_UNAUTHENTICATED", "1"),
        ];
        assert!(problems("", &consent).is_empty());
        let keys = "[auth]\nmode = \"keys\"\n[[auth.keys]]\nname = \"a\"\nsha256 = \"00\"\n[rate_limits.keys.b]\nrequests_per_minute = 0";
        let errors = problems(keys, &public).join("\n");
        for needle in [
            "64 hex",
            "rate_limits.keys.b: no [[auth.keys]]",
            "requests_per_minute must be at least 1",
        ] {
            assert!(errors.contains(needle), "{needle}: {errors}");
        }
        assert!(
            problems("[auth]\nmode = \"passthrough\"", &[]).is_empty(),
            "passthrough needs no upstream key"
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let mut errors = Vec::new();
        let c = Config::parse_toml(
            "[upstream]\napi_key = \"gsk_canary\"\n[redis]\nurl = \"redis://:pw_canary@cache:6379\"",
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let shown = format!("{c:?}");
        assert!(!shown.contains("gsk_canary") && !shown.contains("pw_canary"), "{shown}");
        assert!(shown.contains("redis://:***@cache:6379"), "{shown}");
    }
}
