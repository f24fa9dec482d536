//! `groq-sim`: the Groq simulator as a standalone server (flags only; the work is in `groxy::sim`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use groxy::sim::{SimConfig, Simulator, faults};

/// A fake Groq API speaking the real wire format, for trying groxy without a Groq key and for
/// benchmarks.
///
/// Serves POST /openai/v1/chat/completions (JSON, or SSE with "stream": true), GET
/// /openai/v1/models[/{id}], an echo for the audio, files, batches and responses routes, and
/// Groq's 404 for anything else (also under /v1/).
#[derive(Parser, Debug)]
#[command(name = "groq-sim", version, after_help = faults::HELP)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "GROQ_SIM_LISTEN", default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer KEY` (otherwise any or no key is accepted).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Delay before the first stream frame (headers go out at once).
    #[arg(long, value_name = "N", default_value_t = 0)]
    ttft_ms: u64,
    /// Pause between stream frames.
    #[arg(long, value_name = "N", default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Delay before a non-streaming response.
    #[arg(long, value_name = "N", default_value_t = 0)]
    json_latency_ms: u64,
    /// Synthesize streams of N content frames for the request's model (default: replay the
    /// captured stream-content.sse).
    #[arg(long, value_name = "N")]
    stream_chunks: Option<usize>,
    /// Answer non-streaming requests with this file's bytes (default: chat-completion.json).
    #[arg(long, value_name = "PATH")]
    json_body_file: Option<PathBuf>,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("groq-sim: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let json_body = match &args.json_body_file {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .into(),
        ),
        None => None,
    };
    let config = SimConfig {
        api_key: args.key.clone(),
        ttft: Duration::from_millis(args.ttft_ms),
        chunk_interval: Duration::from_millis(args.chunk_interval_ms),
        json_latency: Duration::from_millis(args.json_latency_ms),
        stream_chunks: args.stream_chunks,
        json_body,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let mut stdout = std::io::stdout();
        let _ = writeln!(stdout, "groq-sim listening on http://{addr}/openai/v1");
        let _ = stdout.flush();
        Simulator::serve(listener, config, shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))
    })
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
