//! Validation's memory, measured on the real binary's resident set (`VmHWM`, the kernel's peak): a body of tiny objects costs a small multiple of its size, not 15-20 times it.
//!
//! Each test starts its own `groxy` process, since a peak cannot be reset.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use crate::{
    process::{Running, free_port, groxy_command},
    support::*,
};

/// A chat body just under the default 8 MiB limit, of `{"type":"text","text":""}` parts: the
/// smallest objects a user message may carry, so the most of them per byte. `extra` goes
/// first among the top-level fields.
fn parts_body(extra: &str) -> String {
    const PART: &str = r#"{"type":"text","text":""},"#;
    let head = format!(r#"{{{extra}"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":["#);
    let tail = r#"{"type":"text","text":"hi"}]}]}"#;
    let parts = (8 * 1024 * 1024 - 1024 - head.len() - tail.len()) / PART.len();
    let mut body = String::with_capacity(8 * 1024 * 1024);
    body.push_str(&head);
    for _ in 0..parts {
        body.push_str(PART);
    }
    body.push_str(tail);
    body
}

/// A field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kib * 1024
}

async fn start(sim: &groq_sim::Simulator, config: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("groxy-validation-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}.toml", free_port()));
    std::fs::File::create(&path)
        .and_then(|mut file| file.write_all(config.as_bytes()))
        .expect("config");
    let port = free_port();
    let mut command = groxy_command();
    command
        .args(["serve", "--config"])
        .arg(&path)
        .env("GROQ_API_KEY", UPSTREAM_KEY)
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url());
    let groxy = Running::start(command, port).await;
    // The catalogue loaded, so every model check runs; then one small request, so what is
    // made once (connection pools, the catalogue, the runtime's buffers) is in the baseline.
    let started = Instant::now();
    loop {
        let ready = client().get(groxy.url("/readyz")).send().await.expect("readyz");
        let ready = json(&ready.bytes().await.expect("body"));
        if ready["catalog"] == "fresh" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "catalogue never loaded: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = post(&groxy, chat_body(false)).await;
    assert_eq!(response.status(), 200);
    groxy
}

async fn post(groxy: &Running, body: String) -> reqwest::Response {
    client()
        .post(groxy.url(CHAT))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// Sends `copies` of `body` at once; every one must be forwarded. Returns the growth of the
/// process's peak resident set.
async fn peak_growth(groxy: &Running, body: &str, copies: usize) -> u64 {
    let before = status_bytes(groxy.pid, "VmHWM:");
    let requests = (0..copies).map(|_| post(groxy, body.to_owned()));
    for response in futures_util::future::join_all(requests).await {
        let status = response.status();
        assert_eq!(status, 200, "{}", response.text().await.unwrap_or_default());
    }
    status_bytes(groxy.pid, "VmHWM:").saturating_sub(before)
}

/// What a process grows by for reasons other than the bodies in flight: hyper's read buffers
/// (up to ~400 KiB a connection) and reqwest's to Groq, task and connection state, and the
/// allocator's slack (glibc's per-thread arenas round what they map up to 64 MiB heaps, but touch
/// only what is used; free lists within them are reused rather than returned). Measured here:
/// 26-33 MiB of growth for 32 MiB of bodies, the bodies themselves and little else; 57-64 MiB
/// when they are rewritten, which adds the body sent to Groq, a second copy.
const ALLOWANCE: u64 = 24 * 1024 * 1024;

/// Four bodies at once (4 x 8 MiB is under the default 64 MiB in flight, so they are validated
/// together): the peak must grow by at most three times their bytes, plus [`ALLOWANCE`].
async fn four_at_once_within_3x(extra: &str) {
    let sim = sim().await;
    let groxy = start(&sim, "").await;
    let body = parts_body(extra);
    assert!(
        body.len() > 8_000_000 && body.len() <= 8 * 1024 * 1024,
        "{}",
        body.len()
    );
    let growth = peak_growth(&groxy, &body, 4).await;
    let validated = 4 * body.len() as u64;
    let bound = 3 * validated + ALLOWANCE;
    eprintln!(
        "peak grew by {} MiB for {} MiB validated at once (bound {} MiB)",
        growth >> 20,
        validated >> 20,
        bound >> 20
    );
    assert!(
        growth <= bound,
        "peak RSS grew by {growth} bytes for {validated} bytes validated at once (bound {bound})"
    );
    assert_eq!(call_count(&sim), 5, "the warm-up and the four");
}

/// Before validation read bodies in place, this grew by 537-729 MB: a tree of 15-20 times each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_concurrent_8_mib_bodies_of_tiny_parts_peak_within_3x_the_bytes_validated() {
    four_at_once_within_3x("").await;
}

/// A body compatibility rewrites (`store` is stripped) is encoded again, from the client's bytes
/// as they are read: the new body, and no tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rewritten_bodies_of_tiny_parts_peak_within_3x_too() {
    four_at_once_within_3x(r#""store":true,"#).await;
}

/// With `max_bytes_in_flight` below one body, each body is validated alone (not refused, not
/// stuck), and the four still reach Groq byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_over_the_bytes_in_flight_take_turns_and_all_pass() {
    let sim = sim().await;
    let groxy = start(&sim, "[validation]\nmax_bytes_in_flight = \"1MiB\"\n").await;
    let body = parts_body("");
    let before = call_count(&sim);
    peak_growth(&groxy, &body, 4).await;
    assert_eq!(call_count(&sim), before + 4);
    assert!(
        calls(&sim)
            .iter()
            .rev()
            .take(4)
            .all(|call| call.body == body.as_bytes())
    );
}
