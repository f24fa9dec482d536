//! The response body relayed from Groq: each upstream chunk passed on as read, with idle, total and drain limits.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, Stream, future::BoxFuture};
use tokio::time::{Instant, Sleep, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use super::deadlines::Deadlines;
use super::tap::{Outcome, Taps};
use crate::{
    error::GatewayError,
    wire::sse::{BoundaryTracker, EventCounter},
};

/// How a failure after the first byte is shown to the client.
#[derive(Debug)]
pub enum Framing {
    /// Server-sent events: one `data: {"error":...}` event, then the end without `[DONE]`.
    Sse(BoundaryTracker),
    /// The Responses API's named events: one `event: error` event numbered after the events
    /// relayed, then the end without `response.completed`.
    Named(BoundaryTracker, EventCounter),
    /// Anything else: the body is aborted, so the client sees a truncated transfer, never a
    /// short body that looks complete.
    Opaque,
}

/// Any error Groq's answer body may fail with.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

type Upstream = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + Send>>;

/// Why a stream and not a channel: polling the upstream only when hyper asks for the next chunk
/// is what gives backpressure (a slow reader slows the upstream read) with at most one chunk
/// held per stream.
pub struct RelayBody {
    upstream: Upstream,
    first: Option<Bytes>,
    framing: Framing,
    idle_limit: std::time::Duration,
    idle: Pin<Box<Sleep>>,
    total: Pin<Box<Sleep>>,
    started: Instant,
    abort: BoxFuture<'static, ()>,
    done: bool,
    /// Observers of what the client receives; dropped with the body, which reports a cancel.
    taps: Taps,
}

impl RelayBody {
    pub fn new(
        upstream: Upstream,
        first: Option<Bytes>,
        framing: Framing,
        deadlines: &Deadlines,
        started: Instant,
        abort: CancellationToken,
        taps: Taps,
    ) -> Self {
        let mut framing = framing;
        if let Some(first) = &first {
            framing.observe(first);
        }
        Self {
            upstream,
            first,
            framing,
            idle_limit: deadlines.idle,
            idle: Box::pin(sleep(deadlines.idle)),
            total: Box::pin(sleep_until(deadlines.total)),
            started,
            abort: abort.cancelled_owned().boxed(),
            done: false,
            taps,
        }
    }

    fn fail(&mut self, error: GatewayError) -> Poll<Option<Result<Bytes, RelayError>>> {
        self.done = true;
        self.taps.fail(&error);
        tracing::warn!(error = %error, "response from upstream ended abnormally");
        // A partial event is ended first, so it takes a number too.
        let frame = match &self.framing {
            Framing::Sse(tracker) => (tracker.at_boundary(), error.sse_frame()),
            Framing::Named(tracker, events) => {
                let partial = u64::from(!tracker.at_boundary());
                let frame = error.responses_error_event(events.events() + partial);
                (tracker.at_boundary(), frame)
            }
            Framing::Opaque => return Poll::Ready(Some(Err(RelayError(error)))),
        };
        match frame {
            (true, frame) => Poll::Ready(Some(Ok(frame))),
            (false, frame) => {
                let mut out = BytesMut::with_capacity(frame.len() + 2);
                out.extend_from_slice(b"\n\n");
                out.extend_from_slice(&frame);
                Poll::Ready(Some(Ok(out.freeze())))
            }
        }
    }
}

impl Framing {
    fn observe(&mut self, chunk: &[u8]) {
        match self {
            Framing::Sse(tracker) => tracker.observe(chunk),
            Framing::Named(tracker, events) => {
                tracker.observe(chunk);
                events.observe(chunk);
            }
            Framing::Opaque => {}
        }
    }
}

/// The body error hyper sees when an opaque response has to be cut short.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RelayError(pub GatewayError);

impl Stream for RelayBody {
    type Item = Result<Bytes, RelayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(first) = this.first.take() {
            this.taps.chunk(&first);
            return Poll::Ready(Some(Ok(first)));
        }
        if this.abort.poll_unpin(cx).is_ready() {
            return this.fail(GatewayError::ShuttingDown);
        }
        loop {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let deadline = Instant::now() + this.idle_limit;
                    this.idle.as_mut().reset(deadline);
                    this.framing.observe(&chunk);
                    this.taps.chunk(&chunk);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::debug!(error = %error, "upstream body error");
                    return this.fail(GatewayError::UpstreamTruncated);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.taps.end(Outcome::Complete);
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if this.idle.as_mut().poll(cx).is_ready() {
            let seconds = this.idle_limit.as_secs().max(1);
            return this.fail(GatewayError::UpstreamIdle { seconds });
        }
        if this.total.as_mut().poll(cx).is_ready() {
            let seconds = this
                .total
                .deadline()
                .saturating_duration_since(this.started)
                .as_secs()
                .max(1);
            return this.fail(GatewayError::TotalTimeout { seconds });
        }
        Poll::Pending
    }
}

/// Waits for the first non-empty chunk of a stream, so a failure before any byte can still be an
/// ordinary HTTP error (which the SDKs retry) instead of an error frame after a 200.
pub async fn first_chunk(
    upstream: &mut Upstream,
    deadlines: &Deadlines,
    started: Instant,
) -> Result<Option<Bytes>, GatewayError> {
    use futures_util::StreamExt;
    let read = async {
        loop {
            match upstream.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => return Ok(Some(chunk)),
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "upstream stream failed before its first byte");
                    return Err(GatewayError::UpstreamTruncated);
                }
                None => return Ok(None),
            }
        }
    };
    match tokio::time::timeout_at(deadlines.first_byte, read).await {
        Ok(result) => result,
        Err(_) => Err(GatewayError::UpstreamTimeout {
            seconds: deadlines.first_byte_seconds(started),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_responses_error_event_is_one_named_event_both_sdks_raise_on() {
        let frame = GatewayError::UpstreamTruncated.responses_error_event(7);
        let text = std::str::from_utf8(&frame).expect("utf8");
        let data = text
            .strip_prefix("event: error\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .expect("one event");
        let event: serde_json::Value = serde_json::from_str(data).expect("json");
        assert_eq!(event["type"], "error");
        assert_eq!(event["code"], "upstream_truncated");
        assert_eq!(event["sequence_number"], 7);
        assert_eq!(event["message"], event["error"]["message"]);
        assert_eq!(event["error"]["type"], "api_error");
    }
}
