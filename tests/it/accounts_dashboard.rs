//! The dashboard's keys page (issue 15, item 6) in a real headless Chromium: create a key with its secret shown once, use it, see its spend against its budget and per model, edit the budget, revoke it.

use std::{path::PathBuf, process::Command, time::Duration};

use super::{
    accounts::{ADMIN_KEY, Backend, accounts_config, chat_with},
    support::{gateway, sim},
};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

#[tokio::test]
async fn the_keys_page_creates_edits_and_revokes_keys_in_headless_chromium() {
    let status = Command::new("bash")
        .arg(browser_dir().join("setup.sh"))
        .arg("all")
        .status()
        .expect("run tests/browser/setup.sh");
    assert!(status.success(), "tests/browser/setup.sh failed");

    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let gw = gateway(accounts_config(&sim, &backend)).await;
    // Spend by the config key, so the charts have more than one series.
    assert_eq!(chat_with(&gw, "gxy_alice", "qwen/qwen3.8-27b").await.0, 200);

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let screenshot = out_dir.join("keys.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(browser_dir())
        .arg("keys_check.mjs")
        .arg("--url")
        .arg(gw.url(""))
        .arg("--admin-key")
        .arg(ADMIN_KEY)
        .arg("--screenshot")
        .arg(&screenshot)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the browser check finished in time")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "keys page check failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .expect("a JSON report line");
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["spent_usd"].as_f64() > Some(0.0), "{report}");
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot");
}
