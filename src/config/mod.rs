//! Typed configuration: defaults, then the TOML file, then environment variables; every problem reported at once.

mod redis_config;
mod secret;
pub mod source;
mod units;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

pub use redis_config::{RedisConfig, RedisUrl};
pub use secret::Secret;
pub use units::{ByteSize, HumanDuration};

/// The whole configuration. Field docs here are the short form; `config/groxy.example.toml`
/// documents every key with its default and is kept in step by a test.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub limits: LimitsConfig,
    pub validation: ValidationConfig,
    pub models: ModelsConfig,
    pub auth: AuthConfig,
    pub rate_limits: RateLimitsConfig,
    pub cache: CacheConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
    pub admin: AdminConfig,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Slowloris guard: a connection that has not sent complete request headers by then is closed.
    pub header_read_timeout: HumanDuration,
    /// Accepting pauses while this many connections are open, so a flood queues in the kernel
    /// backlog instead of exhausting memory or file descriptors.
    pub max_connections: usize,
    /// How long a SIGTERM waits for in-flight requests; kept under Docker's default 10 s grace.
    pub drain_timeout: HumanDuration,
    /// Origins allowed to call from a browser. Empty: no CORS headers at all (the safe default,
    /// since a page on any site could otherwise spend the team's key through a local groxy).
    pub cors_allow_origins: Vec<String>,
    /// How often tables fed by client traffic (failed-auth addresses, idle limit scopes) are
    /// swept of entries that carry no information any more.
    pub housekeeping_interval: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_read_timeout: HumanDuration::secs(10),
            max_connections: 10_000,
            drain_timeout: HumanDuration::secs(8),
            cors_allow_origins: Vec::new(),
            housekeeping_interval: HumanDuration::secs(60),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Groq's OpenAI-compatible base URL; every `/v1/<rest>` request goes to `<url>/<rest>`.
    pub url: String,
    pub api_key: Option<Secret>,
    /// More upstream keys (for example one per Groq organisation): requests go to a key with
    /// budget left, and a key that got a 429 rests for its `retry-after`.
    pub api_keys: Vec<Secret>,
    pub connect_timeout: HumanDuration,
    /// Until Groq's response headers (and, for streams, the first body bytes) arrive: a 504 after.
    pub first_byte_timeout: HumanDuration,
    /// Longest silence between two body chunks of a response once it has started.
    pub idle_timeout: HumanDuration,
    /// Upper bound for one whole exchange, streams included.
    pub total_timeout: HumanDuration,
    pub pool_idle_timeout: HumanDuration,
    pub pool_max_idle_per_host: usize,
    /// Request headers forwarded in addition to the built-in allowlist (lower-case names).
    pub forward_headers: Vec<String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "https://api.groq.com/openai/v1".to_owned(),
            api_key: None,
            api_keys: Vec::new(),
            connect_timeout: HumanDuration::secs(5),
            first_byte_timeout: HumanDuration::secs(120),
            idle_timeout: HumanDuration::secs(60),
            total_timeout: HumanDuration::secs(600),
            pool_idle_timeout: HumanDuration::secs(90),
            pool_max_idle_per_host: 256,
            forward_headers: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Largest chat request body; it is buffered (to validate it), so this bounds memory per call.
    pub chat_body: ByteSize,
    /// Largest body on the streamed pass-through routes (audio uploads, batch files): streamed
    /// to Groq, never buffered, so it can be large.
    pub upload_body: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            chat_body: ByteSize::mib(8),
            upload_body: ByteSize::mib(100),
        }
    }
}

/// Who may call groxy, and whose Groq key is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who can reach the port; refused on a non-loopback address unless
    /// `auth.allow_unauthenticated` says so.
    #[default]
    None,
    /// Clients present keys issued by `groxy keys new`; the config stores their SHA-256.
    Keys,
    /// Clients present their own Groq key, which is forwarded; limits and cache are partitioned
    /// by its hash.
    Passthrough,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub allow_unauthenticated: bool,
    /// Failed authentications allowed per client address per minute; more get 429.
    pub failures_per_minute: u32,
    pub keys: Vec<ClientKeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            allow_unauthenticated: false,
            failures_per_minute: 10,
            keys: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClientKeyConfig {
    /// Shown in logs, metrics and limit messages instead of the key.
    pub name: String,
    /// Hex SHA-256 of the key, as printed by `groxy keys new`.
    pub sha256: String,
}

/// One set of limits; absent fields are unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LimitSet {
    pub requests_per_minute: Option<u64>,
    pub requests_per_day: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub max_concurrent: Option<u64>,
}

