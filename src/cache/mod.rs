//! The response cache: which requests may be answered from it, its key, the store, and single-flight coalescing.
//!
//! A cacheable request (see [`Cache::key_for`]) is answered, in order: from a fresh stored entry
//! (`x-groxy-cache: HIT`, with `age`); by joining an identical request in flight (`COALESCED`);
//! or by starting a flight that others may join and whose complete, successful response is
//! stored (`MISS`). Everything else is relayed directly (`BYPASS`). Stored bodies are the exact
//! bytes Groq sent, chunk by chunk, so a stream replays byte-exact with its framing.
//!
//! With Redis, [`tier`] is a second, shared tier: memory first, then Redis, then Groq; a Redis
//! hit is also kept in memory. Coalescing stays per replica: joining another replica's flight
//! would mean waiting for its whole answer instead of streaming the live tail, and a lock held
//! by a replica that died would stall the others until it expired.

mod controls;
mod drive;
pub mod flight;
pub mod key;
mod policy;
mod replay;
pub mod store;
pub mod tier;
mod verified;

pub use controls::Controls;
pub use drive::{Served, join, serve_from_flight};
pub use policy::Cache;
pub use replay::{CacheStatus, replay};
