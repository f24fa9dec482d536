//! Keys made at run time, as the request path sees them: a snapshot in memory, looked up by hash, swapped whole when the store's change counter moves.
//!
//! The request path never waits on the database for a key it knows: [`Keyring::find`] reads an
//! `ArcSwap`. Every replica polls the store's change counter (one tiny query) every
//! `database.poll_interval` and, when it moved, loads every key and swaps the snapshot, so a
//! revoked key is refused everywhere within about that long; an expired key is refused from
//! its expiry to the millisecond, since expiry is checked at each lookup. While the database
//! is down the last snapshot keeps serving.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use arc_swap::ArcSwap;

use crate::{
    calendar,
    config::LimitSet,
    digest::unhex,
    error::GatewayError,
    store::{KeyRow, Store, StoreError},
};

/// Dollars as groxy counts them: nanodollars (1e-9 USD), so sums and comparisons are exact.
pub const NANOS_PER_USD: f64 = 1e9;

/// A key made with the admin API: who it is and what it may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// Stable across renames and rotations: the ledger's row key.
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Its own rate limits across models (fields left out fall back to `rate_limits.default`).
    pub limits: LimitSet,
    pub daily_budget_nanos: Option<u64>,
    pub monthly_budget_nanos: Option<u64>,
    /// Empty: every model. A trailing `*` matches a prefix (`openai/*`).
    pub allowed_models: Vec<String>,
}

impl Account {
    /// The account a stored row describes, or `None` for a revoked row or one whose hash is
    /// not a SHA-256.
    pub fn from_row(row: &KeyRow) -> Option<([u8; 32], Account)> {
        if row.revoked_at.is_some() {
            return None;
        }
        let hash = unhex(&row.sha256)?;
        let limits = serde_json::from_str(&row.limits).unwrap_or_default();
        let allowed_models = serde_json::from_str(&row.allowed_models).unwrap_or_default();
        let nanos = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
        Some((
            hash,
            Account {
                id: row.id.as_str().into(),
                name: row.name.as_str().into(),
                expires_at: row.expires_at,
                limits,
                daily_budget_nanos: nanos(row.daily_budget_nanos),
                monthly_budget_nanos: nanos(row.monthly_budget_nanos),
                allowed_models,
            },
        ))
    }

    /// Whether this key may call `model`.
    pub fn allows(&self, model: &str) -> bool {
        self.allowed_models.is_empty()
            || self
                .allowed_models
                .iter()
                .any(|allowed| match allowed.strip_suffix('*') {
                    Some(prefix) => model.starts_with(prefix),
                    None => allowed == model,
                })
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// The keys of the store, by hash.
#[derive(Default)]
pub struct Keyring {
    table: ArcSwap<HashMap<[u8; 32], Arc<Account>>>,
    /// The change counter the table reflects; -1 before the first load.
    version: AtomicI64,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("keys", &self.table.load().len())
            .finish()
    }
}

impl Keyring {
    pub fn new() -> Self {
        Self {
            table: ArcSwap::from_pointee(HashMap::new()),
            version: AtomicI64::new(-1),
        }
    }

    /// The live (not revoked, not expired) key with this hash. Memory only.
    pub fn find(&self, hash: &[u8; 32]) -> Option<Arc<Account>> {
        let found = self.table.load().get(hash).cloned()?;
        (!found.expired(calendar::now_ms())).then_some(found)
    }

    /// Reloads the table if the store's change counter moved since the last load: one small
    /// query when nothing changed. `Ok(true)`: a new table is in place.
    pub async fn refresh(&self, store: &Store) -> Result<bool, StoreError> {
        let version = store.keys_version().await?;
        if version == self.version.load(Ordering::Acquire) {
            return Ok(false);
        }
        let rows = store.all_keys().await?;
        let table: HashMap<_, _> = rows
            .iter()
            .filter_map(Account::from_row)
            .map(|(hash, account)| (hash, Arc::new(account)))
            .collect();
        self.table.store(Arc::new(table));
        self.version.store(version, Ordering::Release);
        Ok(true)
    }
}

/// Whether the caller's key may call `model`: a 403 `model_not_allowed` if not. A request
/// that names no model (files, batches) and a key without a list always may.
pub fn check_model(account: Option<&Account>, model: Option<&str>) -> Result<(), GatewayError> {
    match (account, model) {
        (Some(account), Some(model)) if !account.allows(model) => Err(GatewayError::ModelNotAllowed {
            model: model.to_owned(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_models_match_exactly_or_by_prefix() {
        let mut account = Account {
            id: "key_1".into(),
            name: "a".into(),
            expires_at: Some(10),
            limits: LimitSet::default(),
            daily_budget_nanos: None,
            monthly_budget_nanos: None,
            allowed_models: vec![],
        };
        assert!(account.allows("anything"));
        account.allowed_models = vec!["openai/*".into(), "qwen/qwen3.8-27b".into()];
        assert!(account.allows("openai/gpt-oss-20b"));
        assert!(account.allows("qwen/qwen3.8-27b"));
        assert!(!account.allows("qwen/qwen3.8-27b-x"));
        assert!(!account.allows("llama-3.1-8b-instant"));
        assert!(account.expired(10) && !account.expired(9));
    }
}
