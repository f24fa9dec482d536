//! The bytes being validated at once, bounded (`validation.max_bytes_in_flight`): requests take their turn first come, first served.
//!
//! Validation costs a small multiple of its body (see `json`); bounding the bodies under
//! validation bounds that whatever the number of clients. The limit is read at each request, so
//! a reload applies to the next one. A body larger than the whole limit is validated alone
//! rather than never.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Gate {
    /// Held by the request at the head of the queue while it waits: tokio's mutex is fair, so
    /// requests get their bytes in the order they asked.
    turn: tokio::sync::Mutex<()>,
    in_flight: Mutex<u64>,
    freed: Notify,
}

/// Bytes held by one request's validation, given back on drop.
#[derive(Debug)]
pub struct Held<'g> {
    gate: &'g Gate,
    bytes: u64,
}

impl Gate {
    /// Waits until `bytes` fit under `limit` with what others hold (or nothing else is held).
    /// Cancel-safe: dropped while waiting, it holds nothing.
    pub async fn enter(&self, bytes: u64, limit: u64) -> Held<'_> {
        let _turn = self.turn.lock().await;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a release between the look and the wait wakes it.
            freed.as_mut().enable();
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                if *in_flight == 0 || in_flight.saturating_add(bytes) <= limit {
                    *in_flight += bytes;
                    return Held { gate: self, bytes };
                }
            }
            freed.await;
        }
    }

    /// Bytes under validation now.
    #[cfg(test)]
    pub fn in_flight(&self) -> u64 {
        *self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        {
            let mut in_flight = self.gate.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            *in_flight = in_flight.saturating_sub(self.bytes);
        }
        self.gate.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_bytes_in_order_and_a_large_one_goes_alone() {
        let gate = Arc::new(Gate::default());
        let first = gate.enter(60, 100).await;
        assert_eq!(gate.in_flight(), 60);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for (name, bytes) in [("second", 50u64), ("third", 10), ("huge", 500)] {
            let (gate, order) = (Arc::clone(&gate), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let held = gate.enter(bytes, 100).await;
                order.lock().unwrap().push((name, gate.in_flight()));
                tokio::time::sleep(Duration::from_millis(10)).await;
                drop(held);
            }));
            settle().await;
        }
        // "third" would fit now, but waits behind "second": first come, first served.
        assert!(order.lock().unwrap().is_empty());
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            [("second", 50), ("third", 60), ("huge", 500)],
            "the body larger than the limit waited until it was alone"
        );
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_holds_nothing() {
        let gate = Gate::default();
        let held = gate.enter(100, 100).await;
        let gave_up = tokio::time::timeout(Duration::from_secs(1), gate.enter(1, 100)).await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(gate.in_flight(), 0);
        let _next = tokio::time::timeout(Duration::from_secs(1), gate.enter(100, 100))
            .await
            .expect("the queue moved on");
    }
}
