//! When the database fails (issue 15, item 7): a private PostgreSQL stopped mid-load. Known keys keep working with no database call on the request path, `/readyz` names `database`, usage is buffered (bounded; what is dropped is counted) and written when it returns, and groxy reconnects by itself.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use groxy::config::{HumanDuration, RedisUrl};
use serde_json::json;

use super::{
    accounts::{Backend, accounts_config, admin},
    accounts_db::{PgDatabase, PrivatePostgres},
    support::{Gateway, client, gateway, json, sim},
};

async fn readyz(gw: &Gateway) -> serde_json::Value {
    json(
        &client()
            .get(gw.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .bytes()
            .await
            .expect("body"),
    )
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_no_request_and_loses_no_counted_usage() {
    let postgres = PrivatePostgres::start().await;
    let db = PgDatabase::create_on(&postgres.url_base()).await;
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let mut config = accounts_config(&sim, &backend);
    config.database.data_dir = None;
    config.database.url = Some(RedisUrl::new(db.url.clone()));
    config.database.flush_interval = HumanDuration::millis(200);
    config.database.timeout = HumanDuration::secs(2);
    // Room for the two rows of the load: a third distinct row is dropped.
    config.database.max_buffered_rows = 2;
    // The simulator's canned headers describe a small Groq budget that a long load would spend
    // in groxy's view of it; this test is about the database, not Groq's budget.
    config.rate_limits.upstream_aware = false;
    let gw = Arc::new(gateway(config).await);
    let (_, bob) = admin(&gw, "POST", "/admin/keys", Some(json!({"name": "bob"}))).await;
    let bob = bob["key"].as_str().expect("key").to_owned();

    // Load from two keys (one of the file, one made at run time) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for key in ["gxy_alice".to_owned(), bob.clone()] {
        let (gw, stop, ok, failed, slowest_ms) =
            (gw.clone(), stop.clone(), ok.clone(), failed.clone(), slowest_ms.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, body) = super::accounts::chat_with(&gw, &key, "openai/gpt-oss-20b").await;
                slowest_ms.fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                if status != 200 {
                    println!("refused: {status} {body}");
                }
                if status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    wait_for("load running", Duration::from_secs(5), async || {
        ok.load(Ordering::Relaxed) > 20
    })
    .await;

    postgres.stop();
    let stopped = Instant::now();
    slowest_ms.store(0, Ordering::Relaxed);
    let noticed = wait_for("readyz names database", Duration::from_secs(10), async || {
        let ready = readyz(&gw).await;
        ready["database"] == "down"
            && ready["degraded"]
                .as_array()
                .is_some_and(|d| d.contains(&json!("database")))
    })
    .await;
    assert_eq!(
        readyz(&gw).await["status"],
        "ready",
        "a database outage never makes groxy unready"
    );
    // The admin API needs the database: 503, retryable.
    let (status, body) = admin(&gw, "POST", "/admin/keys", Some(json!({"name": "carol"}))).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (503, json!("database_unavailable"))
    );
    // A third distinct row (a new model) does not fit the buffer: dropped and counted.
    assert_eq!(super::accounts::chat_with(&gw, &bob, "qwen/qwen3.8-27b").await.0, 200);
    let served_during = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let served_during = ok.load(Ordering::Relaxed) - served_during;
    let slowest_during = slowest_ms.load(Ordering::Relaxed);
    let down_for = stopped.elapsed();

    postgres.start_again();
    let back = wait_for("readyz says database up", Duration::from_secs(15), async || {
        readyz(&gw).await["database"] == "up"
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.expect("load task");
    }
    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metric(&metrics, "groxy_ledger_dropped_rows_total") >= 1.0, "{metrics}");
    let served = ok.load(Ordering::Relaxed);
    println!(
        "database down {down_for:?} (noticed after {noticed:?}): {served_during} requests served in 2 s of it, slowest {slowest_during} ms; back after {back:?}; {served} served in all, {} failed",
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    assert!(served_during > 20, "requests kept flowing while the database was down");
    assert!(
        slowest_during < 1000,
        "no request waited on the database ({slowest_during} ms)"
    );

    // Everything counted reaches the database once it is back (the drain writes the rest):
    // every request of the load, but for the one whose row did not fit.
    let gw = Arc::try_unwrap(gw).ok().expect("the only handle");
    let mut gw = gw;
    gw.begin_shutdown().await.expect("join").expect("clean exit");
    let mut connection = db.connection().await;
    let written: i64 = sqlx::query_scalar("SELECT CAST(SUM(requests) AS BIGINT) FROM groxy_usage")
        .fetch_one(&mut connection)
        .await
        .expect("sum");
    assert_eq!(
        written as u64, served,
        "every served request of the load is in the ledger"
    );
}
