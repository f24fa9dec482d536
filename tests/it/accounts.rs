//! Keys made at run time (issue 15, item 2): the admin API on SQLite and PostgreSQL, two replicas sharing one database, revocation within a second everywhere, rotation, expiry, allowed models, config keys read-only, and the `groxy keys` CLI.

use std::time::{Duration, Instant};

use groxy::{Config, config::RedisUrl};
use serde_json::{Value, json};

use super::{
    accounts_db::PgDatabase,
    support::{Gateway, assert_openai_error, client, config_for, gateway, json, sim, with_client_keys},
};

pub const ADMIN_KEY: &str = "gxy_admin_key_for_accounts_tests";

/// Where a test's gateways keep their accounts.
pub enum Backend {
    Sqlite(tempdir::TempDir),
    Postgres(PgDatabase),
}

pub mod tempdir {
    /// A directory removed when dropped.
    pub struct TempDir(pub std::path::PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("groxy-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Backend {
    pub async fn sqlite() -> Backend {
        Backend::Sqlite(tempdir::TempDir::new("accounts"))
    }

    pub async fn postgres() -> Backend {
        Backend::Postgres(PgDatabase::create().await)
    }

    /// Points `config` at this backend.
    pub fn apply(&self, config: &mut Config) {
        match self {
            Backend::Sqlite(dir) => config.database.data_dir = Some(dir.0.clone()),
            Backend::Postgres(db) => config.database.url = Some(RedisUrl::new(db.url.clone())),
        }
    }
}

/// Keys mode with config key `alice` (`gxy_alice`), the admin key, and `backend`.
pub fn accounts_config(sim: &groq_sim::Simulator, backend: &Backend) -> Config {
    let mut config = config_for(sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.admin.key_sha256 = Some(groxy::hex(&groxy::sha256(ADMIN_KEY.as_bytes())));
    backend.apply(&mut config);
    // The tests poll with revoked keys from one address: not a brute-force attempt.
    config.auth.failures_per_minute = 10_000;
    config
}

/// An admin API call; the status and the JSON answer.
pub async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client()
        .request(method.parse().expect("method"), gw.url(path))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (status, if bytes.is_empty() { Value::Null } else { json(&bytes) })
}

/// A chat completion with `key` for `model`; the status and the body.
pub async fn chat_with(gw: &Gateway, key: &str, model: &str) -> (u16, Value) {
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}], "max_completion_tokens": 50});
    let response = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("send");
    let status = response.status().as_u16();
    (status, json(&response.bytes().await.expect("body")))
}

