//! The official SDKs, unmodified, against groxy and the simulator: openai and groq for Python, openai for Node.

use std::{path::PathBuf, process::Command};

use groq_sim::SimConfig;

use crate::support::*;

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// The venv made by `tests/sdk/setup.sh` (run by `.ci/run` and `scripts/test`). Set
/// `GROXY_SKIP_SDK_TESTS=1` to skip on a machine without Python; CI never sets it.
fn python() -> Option<PathBuf> {
    if std::env::var_os("GROXY_SKIP_SDK_TESTS").is_some() {
        eprintln!("GROXY_SKIP_SDK_TESTS is set: skipping the SDK tests");
        return None;
    }
    let status = Command::new("bash")
        .arg(sdk_dir().join("setup.sh"))
        .arg("python")
        .status()
        .expect("run setup.sh");
    assert!(status.success(), "tests/sdk/setup.sh python failed");
    Some(sdk_dir().join(".venv/bin/python"))
}

async fn run_script(program: &std::path::Path, script: &str, gw: &Gateway) -> String {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(sdk_dir().join(script))
        .env("GROXY_BASE", format!("http://{}", gw.addr))
        .env("OPENAI_API_KEY", "sk-client-anything")
        .env("GROQ_API_KEY", "gsk-client-anything")
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the SDK script finished in time")
        .expect("run the SDK script");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The scripts choose a fault of the simulator (a stream cut short) with `x-sim-reply`.
fn with_sim_faults(sim: &groq_sim::Simulator) -> groxy::Config {
    let mut config = config_for(sim);
    config.upstream.forward_headers = vec!["x-sim-reply".to_owned()];
    config
}

#[tokio::test]
async fn openai_and_groq_python_sdks_work_unmodified() {
    let Some(python) = python() else { return };
    let sim = sim_with(SimConfig {
        stream_chunks: Some(12),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(with_sim_faults(&sim)).await;
    let out = run_script(&python, "python_clients.py", &gw).await;
    for check in [
        "openai sync plain",
        "openai sync stream",
        "openai async plain",
        "openai async stream",
        "openai stop",
        "openai json mode",
        "openai tools",
        "openai models.list",
        "openai error",
        "openai alias and openai-only fields",
        "openai validation error",
        "openai responses.create",
        "openai responses.stream",
        "openai responses tools",
        "openai responses store refused",
        "openai responses truncation raises",
        "groq sync plain",
        "groq sync stream",
        "groq async stream",
        "groq models.list",
    ] {
        assert!(out.contains(&format!("ok: {check}")), "missing '{check}' in:\n{out}");
    }
    // Every request reached the simulator with the upstream key, never the client's.
    let requests = calls(&sim);
    assert!(requests.len() >= 13, "{}", requests.len());
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {UPSTREAM_KEY}").as_str())
        );
    }
    assert!(requests.iter().any(|r| r.header("x-stainless-lang") == Some("python")));
    // The alias was resolved and the OpenAI-only fields never reached Groq.
    for r in requests.iter().filter(|r| r.path.ends_with("/chat/completions")) {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("gpt-4o-mini") && !body.contains("\"store\""), "{body}");
    }
}

#[tokio::test]
async fn openai_node_sdk_works_unmodified() {
    if std::env::var_os("GROXY_SKIP_SDK_TESTS").is_some() {
        return;
    }
    let status = Command::new("bash")
        .arg(sdk_dir().join("setup.sh"))
        .arg("node")
        .status()
        .expect("run setup.sh");
    assert!(status.success(), "tests/sdk/setup.sh node failed");
    let sim = sim_with(SimConfig {
        stream_chunks: Some(12),
        ..SimConfig::default()
    })
    .await;
    let gw = gateway(with_sim_faults(&sim)).await;
    let out = run_script(std::path::Path::new("node"), "node_client.mjs", &gw).await;
    for check in [
        "node plain",
        "node stream",
        "node models.list",
        "node error",
        "node responses.create",
        "node responses.stream",
        "node responses tools",
        "node responses truncation raises",
    ] {
        assert!(out.contains(&format!("ok: {check}")), "missing '{check}' in:\n{out}");
    }
}

#[tokio::test]
async fn the_openai_sdks_retry_honours_groxys_retry_after() {
    let Some(python) = python() else { return };
    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("sdk", "gxy_sdk_test")]);
    // 12 per minute: one more every 5 s, so the retry waits at most that long.
    config.rate_limits.default.requests_per_minute = Some(12);
    let gw = gateway(config).await;
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(sdk_dir().join("python_retry.py"))
        .env("GROXY_BASE", format!("http://{}", gw.addr))
        .env("GROXY_CLIENT_KEY", "gxy_sdk_test")
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("in time")
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok: sdk retry honoured retry-after"), "{stdout}");
    // 12 admitted to exhaust the budget, the refused ones never reached Groq, then the retry.
    assert_eq!(call_count(&sim), 13);
}

/// Runs one of the seed project's examples (`tests/sdk/seed/`) as it was written, with only
/// the SDKs' own base-URL variables pointing at groxy; its stdout.
async fn run_seed_example(program: &std::path::Path, script: &str, gw: &Gateway) -> String {
    let mut command = tokio::process::Command::new(program);
    command
        .arg(sdk_dir().join("seed").join(script))
        .env("GROQ_BASE_URL", format!("http://{}", gw.addr))
        .env("OPENAI_BASE_URL", format!("http://{}/openai/v1", gw.addr))
        .env("GROQ_API_KEY", "gsk-client-anything")
        .env_remove("OPENAI_API_KEY")
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .expect("the example finished in time")
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Issue 16: the seed's examples name `llama3-8b-8192`, which Groq retired; through groxy they
/// run unmodified (`models.retired = "remap"`, the default) and get `openai/gpt-oss-20b`'s answer.
#[tokio::test]
async fn the_seed_examples_with_a_retired_model_run_unmodified() {
    let Some(python) = python() else { return };
    let status = Command::new("bash")
        .arg(sdk_dir().join("setup.sh"))
        .arg("node")
        .status()
        .expect("run setup.sh");
    assert!(status.success(), "tests/sdk/setup.sh node failed");
    let sim = sim().await;
    let gw = gateway(config_for(&sim)).await;
    let answer = groq_sim::fixtures::chat_completion();
    let answer: serde_json::Value = serde_json::from_slice(&answer).expect("fixture");
    let content = answer["choices"][0]["message"]["content"].as_str().expect("content");
    for script in ["groq_quickstart.py", "openai_compat.py"] {
        let out = run_seed_example(&python, script, &gw).await;
        assert_eq!(out.trim_end(), content, "{script}");
    }
    let out = run_seed_example(std::path::Path::new("node"), "openai_compat.mjs", &gw).await;
    assert_eq!(out.trim_end(), content, "openai_compat.mjs");
    let streamed = run_seed_example(&python, "groq_streaming.py", &gw).await;
    assert!(streamed.len() > 10, "{streamed}");

    // Groq was asked for the live replacement every time, and never for the retired model.
    let requests = calls(&sim);
    assert_eq!(requests.len(), 4);
    for r in &requests {
        assert_eq!(r.path, "/openai/v1/chat/completions");
        let body = r.json().expect("json");
        assert_eq!(body["model"], "openai/gpt-oss-20b", "{body}");
    }
    assert!(requests.iter().any(|r| r.header("x-stainless-lang") == Some("js")));
    assert!(
        requests
            .iter()
            .any(|r| r.header("user-agent").is_some_and(|ua| ua.starts_with("Groq/Python")))
    );
}
