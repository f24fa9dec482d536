//! An admitted request's hold on its scopes (a concurrency slot and reserved tokens), settled with what the exchange consumed when its answer ends.

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
    /// The request's prompt estimate (a lower bound), charged when Groq started on a request
    /// but never said what it used.
    prompt: u64,
    /// The client asked for an event stream: Groq generates it token by token, and stops when
    /// the connection goes; a plain answer is generated whole before its first byte.
    stream: bool,
    /// The request left for Groq.
    sent: bool,
}

impl Admission {
    pub(super) fn new(hold: Hold, reserved: u64, headers: RateHeaders) -> Self {
        Self {
            hold,
            reserved,
            headers,
            prompt: 0,
            stream: false,
            sent: false,
        }
    }

    /// An admission for a request no limit applies to.
    pub fn unlimited() -> Self {
        Self::new(Hold::None, 0, RateHeaders::default())
    }

    /// What the settlement needs to know of the request to charge an exchange that ends
    /// without Groq's usage: its prompt estimate and whether it streams.
    pub fn for_request(mut self, prompt_estimate: u64, stream: bool) -> Self {
        self.prompt = prompt_estimate;
        self.stream = stream;
        self
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

    /// What an exchange consumed of the caller's tokens, whoever ended it: hanging up must
    /// not make tokens Groq spent free.
    ///
    /// - Groq reported usage (a complete answer, or a stream cut after its finish chunk): that.
    /// - Groq answered 2xx but no usage came: for a stream, the prompt estimate plus the
    ///   completion tokens counted from its deltas; for a plain (JSON) answer cut short, which
    ///   Groq generated whole before its first byte, the whole reservation (a complete one
    ///   without usage, which Groq's chat never sends, the prompt estimate).
    /// - Groq refused (an error status), or the exchange failed before Groq answered
    ///   (unreachable, timed out, groxy's Groq budget): nothing.
    /// - The client went away after the request left for Groq but before Groq answered: a
    ///   stream, the prompt estimate (Groq read the prompt; it stops generating when the
    ///   connection goes); a plain request, the whole reservation (Groq goes on to generate
    ///   the whole answer, whose size groxy never learns).
    fn consumed(&self, report: &Report) -> u64 {
        let Ok(status) = StatusCode::from_u16(report.status) else {
            let working = self.sent && report.outcome == Outcome::Cancelled;
            return match (working, self.stream) {
                (false, _) => 0,
                (true, true) => self.prompt,
                (true, false) => self.reserved,
            };
        };
        if !status.is_success() {
            return 0;
        }
        match (report.usage, report.streamed_tokens) {
            (Some(usage), _) => usage.total_tokens,
            (None, Some(streamed)) => self.prompt.saturating_add(streamed),
            (None, None) if report.outcome == Outcome::Complete => self.prompt,
            (None, None) => self.reserved,
        }
    }
}

/// The admission rides along with the exchange it admitted and settles when that ends, with
/// what the exchange consumed ([`Admission::consumed`]).
impl Tap for Admission {
    fn sent(&mut self, _upstream_key: Option<usize>) {
        self.sent = true;
    }

    /// The attempt Groq was working on is over (it refused or failed before answering): until
    /// the next one leaves, a hang-up costs nothing.
    fn retried(&mut self, _retry: &crate::relay::tap::Retry<'_>) {
        self.sent = false;
    }

    fn end(&mut self, report: &Report) {
        let used = self.consumed(report);
        self.finish(Some(used));
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.finish(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::usage::Usage;

    fn report(outcome: Outcome, status: u16, usage: Option<u64>, streamed: Option<u64>) -> Report {
        Report {
            outcome,
            status,
            usage: usage.map(|total| Usage {
                prompt_tokens: 0,
                completion_tokens: total,
                total_tokens: total,
                cached_tokens: 0,
            }),
            streamed_tokens: streamed,
            error_event: false,
            upstream_error: None,
        }
    }

    fn admission(stream: bool, sent: bool) -> Admission {
        let mut admission = Admission::new(Hold::None, 1_000, RateHeaders::default()).for_request(10, stream);
        admission.sent = sent;
        admission
    }

    #[test]
    fn charges_what_each_ending_consumed() {
        use Outcome::{Cancelled, Complete, Failed};
        let stream = admission(true, true);
        let plain = admission(false, true);
        // Groq's own count wins whenever it arrived.
        assert_eq!(stream.consumed(&report(Complete, 200, Some(99), Some(26))), 99);
        assert_eq!(stream.consumed(&report(Cancelled, 200, Some(99), Some(26))), 99);
        // A stream cut short: the prompt and what was streamed.
        assert_eq!(stream.consumed(&report(Cancelled, 200, None, Some(26))), 36);
        assert_eq!(stream.consumed(&report(Failed, 200, None, Some(26))), 36);
        assert_eq!(stream.consumed(&report(Complete, 200, None, Some(26))), 36);
        // A plain answer cut short was generated whole: the reservation.
        assert_eq!(plain.consumed(&report(Cancelled, 200, None, None)), 1_000);
        assert_eq!(plain.consumed(&report(Failed, 200, None, None)), 1_000);
        assert_eq!(plain.consumed(&report(Complete, 200, None, None)), 10);
        // Groq refused, or never answered: nothing.
        assert_eq!(plain.consumed(&report(Complete, 429, None, None)), 0);
        assert_eq!(stream.consumed(&report(Failed, 502, None, Some(0))), 0);
        assert_eq!(plain.consumed(&report(Failed, 0, None, None)), 0);
        // The client left while Groq was working on it.
        assert_eq!(stream.consumed(&report(Cancelled, 0, None, None)), 10);
        assert_eq!(plain.consumed(&report(Cancelled, 0, None, None)), 1_000);
        // ... or before the request ever left (e.g. queued for Groq's budget).
        assert_eq!(admission(false, false).consumed(&report(Cancelled, 0, None, None)), 0);
    }
}
