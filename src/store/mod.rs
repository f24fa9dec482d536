//! The accounts store: keys made at run time and the usage ledger, in SQLite (a file under the data directory, or memory) or PostgreSQL, through one interface.
//!
//! Infrastructure: it knows rows, not requests. Nothing on the request path calls it: the key
//! table (`keyring`) polls a change counter and swaps its snapshot, the ledger writer
//! (`observe::persist`) writes batches from its own task, and the admin API and budgets read it
//! off the path. Every call is bounded by `database.timeout`; a call that cannot reach the
//! database marks it down (one warning) until one succeeds again (one info line).

mod keys;
mod migrate;
mod pool;
mod usage;

pub use keys::KeyRow;
pub use pool::{Backend, Store, StoreError, StoreState};
pub use usage::UsageRow;

#[cfg(test)]
mod tests;
