//! The keys admin API (behind the admin key): create, list, show, update, revoke and rotate the keys made at run time; the config file's keys listed beside them, read-only.
//!
//! A secret is shown once, in the answer that creates or rotates it; the store keeps its
//! SHA-256. After a change this replica reloads its key table at once; the others within
//! `database.poll_interval`.

use std::collections::HashMap;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::{
    auth::new_key,
    calendar,
    config::{BudgetSet, Config, LimitSet},
    digest::{hex, sha256},
    error::{GatewayError, Rejection},
    keyring::NANOS_PER_USD,
    state::AppState,
    store::{KeyRow, StoreError},
};

/// Config keys appear as `config:<name>`: they cannot be changed here, only in the file.
const CONFIG_PREFIX: &str = "config:";

/// The fields a create or update may set. `null` clears an optional one; a field left out
/// is left as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFields {
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    limits: Option<Option<LimitSet>>,
    #[serde(default, deserialize_with = "nullable")]
    daily_budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    monthly_budget_usd: Option<Option<f64>>,
    #[serde(default, deserialize_with = "nullable")]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: Option<Option<Map<String, Value>>>,
}

/// Present (`Some`), present as `null` (`Some(None)`), or absent (`None`, by `default`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn invalid(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::Rejected(Rejection::Invalid {
        message: message.into(),
        param: Some(param.to_owned()),
    })
}

fn store_error(error: StoreError) -> GatewayError {
    match error {
        StoreError::Conflict(_) => GatewayError::Conflict {
            message: "a key with this secret already exists".to_owned(),
            code: "key_conflict",
        },
        StoreError::Unavailable(_) | StoreError::Failed(_) => {
            tracing::warn!(%error, "admin keys call failed");
            GatewayError::DatabaseUnavailable
        }
    }
}

/// Writes must say `content-type: application/json`: a page of another site cannot send that
/// without a CORS preflight (which groxy does not grant), so it cannot use a browser's cached
/// admin login to make, change or rotate a key.
fn require_json(headers: &HeaderMap) -> Result<(), GatewayError> {
    let got = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = got.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(GatewayError::UnsupportedMediaType {
        got: got.chars().take(64).collect(),
        wanted: "application/json".to_owned(),
    })
}

fn parse_fields(body: &Bytes) -> Result<KeyFields, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(KeyFields::default());
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("invalid key fields: {e}"), "body"))
}

fn usd_to_nanos(value: f64, param: &str) -> Result<i64, GatewayError> {
    if !value.is_finite() || !(0.0..=1e9).contains(&value) {
        return Err(invalid(
            format!("'{param}' must be a number of dollars from 0 to 1e9"),
            param,
        ));
    }
    Ok((value * NANOS_PER_USD).round() as i64)
}

