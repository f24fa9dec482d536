//! Response bodies: a single buffer or a paced sequence of slices, each recorded as it leaves.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::coding::GzipWriter;
use super::frames::SynthStream;
use super::record::Track;
use super::reply::{Slicer, StreamEnd};

/// Why a response ends without a proper HTTP ending. Both make hyper abort the connection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    /// `Reply::Drop` or `x-sim-reply: drop`: no response at all.
    #[error("groq-sim: connection dropped as scripted")]
    Dropped,
    /// `StreamEnd::DropConnection`: the body stops mid-way.
    #[error("groq-sim: stream aborted as scripted")]
    Aborted,
    /// The request body could not be read: the client went away while sending it.
    #[error("groq-sim: request body unreadable")]
    RequestBody,
}

/// Where the slices of a paced body come from.
pub(crate) enum Units {
    Slices(Slicer),
    Synth(SynthStream),
    /// `GET …/files/{id}/content`: `remaining` bytes of a deterministic pattern.
    Download {
        remaining: u64,
        offset: u64,
    },
    /// Another source's slices gzip-coded, one piece each; the trailer after the last if the
    /// body ends normally.
    Gzip {
        inner: Box<Units>,
        writer: GzipWriter,
        trailer: bool,
    },
}

const DOWNLOAD_CHUNK: usize = 64 * 1024;
const PATTERN_PERIOD: usize = 251;

/// Byte `i` of every download is `i % 251`: slicing this buffer at `offset % 251` yields any
/// 64 KiB window without copying.
static PATTERN: LazyLock<Bytes> = LazyLock::new(|| {
    (0..DOWNLOAD_CHUNK + PATTERN_PERIOD)
        .map(|i| (i % PATTERN_PERIOD) as u8)
        .collect::<Vec<u8>>()
        .into()
});

impl Units {
    fn is_empty(&self) -> bool {
        match self {
            Units::Slices(s) => s.is_empty(),
            Units::Synth(s) => s.is_empty(),
            Units::Download { remaining, .. } => *remaining == 0,
            Units::Gzip { inner, trailer, .. } => inner.is_empty() && !*trailer,
        }
    }

    fn next(&mut self) -> Option<Bytes> {
        match self {
            Units::Slices(s) => s.next(),
            Units::Synth(s) => s.next_frame(),
            Units::Download { remaining, offset } => {
                let len = (*remaining).min(DOWNLOAD_CHUNK as u64) as usize;
                if len == 0 {
                    return None;
                }
                let start = (*offset % PATTERN_PERIOD as u64) as usize;
                *remaining -= len as u64;
                *offset += len as u64;
                Some(PATTERN.slice(start..start + len))
            }
            Units::Gzip { inner, writer, trailer } => match inner.next() {
                Some(slice) => Some(writer.piece(&slice)),
                None if std::mem::take(trailer) => Some(writer.finish()),
                None => None,
            },
        }
    }
}

/// Slices released one at a time: `first_delay` before the first, `pause` between the others.
pub(crate) struct Paced {
    units: Units,
    first_delay: Duration,
    pause: Duration,
    started: bool,
    /// The deadline of the previous slice: the next one is due `pause` after it, not after
    /// `now`, so timer granularity does not accumulate into drift over a long stream (and a
    /// reader that fell behind gets the backlog at once, as from a real upstream).
    last_due: Option<Instant>,
    /// Allocated only when some delay is non-zero, and re-armed rather than re-allocated.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    end: StreamEnd,
    /// Polls left before a `DropConnection` errors: returning `Pending` once lets hyper flush
    /// the slices it has buffered, so the client sees every byte before the abort.
    flush_polls: u8,
    exhausted: bool,
}

