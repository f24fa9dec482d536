//! A request's reservation against its budgets, riding along with the exchange as a tap: settled with what the exchange really cost when it ends, or given back whole if dropped unsettled.

use std::sync::Arc;

use http::StatusCode;

use super::{
    spend::{Line, LocalSpend},
    spend_redis::SharedSpend,
};
use crate::{
    prices::{Price, PriceTable},
    relay::tap::{Outcome, Report, Retry, Tap},
};

/// Where a request's reservation is held, so its settlement goes to the same place.
pub(super) enum Held {
    Local(Arc<LocalSpend>),
    Redis(SharedSpend),
}

/// A request's reservation against its budgets; settled with the real cost when its answer
/// ends (a tap), or given back whole if dropped unsettled.
pub struct SpendHold {
    held: Option<Held>,
    lines: Vec<Line>,
    reserved: u64,
    price: Price,
    /// Where a fallback's price is looked up: the answer is charged at the model that gave it.
    prices: Option<Arc<PriceTable>>,
    /// The request's prompt estimate, charged when Groq started on it but never said.
    prompt: u64,
    stream: bool,
    sent: bool,
}

impl SpendHold {
    pub(super) fn new(held: Held, lines: Vec<Line>, reserved: u64, price: Price, prompt: u64, stream: bool) -> Self {
        Self {
            held: Some(held),
            lines,
            reserved,
            price,
            prices: None,
            prompt,
            stream,
            sent: false,
        }
    }

    /// Prices the answer of a fallback model from `table` rather than at the requested model's
    /// price (a fallback the table does not price keeps the requested model's).
    pub fn repriced_from(mut self, table: Arc<PriceTable>) -> Self {
        self.prices = Some(table);
        self
    }

    /// Settles with a cost known now (0 for an answer from the cache).
    pub fn settle(mut self, cost: u64) {
        self.finish(cost);
    }

    fn finish(&mut self, cost: u64) {
        let delta = i64::try_from(cost).unwrap_or(i64::MAX) - i64::try_from(self.reserved).unwrap_or(i64::MAX);
        match self.held.take() {
            None => {}
            Some(Held::Local(local)) => local.settle(&self.lines, delta),
            Some(Held::Redis(shared)) => shared.settle(std::mem::take(&mut self.lines), delta),
        }
    }

    /// What the exchange cost, whoever ended it (the same rules as the token limits').
    fn cost(&self, report: &Report) -> u64 {
        let Ok(status) = StatusCode::from_u16(report.status) else {
            return match (self.sent && report.outcome == Outcome::Cancelled, self.stream) {
                (false, _) => 0,
                (true, true) => self.price.cost(self.prompt, 0, 0),
                (true, false) => self.reserved,
            };
        };
        if !status.is_success() {
            return 0;
        }
        match (report.usage, report.streamed_tokens) {
            (Some(u), _) => self.price.cost(u.prompt_tokens, u.cached_tokens, u.completion_tokens),
            (None, Some(streamed)) => self.price.cost(self.prompt, 0, streamed),
            (None, None) if report.outcome == Outcome::Complete => self.price.cost(self.prompt, 0, 0),
            (None, None) => self.reserved,
        }
    }
}

impl Tap for SpendHold {
    fn retried(&mut self, retry: &Retry<'_>) {
        if let Some(price) = retry.model.zip(self.prices.as_ref()).and_then(|(m, t)| t.get(m)) {
            self.price = price;
        }
        // Groq dropped the attempt before answering: until the next one leaves, a hang-up costs nothing.
        self.sent = false;
    }

    fn sent(&mut self, _upstream_key: Option<usize>) {
        self.sent = true;
    }

    fn end(&mut self, report: &Report) {
        let cost = self.cost(report);
        self.finish(cost);
    }
}

impl Drop for SpendHold {
    fn drop(&mut self) {
        self.finish(0);
    }
}
