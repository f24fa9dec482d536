//! The listener: accepting connections under a cap, hyper with a header-read deadline, and the graceful drain.
//!
//! Drain, step by step (SIGTERM or Ctrl-C, or the `shutdown` future in tests):
//! 1. `/readyz` turns 503 at once; responses on HTTP/1 carry `Connection: close`.
//! 2. The listener keeps accepting (a load balancer may still send a few requests while it
//!    notices), and everything is served normally.
//! 3. As soon as nothing is in flight, `run` returns. At `server.drain_timeout` the streams still
//!    open get one error frame and end; a moment later `run` returns regardless.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{config::ServerConfig, lifecycle::Lifecycle};

/// After the drain deadline, how long aborted streams get to flush their error frame.
const ABORT_GRACE: Duration = Duration::from_millis(500);

pub async fn serve(
    listener: TcpListener,
    router: Router,
    lifecycle: Arc<Lifecycle>,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout.0)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    let builder = Arc::new(builder);
    lifecycle.bodies().grow(config.max_body_bytes_in_flight.as_usize());
    let connections = Arc::new(Semaphore::new(config.max_connections));
    // Cancelled when `serve` returns so idle keep-alive connections do not outlive the server.
    let closed = CancellationToken::new();
    let _close_on_return = closed.clone().drop_guard();

    let drained = async {
        shutdown.await;
        tracing::info!(in_flight = lifecycle.in_flight(), "shutdown requested: draining");
        lifecycle.start_draining();
        let deadline = tokio::time::sleep(config.drain_timeout.0);
        tokio::pin!(deadline);
        tokio::select! {
            () = lifecycle.wait_idle() => {}
            () = &mut deadline => {
                tracing::warn!(in_flight = lifecycle.in_flight(), "drain deadline reached: ending open streams");
                lifecycle.abort_streams();
                let _ = tokio::time::timeout(ABORT_GRACE, lifecycle.wait_idle()).await;
            }
        }
    };
    tokio::pin!(drained);

    loop {
        let permit = tokio::select! {
            () = &mut drained => break,
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut drained => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept: back off briefly
                    // rather than spin, and keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let router = router.clone();
        let closed = closed.clone();
        let open = lifecycle.connection_opened();
        tokio::spawn(async move {
            let _open = open;
            let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(
                        router
                            .oneshot(request.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|never| match never {}),
                    )
                }
            });
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                result = connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                () = closed.cancelled() => {}
            }
            drop(permit);
        });
    }
    tracing::info!("stopped");
    Ok(())
}