impl Paced {
    pub(crate) fn new(units: Units, first_delay: Duration, pause: Duration, end: StreamEnd) -> Paced {
        Paced {
            units,
            first_delay,
            pause,
            started: false,
            last_due: None,
            sleep: None,
            armed: false,
            end,
            flush_polls: 2,
            exhausted: false,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, SimError>>> {
        if !self.exhausted && self.units.is_empty() {
            self.exhausted = true;
        }
        if self.exhausted {
            return match self.end {
                StreamEnd::Complete => Poll::Ready(None),
                StreamEnd::Stall => Poll::Pending,
                StreamEnd::DropConnection if self.flush_polls > 0 => {
                    self.flush_polls -= 1;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                StreamEnd::DropConnection => Poll::Ready(Some(Err(SimError::Aborted))),
            };
        }
        if !self.armed {
            let delay = if self.started { self.pause } else { self.first_delay };
            if !delay.is_zero() {
                let deadline = self.last_due.unwrap_or_else(Instant::now) + delay;
                self.last_due = Some(deadline);
                match &mut self.sleep {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.armed = true;
            }
        }
        if self.armed {
            if let Some(sleep) = &mut self.sleep {
                ready!(sleep.as_mut().poll(cx));
            }
            self.armed = false;
        }
        self.started = true;
        match self.units.next() {
            Some(bytes) => Poll::Ready(Some(Ok(bytes))),
            None => {
                self.exhausted = true;
                self.poll_next(cx)
            }
        }
    }
}

enum Kind {
    Once(Option<Bytes>),
    Paced(Paced),
}

/// The one body type of every simulator response. It owns the request's `Track`, so a response
/// hyper drops before its end is recorded as `ClientGone`.
pub(crate) struct SimBody {
    kind: Kind,
    /// Exact length when known, so hyper sends `content-length` instead of chunking.
    len: Option<u64>,
    track: Track,
}

impl SimBody {
    pub(crate) fn full(bytes: Bytes, mut track: Track) -> SimBody {
        if bytes.is_empty() {
            track.finish();
        }
        SimBody {
            len: Some(bytes.len() as u64),
            kind: Kind::Once((!bytes.is_empty()).then_some(bytes)),
            track,
        }
    }

    pub(crate) fn paced(paced: Paced, len: Option<u64>, track: Track) -> SimBody {
        SimBody {
            kind: Kind::Paced(paced),
            len,
            track,
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = SimError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, SimError>>> {
        let this = self.get_mut();
        let next = match &mut this.kind {
            Kind::Once(slot) => Poll::Ready(slot.take().map(Ok)),
            Kind::Paced(paced) => paced.poll_next(cx),
        };
        match ready!(next) {
            Some(Ok(bytes)) => {
                this.track.sent(&bytes);
                if matches!(this.kind, Kind::Once(None)) {
                    this.track.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Some(Err(e)) => {
                this.track.finish();
                Poll::Ready(Some(Err(e)))
            }
            None => {
                this.track.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.kind, Kind::Once(None))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::SliceMode;

    fn drain(mut units: Units) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = units.next() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn downloads_are_deterministic_across_chunks() {
        let total = 3 * DOWNLOAD_CHUNK as u64 + 17;
        let bytes = drain(Units::Download {
            remaining: total,
            offset: 0,
        });
        assert_eq!(bytes.len() as u64, total);
        assert!(bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    #[tokio::test(start_paused = true)]
    async fn paced_stream_waits_between_slices() {
        let body = crate::fixtures::stream("include-usage");
        let units = Units::Slices(Slicer::new(body.clone(), SliceMode::PerFrame));
        let mut paced = Paced::new(
            units,
            Duration::from_millis(100),
            Duration::from_millis(10),
            StreamEnd::Complete,
        );
        let start = Instant::now();
        let mut got = Vec::new();
        while let Some(item) = std::future::poll_fn(|cx| paced.poll_next(cx)).await {
            got.push((start.elapsed().as_millis(), item.unwrap_or_default()));
        }
        let times: Vec<u128> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![100, 110, 120, 130]);
        let joined: Vec<u8> = got.iter().flat_map(|(_, b)| b.to_vec()).collect();
        assert_eq!(joined, body.to_vec());
    }
}