/// Applies `fields` to `row`, checking each.
fn apply(row: &mut KeyRow, fields: KeyFields) -> Result<(), GatewayError> {
    if let Some(name) = fields.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(invalid("'name' must be 1 to 128 printable characters", "name"));
        }
        row.name = name.to_owned();
    }
    if let Some(expires) = fields.expires_at {
        row.expires_at = match expires {
            None => None,
            Some(Value::Number(n)) => Some(
                n.as_i64()
                    .ok_or_else(|| invalid("'expires_at' must be whole seconds", "expires_at"))?
                    * 1000,
            ),
            Some(Value::String(text)) => Some(
                calendar::parse(&text).ok_or_else(|| {
                    invalid(
                        "'expires_at' must be a date such as 2026-12-31 or 2026-12-31T18:00:00Z, or Unix seconds",
                        "expires_at",
                    )
                })? * 1000,
            ),
            Some(_) => {
                return Err(invalid(
                    "'expires_at' must be a date string or Unix seconds",
                    "expires_at",
                ));
            }
        };
    }
    if let Some(limits) = fields.limits {
        let limits = limits.unwrap_or_default();
        if let Some((field, _)) = limits.fields().into_iter().find(|(_, v)| *v == Some(0)) {
            return Err(invalid(
                format!("'limits.{field}' must be at least 1 (leave it out for no limit)"),
                "limits",
            ));
        }
        row.limits = serde_json::to_string(&limits).unwrap_or_else(|_| "{}".to_owned());
    }
    if let Some(daily) = fields.daily_budget_usd {
        row.daily_budget_nanos = daily.map(|v| usd_to_nanos(v, "daily_budget_usd")).transpose()?;
    }
    if let Some(monthly) = fields.monthly_budget_usd {
        row.monthly_budget_nanos = monthly.map(|v| usd_to_nanos(v, "monthly_budget_usd")).transpose()?;
    }
    if let Some(models) = fields.allowed_models {
        let models = models.unwrap_or_default();
        if models.iter().any(|m| m.trim().is_empty() || m.len() > 256) {
            return Err(invalid(
                "'allowed_models' must be model names (a trailing * matches a prefix)",
                "allowed_models",
            ));
        }
        row.allowed_models = serde_json::to_string(&models).unwrap_or_else(|_| "[]".to_owned());
    }
    if let Some(metadata) = fields.metadata {
        let metadata = Value::Object(metadata.unwrap_or_default()).to_string();
        if metadata.len() > 16 * 1024 {
            return Err(invalid("'metadata' must be at most 16 KiB of JSON", "metadata"));
        }
        row.metadata = metadata;
    }
    Ok(())
}

fn limits_json(limits: &LimitSet) -> Value {
    let set: Map<String, Value> = limits
        .fields()
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name.to_owned(), json!(v))))
        .collect();
    Value::Object(set)
}

fn usd(nanos: Option<i64>) -> Value {
    nanos.map_or(Value::Null, |n| json!(n as f64 / NANOS_PER_USD))
}

fn ms_time(ms: Option<i64>) -> Value {
    ms.map_or(Value::Null, |ms| json!(calendar::timestamp(ms.div_euclid(1000))))
}

/// Nanodollars spent today and this month, per ledger subject.
type Spend = HashMap<String, (i64, i64)>;

/// What each key spent today and this month, from the ledger (every replica's, as written)
/// and this replica's rows not written yet.
async fn spend_now(state: &AppState) -> Spend {
    let now = calendar::now();
    let today = calendar::day_start(now);
    let mut rows = state
        .store()
        .usage(calendar::month_start(now), now + calendar::HOUR, calendar::DAY)
        .await
        .unwrap_or_default();
    rows.extend(state.observer().pending.snapshot());
    let mut spend = Spend::new();
    for row in rows {
        let entry = spend.entry(row.key).or_default();
        entry.1 += row.cost_nanos;
        if row.hour >= today {
            entry.0 += row.cost_nanos;
        }
    }
    spend
}

fn spend_json(spend: &Spend, subject: &str) -> Value {
    let (today, month) = spend.get(subject).copied().unwrap_or_default();
    json!({"today_usd": today as f64 / NANOS_PER_USD, "month_usd": month as f64 / NANOS_PER_USD})
}

/// A stored key as the API shows it (never its hash).
fn key_json(spend: &Spend, row: &KeyRow) -> Value {
    let now = calendar::now_ms();
    let status = match (row.revoked_at, row.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "active",
    };
    let limits: LimitSet = serde_json::from_str(&row.limits).unwrap_or_default();
    let models: Value = serde_json::from_str(&row.allowed_models).unwrap_or_else(|_| json!([]));
    let metadata: Value = serde_json::from_str(&row.metadata).unwrap_or_else(|_| json!({}));
    json!({
        "id": row.id,
        "object": "groxy.key",
        "name": row.name,
        "source": "api",
        "read_only": false,
        "status": status,
        "prefix": row.prefix,
        "created_at": ms_time(Some(row.created_at)),
        "updated_at": ms_time(Some(row.updated_at)),
        "expires_at": ms_time(row.expires_at),
        "revoked_at": ms_time(row.revoked_at),
        "limits": limits_json(&limits),
        "daily_budget_usd": usd(row.daily_budget_nanos),
        "monthly_budget_usd": usd(row.monthly_budget_nanos),
        "allowed_models": models,
        "metadata": metadata,
        "spend": spend_json(spend, &row.id),
    })
}

