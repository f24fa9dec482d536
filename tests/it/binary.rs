//! The built `groxy` binary: `--help`, `check-config` on good and bad files, and `serve` draining on SIGTERM.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use groq_sim::{Reply, Slicing, StreamEnd, fixtures};

use crate::support::*;

const CANARY: &str = "gsk_canary_binary_test_key_42";

fn groxy() -> Command {
    crate::process::groxy_command()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("groxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(text.as_bytes()).expect("write");
    path
}

#[test]
fn help_and_version() {
    let help = groxy().arg("--help").output().expect("run");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "serve",
        "check-config",
        "GROQ_API_KEY",
        "GROXY_LISTEN",
        "GROXY_UPSTREAM_URL",
        "GROXY_CONFIG",
        "RUST_LOG",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
    let version = groxy().arg("--version").output().expect("run");
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_config_accepts_the_example_and_never_prints_the_key() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/groxy.example.toml");
    let out = groxy()
        .args(["check-config", "--config", example])
        .env("GROQ_API_KEY", CANARY)
        .output()
        .expect("run");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("config OK"));
    assert!(!all.contains(CANARY), "the key was printed");

    // GROXY_CONFIG works as well as --config.
    let out = groxy()
        .arg("check-config")
        .env("GROXY_CONFIG", example)
        .env("GROQ_API_KEY", CANARY)
        .output()
        .expect("run");
    assert!(out.status.success());
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let bad = temp_file(
        "bad.toml",
        "typo_section = 1\n[server]\nlisten = \"127.0.0.1:8080\"\nheader_read_timeout = \"0s\"\nmax_conections = 5\n[upstream]\napi_key = \"gsk_canary_binary_test_key_42\"\nurl = \"not a url\"\n",
    );
    let out = groxy()
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "typo_section",
        "server.max_conections",
        "header_read_timeout",
        "upstream.url",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
    assert!(stderr.contains("4 problem"), "{stderr}");
    assert!(!stderr.contains(CANARY));

    let missing = groxy()
        .args(["check-config", "--config", "/nonexistent/groxy.toml"])
        .output()
        .expect("run");
    assert!(!missing.status.success());
    let out = groxy().arg("check-config").output().expect("run");
    assert!(!out.status.success(), "no key configured is an error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("GROQ_API_KEY"));
}

#[tokio::test]
async fn serve_drains_on_sigterm_with_a_stream_open_and_exits_zero() {
    let sim = sim().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = temp_file("drain.toml", "[server]\ndrain_timeout = \"1s\"\n");
    let mut child = groxy()
        .args(["serve", "--config"])
        .arg(&config)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn groxy");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut ready = false;
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(r) = client().get(format!("{base}/readyz")).send().await {
            ready = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "groxy became ready");

    // A stream that stays open: the drain deadline must end it with an error frame.
    let body = fixtures::stream("content").slice(..700);
    sim.push(Reply::Stream {
        body: body.clone(),
        slicing: Slicing::default(),
        end: StreamEnd::Stall,
    });
    let response = client()
        .post(format!("{base}{CHAT}"))
        .body(chat_body(true))
        .send()
        .await
        .expect("send");
    // The head of a stream arrives with its first bytes: the stream is in flight from here on.
    assert_eq!(response.status(), 200);
    let reader = tokio::spawn(read_timed(response));

    let sigterm = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (received, _, _) = reader.await.expect("join");
    assert!(String::from_utf8_lossy(&received).contains("server_shutting_down"));
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        (status, child)
    })
    .await
    .expect("join");
    let exit_after = sigterm.elapsed();
    let (status, mut child) = status;
    let status = status.expect("wait");
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(
        exit_after < Duration::from_millis(2500),
        "exited {exit_after:?} after SIGTERM (drain 1s)"
    );
    let mut logs = String::new();
    use std::io::Read;
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut logs);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut logs);
    }
    assert!(logs.contains("draining"), "the drain was logged: {logs}");
    assert!(!logs.contains(UPSTREAM_KEY), "the key reached the logs");
}

#[test]
fn keys_new_prints_a_key_and_config_that_check_config_accepts() {
    let out = groxy().args(["keys", "new", "--name", "alice"]).output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .split_whitespace()
        .find(|w| w.starts_with("gxy_"))
        .expect("a key")
        .to_owned();
    assert_eq!(key.len(), 68);
    let block = &text[text.find("[[auth.keys]]").expect("config block")..];
    assert!(!block.contains(&key), "the config holds the hash, not the key");
    let config = temp_file("keys.toml", &format!("[auth]\nmode = \"keys\"\n{block}"));
    let check = groxy()
        .args(["check-config", "--config"])
        .arg(&config)
        .env("GROQ_API_KEY", CANARY)
        .output()
        .expect("run");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // Two runs never print the same key.
    let again = groxy().args(["keys", "new", "--name", "alice"]).output().expect("run");
    assert!(!String::from_utf8_lossy(&again.stdout).contains(&key));
}

#[tokio::test]
async fn serve_with_redis_down_answers_and_logs_the_outage_once_without_its_password() {
    let sim = sim().await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    };
    let (port, dead) = (free(), free());
    let mut child = groxy()
        .arg("serve")
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env(
            "GROXY_REDIS_URL",
            format!("redis://:pw_canary_redis@127.0.0.1:{dead}/0"),
        )
        .env("GROXY_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn groxy");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let mut redis = String::new();
    while started.elapsed() < Duration::from_secs(10) && redis != "down" {
        if let Ok(r) = client().get(format!("{base}/readyz")).send().await {
            assert_eq!(r.status(), 200, "ready without Redis");
            redis = json(&r.bytes().await.expect("body"))["redis"]
                .as_str()
                .unwrap_or("")
                .to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(redis, "down");
    for _ in 0..3 {
        let response = client()
            .post(format!("{base}{CHAT}"))
            .body(chat_body(false))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let output = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut logs = String::new();
        use std::io::Read;
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut logs);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut logs);
        }
        logs
    })
    .await
    .expect("join");
    assert_eq!(
        output.matches("redis unavailable").count(),
        1,
        "one line per state change: {output}"
    );
    assert!(output.contains("redis://:***@127.0.0.1"), "{output}");
    assert!(
        !output.contains("pw_canary_redis"),
        "the Redis password reached the logs"
    );
}
