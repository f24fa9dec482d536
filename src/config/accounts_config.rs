//! The `[database]`, `[budgets]` and `[prices]` sections: where keys and the usage ledger are kept, what the team may spend, and what Groq charges.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

use super::{redis_config::RedisUrl, units::HumanDuration};

/// Where keys made at run time and the usage ledger live. `url` wins; without it, a SQLite
/// file `groxy.db` under `data_dir`, which defaults to the user's data directory (see
/// [`default_data_dir`]) so that a laptop keeps its keys and usage across restarts with
/// nothing set. Only `url = "sqlite::memory:"`, or no home directory at all, keeps them in
/// memory (said at start).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host/db` (several replicas share one) or `sqlite://path`;
    /// env `GROXY_DATABASE_URL`. A password-bearing URL, so it prints masked.
    pub url: Option<RedisUrl>,
    /// Directory of the SQLite file `groxy.db` (created if missing); env `GROXY_DATA_DIR`,
    /// flag `--data-dir`; default [`default_data_dir`].
    pub data_dir: Option<PathBuf>,
    /// The usage ledger is written in one batch this often, never per request: a crash loses
    /// at most this much of it.
    pub flush_interval: HumanDuration,
    /// Ledger rows (one per key, model and hour) held while the database cannot take them;
    /// past it new rows are dropped, counted and logged once.
    pub max_buffered_rows: usize,
    /// How often each replica checks whether the keys changed (one tiny query); a revoked key
    /// is refused everywhere within about this long.
    pub poll_interval: HumanDuration,
    /// Longest wait for one database call (connecting included).
    pub timeout: HumanDuration,
    /// Connections in the pool.
    pub max_connections: u32,
}

/// The data directory used when neither `database.url` nor a data directory is set:
/// `$XDG_DATA_HOME/groxy`, else `$HOME/.local/share/groxy` (the XDG base directory rule, on
/// macOS too); `None` without either variable (a process with no home keeps memory).
pub fn default_data_dir(vars: &std::collections::HashMap<String, String>) -> Option<PathBuf> {
    let set = |name: &str| vars.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    set("XDG_DATA_HOME")
        .filter(|dir| dir.is_absolute())
        .or_else(|| {
            set("HOME")
                .filter(|home| home.is_absolute())
                .map(|home| home.join(".local/share"))
        })
        .map(|dir| dir.join("groxy"))
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: None,
            flush_interval: HumanDuration::secs(2),
            max_buffered_rows: 100_000,
            poll_interval: HumanDuration::millis(500),
            timeout: HumanDuration::secs(5),
            max_connections: 4,
        }
    }
}

/// Dollars per UTC day and per UTC month; absent: no budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BudgetSet {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
}

impl BudgetSet {
    pub fn is_empty(&self) -> bool {
        self.daily_usd.is_none() && self.monthly_usd.is_none()
    }
}

/// Spending caps: one for the whole gateway, and per client key of the config file (keys made
/// with the admin API carry their own).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BudgetsConfig {
    pub daily_usd: Option<f64>,
    pub monthly_usd: Option<f64>,
    pub keys: BTreeMap<String, BudgetSet>,
}

impl BudgetsConfig {
    pub fn gateway(&self) -> BudgetSet {
        BudgetSet {
            daily_usd: self.daily_usd,
            monthly_usd: self.monthly_usd,
        }
    }
}

/// One model's price in US dollars per million tokens, overriding the table groxy ships.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    pub input: f64,
    pub output: f64,
    /// Prompt tokens Groq served from its prompt cache; absent: half of `input`, as Groq bills.
    pub cached_input: Option<f64>,
}

impl DatabaseConfig {
    pub(super) fn validate(&self, errors: &mut Vec<String>) {
        if let Some(url) = &self.url {
            let scheme = url.expose().split(':').next().unwrap_or("");
            if !matches!(scheme, "postgres" | "postgresql" | "sqlite") {
                errors.push(format!(
                    "database.url {} must start with postgres:// or sqlite://",
                    url.redacted()
                ));
            }
        }
        for (name, value) in [
            ("database.flush_interval", self.flush_interval),
            ("database.poll_interval", self.poll_interval),
            ("database.timeout", self.timeout),
        ] {
            if value.0.is_zero() {
                errors.push(format!("{name} must be greater than zero"));
            }
        }
        if self.max_buffered_rows == 0 || self.max_connections == 0 {
            errors.push("database.max_buffered_rows and database.max_connections must be at least 1".to_owned());
        }
    }
}

pub(super) fn validate_money(
    budgets: &BudgetsConfig,
    prices: &BTreeMap<String, PriceConfig>,
    errors: &mut Vec<String>,
) {
    let mut check = |path: String, value: Option<f64>| {
        if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
            errors.push(format!("{path} must be a number of dollars, 0 or more"));
        }
    };
    check("budgets.daily_usd".into(), budgets.daily_usd);
    check("budgets.monthly_usd".into(), budgets.monthly_usd);
    for (name, set) in &budgets.keys {
        check(format!("budgets.keys.{name}.daily_usd"), set.daily_usd);
        check(format!("budgets.keys.{name}.monthly_usd"), set.monthly_usd);
    }
    for (model, price) in prices {
        check(format!("prices.\"{model}\".input"), Some(price.input));
        check(format!("prices.\"{model}\".output"), Some(price.output));
        check(format!("prices.\"{model}\".cached_input"), price.cached_input);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_default_data_directory_follows_the_xdg_rule() {
        let dir = |pairs: &[(&str, &str)]| default_data_dir(&vars(pairs));
        assert_eq!(
            dir(&[("HOME", "/home/ada")]),
            Some(PathBuf::from("/home/ada/.local/share/groxy"))
        );
        assert_eq!(
            dir(&[("HOME", "/home/ada"), ("XDG_DATA_HOME", "/data")]),
            Some(PathBuf::from("/data/groxy"))
        );
        // A relative XDG_DATA_HOME is invalid by the specification: ignored.
        assert_eq!(
            dir(&[("HOME", "/home/ada"), ("XDG_DATA_HOME", "data")]),
            Some(PathBuf::from("/home/ada/.local/share/groxy"))
        );
        assert_eq!(dir(&[("HOME", "")]), None);
        assert_eq!(dir(&[]), None);
    }

    #[test]
    fn problems_name_the_key_and_never_the_password() {
        let config = DatabaseConfig {
            url: Some(RedisUrl::new("mysql://u:hunter2-canary@db/x")),
            flush_interval: HumanDuration::secs(0),
            max_buffered_rows: 0,
            ..DatabaseConfig::default()
        };
        let mut errors = Vec::new();
        config.validate(&mut errors);
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 3, "{joined}");
        assert!(
            joined.contains("database.url") && !joined.contains("hunter2"),
            "{joined}"
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        let mut budgets = BudgetsConfig {
            daily_usd: Some(-1.0),
            ..BudgetsConfig::default()
        };
        budgets.keys.insert(
            "a".into(),
            BudgetSet {
                monthly_usd: Some(f64::NAN),
                ..BudgetSet::default()
            },
        );
        let mut errors = Vec::new();
        validate_money(&budgets, &BTreeMap::new(), &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
