//! Hot reload's rules: which settings a running gateway can take from a new config, and which stay bound to the process until a restart, compared as typed values.
//!
//! New client keys, limits, aliases, validation and cache policy apply to requests that start
//! after the swap; requests in flight keep the snapshot they started with. Settings bound at
//! start (the listener, the upstream connection pool, cache capacity, log format, Redis) keep
//! their running values and are reported as needing a restart instead of being half-applied.
//! Values are compared as values (`PartialEq`), never through their printed form, so a change
//! hidden by a masked `Debug` (a Redis password) is still seen.

use serde::Serialize;

use crate::config::Config;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Sections whose new values now apply to new requests.
    pub applied: Vec<&'static str>,
    /// Settings that changed in the file but keep their old value until a restart.
    pub restart_required: Vec<&'static str>,
}

/// A setting fixed when the process starts: whether two configs differ in it, and how to put
/// the running value back into a new config.
struct StartBound {
    name: &'static str,
    differs: fn(&Config, &Config) -> bool,
    keep: fn(&mut Config, &Config),
}

macro_rules! start_bound {
    ($($name:literal => $($field:ident).+;)*) => {
        &[$(StartBound {
            name: $name,
            differs: |old, new| old.$($field).+ != new.$($field).+,
            keep: |new, old| new.$($field).+ = old.$($field).+.clone(),
        }),*]
    };
}

/// The one list of start-bound settings.
const START_BOUND: &[StartBound] = start_bound! {
    "server" => server;
    "upstream" => upstream;
    "models.refresh_interval" => models.refresh_interval;
    "cache.max_bytes" => cache.max_bytes;
    "cache.max_entries" => cache.max_entries;
    "rate_limits.queue_wait" => rate_limits.queue_wait;
    "rate_limits.queue_length" => rate_limits.queue_length;
    "log" => log;
    "metrics.per_key_labels" => metrics.per_key_labels;
    "admin.watch_config" => admin.watch_config;
    "redis" => redis;
    "tracing" => tracing;
    "database" => database;
};

/// Every top-level section, for the report of what applied. The exhaustive destructuring below
/// makes a new section a compile error until it is listed here.
fn live_sections(old: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        server,
        upstream,
        limits,
        validation,
        models,
        auth,
        rate_limits,
        cache,
        log,
        metrics,
        admin,
        redis,
        tracing,
        database,
        budgets,
        prices,
    } = new;
    let changed = [
        ("server", *server != old.server),
        ("upstream", *upstream != old.upstream),
        ("limits", *limits != old.limits),
        ("validation", *validation != old.validation),
        ("models", *models != old.models),
        ("auth", *auth != old.auth),
        ("rate_limits", *rate_limits != old.rate_limits),
        ("cache", *cache != old.cache),
        ("log", *log != old.log),
        ("metrics", *metrics != old.metrics),
        ("admin", *admin != old.admin),
        ("redis", *redis != old.redis),
        ("tracing", *tracing != old.tracing),
        ("database", *database != old.database),
        ("budgets", *budgets != old.budgets),
        ("prices", *prices != old.prices),
    ];
    changed.iter().filter(|(_, c)| *c).map(|(name, _)| *name).collect()
}

/// What a reload from `old` to `new` does: the config to install (the new one with every
/// start-bound setting at its running value, so the running config always describes what is
/// in force) and the report of what applied and what waits for a restart.
pub fn plan(old: &Config, mut new: Config) -> (Config, ReloadReport) {
    let restart_required = START_BOUND
        .iter()
        .filter(|setting| (setting.differs)(old, &new))
        .map(|setting| setting.name)
        .collect();
    for setting in START_BOUND {
        (setting.keep)(&mut new, old);
    }
    let applied = live_sections(old, &new);
    (
        new,
        ReloadReport {
            applied,
            restart_required,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HumanDuration, RedisUrl};

    #[test]
    fn live_settings_apply_and_start_bound_ones_wait_for_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.models.aliases.insert("fast".into(), "llama-3.1-8b-instant".into());
        new.server.listen = std::net::SocketAddr::from(([0, 0, 0, 0], 9999));
        new.cache.ttl = HumanDuration::secs(5);
        let (installed, report) = plan(&old, new);
        assert_eq!(report.applied, vec!["models", "cache"]);
        assert_eq!(report.restart_required, vec!["server"]);
        assert_eq!(installed.server, old.server);
        assert_eq!(installed.cache.ttl, HumanDuration::secs(5));
        let (_, nothing) = plan(&old, old.clone());
        assert_eq!(
            nothing,
            ReloadReport {
                applied: vec![],
                restart_required: vec![]
            }
        );
    }

    #[test]
    fn a_secret_only_change_is_seen_though_it_prints_the_same() {
        let mut old = Config::default();
        old.redis.url = Some(RedisUrl::new("redis://:first@127.0.0.1:6379/0"));
        let mut new = old.clone();
        new.redis.url = Some(RedisUrl::new("redis://:second@127.0.0.1:6379/0"));
        assert_eq!(format!("{:?}", old.redis), format!("{:?}", new.redis));
        let (installed, report) = plan(&old, new);
        assert_eq!(report.restart_required, vec!["redis"]);
        assert_eq!(installed.redis, old.redis);
    }
}
