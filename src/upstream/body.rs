//! The request body as it goes to Groq: validated bytes sent in one frame, or an upload streamed as the client sends it.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use sync_wrapper::SyncWrapper;

/// Any error a body may fail with; the upstream client keeps it as the source of its own, so
/// `classify` can find whose fault it was.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upload as the intake streams it (within its size and deadline). Only ever polled through
/// `&mut`, so the wrapper makes it `Sync` for free, as the forward path (borrowed across awaits)
/// needs.
pub type Streamed = SyncWrapper<UnsyncBoxBody<Bytes, BoxError>>;

/// One type for both shapes, so the pooled client takes either without boxing the common one.
pub enum RequestBody {
    /// Sent in one frame with its exact length; `None` once sent (or when there was none).
    Whole(Option<Bytes>),
    Streamed(Streamed),
}

impl RequestBody {
    pub fn whole(bytes: Bytes) -> Self {
        Self::Whole(Some(bytes).filter(|b| !b.is_empty()))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Streamed(body) => Pin::new(body.get_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Whole(bytes) => bytes.is_none(),
            Self::Streamed(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Whole(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            // Its length, when the client announced one, goes as the client's own header.
            Self::Streamed(_) => SizeHint::default(),
        }
    }
}
