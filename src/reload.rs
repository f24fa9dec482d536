//! Hot reload: read the config again (on SIGHUP, on `POST /admin/reload`, or when the file changes), and swap it in whole or not at all.
//!
//! New client keys, limits, aliases, validation and cache policy apply to requests that start
//! after the swap; requests in flight keep the snapshot they started with. Settings bound at
//! start (the listener, the upstream connection pool, cache capacity, log format) are reported
//! as needing a restart instead of being half-applied.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    app::{AppState, Runtime},
    auth::Authenticator,
    config::{Config, ConfigErrors},
    observe::metrics::ResultLabels,
};

/// Where the running config came from, so it can be read again the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub vars: HashMap<String, String>,
    /// `--listen`, which overrides the file and must keep doing so.
    pub listen: Option<SocketAddr>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let mut config = Config::load(self.path.as_deref(), &self.vars)?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        Ok(config)
    }

    fn file(&self) -> Option<PathBuf> {
        self.path.clone().or_else(|| {
            self.vars
                .get(crate::config::env::CONFIG)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Sections whose new values now apply to new requests.
    pub applied: Vec<&'static str>,
    /// Settings that changed in the file but keep their old value until a restart.
    pub restart_required: Vec<&'static str>,
}

fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") != format!("{b:?}")
}

/// What changed between two configs, and which of it a swap can apply.
pub fn compare(old: &Config, new: &Config) -> ReloadReport {
    let mut applied = Vec::new();
    let mut restart = Vec::new();
    let sections: [(&'static str, bool); 7] = [
        ("auth", differs(&old.auth, &new.auth)),
        ("rate_limits", differs(&old.rate_limits, &new.rate_limits)),
        ("validation", differs(&old.validation, &new.validation)),
        ("models.aliases", old.models.aliases != new.models.aliases),
        ("limits", differs(&old.limits, &new.limits)),
        ("admin", old.admin.key_sha256 != new.admin.key_sha256),
        ("metrics.enabled", old.metrics.enabled != new.metrics.enabled),
    ];
    applied.extend(sections.iter().filter(|(_, changed)| *changed).map(|(name, _)| *name));
    let cache_policy = old.cache.mode != new.cache.mode
        || old.cache.ttl != new.cache.ttl
        || old.cache.max_ttl != new.cache.max_ttl
        || old.cache.shared != new.cache.shared
        || old.cache.keys != new.cache.keys
        || old.cache.max_entry_bytes != new.cache.max_entry_bytes;
    if cache_policy {
        applied.push("cache");
    }
    let upstream_keys_changed = {
        let keys = |c: &Config| {
            c.upstream_keys()
                .iter()
                .map(|k| k.expose().to_owned())
                .collect::<Vec<_>>()
        };
        keys(old) != keys(new)
    };
    let bound_at_start: [(&'static str, bool); 9] = [
        ("server", differs(&old.server, &new.server)),
        (
            "upstream",
            differs(&old.upstream, &new.upstream) || upstream_keys_changed,
        ),
        (
            "models.refresh_interval",
            old.models.refresh_interval != new.models.refresh_interval,
        ),
        (
            "cache.max_bytes/max_entries",
            old.cache.max_bytes != new.cache.max_bytes || old.cache.max_entries != new.cache.max_entries,
        ),
        (
            "rate_limits.queue_wait/queue_length",
            old.rate_limits.queue_wait != new.rate_limits.queue_wait
                || old.rate_limits.queue_length != new.rate_limits.queue_length,
        ),
        ("log", differs(&old.log, &new.log)),
        (
            "metrics.per_key_labels",
            old.metrics.per_key_labels != new.metrics.per_key_labels,
        ),
        ("admin.watch_config", old.admin.watch_config != new.admin.watch_config),
        ("redis", differs(&old.redis, &new.redis)),
    ];
    restart.extend(
        bound_at_start
            .iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| *name),
    );
    ReloadReport {
        applied,
        restart_required: restart,
    }
}

impl AppState {
    /// Reads the config again and swaps it in if it is valid; otherwise keeps the old one and
    /// logs every problem. Without a source (a config built in code), there is nothing to read.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let Some(source) = self.config_source() else {
            return Err(ConfigErrors(vec![
                "this groxy was started without a config source to reload from".to_owned(),
            ]));
        };
        let result = source.load().map(|new| self.apply(new));
        let metrics = &self.observer().metrics;
        match &result {
            Ok(report) => {
                metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "applied" })
                    .inc();
                tracing::info!(
                    applied = ?report.applied,
                    restart_required = ?report.restart_required,
                    "config reloaded"
                );
                if !report.restart_required.is_empty() {
                    tracing::warn!(
                        settings = ?report.restart_required,
                        "these settings changed but apply only after a restart; the old values stay in effect"
                    );
                }
            }
            Err(errors) => {
                metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "rejected" })
                    .inc();
                for problem in &errors.0 {
                    tracing::error!(problem = %problem, "config reload rejected; the old config stays in effect");
                }
            }
        }
        result
    }

    /// Installs `new` for new requests. What cannot change while running keeps its old value
    /// (the returned report says which), so the running config always describes what is in force.
    pub fn apply(&self, mut new: Config) -> ReloadReport {
        let old = self.config();
        let report = compare(&old, &new);
        // Keep what is bound at start exactly as it is, so `config()` never claims otherwise.
        new.server = old.server.clone();
        new.upstream = old.upstream.clone();
        new.models.refresh_interval = old.models.refresh_interval;
        new.cache.max_bytes = old.cache.max_bytes;
        new.cache.max_entries = old.cache.max_entries;
        new.rate_limits.queue_wait = old.rate_limits.queue_wait;
        new.rate_limits.queue_length = old.rate_limits.queue_length;
        new.log = old.log.clone();
        new.metrics.per_key_labels = old.metrics.per_key_labels;
        new.admin.watch_config = old.admin.watch_config;
        new.redis = old.redis.clone();
        if report.applied.contains(&"cache") {
            self.cache().reconfigure(&new.cache);
        }
        let auth = Authenticator::new(&new.auth);
        self.swap_runtime(Runtime {
            config: Arc::new(new),
            auth,
        });
        report
    }

    /// Reloads on SIGHUP, and when `admin.watch_config` is on, when the file's modification
    /// time changes. Runs until `stop`.
    pub fn spawn_reloader(&self, stop: CancellationToken) {
        if self.config_source().is_none() {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Some(signal),
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGHUP; reload with POST /admin/reload");
                    None
                }
            };
            let watch = state.config().admin.watch_config;
            let file = state.config_source().and_then(ConfigSource::file);
            let modified = |path: &Option<PathBuf>| -> Option<SystemTime> {
                std::fs::metadata(path.as_ref()?).and_then(|m| m.modified()).ok()
            };
            let mut last_seen = modified(&file);
            let mut poll = tokio::time::interval(Duration::from_secs(2));
            loop {
                #[cfg(unix)]
                let hangup = async {
                    match hangups.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hangup = std::future::pending::<Option<()>>();
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = hangup => {
                        tracing::info!("SIGHUP: reloading the config");
                        let _ = state.reload();
                        last_seen = modified(&file);
                    }
                    _ = poll.tick(), if watch && file.is_some() => {
                        let now = modified(&file);
                        if now != last_seen {
                            last_seen = now;
                            tracing::info!("config file changed: reloading");
                            let _ = state.reload();
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_separates_live_settings_from_start_bound_ones() {
        let old = Config::default();
        let mut new = Config::default();
        new.models.aliases.insert("fast".into(), "llama-3.1-8b-instant".into());
        new.server.listen = SocketAddr::from(([0, 0, 0, 0], 9999));
        new.cache.ttl = crate::config::HumanDuration::secs(5);
        let report = compare(&old, &new);
        assert_eq!(report.applied, vec!["models.aliases", "cache"]);
        assert_eq!(report.restart_required, vec!["server"]);
        assert_eq!(
            compare(&old, &old.clone()),
            ReloadReport {
                applied: vec![],
                restart_required: vec![]
            }
        );
    }
}
