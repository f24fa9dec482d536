//! The accept loop: one hyper connection (HTTP/1.1 or h2c) per task, all cut at shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::routes;
use super::state::State;

/// Serves until `stop` is cancelled; then stops accepting and drops every open connection (a
/// stalled request is cut, not awaited: a simulator has nothing worth draining).
pub(crate) async fn run(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Usually EMFILE under load: back off briefly instead of spinning.
                tracing::warn!(error = %e, "groq-sim: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // SSE frames must leave as soon as they are written, not after Nagle's delay.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| routes::handle(state.clone(), req));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = stop.cancelled() => {}
            }
        });
    }
}
