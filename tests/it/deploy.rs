//! `groxy health`, the container probe: it asks the port `serve` listens on, read from the same config file and environment, and fails fast on silence, refusal or a non-200 answer.

use std::{
    io::{Read, Write},
    net::TcpListener,
    process::{Command, Output},
    time::{Duration, Instant},
};

use crate::{
    process::{Running, free_port, groxy_command},
    support::*,
};

fn config_file(text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("groxy-deploy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("groxy-{}.toml", free_port()));
    std::fs::write(&path, text).expect("write");
    path
}

/// Runs `groxy health ARGS` with `env` in a blocking thread; its output and how long it took.
async fn health(env: &[(&str, String)], args: &[&str]) -> (Output, Duration) {
    let mut command = groxy_command();
    command.arg("health").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output().expect("run groxy health"))
        .await
        .expect("join");
    (output, started.elapsed())
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn serve(env: &[(&str, String)]) -> Command {
    let mut command = groxy_command();
    command.arg("serve");
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

#[tokio::test]
async fn health_asks_the_port_serve_listens_on_from_the_same_file_and_environment() {
    let sim = sim().await;
    let upstream = format!("{}/openai/v1", sim.base_url());
    // A: the listen address in a config file named by GROXY_CONFIG.
    let a_port = free_port();
    let file = config_file(&format!("[server]\nlisten = \"127.0.0.1:{a_port}\"\n"));
    let a_env = [
        ("GROQ_API_KEY", "gsk_test".to_owned()),
        ("GROXY_UPSTREAM_URL", upstream.clone()),
        ("GROXY_CONFIG", file.to_string_lossy().into_owned()),
    ];
    // B: as in the image, GROXY_LISTEN on every interface overrides the file.
    let b_port = free_port();
    let mut b_env = a_env.to_vec();
    b_env.push(("GROXY_LISTEN", format!("0.0.0.0:{b_port}")));
    b_env.push(("GROXY_ALLOW_UNAUTHENTICATED", "true".to_owned()));
    let a = Running::start(serve(&a_env), a_port).await;
    let b = Running::start(serve(&b_env), b_port).await;
    for (env, port) in [(&a_env[..], a_port), (&b_env[..], b_port)] {
        for path in ["/healthz", "/readyz"] {
            let (output, _) = health(env, &["--path", path]).await;
            let said = text(&output);
            assert!(output.status.success(), "{port}{path}: {said}");
            assert!(
                said.contains(&format!(
                    "healthy: http://127.0.0.1:{port}{path} answered \"HTTP/1.1 200 OK\""
                )),
                "{said}"
            );
        }
    }
    // The default path is /healthz; --listen is read as `serve --listen` reads it.
    let (output, _) = health(&a_env, &[]).await;
    assert!(
        output.status.success() && text(&output).contains("/healthz"),
        "{}",
        text(&output)
    );
    let (output, _) = health(&a_env, &["--listen", &format!("127.0.0.1:{b_port}")]).await;
    assert!(
        text(&output).contains(&format!(":{b_port}/healthz")),
        "{}",
        text(&output)
    );
    // Stopped: unhealthy.
    a.stop().await;
    let (output, _) = health(&a_env, &[]).await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("unhealthy"), "{}", text(&output));
    drop(b);
}

#[tokio::test]
async fn health_fails_within_its_timeout_on_silence_a_503_or_a_bad_config() {
    let key = ("GROQ_API_KEY", "gsk_test".to_owned());
    // A server that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let (output, took) = health(
        &[key.clone(), ("GROXY_LISTEN", format!("127.0.0.1:{silent_port}"))],
        &["--timeout-ms", "300"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(text(&output).contains("no answer within 300ms"), "{}", text(&output));
    assert!(took < Duration::from_secs(5), "bounded by the timeout: {took:?}");
    // A server that answers 503 (as /readyz does while draining).
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in busy.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let (output, _) = health(&[key.clone(), ("GROXY_LISTEN", format!("127.0.0.1:{busy_port}"))], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("503 Service Unavailable"), "{}", text(&output));
    // Nothing listening: refused at once.
    let (output, took) = health(
        &[key.clone(), ("GROXY_LISTEN", format!("127.0.0.1:{}", free_port()))],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("cannot connect"), "{}", text(&output));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A config `serve` would refuse: unhealthy, with the reason.
    let (output, _) = health(&[key, ("GROXY_LISTEN", "not-an-address".to_owned())], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("GROXY_LISTEN"), "{}", text(&output));
}
