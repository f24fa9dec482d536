//! Issue 14, items 5–7: config messages never echo a secret and name every problem once with its
//! key path; long model names cannot grow `/metrics`, `/admin/stats` or `/admin/usage`.

use std::{process::Output, time::Duration};

use groq_sim::{SimConfig, Simulator};
use groxy::{hex, sha256};

use crate::{process::*, support::*};

const CANARY: &str = "gsk_canary_hardening_0123456789";
const ADMIN: &str = "admin_hardening_key_0123456789";

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("groxy-hardening-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn check_config(name: &str, text: &str) -> (Output, String) {
    let path = write_config(name, text);
    let out = groxy_command()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, all)
}

/// The problem lines of `check-config`'s output (`- ...`).
fn problem_lines(all: &str) -> Vec<&str> {
    all.lines().filter_map(|l| l.strip_prefix("- ")).collect()
}

#[test]
fn check_config_names_every_problem_once_with_its_key_and_no_secret() {
    let text = format!(
        "[server]\nmax_connections = \"abc\"\n\n[upstream]\napi_keys = \"{CANARY}\"\n\n[auth]\nmode = \"keyz\"\n\n[bogus_section]\n"
    );
    let (out, all) = check_config("every.toml", &text);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains(CANARY), "the key was printed: {all}");
    assert_eq!(
        problem_lines(&all),
        [
            "server.max_connections: expected a whole number, found a string",
            "upstream.api_keys: expected a list of strings, found a string",
            "auth.mode: expected one of \"none\", \"keys\", \"passthrough\", found \"keyz\"",
            "bogus_section: unknown key",
        ],
        "{all}"
    );
    assert!(all.contains("4 problem(s)"), "{all}");
}

#[test]
fn no_secret_field_echoes_its_value_whatever_its_type() {
    let cases = [
        ("upstream.api_key", format!("[upstream]\napi_key = [\"{CANARY}\"]\n")),
        (
            "upstream.api_key",
            format!("[upstream]\napi_key = {{ k = \"{CANARY}\" }}\n"),
        ),
        (
            "upstream.api_keys[1]",
            format!("[upstream]\napi_keys = [\"{CANARY}\", 1]\n"),
        ),
        (
            "upstream.api_keys",
            format!("[upstream]\napi_keys = {{ a = \"{CANARY}\" }}\n"),
        ),
        ("redis.url", format!("[redis]\nurl = [\"redis://:{CANARY}@h:6379\"]\n")),
        ("admin.key_sha256", format!("[admin]\nkey_sha256 = [\"{CANARY}\"]\n")),
        ("upstream.api_key", "[upstream]\napi_key = 98765432109876\n".to_owned()),
    ];
    for (i, (key, text)) in cases.iter().enumerate() {
        let (out, all) = check_config(&format!("secret-{i}.toml"), text);
        assert!(!out.status.success(), "{text}: {all}");
        assert!(all.contains(&format!("- {key}: expected ")), "{text}: {all}");
        assert!(
            !all.contains(CANARY) && !all.contains("98765432109876"),
            "{text}: a secret value was printed: {all}"
        );
    }
}

#[test]
fn a_toml_syntax_error_is_reported_alone_with_its_line_and_column() {
    let text = format!("[server]\nlisten = \"127.0.0.1:8080\"\n[upstream]\napi_key = \"{CANARY}\n");
    let (out, all) = check_config("syntax.toml", &text);
    assert!(!out.status.success());
    let lines = problem_lines(&all);
    assert_eq!(lines.len(), 1, "{all}");
    assert!(
        lines[0].starts_with("config is not valid TOML: line 4, column "),
        "{all}"
    );
    assert!(!all.contains("not set"), "a follow-on problem: {all}");
    assert!(!all.contains(CANARY), "the source line was printed: {all}");
}

#[tokio::test]
async fn a_rejected_reload_never_logs_or_answers_the_key() {
    let sim = sim().await;
    let port = free_port();
    let path = write_config("reload.toml", "[cache]\nmode = \"off\"\n");
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_ADMIN_KEY", ADMIN)
        .env("GROXY_LOG_FORMAT", "json");
    let groxy = Running::start(command, port).await;

    std::fs::write(&path, format!("[upstream]\napi_keys = \"{CANARY}\"\n")).expect("write");
    groxy.signal("HUP");
    assert!(
        groxy
            .wait_for_output("config reload rejected", Duration::from_secs(5))
            .await,
        "{}",
        groxy.output()
    );
    let response = client()
        .post(groxy.url("/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("reload");
    assert_eq!(response.status(), 422);
    let body = response.bytes().await.expect("body");
    let error = assert_openai_error(&body);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream.api_keys: expected a list of strings"),
        "{message}"
    );
    assert!(!String::from_utf8_lossy(&body).contains(CANARY), "{message}");
    let logs = groxy.stop().await;
    assert!(logs.contains("upstream.api_keys"), "{logs}");
    assert!(!logs.contains(CANARY), "the key reached the logs: {logs}");
}

/// Every string in a JSON document, with its length.
fn longest_string(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(items) => items.iter().map(longest_string).max().unwrap_or(0),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len().max(longest_string(v)))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test]
async fn long_model_names_keep_metrics_and_admin_output_small() {
    // The simulator refuses groxy's key, so the catalogue never loads and every model name is
    // forwarded (and answered 401 by Groq's stand-in): each request adds its name everywhere.
    let sim = Simulator::start(SimConfig {
        api_key: Some("a_different_key".to_owned()),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", "gxy_alice")]);
    config.admin.key_sha256 = Some(hex(&sha256(ADMIN.as_bytes())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(groxy::run(listener, config, std::future::pending()));
    let long = "x".repeat(8 * 1024);
    for i in 0..70 {
        let body = format!(r#"{{"model":"m{i}-{long}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        let response = client()
            .post(format!("{base}{CHAT}"))
            .bearer_auth("gxy_alice")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(
            response.status(),
            401,
            "forwarded to the simulator, which refuses the key"
        );
    }
    let get = |path: &str| client().get(format!("{base}{path}")).bearer_auth(ADMIN).send();

    // A name is at most 128 bytes; a line carries one name and less than 256 bytes besides.
    // 64 names plus `other` in at most 48 series each (two histograms of 20 lines, requests,
    // tokens, budget gauges) bound the scrape at 65 * 48 * 384 bytes, about 1.2 MB, plus the
    // fixed series; before the bound one scrape here was over 20 MB.
    let scrape = get("/metrics").await.expect("scrape").text().await.expect("text");
    let longest = scrape.lines().map(str::len).max().unwrap_or(0);
    assert!(longest <= 128 + 256, "a {longest}-byte line");
    assert!(scrape.len() < 65 * 48 * 384, "{} bytes", scrape.len());
    assert!(scrape.contains("model=\"other\""), "names past the 64th count as other");
    assert!(scrape.contains("xxx…\""), "long names end in the cut marker");

    // `/admin/stats` (the dashboard's data) and `/admin/usage`: each name bounded the same way;
    // the documents stay far below the 50 recent requests times 8 KB they held before.
    for (path, most) in [("/admin/stats", 96 * 1024), ("/admin/usage", 96 * 1024)] {
        let response = get(path).await.expect("admin");
        assert_eq!(response.status(), 200, "{path}");
        let body = response.bytes().await.expect("body");
        let doc = json(&body);
        assert!(
            longest_string(&doc) <= 128,
            "{path}: a {}-byte string",
            longest_string(&doc)
        );
        assert!(body.len() < most, "{path}: {} bytes", body.len());
    }
}
