//! Side taps: observers of the bytes the client receives (usage, cache, metrics), which can never change them.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

/// How a relayed exchange ended, told to every tap exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole body was relayed and the upstream ended it normally.
    Complete,
    /// The upstream failed (before or after the first byte), or groxy cut the response short.
    Failed,
    /// The client went away first.
    Cancelled,
}

/// An observer of one exchange. Methods take `&mut self` and run inline on the relay path, so
/// they must be cheap: anything slow belongs in a task the tap spawns.
pub trait Tap: Send + 'static {
    fn start(&mut self, _status: StatusCode, _headers: &HeaderMap) {}
    fn chunk(&mut self, _chunk: &Bytes) {}
    fn end(&mut self, _outcome: Outcome) {}
}

/// The taps of one exchange. Dropping it before `end` reports `Cancelled`: a dropped response
/// body or handler future means the client hung up.
#[derive(Default)]
pub struct Taps {
    taps: Vec<Box<dyn Tap>>,
    ended: bool,
}

impl Taps {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, tap: impl Tap) {
        self.taps.push(Box::new(tap));
    }

    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }

    pub fn start(&mut self, status: StatusCode, headers: &HeaderMap) {
        for tap in &mut self.taps {
            tap.start(status, headers);
        }
    }

    pub fn chunk(&mut self, chunk: &Bytes) {
        for tap in &mut self.taps {
            tap.chunk(chunk);
        }
    }

    pub fn end(&mut self, outcome: Outcome) {
        if self.ended {
            return;
        }
        self.ended = true;
        for tap in &mut self.taps {
            tap.end(outcome);
        }
    }
}

impl Drop for Taps {
    fn drop(&mut self) {
        self.end(Outcome::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Record(Arc<Mutex<Vec<String>>>);

    impl Tap for Record {
        fn chunk(&mut self, chunk: &Bytes) {
            self.0
                .lock()
                .map(|mut v| v.push(format!("chunk {}", chunk.len())))
                .unwrap_or(());
        }
        fn end(&mut self, outcome: Outcome) {
            self.0.lock().map(|mut v| v.push(format!("{outcome:?}"))).unwrap_or(());
        }
    }

    #[test]
    fn ends_once_and_reports_a_drop_as_cancelled() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut taps = Taps::new();
        taps.push(Record(log.clone()));
        taps.chunk(&Bytes::from_static(b"abc"));
        drop(taps);
        let mut taps = Taps::new();
        taps.push(Record(log.clone()));
        taps.end(Outcome::Complete);
        taps.end(Outcome::Failed);
        drop(taps);
        assert_eq!(*log.lock().expect("lock"), ["chunk 3", "Cancelled", "Complete"]);
    }
}
