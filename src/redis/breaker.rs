//! The circuit breaker in front of Redis: after failures, stop calling it on the request path and let a prober find out when it is back.
//!
//! Closed: every call goes to Redis. A call that times out opens the breaker at once (a paused
//! Redis would otherwise cost every request the whole timeout); other failures open it after
//! `failures_to_open` in a row. Open: no request calls Redis; the prober sends one PING when the
//! backoff has passed (that probe is the half-open state) and closes the breaker if it answers,
//! or doubles the backoff (up to the maximum) if not. A request that would have called Redis
//! brings the next probe forward to one first backoff after the last (`demand`): a replica with
//! traffic notices Redis is back within `probe_interval` whatever the backoff has grown to, and
//! the request itself never waits for that probe. On tokio's clock, so it is tested with
//! paused time.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    pub failures_to_open: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// `since`: when it opened or the last probe failed.
    Open {
        probe_at: Instant,
        backoff: Duration,
        since: Instant,
    },
}

/// A state change the caller must report (one log line, one metric increment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            state: State::Closed { failures: 0 },
        }
    }

    /// Whether a request may call Redis now.
    pub fn allows_calls(&self) -> bool {
        matches!(self.state, State::Closed { .. })
    }

    pub fn succeeded(&mut self) {
        if let State::Closed { failures } = &mut self.state {
            *failures = 0;
        }
    }

    /// A failed request-path call; `timed_out` opens at once.
    pub fn failed(&mut self, timed_out: bool, now: Instant) -> Option<Transition> {
        let State::Closed { failures } = &mut self.state else {
            return None;
        };
        *failures += 1;
        if timed_out || *failures >= self.settings.failures_to_open {
            self.open(self.settings.first_backoff, now);
            return Some(Transition::Opened);
        }
        None
    }

    fn open(&mut self, backoff: Duration, now: Instant) {
        self.state = State::Open {
            probe_at: now + backoff,
            backoff,
            since: now,
        };
    }

    /// A request wanted Redis while the breaker is open: the next probe comes no later than one
    /// first backoff after the last. True if that moved it, so the prober must be woken.
    pub fn demand(&mut self, now: Instant) -> bool {
        let State::Open { probe_at, since, .. } = &mut self.state else {
            return false;
        };
        let soonest = (*since + self.settings.first_backoff).max(now);
        if soonest < *probe_at {
            *probe_at = soonest;
            return true;
        }
        false
    }

    /// When the prober should send its next PING (`None` while closed).
    pub fn probe_at(&self) -> Option<Instant> {
        match self.state {
            State::Open { probe_at, .. } => Some(probe_at),
            State::Closed { .. } => None,
        }
    }

    pub fn probe_succeeded(&mut self) -> Option<Transition> {
        match self.state {
            State::Open { .. } => {
                self.state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            State::Closed { .. } => None,
        }
    }

    pub fn probe_failed(&mut self, now: Instant) {
        if let State::Open { backoff, .. } = self.state {
            let next = (backoff * 2).min(self.settings.max_backoff);
            self.open(next, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures_to_open: 3,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_open_after_n_in_a_row_and_a_success_resets_the_count() {
        let mut b = Breaker::new(settings());
        let now = Instant::now();
        assert_eq!(b.failed(false, now), None);
        assert_eq!(b.failed(false, now), None);
        b.succeeded();
        assert_eq!(b.failed(false, now), None);
        assert_eq!(b.failed(false, now), None);
        assert!(b.allows_calls());
        assert_eq!(b.failed(false, now), Some(Transition::Opened));
        assert!(!b.allows_calls());
        assert_eq!(b.failed(false, now), None, "one transition per state change");
        assert_eq!(b.probe_at(), Some(now + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn demand_brings_the_next_probe_to_one_first_backoff_after_the_last() {
        let mut b = Breaker::new(settings());
        assert!(!b.demand(Instant::now()), "closed: nothing to bring forward");
        b.failed(true, Instant::now());
        for _ in 0..4 {
            let at = b.probe_at().expect("open");
            tokio::time::advance(at.duration_since(Instant::now())).await;
            b.probe_failed(Instant::now());
        }
        let failed_at = Instant::now();
        assert_eq!(b.probe_at(), Some(failed_at + Duration::from_secs(10)), "backed off");
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(b.demand(Instant::now()));
        assert_eq!(b.probe_at(), Some(failed_at + Duration::from_secs(1)));
        assert!(!b.demand(Instant::now()), "already as soon as it may be");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.demand(Instant::now()), "already due");
        assert_eq!(b.probe_at(), Some(failed_at + Duration::from_secs(1)));
        b.probe_failed(Instant::now());
        assert_eq!(
            b.probe_at(),
            Some(Instant::now() + Duration::from_secs(10)),
            "idle: the backoff stays grown"
        );
        assert!(b.demand(Instant::now()));
        assert_eq!(
            b.probe_at(),
            Some(Instant::now() + Duration::from_secs(1)),
            "traffic: one first backoff"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_opens_at_once_and_probes_back_off_to_the_maximum() {
        let mut b = Breaker::new(settings());
        let now = Instant::now();
        assert_eq!(b.failed(true, now), Some(Transition::Opened));
        let mut waits = Vec::new();
        for _ in 0..6 {
            let at = b.probe_at().expect("open");
            waits.push(at.duration_since(Instant::now()).as_secs());
            tokio::time::advance(at.duration_since(Instant::now())).await;
            b.probe_failed(Instant::now());
        }
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.probe_succeeded(), Some(Transition::Closed));
        assert!(b.allows_calls());
        assert_eq!(b.probe_at(), None);
        assert_eq!(b.failed(true, Instant::now()), Some(Transition::Opened));
        assert_eq!(
            b.probe_at(),
            Some(Instant::now() + Duration::from_secs(1)),
            "the backoff starts afresh"
        );
    }
}
