//! Where the running config came from (file, environment, `--listen`), so a reload reads it again the same way.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

use super::schema::{Config, ConfigErrors};

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

    pub fn file(&self) -> Option<PathBuf> {
        self.path.clone().or_else(|| {
            self.vars
                .get(super::env::CONFIG)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
    }
}