impl LimitSet {
    /// `self`, with each absent field taken from `base`.
    pub fn over(self, base: LimitSet) -> LimitSet {
        LimitSet {
            requests_per_minute: self.requests_per_minute.or(base.requests_per_minute),
            requests_per_day: self.requests_per_day.or(base.requests_per_day),
            tokens_per_minute: self.tokens_per_minute.or(base.tokens_per_minute),
            tokens_per_day: self.tokens_per_day.or(base.tokens_per_day),
            max_concurrent: self.max_concurrent.or(base.max_concurrent),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == LimitSet::default()
    }

    fn fields(&self) -> [(&'static str, Option<u64>); 5] {
        [
            ("requests_per_minute", self.requests_per_minute),
            ("requests_per_day", self.requests_per_day),
            ("tokens_per_minute", self.tokens_per_minute),
            ("tokens_per_day", self.tokens_per_day),
            ("max_concurrent", self.max_concurrent),
        ]
    }
}

/// Groq's published tiers, as per-key-and-model limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    #[default]
    None,
    /// Free tier, per model: 30 requests/min, 1,000/day, 8,000 tokens/min, 200,000/day.
    Free,
    /// Developer tier, per model: about 1,000 requests/min and 250,000 tokens/min.
    Developer,
}

impl Preset {
    pub fn per_model(self) -> LimitSet {
        match self {
            Preset::None => LimitSet::default(),
            Preset::Free => LimitSet {
                requests_per_minute: Some(30),
                requests_per_day: Some(1_000),
                tokens_per_minute: Some(8_000),
                tokens_per_day: Some(200_000),
                max_concurrent: None,
            },
            Preset::Developer => LimitSet {
                requests_per_minute: Some(1_000),
                requests_per_day: None,
                tokens_per_minute: Some(250_000),
                tokens_per_day: None,
                max_concurrent: None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RateLimitsConfig {
    /// Fills `per_model` with a Groq tier's limits (fields set in `per_model` win).
    pub preset: Preset,
    /// Each client key, across all models.
    pub default: LimitSet,
    /// Each client key, for each model separately.
    pub per_model: LimitSet,
    /// Overrides of `default` for one client key, by its name.
    pub keys: std::collections::BTreeMap<String, LimitSet>,
    /// Overrides of `per_model` for one model.
    pub models: std::collections::BTreeMap<String, LimitSet>,
    /// Tokens reserved for the completion when a request sets no `max_completion_tokens`.
    pub completion_reservation: u64,
    /// Track Groq's own budget per upstream key and model from its headers and 429s, and hold
    /// requests that would certainly be refused (off: every request is forwarded).
    pub upstream_aware: bool,
    /// How long a request may wait for Groq's budget to reset instead of being sent into a 429.
    pub queue_wait: HumanDuration,
    /// Most requests waiting for Groq's budget at once; more are answered 429 at once.
    pub queue_length: usize,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            preset: Preset::None,
            default: LimitSet::default(),
            per_model: LimitSet::default(),
            keys: Default::default(),
            models: Default::default(),
            completion_reservation: 1024,
            upstream_aware: true,
            queue_wait: HumanDuration::secs(10),
            queue_length: 256,
        }
    }
}

/// Which chat completions are cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// Only requests whose answer is meant to repeat: `temperature` 0 or a `seed` set.
    #[default]
    Deterministic,
    /// Every chat completion.
    All,
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    pub mode: CacheMode,
    /// How long an entry lives; a request may ask for less or more (up to `max_ttl`) with
    /// `x-groxy-cache-ttl: <seconds>`.
    pub ttl: HumanDuration,
    pub max_ttl: HumanDuration,
    /// Total size of the cached bodies.
    pub max_bytes: ByteSize,
    pub max_entries: u64,
    /// Larger responses are relayed but not stored.
    pub max_entry_bytes: ByteSize,
    /// Share entries between client keys (by default each key has its own).
    pub shared: bool,
    /// Per client key name: `false` turns the cache off for that key.
    pub keys: std::collections::BTreeMap<String, bool>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            mode: CacheMode::Deterministic,
            ttl: HumanDuration::secs(3600),
            max_ttl: HumanDuration::secs(86_400),
            max_bytes: ByteSize::mib(256),
            max_entries: 100_000,
            max_entry_bytes: ByteSize::mib(4),
            shared: false,
            keys: Default::default(),
        }
    }
}

