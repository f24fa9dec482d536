//! What groxy tells its operator: Prometheus metrics, one access-log line per request, usage per client key, and the dashboard's figures.
//!
//! Everything is fed from one place per request: the [`Record`] the outermost middleware opens,
//! handlers fill in, and [`Observer::finish`] reads when the response body ends (or the client
//! leaves). Token usage arrives separately, from the relay's usage tap, because a coalesced
//! flight may outlive the client that started it.

mod access;
mod exchange;
mod groq_budget;
mod handles;
mod layer;
mod ledger;
mod metrics;
mod observer;
mod persist;
mod record;
mod report;
mod request_id;
mod stats;
mod trace;

pub use exchange::ExchangeTap;
pub use layer::observe_request;
pub use observer::{Gauges, Observer};
pub use persist::{Delta, Pending};
pub use record::{Record, RequestRecord};
pub use report::{stats_document, usage_document};
pub use trace::{GenAiRequest, inject, step_span, upstream_span};
