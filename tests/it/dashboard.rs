//! Issue 9: the dashboard in a real headless Chromium, against a running groxy with traffic.

use std::{path::PathBuf, process::Command, time::Duration};

use groq_sim::{Reply, fixtures};
use groxy::{config::LimitSet, hex, sha256};

use crate::support::*;

const ALICE: &str = "gxy_alice_dashboard_key";
const BOB: &str = "gxy_bob_dashboard_key";
const ADMIN: &str = "dashboard_admin_key";
const MODEL: &str = "openai/gpt-oss-20b";

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Debian's chromium (installed with apt-get when missing) and playwright-core.
pub fn browser_setup() {
    let status = Command::new("bash")
        .arg(browser_dir().join("setup.sh"))
        .arg("all")
        .status()
        .expect("run tests/browser/setup.sh");
    assert!(status.success(), "tests/browser/setup.sh failed");
}

/// Runs the browser check `script` (tests/browser) with `args`: its last JSON line, which must
/// say `"ok": true`.
pub async fn browser_check(script: &str, args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let mut command = tokio::process::Command::new("node");
    command
        .current_dir(browser_dir())
        .arg(script)
        .args(args)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the browser check finished in time")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .expect("a JSON report line");
    assert_eq!(report["ok"], true, "{report}");
    report
}

async fn send(gw: &Gateway, key: &str, body: String, id: &str) -> u16 {
    client()
        .post(gw.url(CHAT))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header("x-request-id", id)
        .body(body)
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

#[tokio::test]
async fn dashboard_shows_the_traffic_in_headless_chromium() {
    browser_setup();

    let sim = sim().await;
    let mut config = config_for(&sim);
    with_client_keys(&mut config, &[("alice", ALICE), ("bob", BOB)]);
    config.admin.key_sha256 = Some(hex(&sha256(ADMIN.as_bytes())));
    config.auth.failures_per_minute = 50;
    config.rate_limits.keys.insert(
        "bob".to_owned(),
        LimitSet {
            requests_per_minute: Some(2),
            ..LimitSet::default()
        },
    );
    let gw = gateway(config).await;

    let plain = |n: usize| format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"hello {n}"}}]}}"#);
    let cached = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"same"}}],"temperature":0}}"#);
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = format!("dash-alice-{n}");
        assert_eq!(send(&gw, ALICE, plain(n), &id).await, 200);
        ids.push(id);
    }
    for n in 0..2 {
        let id = format!("dash-cache-{n}");
        assert_eq!(send(&gw, ALICE, cached.clone(), &id).await, 200);
        ids.push(id);
    }
    sim.push(Reply::stream(fixtures::stream("content")));
    let stream = format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"stream"}}],"stream":true,"stream_options":{{"include_usage":true}}}}"#
    );
    assert_eq!(send(&gw, ALICE, stream, "dash-stream").await, 200);
    ids.push("dash-stream".to_owned());
    for (n, expected) in [200, 200, 429].into_iter().enumerate() {
        let id = format!("dash-bob-{n}");
        assert_eq!(send(&gw, BOB, plain(10 + n), &id).await, expected);
        ids.push(id);
    }

    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out_dir).expect("dir");
    let expect = out_dir.join("expect.json");
    std::fs::write(
        &expect,
        serde_json::json!({
            "min_total_requests": ids.len(),
            "keys": ["alice", "bob"],
            "models": [MODEL],
            "recent_min_rows": ids.len(),
            "request_ids": ids,
            "statuses": [200, 429],
            "cache_hit": true,
        })
        .to_string(),
    )
    .expect("write expect.json");
    let screenshot = out_dir.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let phone = out_dir.join("dashboard-phone.png");
    browser_check(
        "dashboard_check.mjs",
        &[
            "--url".as_ref(),
            gw.url("").as_ref(),
            "--admin-key".as_ref(),
            ADMIN.as_ref(),
            "--expect".as_ref(),
            expect.as_os_str(),
            "--screenshot".as_ref(),
            screenshot.as_os_str(),
            "--phone-screenshot".as_ref(),
            phone.as_os_str(),
        ],
    )
    .await;
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
}
