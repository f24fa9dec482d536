//! The usage ledger's table: counts per key, model and hour, added to in batches and read back summed by day.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::pool::{Store, StoreError, on_pool};

/// Counts of one key and model in one hour (or, read back by day, one day). Adding rows for the
/// same key, model and hour sums them, so a batch can be retried as a whole only if it failed
/// as a whole (it is one transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// The key's id (keys made at run time) or name (keys of the config file, `anonymous`).
    pub key: String,
    pub model: String,
    /// The Unix second the hour (or day) starts at.
    pub hour: i64,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub refusals: i64,
    pub cost_nanos: i64,
}

const SUMS: &str = "CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
                    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
                    CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens, CAST(SUM(refusals) AS BIGINT) AS refusals, \
                    CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos";

fn usage_row<R: Row>(row: &R) -> Result<UsageRow, sqlx::Error>
where
    &'static str: ColumnIndex<R>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(UsageRow {
        key: row.try_get("key")?,
        model: row.try_get("model")?,
        hour: row.try_get("hour")?,
        requests: row.try_get("requests")?,
        prompt_tokens: row.try_get("prompt_tokens")?,
        completion_tokens: row.try_get("completion_tokens")?,
        cached_tokens: row.try_get("cached_tokens")?,
        refusals: row.try_get("refusals")?,
        cost_nanos: row.try_get("cost_nanos")?,
    })
}

impl Store {
    /// Adds `rows` to the ledger in one transaction: all of them or none.
    pub async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let query = "INSERT INTO groxy_usage (key, model, hour, requests, prompt_tokens, completion_tokens, \
                     cached_tokens, refusals, cost_nanos) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (key, model, hour) DO UPDATE SET requests = groxy_usage.requests + excluded.requests, \
                     prompt_tokens = groxy_usage.prompt_tokens + excluded.prompt_tokens, \
                     completion_tokens = groxy_usage.completion_tokens + excluded.completion_tokens, \
                     cached_tokens = groxy_usage.cached_tokens + excluded.cached_tokens, \
                     refusals = groxy_usage.refusals + excluded.refusals, \
                     cost_nanos = groxy_usage.cost_nanos + excluded.cost_nanos";
        self.call(async {
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                for row in rows {
                    sqlx::query(query)
                        .bind(&row.key)
                        .bind(&row.model)
                        .bind(row.hour)
                        .bind(row.requests)
                        .bind(row.prompt_tokens)
                        .bind(row.completion_tokens)
                        .bind(row.cached_tokens)
                        .bind(row.refusals)
                        .bind(row.cost_nanos)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await
            })
        })
        .await
    }

    /// Rows of hours in `[from, to)` (Unix seconds), each key and model summed per `bucket`
    /// seconds (3600: as stored; 86400: per UTC day), the `hour` field then being the bucket's
    /// start.
    pub async fn usage(&self, from: i64, to: i64, bucket: i64) -> Result<Vec<UsageRow>, StoreError> {
        let bucket = bucket.max(3600);
        let query = format!(
            "SELECT key, model, hour - hour % {bucket} AS hour, {SUMS} FROM groxy_usage \
             WHERE hour >= $1 AND hour < $2 GROUP BY key, model, hour - hour % {bucket} ORDER BY 3, 1, 2"
        );
        self.call(async {
            on_pool!(self, pool => {
                let rows = sqlx::query(&query).bind(from).bind(to).fetch_all(pool).await?;
                rows.iter().map(usage_row).collect::<Result<Vec<_>, _>>()
            })
        })
        .await
    }
}
