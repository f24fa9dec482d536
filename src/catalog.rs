//! The model catalogue learned from Groq's `GET /models` (fetched in the background by the state's refresher, never on the request path).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use serde::Deserialize;
use tokio::time::Instant;

/// What validation needs to know about one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLimits {
    pub context_window: u64,
    pub max_completion_tokens: u64,
}

#[derive(Debug)]
pub struct Catalog {
    models: HashMap<String, ModelLimits>,
    fetched_at: Instant,
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    context_window: Option<u64>,
    max_completion_tokens: Option<u64>,
}

impl Catalog {
    /// Parses Groq's model list. A model without limits gets unbounded ones, so a missing field
    /// never causes a refusal.
    pub fn parse(bytes: &[u8]) -> Result<Catalog, String> {
        let list: ModelList =
            serde_json::from_slice(bytes).map_err(|e| format!("model list is not the expected JSON: {e}"))?;
        let models = list
            .data
            .into_iter()
            .map(|m| {
                let context_window = m.context_window.unwrap_or(u64::MAX);
                let limits = ModelLimits {
                    context_window,
                    max_completion_tokens: m.max_completion_tokens.unwrap_or(context_window),
                };
                (m.id, limits)
            })
            .collect();
        Ok(Catalog {
            models,
            fetched_at: Instant::now(),
        })
    }

    pub fn get(&self, model: &str) -> Option<&ModelLimits> {
        self.models.get(model)
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// How current the catalogue is, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogState {
    /// Never fetched yet: model names are not validated.
    Loading,
    Fresh,
    /// Older than three refresh intervals: still used (model lists change rarely), but reported.
    Stale,
    /// Not fetched at all: passthrough mode without an upstream key of groxy's own, where
    /// Groq checks every caller's model names itself.
    Off,
}

impl CatalogState {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogState::Loading => "loading",
            CatalogState::Fresh => "fresh",
            CatalogState::Stale => "stale",
            CatalogState::Off => "off",
        }
    }
}

/// The current catalogue, swapped whole by the refresher. Readers clone an `Arc` under a read
/// lock that is never held across an await.
#[derive(Debug)]
pub struct CatalogCache {
    current: RwLock<Option<Arc<Catalog>>>,
    refresh_interval: Duration,
    /// Set when there is no key to fetch the list with: nothing will ever load.
    off: std::sync::atomic::AtomicBool,
}

impl CatalogCache {
    pub fn new(refresh_interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(None),
            refresh_interval,
            off: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Says plainly that no catalogue will be loaded (and so none is waited for).
    pub fn turn_off(&self) {
        self.off.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Option<Arc<Catalog>> {
        self.current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn state(&self) -> CatalogState {
        match self.snapshot() {
            None if self.off.load(std::sync::atomic::Ordering::Relaxed) => CatalogState::Off,
            None => CatalogState::Loading,
            Some(c) if c.fetched_at.elapsed() > self.refresh_interval * 3 => CatalogState::Stale,
            Some(_) => CatalogState::Fresh,
        }
    }

    fn store(&self, catalog: Catalog) {
        let catalog = Some(Arc::new(catalog));
        match self.current.write() {
            Ok(mut current) => *current = catalog,
            Err(poisoned) => *poisoned.into_inner() = catalog,
        }
    }

    /// How often the catalogue is refreshed once loaded.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// Takes Groq's `GET /models` answer; `Err` says why it is unusable (the old catalogue,
    /// if any, stays).
    pub fn load(&self, bytes: &[u8]) -> Result<usize, String> {
        let catalog = Catalog::parse(bytes)?;
        let models = catalog.len();
        self.store(catalog);
        Ok(models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groqs_model_list() {
        let bytes = include_bytes!("../tests/fixtures/groq/models.json");
        let catalog = Catalog::parse(bytes).expect("parse");
        assert_eq!(
            catalog.get("openai/gpt-oss-20b"),
            Some(&ModelLimits {
                context_window: 131_072,
                max_completion_tokens: 65_536
            })
        );
        assert_eq!(
            catalog.get("qwen/qwen3.8-27b").map(|m| m.max_completion_tokens),
            Some(16_384)
        );
        assert!(catalog.get("gpt-4o").is_none());
        assert!(Catalog::parse(b"{\"data\": 3}").is_err());
    }
}
