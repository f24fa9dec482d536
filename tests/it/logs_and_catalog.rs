//! Issue 14, items 14 and 17: the access line tells how each request really ended, and passthrough mode says plainly that the catalogue is off.

use std::time::Duration;

use groq_sim::{Reply, Slicing, StreamEnd, fixtures};

use crate::{process::*, support::*};

/// groxy as a process with JSON logs at info, in front of `sim`.
async fn groxy_with_json_logs(sim: &groq_sim::Simulator, passthrough: bool) -> Running {
    let port = free_port();
    let mut command = groxy_command();
    command
        .arg("serve")
        .env("GROXY_LISTEN", format!("127.0.0.1:{port}"))
        .env("GROXY_UPSTREAM_URL", sim.base_url())
        .env("GROXY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    if passthrough {
        command.env("GROXY_AUTH_MODE", "passthrough");
    } else {
        command.env("GROQ_API_KEY", UPSTREAM_KEY);
    }
    Running::start(command, port).await
}

/// The access lines (JSON) logged so far.
fn access_lines(groxy: &Running) -> Vec<serde_json::Value> {
    groxy
        .output()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["target"] == "groxy::access")
        .collect()
}

async fn access_line_with(groxy: &Running, field: &str, value: &str) -> serde_json::Value {
    poll_until(Duration::from_secs(5), || async {
        access_lines(groxy).into_iter().find(|line| line[field] == value)
    })
    .await
    .unwrap_or_else(|| panic!("no access line with {field} = {value}:\n{}", groxy.output()))
}

#[tokio::test]
async fn a_stream_groq_cuts_is_logged_failed_and_a_client_that_leaves_early_is_logged_499() {
    let sim = sim().await;
    let groxy = groxy_with_json_logs(&sim, false).await;

    // Groq drops the connection mid-stream: the client gets an error event, the log says failed.
    sim.push(Reply::Stream {
        body: fixtures::stream("content").slice(..700),
        slicing: Slicing::default(),
        end: StreamEnd::DropConnection,
    });
    let cut = client()
        .post(format!("{}{CHAT}", groxy.base))
        .header("x-request-id", "cut-by-groq")
        .body(chat_body(true))
        .send()
        .await
        .expect("send");
    let text = cut.text().await.expect("body");
    assert!(text.contains("\"error\"") && !text.contains("[DONE]"), "{text}");
    let line = access_line_with(&groxy, "request_id", "cut-by-groq").await;
    assert_eq!(
        (line["status"].as_u64(), line["outcome"].as_str()),
        (Some(200), Some("failed")),
        "{line}"
    );

    // A non-streaming request whose client leaves before Groq answers: a line, and a metric.
    sim.push(Reply::Stall);
    let leaving = tokio::spawn({
        let url = format!("{}{CHAT}", groxy.base);
        async move {
            client()
                .post(url)
                .header("x-request-id", "left-early")
                .body(chat_body(false))
                .send()
                .await
        }
    });
    assert!(wait_for_calls(&sim, 2, Duration::from_secs(5)).await);
    leaving.abort();
    let line = access_line_with(&groxy, "request_id", "left-early").await;
    assert_eq!(
        (line["status"].as_u64(), line["outcome"].as_str()),
        (Some(499), Some("cancelled")),
        "{line}"
    );
    let metrics = metrics_text(&groxy.base).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("groxy_requests_total{") && l.contains("status=\"499\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn passthrough_without_an_upstream_key_says_the_catalogue_is_off_once() {
    let sim = sim().await;
    let groxy = groxy_with_json_logs(&sim, true).await;
    let ready = client()
        .get(format!("{}/readyz", groxy.base))
        .send()
        .await
        .expect("readyz");
    let ready = json(&ready.bytes().await.expect("body"));
    assert_eq!(ready["catalog"], "off", "{ready}");
    assert_eq!(ready["degraded"], serde_json::json!([]), "{ready}");
    // The old refresher retried every second or two with a warning each time.
    assert!(
        groxy
            .wait_for_output("the model catalogue is off", Duration::from_secs(5))
            .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let output = groxy.output();
    assert_eq!(
        output.matches("catalogue").count(),
        1,
        "said once, no warnings:\n{output}"
    );
    // Model names go to Groq, which decides.
    let unknown = client()
        .post(format!("{}{CHAT}", groxy.base))
        .header("authorization", format!("Bearer {UPSTREAM_KEY}"))
        .body(r#"{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}"#)
        .send()
        .await
        .expect("send");
    assert_ne!(unknown.status(), 404, "not refused locally");
    assert_eq!(call_count(&sim), 1, "Groq answered, not groxy");
    assert_eq!(last_request(&sim).json().expect("json")["model"], "no-such-model");
}
