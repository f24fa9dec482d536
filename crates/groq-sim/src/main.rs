//! `groq-sim`: the Groq simulator as a standalone server (flags only; the work is in the library).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use groq_sim::{SimBudget, SimConfig, Simulator, faults};

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
    /// Enforce Groq-style rate limits on chat completions: N requests per
    /// --budget-request-window, per API key (Authorization value) and model; needs
    /// --budget-tokens. Over budget: 429 (`requests` or `tokens`) or, for one request above the
    /// whole token limit, 413, as Groq answers; every chat completion then carries computed
    /// x-ratelimit-* headers. Windows are fixed: each starts with the first request of its key
    /// and model. A request costs the prompt + completion tokens its answer reports: 35 for the
    /// captured JSON answer, 99 for the captured stream (225 for a tool call), body bytes / 4 +
    /// N for --stream-chunks N.
    #[arg(long, value_name = "N", requires = "budget_tokens")]
    budget_requests: Option<u64>,
    /// Request window of the budget, a Go duration (`24h`, `1m`, `90s`, `1h30m`).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_window)]
    budget_request_window: Duration,
    /// With --budget-requests: N tokens (prompt + completion of the reported usage) per
    /// --budget-token-window, per API key and model.
    #[arg(long, value_name = "N", requires = "budget_requests")]
    budget_tokens: Option<u64>,
    /// Token window of the budget, a Go duration.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_window)]
    budget_token_window: Duration,
    /// HTTP/2 (h2c) streams one connection may have open at once (default: hyper's 200); a
    /// client over it waits for a stream to end. A benchmark holding thousands of streams over
    /// a few connections needs more.
    #[arg(long, value_name = "N")]
    h2_max_streams: Option<u32>,
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
        budget: match (args.budget_requests, args.budget_tokens) {
            (Some(requests), Some(tokens)) => Some(SimBudget {
                requests,
                request_window: args.budget_request_window,
                tokens,
                token_window: args.budget_token_window,
            }),
            _ => None,
        },
        h2_max_concurrent_streams: args.h2_max_streams,
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

/// A window: a positive Go duration such as `24h`, `1m30s`, `1.5s` or `500ms` (units `h`, `m`,
/// `s`, `ms`, `us`, `µs`, `ns`).
fn parse_window(text: &str) -> Result<Duration, String> {
    groq_wire::duration::parse(text)
        .filter(|window| !window.is_zero())
        .ok_or_else(|| format!("expected a positive Go duration such as 24h, 1m, 90s or 1h30m, got {text:?}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_as_go_durations() {
        let ok = [
            ("24h", 86_400_000),
            ("1m", 60_000),
            ("90s", 90_000),
            ("1h30m", 5_400_000),
            ("1.5s", 1_500),
            ("250ms", 250),
            ("2m59.56s", 179_560),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_window(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        assert_eq!(parse_window("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse_window(".5s"), Ok(Duration::from_millis(500)));
        for bad in ["", "0s", "10", "1d", "s", ".s", "1.2.3s", "-1s", "1s2"] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn budget_flags_go_together() {
        let args = Args::try_parse_from(["groq-sim", "--budget-requests", "3", "--budget-tokens", "100"]);
        let args = args.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.budget_request_window, Duration::from_secs(86_400));
        assert_eq!(args.budget_token_window, Duration::from_secs(60));
        assert!(Args::try_parse_from(["groq-sim", "--budget-requests", "3"]).is_err());
        assert!(Args::try_parse_from(["groq-sim", "--budget-tokens", "3"]).is_err());
    }
}
