//! The dashboard's keys page (issue 15, item 6) in a real headless Chromium: create a key with its secret shown once, use it, see its spend against its budget and per model, edit the budget, revoke it.

use std::path::PathBuf;

use super::{
    accounts::{ADMIN_KEY, Backend, accounts_config, chat_with},
    dashboard::{browser_check, browser_setup},
    support::{gateway, sim},
};

#[tokio::test]
async fn the_keys_page_creates_edits_and_revokes_keys_in_headless_chromium() {
    browser_setup();

    let sim = sim().await;
    let backend = Backend::sqlite().await;
    let gw = gateway(accounts_config(&sim, &backend)).await;
    // Spend by the config key, so the charts have more than one series.
    assert_eq!(chat_with(&gw, "gxy_alice", "qwen/qwen3.8-27b").await.0, 200);

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let screenshot = out_dir.join("keys.png");
    let _ = std::fs::remove_file(&screenshot);
    let report = browser_check(
        "keys_check.mjs",
        &[
            "--url".as_ref(),
            gw.url("").as_ref(),
            "--admin-key".as_ref(),
            ADMIN_KEY.as_ref(),
            "--screenshot".as_ref(),
            screenshot.as_os_str(),
        ],
    )
    .await;
    assert!(report["spent_usd"].as_f64() > Some(0.0), "{report}");
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot");
}
