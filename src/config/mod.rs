//! Typed configuration: defaults, then the TOML file, then environment variables; every problem reported at once.

mod accounts_config;
mod models_config;
mod parse;
mod redis_config;
mod schema;
mod secret;
pub mod source;
mod units;
mod validate;
mod value;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

pub use accounts_config::{BudgetSet, BudgetsConfig, DatabaseConfig, PriceConfig};
pub use models_config::{ModelsConfig, RetiredPolicy};
pub use redis_config::{RedisConfig, RedisUrl};
pub use schema::*;
pub use secret::Secret;
pub use units::{ByteSize, HumanDuration};

pub mod env;

impl Config {
    /// Loads defaults, then `path` (or `$GROXY_CONFIG`), then the environment.
    ///
    /// `vars` is the environment as a map rather than `std::env`, so tests never mutate process
    /// state and can run in parallel. A file that cannot be read or is not valid TOML is the one
    /// problem reported (what follows from it, such as a key "not set", would only mislead).
    pub fn load(path: Option<&Path>, vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let path: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| vars.get(env::CONFIG).filter(|p| !p.is_empty()).map(PathBuf::from));
        let text = match &path {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigErrors(vec![format!("cannot read config file {}: {e}", path.display())]))?,
            ),
            None => None,
        };
        Self::from_text(text.as_deref(), vars)
    }

    /// [`Config::load`] once the file (if any) is read.
    fn from_text(text: Option<&str>, vars: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let file = match text {
            Some(text) => parse::config(parse::table(text).map_err(|e| ConfigErrors(vec![e]))?, &mut errors),
            None => parse::FileConfig {
                config: Config::default(),
                invalid: Vec::new(),
                secrets: Vec::new(),
            },
        };
        let mut config = file.config;
        config.apply_env(vars, &mut errors);
        if config.database.url.is_none() && config.database.data_dir.is_none() {
            config.database.data_dir = accounts_config::default_data_dir(vars);
        }
        config.validate(&mut errors, &file.invalid);
        if errors.is_empty() {
            return Ok(config);
        }
        // Messages are built not to hold secret values; this makes sure, whatever a future
        // message says: every value of a secret key, from the file or the environment, goes.
        let mut secrets = file.secrets;
        config.secret_values(vars, &mut secrets);
        secret::scrub(&mut errors, &secrets);
        let mut seen = std::collections::HashSet::new();
        errors.retain(|problem| seen.insert(problem.clone()));
        Err(ConfigErrors(errors))
    }

    /// Parses TOML text alone (no environment, no checks across values): the syntax error, or
    /// every unknown key and bad value, goes to `errors`.
    pub fn parse_toml(text: &str, errors: &mut Vec<String>) -> Config {
        match parse::table(text) {
            Ok(table) => parse::config(table, errors).config,
            Err(e) => {
                errors.push(e);
                Config::default()
            }
        }
    }

    /// Every secret this config holds or the environment gave, for [`secret::scrub`].
    fn secret_values(&self, vars: &HashMap<String, String>, out: &mut Vec<String>) {
        for key in self.upstream_keys() {
            secret::collect(key.expose(), out);
        }
        for url in self.redis.url.iter().chain(self.database.url.iter()) {
            secret::collect(url.expose(), out);
        }
        let hashes = self.auth.keys.iter().map(|k| k.sha256.as_str());
        for value in hashes.chain(self.admin.key_sha256.as_deref()) {
            secret::collect(value, out);
        }
        for name in [
            env::API_KEY,
            env::API_KEYS,
            env::ADMIN_KEY,
            env::REDIS_URL,
            env::DATABASE_URL,
        ] {
            if let Some(value) = vars.get(name) {
                secret::collect(value, out);
                value.split(',').for_each(|part| secret::collect(part, out));
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
