//! `GET /admin/usage?from=…&to=…&group=key,model,day&format=json|csv`: the persistent ledger over any range, summed by key, model, day or hour, with what this replica has not written yet.

use std::collections::{BTreeMap, HashMap};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde_json::{Value, json};

use crate::{
    calendar::{self, DAY, HOUR},
    error::{GatewayError, Rejection},
    state::AppState,
    store::UsageRow,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dim {
    Key,
    Model,
    Day,
    Hour,
}

impl Dim {
    fn name(self) -> &'static str {
        match self {
            Dim::Key => "key",
            Dim::Model => "model",
            Dim::Day => "day",
            Dim::Hour => "hour",
        }
    }
}

fn invalid(message: &str, param: &str) -> GatewayError {
    GatewayError::Rejected(Rejection::Invalid {
        message: message.to_owned(),
        param: Some(param.to_owned()),
    })
}

/// Whether the query asks for the ledger (any of its parameters) rather than the live
/// counters of this replica.
pub fn wants_ledger(query: &HashMap<String, String>) -> bool {
    ["from", "to", "group", "format"].iter().any(|k| query.contains_key(*k))
}

const FIELDS: [&str; 6] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "refusals",
    "cost_usd",
];

pub async fn report(state: &AppState, query: &HashMap<String, String>) -> Result<Response, GatewayError> {
    let now = calendar::now();
    let from = match query.get("from") {
        Some(text) => calendar::parse(text).ok_or_else(|| {
            invalid(
                "'from' must be a date (2026-11-01) or a time (2026-11-01T12:00:00Z)",
                "from",
            )
        })?,
        None => calendar::day_start(now),
    };
    let to = match query.get("to") {
        // A date alone includes its whole day.
        Some(text) if text.trim().len() == 10 => calendar::parse(text).map(|t| t + DAY),
        Some(text) => calendar::parse(text),
        None => Some(calendar::hour_start(now) + HOUR),
    }
    .ok_or_else(|| invalid("'to' must be a date or a time", "to"))?;
    let mut dims = Vec::new();
    for part in query.get("group").map_or("key", String::as_str).split(',') {
        let dim = match part.trim() {
            "key" => Dim::Key,
            "model" => Dim::Model,
            "day" => Dim::Day,
            "hour" => Dim::Hour,
            _ => {
                return Err(invalid(
                    "'group' must list key, model, day or hour, comma-separated",
                    "group",
                ));
            }
        };
        if !dims.contains(&dim) {
            dims.push(dim);
        }
    }
    let csv = match query.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(invalid("'format' must be json or csv", "format")),
    };
    let bucket = if dims.contains(&Dim::Hour) { HOUR } else { DAY };
    let store = state.store();
    let mut rows = store
        .usage(from, to, bucket)
        .await
        .map_err(|_| GatewayError::DatabaseUnavailable)?;
    rows.extend(
        state
            .observer()
            .pending
            .snapshot()
            .into_iter()
            .filter(|r| r.hour >= from && r.hour < to)
            .map(|mut r| {
                r.hour -= r.hour.rem_euclid(bucket);
                r
            }),
    );
    let names: HashMap<String, String> = store
        .all_keys()
        .await
        .map(|keys| keys.into_iter().map(|k| (k.id, k.name)).collect())
        .unwrap_or_default();
    let mut groups: BTreeMap<Vec<String>, UsageRow> = BTreeMap::new();
    for row in rows {
        let label = dims
            .iter()
            .map(|dim| match dim {
                Dim::Key => row.key.clone(),
                Dim::Model => row.model.clone(),
                Dim::Day => calendar::date(row.hour),
                Dim::Hour => calendar::timestamp(row.hour),
            })
            .collect();
        let sum = groups.entry(label).or_default();
        sum.requests += row.requests;
        sum.prompt_tokens += row.prompt_tokens;
        sum.completion_tokens += row.completion_tokens;
        sum.cached_tokens += row.cached_tokens;
        sum.refusals += row.refusals;
        sum.cost_nanos += row.cost_nanos;
    }
    let values = |sum: &UsageRow| -> [Value; 6] {
        [
            json!(sum.requests),
            json!(sum.prompt_tokens),
            json!(sum.completion_tokens),
            json!(sum.cached_tokens),
            json!(sum.refusals),
            json!(sum.cost_nanos as f64 / 1e9),
        ]
    };
    let key_at = dims.iter().position(|d| *d == Dim::Key);
    if csv {
        let mut out = String::new();
        let mut header: Vec<&str> = dims.iter().map(|d| d.name()).collect();
        if key_at.is_some() {
            header.push("name");
        }
        header.extend(FIELDS);
        out.push_str(&header.join(","));
        out.push('\n');
        for (label, sum) in &groups {
            let mut cells: Vec<String> = label.iter().map(|v| csv_cell(v)).collect();
            if let Some(i) = key_at {
                cells.push(csv_cell(names.get(&label[i]).unwrap_or(&label[i])));
            }
            cells.extend(values(sum).iter().map(Value::to_string));
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            out,
        )
            .into_response());
    }
    let mut total = UsageRow::default();
    let data: Vec<Value> = groups
        .iter()
        .map(|(label, sum)| {
            total.requests += sum.requests;
            total.prompt_tokens += sum.prompt_tokens;
            total.completion_tokens += sum.completion_tokens;
            total.cached_tokens += sum.cached_tokens;
            total.refusals += sum.refusals;
            total.cost_nanos += sum.cost_nanos;
            let mut object = serde_json::Map::new();
            for (dim, value) in dims.iter().zip(label) {
                object.insert(dim.name().to_owned(), json!(value));
            }
            if let Some(i) = key_at {
                object.insert("name".to_owned(), json!(names.get(&label[i]).unwrap_or(&label[i])));
            }
            for (field, value) in FIELDS.iter().zip(values(sum)) {
                object.insert((*field).to_owned(), value);
            }
            Value::Object(object)
        })
        .collect();
    let totals: serde_json::Map<String, Value> = FIELDS
        .iter()
        .zip(values(&total))
        .map(|(k, v)| ((*k).to_owned(), v))
        .collect();
    Ok(axum::Json(json!({
        "object": "list",
        "from": calendar::timestamp(from),
        "to": calendar::timestamp(to),
        "group": dims.iter().map(|d| d.name()).collect::<Vec<_>>(),
        "data": data,
        "total": totals,
    }))
    .into_response())
}

/// A CSV cell, quoted when it holds a comma, a quote or a line break.
fn csv_cell(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