/// A key of the config file: shown, never changed here.
fn config_key_json(spend: &Spend, config: &Config, name: &str) -> Value {
    let limits = config.rate_limits.keys.get(name).copied().unwrap_or_default();
    let budget: BudgetSet = config.budgets.keys.get(name).copied().unwrap_or_default();
    let nanos = |usd: Option<f64>| usd.map(|v| (v * NANOS_PER_USD).round() as i64);
    json!({
        "id": format!("{CONFIG_PREFIX}{name}"),
        "object": "groxy.key",
        "name": name,
        "source": "config",
        "read_only": true,
        "status": "active",
        "prefix": Value::Null,
        "created_at": Value::Null,
        "updated_at": Value::Null,
        "expires_at": Value::Null,
        "revoked_at": Value::Null,
        "limits": limits_json(&limits),
        "daily_budget_usd": usd(nanos(budget.daily_usd)),
        "monthly_budget_usd": usd(nanos(budget.monthly_usd)),
        "allowed_models": [],
        "metadata": {},
        "spend": spend_json(spend, name),
    })
}

/// A name in use by a config key or another live stored key would make logs ambiguous.
async fn check_name_free(state: &AppState, name: &str, except: Option<&str>) -> Result<(), GatewayError> {
    let config = state.config();
    let taken_by_config = config.auth.keys.iter().any(|k| k.name == name);
    let taken = taken_by_config
        || state
            .store()
            .all_keys()
            .await
            .map_err(store_error)?
            .iter()
            .any(|k| k.name == name && k.revoked_at.is_none() && Some(k.id.as_str()) != except);
    if taken {
        return Err(GatewayError::Conflict {
            message: format!("the name `{name}` is already used by another key"),
            code: "name_taken",
        });
    }
    Ok(())
}

async fn refreshed(state: &AppState) {
    if let Err(error) = state.keyring().refresh(state.store()).await {
        tracing::debug!(%error, "key table not refreshed after an admin change");
    }
}

fn fresh_secret() -> Result<(String, String, String), GatewayError> {
    let (secret, _) = new_key("x").map_err(|_| GatewayError::Internal)?;
    let hash = hex(&sha256(secret.as_bytes()));
    let prefix = secret.chars().take(12).collect();
    Ok((secret, hash, prefix))
}