/// What to do with a request field groxy knows Groq will refuse (or does not know at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldPolicy {
    /// Remove it and name it in the `x-groxy-stripped` response header.
    Strip,
    /// Refuse the request with a 400 naming the field.
    Reject,
    /// Send it on and let Groq decide.
    Forward,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ValidationConfig {
    /// OpenAI-only fields (`store`, `metadata`, `prompt_cache_key`, ...) and OpenAI enum values
    /// with a Groq equivalent (`service_tier: "default"`, `reasoning_effort: "minimal"`).
    pub openai_fields: FieldPolicy,
    /// Top-level fields that are neither Groq's nor OpenAI-only. Forwarded by default, because
    /// refusing a field Groq added after this release would break a working request.
    pub unknown_fields: FieldPolicy,
    /// Refuse strings containing U+0000.
    pub reject_nul: bool,
    /// Most messages in one request.
    pub max_messages: usize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            openai_fields: FieldPolicy::Strip,
            unknown_fields: FieldPolicy::Forward,
            reject_nul: true,
            max_messages: 4096,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ModelsConfig {
    /// How often the model catalogue (`GET /models`) is refreshed in the background.
    pub refresh_interval: HumanDuration,
    /// Model names clients may use in place of Groq's, so OpenAI code runs unchanged.
    /// Setting this table replaces the defaults.
    pub aliases: std::collections::BTreeMap<String, String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let aliases = [
            ("gpt-4o-mini", "openai/gpt-oss-20b"),
            ("gpt-4.1-mini", "openai/gpt-oss-20b"),
            ("gpt-5-mini", "openai/gpt-oss-20b"),
            ("gpt-4o", "openai/gpt-oss-120b"),
            ("gpt-4.1", "openai/gpt-oss-120b"),
            ("gpt-5", "openai/gpt-oss-120b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            refresh_interval: HumanDuration::secs(600),
            aliases,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines otherwise.
    #[default]
    Auto,
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// Used when RUST_LOG is not set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// Serve `GET /metrics` (Prometheus text format, no key needed: it carries no secrets).
    pub enabled: bool,
    /// Add `groxy_key_requests_total` and `groxy_key_tokens_total`, labelled by client key
    /// *name*. Off by default: one series per key and model. Read at start only.
    pub per_key_labels: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_key_labels: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// SHA-256 (hex) of the admin key that opens `/admin/*` and `/dashboard`; `GROXY_ADMIN_KEY`
    /// sets it from the key itself. Unset: those endpoints answer 403.
    pub key_sha256: Option<String>,
    /// Reload the config file when it changes (checked every 2 s), as well as on SIGHUP.
    pub watch_config: bool,
}

/// Every problem found while loading, so `check-config` can print them all in one go.
#[derive(Debug, Default)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "- {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The environment variables groxy reads, named once so `--help` and the README agree.
pub mod env {
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
}

impl Config {
    /// Loads defaults, then `path` (or `$GROXY_CONFIG`), then the environment.
    ///
    /// `vars` is the environment as a map rather than `std::env`, so tests never mutate process
    /// state and can run in parallel.
    pub fn load(path: Option<&Path>, vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| vars.get(env::CONFIG).filter(|p| !p.is_empty()).map(PathBuf::from));
        let mut config = match &path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Self::parse_toml(&text, &mut errors),
                Err(e) => {
                    errors.push(format!("cannot read config file {}: {e}", path.display()));
                    Config::default()
                }
            },
            None => Config::default(),
        };
        config.apply_env(vars, &mut errors);
        config.validate(&mut errors);
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Parses TOML text, collecting every unknown key (serde's `deny_unknown_fields` would stop
    /// at the first one).
    pub fn parse_toml(text: &str, errors: &mut Vec<String>) -> Config {
        let deserializer = match toml::Deserializer::parse(text) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("config is not valid TOML: {}", e.message()));
                return Config::default();
            }
        };
        let mut unknown = Vec::new();
        let parsed: Result<Config, _> = serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
        errors.extend(unknown.into_iter().map(|key| format!("unknown config key `{key}`")));
        match parsed {
            Ok(config) => config,
            Err(e) => {
                errors.push(format!("config: {}", e.message().trim()));
                Config::default()
            }
        }
    }

    fn apply_env(&mut self, vars: &HashMap<String, String>, errors: &mut Vec<String>) {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(key) = get(env::API_KEY) {
            self.upstream.api_key = Some(Secret::new(key));
        }
        if let Some(keys) = get(env::API_KEYS) {
            self.upstream.api_keys = keys
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(Secret::new)
                .collect();
        }
        if let Some(mode) = get(env::AUTH_MODE) {
            match mode {
                "none" => self.auth.mode = AuthMode::None,
                "keys" => self.auth.mode = AuthMode::Keys,
                "passthrough" => self.auth.mode = AuthMode::Passthrough,
                other => errors.push(format!(
                    "{}={other:?} must be none, keys or passthrough",
                    env::AUTH_MODE
                )),
            }
        }
        if let Some(allow) = get(env::ALLOW_UNAUTHENTICATED) {
            match allow {
                "1" | "true" | "yes" => self.auth.allow_unauthenticated = true,
                "0" | "false" | "no" => self.auth.allow_unauthenticated = false,
                other => errors.push(format!(
                    "{}={other:?} must be true or false",
                    env::ALLOW_UNAUTHENTICATED
                )),
            }
        }
        if let Some(listen) = get(env::LISTEN) {
            match listen.parse() {
                Ok(addr) => self.server.listen = addr,
                Err(_) => errors.push(format!(
                    "{}={listen:?} is not a socket address such as 127.0.0.1:8080",
                    env::LISTEN
                )),
            }
        }
        if let Some(key) = get(env::ADMIN_KEY) {
            self.admin.key_sha256 = Some(crate::digest::hex(&crate::digest::sha256(key.as_bytes())));
        }
        if let Some(url) = get(env::UPSTREAM_URL) {
            self.upstream.url = url.to_owned();
        }
        if let Some(format) = get(env::LOG_FORMAT) {
            match format {
                "auto" => self.log.format = LogFormat::Auto,
                "pretty" => self.log.format = LogFormat::Pretty,
                "json" => self.log.format = LogFormat::Json,
                other => errors.push(format!("{}={other:?} must be auto, pretty or json", env::LOG_FORMAT)),
            }
        }
        if let Some(url) = get(env::REDIS_URL) {
            self.redis.url = Some(RedisUrl::new(url));
        }
        if let Some(replicas) = get(env::REDIS_REPLICAS) {
            match replicas.parse() {
                Ok(n) => self.redis.replicas = n,
                Err(_) => errors.push(format!("{}={replicas:?} must be a whole number", env::REDIS_REPLICAS)),
            }
        }
    }

    /// Every upstream key, `api_key` first.
    pub fn upstream_keys(&self) -> Vec<&Secret> {
        self.upstream
            .api_key
            .iter()
            .chain(self.upstream.api_keys.iter())
            .collect()
    }

    fn validate_auth(&self, errors: &mut Vec<String>) {
        let auth = &self.auth;
        if auth.mode == AuthMode::None && !self.server.listen.ip().is_loopback() && !auth.allow_unauthenticated {
            errors.push(format!(
                "auth.mode = \"none\" while listening on {}, which is not a loopback address: anyone who can reach \
                 it could spend the team's Groq key. Set auth.mode = \"keys\" (see `groxy keys new`), or \
                 auth.allow_unauthenticated = true ({}=1) if a network boundary already restricts access",
                self.server.listen,
                env::ALLOW_UNAUTHENTICATED
            ));
        }
        if auth.mode == AuthMode::Keys && auth.keys.is_empty() {
            errors.push("auth.mode = \"keys\" but no [[auth.keys]] are configured (create one with `groxy keys new --name NAME`)".to_owned());
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
            if auth.mode == AuthMode::Keys && !names.contains(name.as_str()) {
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

    fn validate(&mut self, errors: &mut Vec<String>) {
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
        if upstream_keys.is_empty() && self.auth.mode != AuthMode::Passthrough {
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
        self.validate_auth(errors);
        self.validate_rate_limits(errors);
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
        if self.upstream.first_byte_timeout > self.upstream.total_timeout {
            errors.push("upstream.first_byte_timeout must not exceed upstream.total_timeout".to_owned());
        }
        if self.server.max_connections == 0 {
            errors.push("server.max_connections must be at least 1".to_owned());
        }
        if self.limits.chat_body.0 == 0 || self.limits.upload_body.0 == 0 {
            errors.push("limits.chat_body and limits.upload_body must be greater than zero".to_owned());
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
        if self.cache.ttl.0.is_zero() || self.cache.max_ttl < self.cache.ttl {
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
        self.redis.validate(errors);
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
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn problems(toml: &str, env: &[(&str, &str)]) -> Vec<String> {
        let mut errors = Vec::new();
        let mut config = Config::parse_toml(toml, &mut errors);
        config.apply_env(&vars(env), &mut errors);
        config.validate(&mut errors);
        errors
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
            "`colour`",
            "`server.listne`",
            "drain_timeout",
            "upstream.url",
            "idle_timeout",
            "limits.chat_body",
        ] {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }

    #[test]
    fn env_overrides_file() {
        let mut errors = Vec::new();
        let mut c = Config::parse_toml(
            "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\napi_key=\"a\"",
            &mut errors,
        );
        c.apply_env(
            &vars(&[
                ("GROXY_LISTEN", "127.0.0.1:9"),
                ("GROQ_API_KEY", "b"),
                ("GROXY_UPSTREAM_URL", "http://x/v1/"),
            ]),
            &mut errors,
        );
        c.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
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

#[cfg(test)]
mod example_file {
    use super::*;

    /// The example config documents every key with its default: parsing it must give exactly
    /// the built-in defaults, so a default changed in code but not in the file fails here.
    #[test]
    fn example_config_matches_the_defaults() {
        let text = include_str!("../../config/groxy.example.toml");
        let mut errors = Vec::new();
        let parsed = Config::parse_toml(text, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Config::default()));
    }
}
