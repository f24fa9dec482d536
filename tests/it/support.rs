//! Test harness: a real groxy and a real simulator on loopback ports, plus small client helpers.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use groq_sim::{Outcome, Recorded, SimConfig, Simulator};
use groxy::{
    Config,
    config::{HumanDuration, Secret},
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// The key groxy is configured with; the simulator refuses anything else.
pub const UPSTREAM_KEY: &str = "gsk_test_upstream_key_0123456789";

pub async fn sim() -> Simulator {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(mut config: SimConfig) -> Simulator {
    config.api_key = Some(UPSTREAM_KEY.to_owned());
    Simulator::start(config).await.expect("start simulator")
}

/// A config pointing at `sim`, with short timeouts so failure tests finish quickly.
pub fn config_for(sim: &Simulator) -> Config {
    let mut config = Config::default();
    config.upstream.url = sim.base_url();
    config.upstream.api_key = Some(Secret::new(UPSTREAM_KEY));
    config.upstream.first_byte_timeout = HumanDuration::secs(5);
    config.upstream.idle_timeout = HumanDuration::secs(5);
    config.server.drain_timeout = HumanDuration::secs(2);
    config
}

pub struct Gateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts the drain and returns the task that resolves when `run` returns.
    pub fn begin_shutdown(&mut self) -> JoinHandle<Result<(), String>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("gateway task")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

pub async fn gateway(config: Config) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(groxy::run(listener, config, async move {
        let _ = rx.await;
    }));
    let gateway = Gateway {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    };
    gateway.wait_for_catalog().await;
    gateway
}

impl Gateway {
    /// Waits (briefly) until the model catalogue is loaded, so model checks are deterministic.
    /// Returns quietly when the upstream cannot serve one: tests of that case need no catalogue.
    pub async fn wait_for_catalog(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(response) = client().get(self.url("/readyz")).send().await {
                if let Ok(body) = response.bytes().await {
                    let catalog = json(&body)["catalog"].clone();
                    if catalog == "fresh" || catalog == "off" {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A simulator and a gateway in front of it.
pub async fn pair() -> (Simulator, Gateway) {
    let sim = sim().await;
    let gw = gateway(config_for(&sim)).await;
    (sim, gw)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

pub const CHAT: &str = "/v1/chat/completions";

pub fn chat_body(stream: bool) -> String {
    format!(r#"{{"model":"openai/gpt-oss-20b","messages":[{{"role":"user","content":"Say hi"}}],"stream":{stream}}}"#)
}

/// Sends a chat request and returns the response.
pub async fn post_chat(gw: &Gateway, body: impl Into<String>) -> reqwest::Response {
    client()
        .post(gw.url(CHAT))
        .header("content-type", "application/json")
        .header("authorization", "Bearer client-key")
        .body(body.into())
        .send()
        .await
        .expect("send")
}

/// Reads a body to the end, noting when each chunk arrived and how many bytes had arrived then.
pub async fn read_timed(response: reqwest::Response) -> (Vec<u8>, Vec<(Instant, usize)>, Option<String>) {
    let mut stream = response.bytes_stream();
    let mut all = Vec::new();
    let mut arrivals = Vec::new();
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                all.extend_from_slice(&chunk);
                arrivals.push((Instant::now(), all.len()));
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    (all, arrivals, error)
}

/// Whether a recorded request is groxy's own model-catalogue fetch rather than a client's call.
fn is_catalog_fetch(r: &Recorded) -> bool {
    r.method == http::Method::GET && r.header("user-agent").is_some_and(|ua| ua.starts_with("groxy/"))
}

/// The requests clients caused, without groxy's background catalogue fetches.
pub fn calls(sim: &Simulator) -> Vec<Recorded> {
    sim.requests().into_iter().filter(|r| !is_catalog_fetch(r)).collect()
}

pub fn call_count(sim: &Simulator) -> usize {
    calls(sim).len()
}

pub async fn wait_for_calls(sim: &Simulator, n: usize, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if call_count(sim) >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

pub fn last_request(sim: &Simulator) -> Recorded {
    calls(sim).pop().expect("the simulator received a request")
}

/// Waits until the simulator's last request has this kind of outcome; returns it with the time.
pub async fn wait_outcome(sim: &Simulator, want_gone: bool, within: Duration) -> Option<Outcome> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(r) = calls(sim).pop() {
            match r.outcome {
                Outcome::ClientGone { .. } if want_gone => return Some(r.outcome),
                Outcome::Completed if !want_gone => return Some(r.outcome),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// Asserts an error body the OpenAI SDKs can read (Groq's own omit `param` and often `code`).
pub fn assert_sdk_error(bytes: &[u8]) -> serde_json::Value {
    let v = json(bytes);
    let e = v
        .get("error")
        .cloned()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].as_str().is_some(), "{v}");
    e
}

/// Asserts a gateway-made error: OpenAI-shaped with every key, and returns its `error` object.
pub fn assert_openai_error(bytes: &[u8]) -> serde_json::Value {
    let v = json(bytes);
    let e = v
        .get("error")
        .cloned()
        .unwrap_or_else(|| panic!("no error object: {v}"));
    for key in ["message", "type", "param", "code"] {
        assert!(e.get(key).is_some(), "error lacks {key}: {v}");
    }
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    e
}

/// Switches `config` to `auth.mode = "keys"` with these `(name, key)` pairs.
pub fn with_client_keys(config: &mut Config, keys: &[(&str, &str)]) {
    config.auth.mode = groxy::config::AuthMode::Keys;
    config.auth.keys = keys
        .iter()
        .map(|(name, key)| groxy::config::ClientKeyConfig {
            name: (*name).to_owned(),
            sha256: groxy::hex(&groxy::sha256(key.as_bytes())),
        })
        .collect();
}

/// A chat request as client key `gxy_<who>`.
pub async fn chat_as(gw: &Gateway, who: &str, body: String) -> reqwest::Response {
    client()
        .post(gw.url(CHAT))
        .header("authorization", format!("Bearer gxy_{who}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// A response header as text, empty when absent.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Polls `check` until it yields a value or `within` passes: background work is waited for by
/// its effect, never by a fixed sleep.
pub async fn poll_until<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the gateway has no request in flight: every response body, and with it every
/// tap (settlements, accounting), has ended.
pub async fn wait_idle(gw: &Gateway) {
    let idle = poll_until(Duration::from_secs(5), || async {
        let text = client().get(gw.url("/metrics")).send().await.ok()?.text().await.ok()?;
        // The scrape itself is in flight while it is answered.
        text.lines()
            .any(|line| line.trim() == "groxy_in_flight_requests 1")
            .then_some(())
    })
    .await;
    assert!(idle.is_some(), "the gateway never became idle");
}

/// The `/metrics` text of the groxy at `base` (`http://127.0.0.1:port`).
pub async fn metrics_text(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text")
}