/// Polls until `key` gets `want` from `gw`; how long that took.
async fn until_status(gw: &Gateway, key: &str, want: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _) = chat_with(gw, key, "openai/gpt-oss-20b").await;
        if status == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {status}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn keys_live_on_every_replica(backend: Backend) {
    let sim = sim().await;
    let a = gateway(accounts_config(&sim, &backend)).await;
    let b = gateway(accounts_config(&sim, &backend)).await;

    let (status, created) = admin(
        &a,
        "POST",
        "/admin/keys",
        Some(
            json!({"name": "bob", "allowed_models": ["openai/*"], "daily_budget_usd": 2.5, "metadata": {"team": "ml"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().expect("the secret, once").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("gxy_") && id.starts_with("key_"), "{created}");
    assert_eq!(created["prefix"], json!(&secret[..12]));
    assert_eq!(created["daily_budget_usd"], json!(2.5));
    assert!(
        !created.to_string().contains("sha256"),
        "the hash is never shown: {created}"
    );

    // The creating replica knows it at once, the other within a second.
    assert_eq!(chat_with(&a, &secret, "openai/gpt-oss-20b").await.0, 200);
    let seen = until_status(&b, &secret, 200, Duration::from_secs(1)).await;
    println!("a key made on replica A worked on replica B after {seen:?}");

    // Allowed models: an OpenAI-shaped 403.
    let (status, body) = chat_with(&b, &secret, "qwen/qwen3.8-27b").await;
    assert_eq!(status, 403, "{body}");
    let error = assert_openai_error(body.to_string().as_bytes());
    assert_eq!(error["code"], "model_not_allowed");
    assert_eq!(error["param"], "model");

    // The list shows both kinds; a config key is read-only; the secret is never listed.
    let (status, list) = admin(&b, "GET", "/admin/keys", None).await;
    assert_eq!(status, 200);
    let data = list["data"].as_array().expect("data");
    let alice = data.iter().find(|k| k["name"] == "alice").expect("alice");
    assert_eq!(
        (alice["source"].clone(), alice["read_only"].clone()),
        (json!("config"), json!(true))
    );
    let bob = data.iter().find(|k| k["id"] == json!(id)).expect("bob");
    assert_eq!(bob["metadata"], json!({"team": "ml"}));
    assert!(bob.get("key").is_none() && !list.to_string().contains(&secret[12..]));
    let (status, body) = admin(&a, "PATCH", "/admin/keys/config:alice", Some(json!({"name": "x"}))).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("read_only_key")));
    let (status, body) = admin(&a, "GET", "/admin/keys/key_nope", None).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    let (status, body) = admin(&a, "POST", "/admin/keys", Some(json!({"name": "alice"}))).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("name_taken")));
    let (status, _) = admin(&a, "POST", "/admin/keys", Some(json!({"name": "z", "colour": 1}))).await;
    assert_eq!(status, 400, "unknown fields are refused");
    // A form post (what a page of another site can send with a cached login) is refused.
    let form = client()
        .post(a.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "text/plain")
        .body(r#"{"name":"csrf"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(form.status(), 415);

    // Update: allowed models widened, on A; B follows.
    let (status, patched) = admin(
        &a,
        "PATCH",
        &format!("/admin/keys/{id}"),
        Some(json!({"allowed_models": null, "limits": {"requests_per_minute": 100}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["limits"], json!({"requests_per_minute": 100}));
    let started = Instant::now();
    while chat_with(&b, &secret, "qwen/qwen3.8-27b").await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(1), "the change did not reach B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Revoked on A: refused by A at once and by B within a second.
    let (status, revoked) = admin(&a, "DELETE", &format!("/admin/keys/{id}"), None).await;
    assert_eq!((status, revoked["status"].clone()), (200, json!("revoked")));
    let (status, body) = chat_with(&a, &secret, "openai/gpt-oss-20b").await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("invalid_api_key")));
    let refused = until_status(&b, &secret, 401, Duration::from_secs(1)).await;
    println!("a key revoked on replica A was refused by replica B after {refused:?}");

    // Rotated: the old secret stops, the new one works, same id.
    let (_, carol) = admin(&a, "POST", "/admin/keys", Some(json!({"name": "carol"}))).await;
    let old = carol["key"].as_str().expect("key").to_owned();
    let carol_id = carol["id"].as_str().expect("id").to_owned();
    until_status(&b, &old, 200, Duration::from_secs(1)).await;
    let (status, rotated) = admin(&b, "POST", &format!("/admin/keys/{carol_id}/rotate"), None).await;
    assert_eq!((status, rotated["id"].clone()), (200, json!(carol_id)));
    let new = rotated["key"].as_str().expect("new key").to_owned();
    assert_ne!(new, old);
    assert_eq!(chat_with(&b, &old, "openai/gpt-oss-20b").await.0, 401);
    assert_eq!(chat_with(&b, &new, "openai/gpt-oss-20b").await.0, 200);
    until_status(&a, &old, 401, Duration::from_secs(1)).await;

    // Expiry is checked at each request, to the second.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 2;
    let (_, dave) = admin(
        &a,
        "POST",
        "/admin/keys",
        Some(json!({"name": "dave", "expires_at": soon})),
    )
    .await;
    let dave = dave["key"].as_str().expect("key").to_owned();
    assert_eq!(chat_with(&a, &dave, "openai/gpt-oss-20b").await.0, 200);
    until_status(&a, &dave, 401, Duration::from_secs(4)).await;

    // The config key keeps working throughout.
    assert_eq!(chat_with(&a, "gxy_alice", "openai/gpt-oss-20b").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_on_every_replica_sqlite() {
    keys_live_on_every_replica(Backend::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_on_every_replica_postgres() {
    keys_live_on_every_replica(Backend::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_cli_manages_a_running_gateway() {
    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let gw = gateway(accounts_config(&sim, &backend)).await;
    let cli = |args: &[&str]| {
        let output = super::process::groxy_command()
            .arg("keys")
            .args(args)
            .env("GROXY_ADMIN_URL", gw.url(""))
            .env("GROXY_ADMIN_KEY", ADMIN_KEY)
            .output()
            .expect("run groxy keys");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, out) = cli(&[
        "create",
        "--name",
        "erin",
        "--daily-budget",
        "1.5",
        "--models",
        "openai/*",
        "--rpm",
        "60",
    ]);
    assert!(ok, "{out}");
    let secret = out
        .split_whitespace()
        .find(|w| w.starts_with("gxy_"))
        .expect("the secret is printed")
        .to_owned();
    let id = out
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find(|w| w.starts_with("key_"))
        .expect("the id is printed")
        .to_owned();
    assert_eq!(chat_with(&gw, &secret, "openai/gpt-oss-20b").await.0, 200);
    let (ok, out) = cli(&["list"]);
    assert!(
        ok && out.contains(&id) && out.contains("erin") && out.contains("config:alice"),
        "{out}"
    );
    assert!(!out.contains(&secret), "list never shows a secret: {out}");
    let (ok, out) = cli(&["rotate", &id]);
    assert!(ok, "{out}");
    let rotated = out
        .split_whitespace()
        .find(|w| w.starts_with("gxy_"))
        .expect("new secret")
        .to_owned();
    assert_eq!(chat_with(&gw, &secret, "openai/gpt-oss-20b").await.0, 401);
    assert_eq!(chat_with(&gw, &rotated, "openai/gpt-oss-20b").await.0, 200);
    let (ok, out) = cli(&["revoke", &id]);
    assert!(ok && out.contains("revoked"), "{out}");
    assert_eq!(chat_with(&gw, &rotated, "openai/gpt-oss-20b").await.0, 401);
    let (ok, out) = super::process::groxy_command()
        .args(["keys", "list", "--url", &gw.url(""), "--admin-key", "wrong"])
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .expect("run");
    assert!(!ok && out.contains("401"), "{out}");
}

/// With nothing set (no `database.url`, no data directory) keys and usage live in a SQLite
/// file under the user's data directory, so a restart keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_set_the_store_is_a_sqlite_file_in_the_home_directory() {
    use super::process::{Running, free_port, groxy_command};
    let sim = sim().await;
    let home = tempdir::TempDir::new("home");
    let start = || async {
        let port = free_port();
        let mut command = groxy_command();
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("GROXY_DATABASE_URL")
            .env("HOME", &home.0)
            .env("GROQ_API_KEY", super::support::UPSTREAM_KEY)
            .env("GROXY_UPSTREAM_URL", sim.base_url())
            .env("GROXY_ADMIN_KEY", ADMIN_KEY)
            .env("GROXY_AUTH_MODE", "keys");
        Running::start(command, port).await
    };
    let call = |base: String, key: Option<String>, path: &'static str| async move {
        let request = match key {
            Some(key) => client()
                .post(format!("{base}{path}"))
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(r#"{"model":"openai/gpt-oss-20b","messages":[{"role":"user","content":"hi"}]}"#),
            None => client().get(format!("{base}{path}")).bearer_auth(ADMIN_KEY),
        };
        let response = request.send().await.expect("send");
        (response.status().as_u16(), json(&response.bytes().await.expect("body")))
    };
    let first = start().await;
    let created = client()
        .post(first.url("/admin/keys"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(r#"{"name":"laptop"}"#)
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), 201);
    let created = json(&created.bytes().await.expect("body"));
    let key = created["key"].as_str().expect("secret").to_owned();
    let base = first.url("");
    assert_eq!(call(base, Some(key.clone()), "/v1/chat/completions").await.0, 200);
    let output = first.stop().await;
    assert!(!output.contains("in memory"), "{output}");
    assert!(
        home.0.join(".local/share/groxy/groxy.db").is_file(),
        "the file is under HOME"
    );

    let second = start().await;
    let base = second.url("");
    assert_eq!(
        call(base.clone(), Some(key), "/v1/chat/completions").await.0,
        200,
        "the key survived"
    );
    let (status, usage) = call(base, None, "/admin/usage?group=key").await;
    assert_eq!(status, 200);
    let requests: u64 = usage["data"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|row| row["key"] == created["id"])
        .map(|row| row["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(requests >= 1, "the first run's request is in the ledger: {usage}");
    second.stop().await;
}
