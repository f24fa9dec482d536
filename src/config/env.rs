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
pub const DATABASE_URL: &str = "GROXY_DATABASE_URL";
pub const DATA_DIR: &str = "GROXY_DATA_DIR";
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
pub const TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
pub const RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";

impl Config {
    /// OpenTelemetry's standard variables, as every OTel SDK reads them.
    fn apply_otel_env<'a>(&mut self, get: &impl Fn(&str) -> Option<&'a str>, errors: &mut Vec<String>) {
        let tracing = &mut self.tracing;
        if let Some(endpoint) = get(OTLP_ENDPOINT) {
            tracing.otlp_endpoint = endpoint.to_owned();
        }
        if let Some(endpoint) = get(OTLP_TRACES_ENDPOINT) {
            tracing.otlp_traces_endpoint = Some(endpoint.to_owned());
        }
        if let Some(name) = get(SERVICE_NAME) {
            tracing.service_name = name.to_owned();
        }
        if let Some(sampler) = get(TRACES_SAMPLER) {
            tracing.sampler = sampler.to_owned();
        }
        if let Some(arg) = get(TRACES_SAMPLER_ARG) {
            match arg.parse() {
                Ok(ratio) => tracing.sample_ratio = ratio,
                Err(_) => errors.push(format!("{TRACES_SAMPLER_ARG}={arg:?} must be a number from 0 to 1")),
            }
        }
        if let Some(attributes) = get(RESOURCE_ATTRIBUTES) {
            for pair in attributes.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some((key, value)) if !key.trim().is_empty() => {
                        tracing
                            .resource_attributes
                            .insert(key.trim().to_owned(), value.trim().to_owned());
                    }
                    _ => errors.push(format!("{RESOURCE_ATTRIBUTES}: {pair:?} is not key=value")),
                }
            }
        }
    }

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
        self.apply_otel_env(&get, errors);
        if let Some(url) = get(REDIS_URL) {
            self.redis.url = Some(RedisUrl::new(url));
        }
        if let Some(url) = get(DATABASE_URL) {
            self.database.url = Some(RedisUrl::new(url));
        }
        if let Some(dir) = get(DATA_DIR) {
            self.database.data_dir = Some(dir.into());
        }
        if let Some(replicas) = get(REDIS_REPLICAS) {
            match replicas.parse() {
                Ok(n) => self.redis.replicas = n,
                Err(_) => errors.push(format!("{}={replicas:?} must be a whole number", REDIS_REPLICAS)),
            }
        }
    }
}
