//! A Groq simulator: Groq's wire format, realistic pacing, injected faults, and a log of requests.
//!
//! groxy's tests start it in-process on port 0 ([`Simulator::start`]) and script it with
//! [`Simulator::push`]; the `groq-sim` binary (`cargo run --release -p groq-sim`) and the
//! benchmark run [`Simulator::serve`] and pick faults per request with the `x-sim-reply` header
//! ([`faults::HELP`]).
//!
//! Routes (under `/openai/v1/` and `/v1/`): `POST chat/completions` (JSON, or SSE when the body
//! says `"stream": true`), `POST responses` (the Responses API: a `response` object, or named
//! events), `GET models`, `GET models/{id}`, an echo for the upload, file and batch routes, and
//! Groq's `unknown_url` 404 for everything else. A retired model (see [`retired`]) gets Groq's
//! `400 model_decommissioned`.
//!
//! With [`SimConfig::budget`] it also enforces and reports Groq's per-key, per-model rate limits
//! (429 and 413 answers, computed `x-ratelimit-*` headers; see [`SimBudget`]).
//!
//! Module map: `state` (config), `routes`, `chat` and `responses` (answers), `retired` (Groq's
//! deprecations), `budget` (rate limits), `reply`
//! (scripts and slicing), `frames` and `completion` (synthesized answers), `body` (pacing),
//! `coding` (the gzip and content-coding faults),
//! `record` (the log), `fixtures`, `faults`, `server` (accept loop).

mod body;
mod budget;
mod chat;
mod coding;
mod completion;
pub mod faults;
pub mod fixtures;
mod frames;
mod record;
mod reply;
mod responses;
pub mod retired;
mod routes;
mod server;
mod state;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use budget::SimBudget;
pub use record::{Outcome, RECORDED_BODY_CAP, Recorded};
pub use reply::{Reply, SliceMode, Slicing, StreamEnd};
pub use state::SimConfig;

use state::State;

/// A running in-process simulator. Dropping it (or [`Simulator::shutdown`]) stops the server
/// and cuts its open connections.
pub struct Simulator {
    state: Arc<State>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Simulator {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime, recording every request.
    pub async fn start(config: SimConfig) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(config, true));
        let stop = CancellationToken::new();
        tokio::spawn(server::run(listener, state.clone(), stop.clone()));
        Ok(Simulator { state, addr, stop })
    }

    /// Serves `listener` until `shutdown` resolves. Nothing is recorded: no one could read the
    /// log, and a benchmark would make it grow without bound.
    pub async fn serve(
        listener: TcpListener,
        config: SimConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::new(State::new(config, false));
        let stop = CancellationToken::new();
        let trigger = stop.clone();
        tokio::join!(server::run(listener, state, stop), async move {
            shutdown.await;
            trigger.cancel();
        });
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/openai/v1`, the shape of Groq's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/openai/v1", self.addr)
    }

    /// Queues a reply: each chat completion (and Responses API) request takes the oldest queued
    /// one, if any, instead of the default answer (other routes never consume it). A scripted
    /// stream is paced by its own `Slicing`, not by the config's `ttft`/`chunk_interval`; auth
    /// and JSON checks still come first.
    pub fn push(&self, reply: Reply) {
        self.state.push(reply);
    }

    /// Everything received so far, in order, each as it is now (outcomes update live). A request
    /// appears once its body has been read, or once its client gave up sending it.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.recorder.snapshot()
    }

    pub fn request_count(&self) -> usize {
        self.state.recorder.count()
    }

    /// How many 429 and 413 responses were sent so far, on any route and for any cause: budget
    /// refusals, but also scripted replies, `x-sim-reply: error:429-…` and oversized bodies.
    pub fn rate_limited_count(&self) -> usize {
        self.state.rate_limited_count()
    }

    /// Whether at least `n` requests arrived within `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.state.recorder.wait_for(n, timeout).await
    }

    pub fn shutdown(self) {}
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("addr", &self.addr).finish()
    }
}

#[cfg(test)]
mod tests;
