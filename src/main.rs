//! The `groxy` command line: parse flags, load the config, hand over to `groxy::run`; and `health`, the container probe that needs no curl.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, Subcommand};
use groxy::{
    ConfigSource,
    config::{Config, env},
};

/// mimalloc rather than glibc's malloc: a tenth fewer instructions per request (jemalloc saves
/// about a sixteenth). None of the three gives a burst's memory back within seconds by itself
/// (measured with `bench/instructions --preload` and `bench/rss-burst`: bench/README.md), so
/// `groxy::memory` has each worker collect its heap once a second. Plain C, built with the C
/// compiler the image's build stage already has (aws-lc needs it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
                  GROXY_DATA_DIR      directory of the SQLite file that keeps keys and usage (same as --data-dir;\n                      default $XDG_DATA_HOME/groxy, else ~/.local/share/groxy)\n  \
                  GROXY_DATABASE_URL  postgres://... to keep keys and usage in PostgreSQL (several replicas)\n  \
                  GROXY_ADMIN_URL     the gateway `groxy keys create|list|revoke|rotate` talk to\n  \
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
        /// Directory of the SQLite file keeping keys and usage; overrides GROXY_DATA_DIR
        /// [default: $XDG_DATA_HOME/groxy, else ~/.local/share/groxy].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Manage client keys (for `auth.mode = "keys"`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Exit 0 if the gateway that `serve` would run with this config and environment answers
    /// `GET /healthz` (or --path) with 200, 1 otherwise: a container health check (Docker
    /// HEALTHCHECK, a Kubernetes exec probe) that needs no curl in the image. Pass the config file
    /// as GROXY_CONFIG, not `serve --config`, so that both read the same file.
    Health {
        /// TOML config file, as given to `serve`.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Listen address, as given to `serve --listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The path to ask: /healthz (alive) or /readyz (ready; 503 once a drain starts).
        #[arg(long, default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
        path: String,
        /// Longest wait for the connection, and again for the answer.
        #[arg(long, value_name = "MS", default_value_t = 2000)]
        timeout_ms: u64,
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
    /// Create a key in a running gateway (admin API); its secret is printed once.
    Create {
        #[command(flatten)]
        admin: AdminTarget,
        /// A name for the key's holder: shown in logs, metrics and limit messages.
        #[arg(long)]
        name: String,
        /// Dollars this key may spend per UTC day.
        #[arg(long)]
        daily_budget: Option<f64>,
        /// Dollars this key may spend per UTC month.
        #[arg(long)]
        monthly_budget: Option<f64>,
        /// Models this key may use, comma-separated (a trailing * matches a prefix); default all.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// When the key stops working: 2026-12-31, 2026-12-31T18:00:00Z or Unix seconds.
        #[arg(long)]
        expires: Option<String>,
        /// Requests per minute across models.
        #[arg(long)]
        rpm: Option<u64>,
        /// Requests per day across models.
        #[arg(long)]
        rpd: Option<u64>,
        /// Tokens per minute across models.
        #[arg(long)]
        tpm: Option<u64>,
        /// Tokens per day across models.
        #[arg(long)]
        tpd: Option<u64>,
    },
    /// List the keys of a running gateway (the config file's ones too, marked read-only).
    List {
        #[command(flatten)]
        admin: AdminTarget,
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: every replica refuses it within a second.
    Revoke {
        #[command(flatten)]
        admin: AdminTarget,
        /// The key's id (`key_...`, from `groxy keys list`).
        id: String,
    },
    /// Give a key a new secret (printed once); the old one stops working.
    Rotate {
        #[command(flatten)]
        admin: AdminTarget,
        id: String,
    },
}

/// Which gateway the `keys` commands talk to, and with what.
#[derive(clap::Args)]
struct AdminTarget {
    /// The gateway's base URL.
    #[arg(long, env = "GROXY_ADMIN_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin key (the key itself, as for GROXY_ADMIN_KEY).
    #[arg(long, env = "GROXY_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
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
        Command::Keys { command } => admin_keys(command),
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
        Command::Health {
            config,
            listen,
            path,
            timeout_ms,
        } => {
            let source = ConfigSource {
                path: config,
                vars,
                listen,
            };
            match source.load() {
                Ok(config) => health(config.server.listen, &path, Duration::from_millis(timeout_ms.max(1))),
                Err(errors) => {
                    eprintln!("unhealthy: config has {} problem(s):\n{errors}", errors.0.len());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            data_dir,
        } => {
            let mut vars = vars;
            if let Some(dir) = data_dir {
                // Through the environment map, so a reload reads it the same way.
                vars.insert(env::DATA_DIR.to_owned(), dir.to_string_lossy().into_owned());
            }
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

/// Where a local probe reaches a server listening on `listen`: an unspecified address (0.0.0.0,
/// `::`) accepts on loopback of its family, any other address only on itself.
fn probe_target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One `GET path` over a plain socket, bounded by `timeout` for the connection and again for
/// the answer: the probe must end on its own even when the server accepts and says nothing.
fn get_status(target: SocketAddr, path: &str, timeout: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("cannot connect: {e}"))?;
    let deadline = Instant::now() + timeout;
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.set_read_timeout(Some(timeout)))
        .map_err(|e| format!("cannot set a timeout: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: groxy-health\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 64];
    while !head.contains(&b'\n') && head.len() < 256 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer within {timeout:?}"));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("cannot set a timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no answer within {timeout:?}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.lines().next().unwrap_or_default().trim().to_owned();
    if status.is_empty() {
        return Err("the connection closed without an answer".to_owned());
    }
    Ok(status)
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the probe's verdict is its output (Docker keeps it in the container's health log)"
)]
fn health(listen: SocketAddr, path: &str, timeout: Duration) -> ExitCode {
    let target = probe_target(listen);
    match get_status(target, path, timeout) {
        Ok(status) if status.split_whitespace().nth(1) == Some("200") => {
            println!("healthy: http://{target}{path} answered {status:?}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            eprintln!("unhealthy: http://{target}{path} answered {status:?}");
            ExitCode::FAILURE
        }
        Err(reason) => {
            eprintln!("unhealthy: http://{target}{path}: {reason}");
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::print_stderr, reason = "start-up failures before logging exists")]
fn serve(config: Config, source: ConfigSource) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(groxy::memory::on_park)
        .build()
    {
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
        groxy::memory::spawn_collector();
        match groxy::run_with(listener, config, Some(source), shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("{error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The `keys` commands that talk to a running gateway's admin API.
#[expect(clippy::print_stdout, clippy::print_stderr, reason = "the command line's own output")]
fn admin_keys(command: KeysCommand) -> ExitCode {
    let (admin, method, path, body) = match command {
        KeysCommand::New { .. } => return ExitCode::FAILURE,
        KeysCommand::Create {
            admin,
            name,
            daily_budget,
            monthly_budget,
            models,
            expires,
            rpm,
            rpd,
            tpm,
            tpd,
        } => {
            let mut body = serde_json::json!({"name": name});
            let limits: serde_json::Map<String, serde_json::Value> = [
                ("requests_per_minute", rpm),
                ("requests_per_day", rpd),
                ("tokens_per_minute", tpm),
                ("tokens_per_day", tpd),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.into())))
            .collect();
            if !limits.is_empty() {
                body["limits"] = limits.into();
            }
            if let Some(v) = daily_budget {
                body["daily_budget_usd"] = v.into();
            }
            if let Some(v) = monthly_budget {
                body["monthly_budget_usd"] = v.into();
            }
            if !models.is_empty() {
                body["allowed_models"] = models.into();
            }
            if let Some(v) = expires {
                body["expires_at"] = v.into();
            }
            (admin, reqwest::Method::POST, "/admin/keys".to_owned(), Some(body))
        }
        KeysCommand::List { admin, json } => {
            let path = if json { "/admin/keys?json" } else { "/admin/keys" };
            (admin, reqwest::Method::GET, path.to_owned(), None)
        }
        KeysCommand::Revoke { admin, id } => (admin, reqwest::Method::DELETE, format!("/admin/keys/{id}"), None),
        KeysCommand::Rotate { admin, id } => (admin, reqwest::Method::POST, format!("/admin/keys/{id}/rotate"), None),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let url = format!("{}{}", admin.url.trim_end_matches('/'), path);
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build()?;
        // Writes say JSON even without a body (groxy refuses them otherwise: see the admin API).
        let mut request = client
            .request(method, &url)
            .bearer_auth(&admin.admin_key)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.bytes().await?))
    });
    let (status, bytes) = match answer {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("cannot reach groxy at {}: {error}", admin.url);
            return ExitCode::FAILURE;
        }
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        let message = value["error"]["message"].as_str().unwrap_or("no error message");
        eprintln!("groxy answered {status}: {message}");
        return ExitCode::FAILURE;
    }
    if path.ends_with("?json") {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else if let Some(keys) = value["data"].as_array() {
        println!(
            "{:<22} {:<20} {:<8} {:<14} {:>12} {:>12}",
            "ID", "NAME", "STATUS", "PREFIX", "TODAY $", "MONTH $"
        );
        for key in keys {
            let text = |field: &str| key[field].as_str().unwrap_or("-").to_owned();
            let spent = |period: &str| {
                key["spend"][period]
                    .as_f64()
                    .map_or("-".to_owned(), |v| format!("{v:.6}"))
            };
            println!(
                "{:<22} {:<20} {:<8} {:<14} {:>12} {:>12}",
                text("id"),
                text("name"),
                text("status"),
                text("prefix"),
                spent("today_usd"),
                spent("month_usd")
            );
        }
    } else {
        let text = |field: &str| value[field].as_str().unwrap_or("-").to_owned();
        match value["key"].as_str() {
            Some(secret) => println!(
                "Key {} ({}), shown once (groxy keeps only its hash):\n\n  {secret}\n",
                text("id"),
                text("name")
            ),
            None => println!("Key {} ({}) is {}.", text("id"), text("name"), text("status")),
        }
    }
    ExitCode::SUCCESS
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
