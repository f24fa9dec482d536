//! Client keys made at run time: rows of `groxy_keys` (only the key's SHA-256 is stored) and the change counter every replica polls.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::pool::{Store, StoreError, on_pool};

/// One key as stored. JSON fields are kept as text here: the store does not interpret them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the secret; the secret itself is never stored.
    pub sha256: String,
    /// The first characters of the secret (`gxy_1a2b3c4d`), so a person can tell keys apart.
    pub prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// JSON object: the key's rate limits (`LimitSet`).
    pub limits: String,
    pub daily_budget_nanos: Option<i64>,
    pub monthly_budget_nanos: Option<i64>,
    /// JSON array of model names (a trailing `*` matches a prefix); empty: every model.
    pub allowed_models: String,
    /// JSON object, the operator's own.
    pub metadata: String,
}

const COLUMNS: &str = "id, name, sha256, prefix, created_at, updated_at, expires_at, revoked_at, limits, \
                       daily_budget_nanos, monthly_budget_nanos, allowed_models, metadata";

fn key_row<R: Row>(row: &R) -> Result<KeyRow, sqlx::Error>
where
    &'static str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(KeyRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        sha256: row.try_get("sha256")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        limits: row.try_get("limits")?,
        daily_budget_nanos: row.try_get("daily_budget_nanos")?,
        monthly_budget_nanos: row.try_get("monthly_budget_nanos")?,
        allowed_models: row.try_get("allowed_models")?,
        metadata: row.try_get("metadata")?,
    })
}

const BUMP: &str = "UPDATE groxy_meta SET value = value + 1 WHERE name = 'keys_version'";

impl Store {
    /// The change counter: one indexed row, read by every replica every `poll_interval`.
    pub async fn keys_version(&self) -> Result<i64, StoreError> {
        let query = "SELECT value FROM groxy_meta WHERE name = 'keys_version'";
        self.call(async { on_pool!(self, pool => sqlx::query_scalar::<_, i64>(query).fetch_one(pool).await) })
            .await
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn all_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM groxy_keys ORDER BY created_at, id");
        self.call(async {
            on_pool!(self, pool => {
                let rows = sqlx::query(&query).fetch_all(pool).await?;
                rows.iter().map(key_row).collect::<Result<Vec<_>, _>>()
            })
        })
        .await
    }

    pub async fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM groxy_keys WHERE id = $1");
        self.call(async {
            on_pool!(self, pool => {
                let row = sqlx::query(&query).bind(id).fetch_optional(pool).await?;
                row.as_ref().map(key_row).transpose()
            })
        })
        .await
    }

    /// Adds a key and bumps the change counter, in one transaction.
    pub async fn insert_key(&self, key: &KeyRow) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO groxy_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        self.call(async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query(&query)
                    .bind(&key.id)
                    .bind(&key.name)
                    .bind(&key.sha256)
                    .bind(&key.prefix)
                    .bind(key.created_at)
                    .bind(key.updated_at)
                    .bind(key.expires_at)
                    .bind(key.revoked_at)
                    .bind(&key.limits)
                    .bind(key.daily_budget_nanos)
                    .bind(key.monthly_budget_nanos)
                    .bind(&key.allowed_models)
                    .bind(&key.metadata)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await
            })
        })
        .await
    }

    /// Writes every field but the id and the creation time, and bumps the change counter.
    /// `false`: no such key.
    pub async fn update_key(&self, key: &KeyRow) -> Result<bool, StoreError> {
        let query = "UPDATE groxy_keys SET name = $2, sha256 = $3, prefix = $4, updated_at = $5, expires_at = $6, \
                     revoked_at = $7, limits = $8, daily_budget_nanos = $9, monthly_budget_nanos = $10, \
                     allowed_models = $11, metadata = $12 WHERE id = $1";
        self.call(async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let done = sqlx::query(query)
                    .bind(&key.id)
                    .bind(&key.name)
                    .bind(&key.sha256)
                    .bind(&key.prefix)
                    .bind(key.updated_at)
                    .bind(key.expires_at)
                    .bind(key.revoked_at)
                    .bind(&key.limits)
                    .bind(key.daily_budget_nanos)
                    .bind(key.monthly_budget_nanos)
                    .bind(&key.allowed_models)
                    .bind(&key.metadata)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            })
        })
        .await
    }
}