/// `POST /admin/keys`: a new key; the answer carries its secret, once.
pub async fn create(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, GatewayError> {
    require_json(&headers)?;
    let fields = parse_fields(&body)?;
    if fields.name.is_none() {
        return Err(invalid("'name' is required", "name"));
    }
    let (secret, hash, prefix) = fresh_secret()?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|_| GatewayError::Internal)?;
    let now = calendar::now_ms();
    let mut row = KeyRow {
        id: format!("key_{}", hex(&id)),
        name: String::new(),
        sha256: hash,
        prefix,
        created_at: now,
        updated_at: now,
        expires_at: None,
        revoked_at: None,
        limits: "{}".to_owned(),
        daily_budget_nanos: None,
        monthly_budget_nanos: None,
        allowed_models: "[]".to_owned(),
        metadata: "{}".to_owned(),
    };
    apply(&mut row, fields)?;
    check_name_free(&state, &row.name, None).await?;
    state.store().insert_key(&row).await.map_err(store_error)?;
    refreshed(&state).await;
    tracing::info!(id = %row.id, name = %row.name, "key created");
    let mut shown = key_json(&spend_now(&state).await, &row);
    shown["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// `GET /admin/keys`: the stored keys (revoked ones too) and the config file's.
pub async fn list(State(state): State<AppState>) -> Result<Response, GatewayError> {
    let rows = state.store().all_keys().await.map_err(store_error)?;
    let config = state.config();
    let spend = spend_now(&state).await;
    let mut data: Vec<Value> = config
        .auth
        .keys
        .iter()
        .map(|k| config_key_json(&spend, &config, &k.name))
        .collect();
    data.extend(rows.iter().map(|row| key_json(&spend, row)));
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}

async fn stored(state: &AppState, id: &str) -> Result<KeyRow, GatewayError> {
    if let Some(name) = id.strip_prefix(CONFIG_PREFIX) {
        return Err(if state.config().auth.keys.iter().any(|k| k.name == name) {
            GatewayError::Conflict {
                message: format!("the key `{name}` comes from the config file and is read-only here: change it there"),
                code: "read_only_key",
            }
        } else {
            GatewayError::NotFound {
                what: "key",
                id: id.to_owned(),
            }
        });
    }
    state
        .store()
        .key(id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| GatewayError::NotFound {
            what: "key",
            id: id.to_owned(),
        })
}

/// `GET /admin/keys/{id}`.
pub async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, GatewayError> {
    if let Some(name) = id.strip_prefix(CONFIG_PREFIX) {
        let config = state.config();
        if config.auth.keys.iter().any(|k| k.name == name) {
            return Ok(Json(config_key_json(&spend_now(&state).await, &config, name)).into_response());
        }
    }
    let row = stored(&state, &id).await?;
    Ok(Json(key_json(&spend_now(&state).await, &row)).into_response())
}

/// `PATCH /admin/keys/{id}`: changes the fields given.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GatewayError> {
    require_json(&headers)?;
    let fields = parse_fields(&body)?;
    let mut row = stored(&state, &id).await?;
    let renamed = fields.name.is_some();
    apply(&mut row, fields)?;
    if renamed {
        check_name_free(&state, &row.name, Some(&row.id)).await?;
    }
    row.updated_at = calendar::now_ms();
    state.store().update_key(&row).await.map_err(store_error)?;
    refreshed(&state).await;
    Ok(Json(key_json(&spend_now(&state).await, &row)).into_response())
}

/// `DELETE /admin/keys/{id}`: revokes the key (kept, so its usage keeps its name).
pub async fn revoke(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, GatewayError> {
    let mut row = stored(&state, &id).await?;
    if row.revoked_at.is_none() {
        let now = calendar::now_ms();
        row.revoked_at = Some(now);
        row.updated_at = now;
        state.store().update_key(&row).await.map_err(store_error)?;
        refreshed(&state).await;
        tracing::info!(id = %row.id, name = %row.name, "key revoked");
    }
    Ok(Json(key_json(&spend_now(&state).await, &row)).into_response())
}

/// `POST /admin/keys/{id}/rotate`: a new secret for the same key (id, name, limits, budgets
/// and usage unchanged); the old secret stops working.
pub async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    require_json(&headers)?;
    let mut row = stored(&state, &id).await?;
    if row.revoked_at.is_some() {
        return Err(GatewayError::Conflict {
            message: format!("the key `{id}` is revoked; create a new one"),
            code: "key_revoked",
        });
    }
    let (secret, hash, prefix) = fresh_secret()?;
    row.sha256 = hash;
    row.prefix = prefix;
    row.updated_at = calendar::now_ms();
    state.store().update_key(&row).await.map_err(store_error)?;
    refreshed(&state).await;
    tracing::info!(id = %row.id, name = %row.name, "key rotated");
    let mut shown = key_json(&spend_now(&state).await, &row);
    shown["key"] = json!(secret);
    Ok(Json(shown).into_response())
}
