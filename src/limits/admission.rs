//! An admitted request's hold on its scopes (a concurrency slot and reserved tokens), settled with the real usage when its answer ends.

use http::StatusCode;

use super::{memory::MemoryHold, redis_buckets::RedisHold};
use crate::{
    relay::tap::{Outcome, Report, Tap},
    wire::ratelimit::RateHeaders,
};

/// Where an admission's slot and reservation are held.
#[derive(Debug)]
pub(super) enum Hold {
    None,
    Memory(MemoryHold),
    Redis(RedisHold),
}

/// An admitted request's hold on its scopes: one concurrency slot and the reserved tokens.
/// Settle it with the real usage; dropping it unsettled gives everything back.
#[derive(Debug)]
pub struct Admission {
    hold: Hold,
    reserved: u64,
    pub headers: RateHeaders,
}

impl Admission {
    pub(super) fn new(hold: Hold, reserved: u64, headers: RateHeaders) -> Self {
        Self {
            hold,
            reserved,
            headers,
        }
    }

    /// An admission for a request no limit applies to.
    pub fn unlimited() -> Self {
        Self::new(Hold::None, 0, RateHeaders::default())
    }

    /// Settles with the tokens the response really used (`None`: nothing was used, e.g. Groq
    /// refused the request or the client went away before it was answered).
    pub fn settle(mut self, used: Option<u64>) {
        self.finish(used);
    }

    fn finish(&mut self, used: Option<u64>) {
        let refund = self.reserved as i64 - used.unwrap_or(0) as i64;
        match std::mem::replace(&mut self.hold, Hold::None) {
            Hold::None => {}
            Hold::Memory(hold) => hold.settle(refund),
            Hold::Redis(hold) => hold.settle(refund),
        }
    }
}

/// The admission rides along with the exchange it admitted and settles when that ends: a
/// complete success with the tokens Groq reported, anything else with nothing used.
impl Tap for Admission {
    fn end(&mut self, report: &Report) {
        let used = match (
            report.outcome,
            StatusCode::from_u16(report.status).map(|s| s.is_success()),
        ) {
            (Outcome::Complete, Ok(true)) => report.usage.map(|u| u.total_tokens),
            _ => None,
        };
        self.finish(used);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.finish(None);
    }
}
