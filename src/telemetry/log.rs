//! Log output: human-readable on a terminal, JSON lines otherwise; `RUST_LOG` wins over the config level; OpenTelemetry's spans beside it.
//!
//! Everything goes through one buffered stdout ([`LogWriter`]): a warning or an error is
//! flushed at once, routine lines (the access log) at the latest after [`FLUSH_EVERY`], so a
//! busy gateway makes one write per batch instead of one per request, on its own thread.

use std::{
    io::{BufWriter, IsTerminal, Stdout, Write},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::{EnvFilter, filter::Targets, fmt, fmt::MakeWriter, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// The longest a routine log line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

static STDOUT: OnceLock<Mutex<BufWriter<Stdout>>> = OnceLock::new();

/// Set once `init` installs the JSON format, so the access line can be written as JSON directly.
static JSON_OUTPUT: AtomicBool = AtomicBool::new(false);

/// Whether logs go out as JSON lines.
pub fn json_output() -> bool {
    JSON_OUTPUT.load(Ordering::Relaxed)
}

fn stdout() -> &'static Mutex<BufWriter<Stdout>> {
    STDOUT.get_or_init(|| Mutex::new(BufWriter::with_capacity(64 * 1024, std::io::stdout())))
}

/// Writes whatever is buffered. Called every [`FLUSH_EVERY`] and at exit.
pub fn flush() {
    if let Some(out) = STDOUT.get() {
        let _ = out.lock().unwrap_or_else(|p| p.into_inner()).flush();
    }
}

/// One log line's writer: appends to the shared buffer, flushing at once for WARN and ERROR.
pub struct LineWriter {
    pub urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = stdout().lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(buf)?;
        if self.urgent {
            out.flush()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// Installs the global subscriber once; later calls (tests starting several servers) are
/// no-ops. The caller flushes periodically ([`flush`]) and at exit.
///
/// With `otel`, spans of the `groxy::otel` target go to OpenTelemetry (and only those: the
/// log filter never sees them, and the OpenTelemetry layer sees nothing else). Without it no
/// layer wants them, so their call sites cost a cached "disabled" check.
pub fn init(config: &LogConfig, rust_log: Option<&str>, otel: Option<opentelemetry_sdk::trace::Tracer>) {
    let filter = rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let filter = match "groxy::otel=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let installed = match otel {
        // Without OpenTelemetry the filter stays global, as a plain log setup: a disabled call
        // site (every `groxy::otel` span, debug events) then costs one cached check, where a
        // per-layer filter would build and drop span data for every one.
        None => {
            let registry = tracing_subscriber::registry().with(filter);
            if json {
                registry.with(json_layer()).try_init()
            } else {
                registry.with(compact_layer()).try_init()
            }
        }
        Some(tracer) => {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_level(false)
                .with_tracked_inactivity(false)
                .with_filter(Targets::new().with_target(OTEL_TARGET, Level::TRACE));
            let registry = tracing_subscriber::registry().with(otel);
            if json {
                registry.with(json_layer().with_filter(filter)).try_init()
            } else {
                registry.with(compact_layer().with_filter(filter)).try_init()
            }
        }
    };
    if installed.is_ok() && json {
        JSON_OUTPUT.store(true, Ordering::Relaxed);
    }
}

fn json_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(LogWriter)
}

fn compact_layer<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fmt::layer()
        .compact()
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(LogWriter)
}

/// The target of the spans that go to OpenTelemetry (`observe::trace` and the step spans).
const OTEL_TARGET: &str = "groxy::otel";

/// Flushes the log buffer every [`FLUSH_EVERY`] until `stop`, then once more.
pub fn spawn_flusher(stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => flush(),
                () = stop.cancelled() => break,
            }
        }
        flush();
    });
}
