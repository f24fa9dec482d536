//! The configuration's shape: every section and setting with its default, and why each default is what it is.

use std::{fmt, net::SocketAddr};

use serde::Deserialize;

use super::{
    accounts_config::{BudgetsConfig, DatabaseConfig, PriceConfig},
    models_config::ModelsConfig,
    redis_config::RedisConfig,
    secret::Secret,
    units::{ByteSize, HumanDuration},
};

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
    pub tracing: TracingConfig,
    pub database: DatabaseConfig,
    pub budgets: BudgetsConfig,
    /// Overrides of the price table groxy ships, by model.
    pub prices: std::collections::BTreeMap<String, PriceConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Slowloris guard, counted from accept (and, on HTTP/1.1 keep-alive, from the end of the
    /// previous answer): a connection whose request headers are not complete by then is closed,
    /// including one that never sends a byte.
    pub header_read_timeout: HumanDuration,
    /// A connection with no request open for this long since its last answer is closed (an
    /// HTTP/2 connection gets a GOAWAY), so idle connections do not hold slots forever.
    pub idle_timeout: HumanDuration,
    /// HTTP/2 PING interval on a connection with streams open; a peer that does not answer
    /// within the same time is gone, and the connection is closed.
    pub http2_keep_alive_interval: HumanDuration,
    /// At most this many connections are served. At the cap a new connection closes the one
    /// idle the longest (no request open), so silent sockets cannot lock out health probes or
    /// clients; when every connection is busy, accepting pauses and new ones wait in the
    /// kernel backlog.
    pub max_connections: usize,
    /// JSON request bodies are read whole before anything else; this bounds the bytes being
    /// read at once across all connections, so slow or concurrent bodies cannot exhaust memory.
    pub max_body_bytes_in_flight: ByteSize,
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
            idle_timeout: HumanDuration::secs(60),
            http2_keep_alive_interval: HumanDuration::secs(20),
            max_connections: 10_000,
            max_body_bytes_in_flight: ByteSize::mib(64),
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
    #[serde(deserialize_with = "super::secret::list")]
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
    /// Which HTTP version to speak to Groq.
    pub http2: UpstreamHttp2,
    /// Request headers forwarded in addition to the built-in allowlist (lower-case names).
    pub forward_headers: Vec<String>,
    pub retries: RetryConfig,
}

/// HTTP/2 to Groq multiplexes every stream over a few connections, so a held stream costs a
/// stream's state instead of a connection's buffers; but the server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` then caps the streams open on one connection, and requests
/// above it wait for a free stream (under `upstream.first_byte_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamHttp2 {
    /// HTTP/2 where TLS negotiates it (ALPN: api.groq.com offers it), HTTP/1.1 on plain `http://`.
    #[default]
    Auto,
    /// HTTP/2 only: prior knowledge (h2c) on `http://`, h2 by ALPN on `https://`.
    Always,
    /// HTTP/1.1 only, one connection per request in flight.
    Never,
}

/// Another attempt for a request Groq did not answer usefully before anything went to the
/// client: a failed or reset connection, 500/502/503/504, 498. Bounded twice (attempts, and the
/// total wait between them), since a retry storm against an overloaded Groq only deepens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RetryConfig {
    /// Retries after the first attempt (0: none).
    pub attempts: u32,
    /// The wait before the first retry; doubled for each next one, each a random 50–100 % of it.
    pub backoff: HumanDuration,
    /// Most time one request spends waiting between attempts, in total.
    pub max_wait: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            backoff: HumanDuration(std::time::Duration::from_millis(200)),
            max_wait: HumanDuration::secs(2),
        }
    }
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
            http2: UpstreamHttp2::Auto,
            forward_headers: Vec::new(),
            retries: RetryConfig::default(),
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
    /// A JSON body must arrive whole within this (counted once the headers are in), or the
    /// answer is 408: admission comes after the body, so nothing else bounds a slow sender.
    pub body_read_timeout: HumanDuration,
    /// The same for a streamed upload; longer, since uploads may be large.
    pub upload_read_timeout: HumanDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            chat_body: ByteSize::mib(8),
            upload_body: ByteSize::mib(100),
            body_read_timeout: HumanDuration::secs(30),
            upload_read_timeout: HumanDuration::secs(60),
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
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

    pub fn fields(&self) -> [(&'static str, Option<u64>); 5] {
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
    /// Most request-body bytes being validated at once. A request waits its turn (first come,
    /// first served) while others hold the rest; one body larger than the whole is validated alone.
    pub max_bytes_in_flight: ByteSize,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            openai_fields: FieldPolicy::Strip,
            unknown_fields: FieldPolicy::Forward,
            reject_nul: true,
            max_messages: 4096,
            max_bytes_in_flight: ByteSize::mib(64),
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

/// OpenTelemetry traces, exported over OTLP/HTTP (protobuf). Off until an endpoint is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TracingConfig {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://127.0.0.1:4318`; `OTEL_EXPORTER_OTLP_ENDPOINT`. Empty: tracing off.
    pub otlp_endpoint: String,
    /// The full traces URL, used as given; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`.
    pub otlp_traces_endpoint: Option<String>,
    /// `service.name` of every span; `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// OpenTelemetry's sampler names (`OTEL_TRACES_SAMPLER`): `always_on`, `always_off`,
    /// `traceidratio`, `parentbased_always_on`, `parentbased_always_off`,
    /// `parentbased_traceidratio` (a client's sampled trace is always continued).
    pub sampler: String,
    /// The ratio of the `*traceidratio` samplers, 0 to 1; `OTEL_TRACES_SAMPLER_ARG`.
    pub sample_ratio: f64,
    /// Finished spans waiting for export; past it they are dropped and counted, so a slow
    /// collector never holds memory or requests.
    pub queue_size: usize,
    /// The longest one export may take before its spans count as dropped.
    pub export_timeout: HumanDuration,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, `key=value,key=value`).
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            otlp_traces_endpoint: None,
            service_name: "groxy".to_owned(),
            sampler: "parentbased_traceidratio".to_owned(),
            sample_ratio: 1.0,
            queue_size: 2048,
            export_timeout: HumanDuration::secs(5),
            resource_attributes: std::collections::BTreeMap::new(),
        }
    }
}

impl TracingConfig {
    /// The sampler names `sampler` accepts.
    pub const SAMPLERS: [&'static str; 6] = [
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ];
}

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
