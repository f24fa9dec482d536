//! The store on SQLite in memory: the same SQL that runs on PostgreSQL (the black-box tests run it there).

use super::*;
use crate::config::DatabaseConfig;

fn key(id: &str, hash: &str) -> KeyRow {
    KeyRow {
        id: id.to_owned(),
        name: format!("name-{id}"),
        sha256: hash.to_owned(),
        prefix: "gxy_0000".to_owned(),
        created_at: 1,
        updated_at: 1,
        expires_at: None,
        revoked_at: None,
        limits: "{}".to_owned(),
        daily_budget_nanos: Some(5),
        monthly_budget_nanos: None,
        allowed_models: "[]".to_owned(),
        metadata: "{}".to_owned(),
    }
}

#[tokio::test]
async fn keys_round_trip_and_bump_the_version() {
    let store = Store::open(&DatabaseConfig::default()).await.expect("open");
    assert_eq!(store.backend(), Backend::Memory);
    let v0 = store.keys_version().await.expect("version");
    store.insert_key(&key("a", "h1")).await.expect("insert");
    assert!(matches!(
        store.insert_key(&key("b", "h1")).await,
        Err(StoreError::Conflict(_))
    ));
    let mut a = store.key("a").await.expect("get").expect("found");
    assert_eq!(a, key("a", "h1"));
    a.revoked_at = Some(7);
    assert!(store.update_key(&a).await.expect("update"));
    assert!(!store.update_key(&key("zz", "h9")).await.expect("update"));
    assert_eq!(store.all_keys().await.expect("all"), vec![a]);
    assert!(store.keys_version().await.expect("version") >= v0 + 2);
}

#[tokio::test]
async fn usage_adds_up_per_hour_and_sums_per_day() {
    let store = Store::open(&DatabaseConfig::default()).await.expect("open");
    let row = |hour, requests| UsageRow {
        key: "k".into(),
        model: "m".into(),
        hour,
        requests,
        cost_nanos: requests * 10,
        ..UsageRow::default()
    };
    store.add_usage(&[row(3600, 1), row(7200, 2)]).await.expect("add");
    store.add_usage(&[row(3600, 4)]).await.expect("add");
    let hours = store.usage(0, 86_400, 3600).await.expect("read");
    assert_eq!(hours, vec![row(3600, 5), row(7200, 2)]);
    let days = store.usage(0, 86_400 * 2, 86_400).await.expect("read");
    assert_eq!(days, vec![row(0, 7)]);
    assert!(store.usage(7200, 7201, 3600).await.expect("read").len() == 1);
}
