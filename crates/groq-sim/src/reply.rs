//! What the simulator answers to one chat completion, and how a stream is cut into slices.

use std::time::Duration;

use bytes::Bytes;

/// A scripted answer to the next chat completion request (see `Simulator::push`).
#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete response: status, extra headers, body (e.g. any error fixture, or a custom JSON).
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// An SSE stream: these exact bytes, cut into slices and paced as described.
    Stream {
        body: Bytes,
        slicing: Slicing,
        end: StreamEnd,
    },
    /// Accept the request, never send headers (until the client goes away).
    Stall,
    /// Close the connection without any response.
    Drop,
}

impl Reply {
    /// A JSON response with this status and body (and no other header).
    pub fn json(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    /// These SSE bytes, one slice per event, unpaced, ending normally.
    pub fn stream(body: impl Into<Bytes>) -> Reply {
        Reply::Stream {
            body: body.into(),
            slicing: Slicing::default(),
            end: StreamEnd::Complete,
        }
    }
}

/// How a stream body is cut and paced.
#[derive(Clone, Debug)]
pub struct Slicing {
    /// Before the first slice (headers are already out).
    pub first_delay: Duration,
    /// Between two slices.
    pub pause: Duration,
    pub mode: SliceMode,
}

impl Default for Slicing {
    /// Per frame, no delays.
    fn default() -> Self {
        Slicing {
            first_delay: Duration::ZERO,
            pause: Duration::ZERO,
            mode: SliceMode::PerFrame,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SliceMode {
    /// One slice per `\n\n`-terminated SSE event (a trailing unterminated rest is one more slice).
    PerFrame,
    /// Byte slices of random length in `[min, max]` (the last may be shorter), deterministic for
    /// the seed: they split UTF-8 characters and `\n\n`, as TCP may.
    Random { min: usize, max: usize, seed: u64 },
    /// The whole body in one slice.
    Whole,
}

/// What happens after the last byte of a `Reply::Stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// End the body normally.
    Complete,
    /// Abort the connection abruptly (the body errors, so hyper resets it instead of ending it).
    DropConnection,
    /// Keep the connection open, sending nothing, until the client goes away.
    Stall,
}

/// Cuts a body into slices lazily, so a long stream costs no up-front allocation.
pub(crate) struct Slicer {
    rest: Bytes,
    mode: SliceMode,
    rng: u64,
}

impl Slicer {
    pub(crate) fn new(body: Bytes, mode: SliceMode) -> Slicer {
        let rng = match &mode {
            // xorshift must not start at zero.
            SliceMode::Random { seed, .. } => seed ^ 0x9E37_79B9_7F4A_7C15,
            _ => 0,
        };
        Slicer {
            rest: body,
            mode,
            rng: rng.max(1),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// xorshift64*: tiny, deterministic, good enough to pick slice lengths.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Iterator for Slicer {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.rest.is_empty() {
            return None;
        }
        let len = match self.mode {
            SliceMode::Whole => self.rest.len(),
            SliceMode::PerFrame => event_end(&self.rest).unwrap_or(self.rest.len()),
            SliceMode::Random { min, max, .. } => {
                let min = min.max(1);
                let max = max.max(min);
                let span = (max - min + 1) as u64;
                min + (self.next_random() % span) as usize
            }
        };
        Some(self.rest.split_to(len.min(self.rest.len())))
    }
}

/// The length of the first `\n\n`-terminated event, terminator included.
fn event_end(body: &[u8]) -> Option<usize> {
    body.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

/// The first `n` events of an SSE body (all of it if it has fewer).
pub(crate) fn first_events(body: &Bytes, n: usize) -> Bytes {
    let mut end = 0;
    for _ in 0..n {
        match event_end(&body[end..]) {
            Some(len) => end += len,
            None => return body.clone(),
        }
    }
    body.slice(..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn cut(body: &Bytes, mode: SliceMode) -> Vec<Bytes> {
        Slicer::new(body.clone(), mode).collect()
    }

    fn joined(slices: &[Bytes]) -> Vec<u8> {
        slices.iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn slices_concatenate_to_the_original() {
        let body = fixtures::stream("content");
        for mode in [
            SliceMode::PerFrame,
            SliceMode::Whole,
            SliceMode::Random {
                min: 1,
                max: 64,
                seed: 7,
            },
            SliceMode::Random {
                min: 0,
                max: 0,
                seed: 0,
            },
        ] {
            let slices = cut(&body, mode.clone());
            assert_eq!(joined(&slices), body.to_vec(), "{mode:?}");
            assert!(slices.iter().all(|s| !s.is_empty()), "{mode:?}");
        }
        assert!(cut(&Bytes::new(), SliceMode::PerFrame).is_empty());
    }

    #[test]
    fn per_frame_yields_whole_events() {
        let body = fixtures::stream("content");
        let slices = cut(&body, SliceMode::PerFrame);
        assert_eq!(slices.len(), 22);
        assert!(slices.iter().all(|s| s.starts_with(b"data: ")));
        assert!(slices.iter().all(|s| s.ends_with(b"\n\n")));
        assert_eq!(slices.last().map(|s| &s[..]), Some(&b"data: [DONE]\n\n"[..]));
        let tail = cut(&Bytes::from_static(b"data: a\n\ndata: b"), SliceMode::PerFrame);
        assert_eq!(tail, vec![&b"data: a\n\n"[..], &b"data: b"[..]]);
    }

    #[test]
    fn random_slicing_is_deterministic_and_bounded() {
        let body = fixtures::stream("content");
        let mode = SliceMode::Random {
            min: 3,
            max: 17,
            seed: 42,
        };
        let a = cut(&body, mode.clone());
        assert_eq!(a, cut(&body, mode));
        let (last, most) = a.split_last().unwrap_or_else(|| panic!("no slices"));
        assert!(most.iter().all(|s| (3..=17).contains(&s.len())));
        assert!((1..=17).contains(&last.len()));
        let other = cut(
            &body,
            SliceMode::Random {
                min: 3,
                max: 17,
                seed: 43,
            },
        );
        assert_ne!(a, other);
        // Lengths vary: both bounds are reachable over a long body.
        let lens: Vec<usize> = most.iter().map(Bytes::len).collect();
        assert!(lens.iter().min() < lens.iter().max());
    }

    #[test]
    fn first_events_cuts_on_event_boundaries() {
        let body = fixtures::stream("content");
        let three = first_events(&body, 3);
        assert_eq!(cut(&three, SliceMode::PerFrame).len(), 3);
        assert!(three.ends_with(b"\n\n"));
        assert_eq!(first_events(&body, 0), Bytes::new());
        assert_eq!(first_events(&body, 1000), body);
    }
}
