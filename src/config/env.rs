//! The environment variables groxy reads, named once so `--help` and the README agree, and how they override the file.

use std::collections::HashMap;

use super::{
    redis_config::RedisUrl,
    schema::{AuthMode, Config, LogFormat},
    secret::Secret,
};

pub const API_KEY: &str = "GROQ_API_KEY";
pub const LISTEN: &str = "GROXY_LISTEN";
pub const UPSTREAM_URL: &str = "GROXY_UPSTREAM_URL";
pub const CONFIG: &str = "GROXY_CONFIG";
pub const LOG_FORMAT: &str = "GROXY_LOG_FORMAT";
pub const API_KEYS: &str = "GROQ_API_KEYS";
pub const AUTH_MODE: &str = "GROXY_AUTH_MODE";
pub const ALLOW_UNAUTHENTICATED: &str = "GROXY_ALLOW_UNAUTHENTICATED";
pub const ADMIN_KEY: &str = "GROXY_ADMIN_KEY";
pub const REDIS_URL: &str = "GROXY_REDIS_URL";
pub const REDIS_REPLICAS: &str = "GROXY_REDIS_REPLICAS";

impl Config {
    pub(super) fn apply_env(&mut self, vars: &HashMap<String, String>, errors: &mut Vec<String>) {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(key) = get(API_KEY) {
            self.upstream.api_key = Some(Secret::new(key));
        }
        if let Some(keys) = get(API_KEYS) {
            self.upstream.api_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(mode) = get(AUTH_MODE) {
            match mode {
                "none" => self.auth.mode = AuthMode::None,
                "keys" => self.auth.mode = AuthMode::Keys,
                "passthrough" => self.auth.mode = AuthMode::Passthrough,
                other => errors.push(format!("{}={other:?} must be none, keys or passthrough", AUTH_MODE)),
            }
        }
        if let Some(allow) = get(ALLOW_UNAUTHENTICATED) {
            match allow {
                "1" | "true" | "yes" => self.auth.allow_unauthenticated = true,
                "0" | "false" | "no" => self.auth.allow_unauthenticated = false,
                other => errors.push(format!("{}={other:?} must be true or false", ALLOW_UNAUTHENTICATED)),
            }
        }
        if let Some(listen) = get(LISTEN) {
            match listen.parse() {
                Ok(addr) => self.server.listen = addr,
                Err(_) => errors.push(format!(
                    "{}={listen:?} is not a socket address such as 127.0.0.1:8080",
                    LISTEN
                )),
            }
        }
        if let Some(key) = get(ADMIN_KEY) {
            self.admin.key_sha256 = Some(crate::digest::hex(&crate::digest::sha256(key.as_bytes())));
        }
        if let Some(url) = get(UPSTREAM_URL) {
            self.upstream.url = url.to_owned();
        }
        if let Some(format) = get(LOG_FORMAT) {
            match format {
                "auto" => self.log.format = LogFormat::Auto,
                "pretty" => self.log.format = LogFormat::Pretty,
                "json" => self.log.format = LogFormat::Json,
                other => errors.push(format!("{}={other:?} must be auto, pretty or json", LOG_FORMAT)),
            }
        }
        if let Some(url) = get(REDIS_URL) {
            self.redis.url = Some(RedisUrl::new(url));
        }
        if let Some(replicas) = get(REDIS_REPLICAS) {
            match replicas.parse() {
                Ok(n) => self.redis.replicas = n,
                Err(_) => errors.push(format!("{}={replicas:?} must be a whole number", REDIS_REPLICAS)),
            }
        }
    }
}
