//! The `groxy` command line: parse flags, load the config, hand over to `groxy::run`. Nothing else lives here.

use std::{collections::HashMap, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use groxy::{
    ConfigSource,
    config::{Config, env},
};

#[derive(Parser)]
#[command(
    name = "groxy",
    version,
    about = "An OpenAI-compatible gateway for Groq",
    long_about = "An OpenAI-compatible gateway for Groq: point an OpenAI SDK's base_url at \
                  http://127.0.0.1:8080/v1 and groxy forwards to Groq with the team's key, \
                  relaying streams byte for byte.",
    after_help = "Environment (overrides the config file):\n  \
                  GROQ_API_KEY        upstream Groq key (required unless auth mode is passthrough)\n  \
                  GROQ_API_KEYS       more upstream keys, comma-separated (rotated by budget)\n  \
                  GROXY_AUTH_MODE     none | keys | passthrough\n  \
                  GROXY_ALLOW_UNAUTHENTICATED  true to allow auth mode none on a non-loopback address\n  \
                  GROXY_LISTEN        listen address, default 127.0.0.1:8080\n  \
                  GROXY_UPSTREAM_URL  default https://api.groq.com/openai/v1\n  \
                  GROXY_CONFIG        config file path (same as --config)\n  \
                  GROXY_LOG_FORMAT    auto | pretty | json\n  \
                  GROXY_ADMIN_KEY     admin key for /admin/* and /dashboard\n  \
                  GROXY_REDIS_URL     redis://[:password@]host:6379 to share limits and cache between replicas\n  \
                  GROXY_REDIS_REPLICAS  replicas sharing the limits (each keeps limit/replicas while Redis is down)\n  \
                  OTEL_EXPORTER_OTLP_ENDPOINT  OTLP/HTTP collector for traces, e.g. http://127.0.0.1:4318 (off when unset)\n  \
                  OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER(_ARG), OTEL_RESOURCE_ATTRIBUTES  as in every OpenTelemetry SDK\n  \
                  RUST_LOG            log filter, e.g. info or groxy=debug"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C, then drain. SIGHUP reloads the config file.
    Serve {
        /// TOML config file (see config/groxy.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address; overrides GROXY_LISTEN and the file.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Manage client keys (for `auth.mode = "keys"`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validate the configuration, print every problem found, exit non-zero if there is any.
    CheckConfig {
        /// TOML config file (see config/groxy.example.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh client key and the config lines that admit it. Only the key's SHA-256
    /// goes in the config, so the key itself is shown once, here.
    New {
        /// A name for the key's holder: shown in logs, metrics and limit messages.
        #[arg(long)]
        name: String,
    },
}

fn environment() -> HashMap<String, String> {
    // vars_os, not vars: a non-UTF-8 variable anywhere in the environment must not panic us.
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the command line's own output (keys, check-config, start-up failures before logging exists)"
)]
fn main() -> ExitCode {
    let cli = Cli::parse();
    let vars = environment();
    match cli.command {
        Command::Keys {
            command: KeysCommand::New { name },
        } => match groxy::new_key(&name) {
            Ok((key, config)) => {
                println!("Key for {name:?} (give it to them; groxy stores only its hash):\n\n  {key}\n");
                println!("Add to your groxy config:\n\n{config}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        },
        Command::CheckConfig { config } => match Config::load(config.as_deref(), &vars) {
            Ok(config) => {
                println!("config OK");
                println!("  listen:       {}", config.server.listen);
                println!("  upstream:     {}", config.upstream.url);
                println!("  upstream keys: {}", config.upstream_keys().len());
                println!("  auth mode:    {:?}", config.auth.mode);
                println!("  client keys:  {}", config.auth.keys.len());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("config has {} problem(s):\n{errors}", errors.0.len());
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, listen } => {
            let source = ConfigSource {
                path: config,
                vars,
                listen,
            };
            let config = match source.load() {
                Ok(config) => config,
                Err(errors) => {
                    eprintln!("config has {} problem(s):\n{errors}", errors.0.len());
                    return ExitCode::FAILURE;
                }
            };
            let telemetry = groxy::init_telemetry(&config, source.vars.get("RUST_LOG").map(String::as_str));
            let code = serve(config, source);
            drop(telemetry);
            groxy::flush_logs();
            code
        }
    }
}

#[expect(clippy::print_stderr, reason = "start-up failures before logging exists")]
fn serve(config: Config, source: ConfigSource) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("cannot listen on {} ({}): {error}", config.server.listen, env::LISTEN);
                return ExitCode::FAILURE;
            }
        };
        match groxy::run_with(listener, config, Some(source), shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves on the first SIGTERM (Docker, Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
