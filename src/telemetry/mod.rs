//! What groxy emits for its operators, below the request path: log lines (human or JSON, one buffered writer) and OpenTelemetry spans (exported off the request path).

mod export;
mod log;

pub use export::{provider, span_counts, tracer};
pub use log::{LineWriter, flush, init, json_output, spawn_flusher};
