//! The outermost middleware: opens each request's record, stamps `x-request-id` on its response, and closes the record when the body ends.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{body::Body, extract::Request, middleware::Next, response::Response};
use http::StatusCode;
use tokio::time::Instant;

use super::{
    observer::{Head, Observer},
    record::{Record, RequestRecord},
    request_id,
};
use crate::{error::RefusedBy, relay::Outcome};

/// Axum middleware (with the observer as state). Runs outside the panic guard, so even a
/// handler's panic gets a request id and an access line.
pub async fn observe_request(
    axum::extract::State(observer): axum::extract::State<Arc<Observer>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id::accept(request.headers()).unwrap_or_else(request_id::generate);
    let record = Arc::new(Record::new(
        id,
        request.method().clone(),
        request.uri().path(),
        started,
        request.headers(),
    ));
    request.extensions_mut().insert(RequestRecord(Arc::clone(&record)));
    // Armed before the handler runs: a client that hangs up before the response head (hyper
    // then drops this future) still gets its access line and its metrics, as a 499.
    let mut finish = Finish {
        observer,
        record,
        head: None,
        done: false,
    };
    let span = finish.record.span.clone();
    let mut response = tracing::Instrument::instrument(next.run(request), span).await;
    let stream = crate::wire::headers::is_event_stream(response.headers());
    finish.head = Some(Head {
        status: response.status(),
        at: Instant::now(),
        refused_by: response.extensions().get::<RefusedBy>().map(|r| r.0),
        stream,
    });
    response
        .headers_mut()
        .insert(request_id::HEADER, request_id::header_value(&finish.record.id));
    if stream {
        finish.observer.metrics.active_streams.inc();
    }
    // An empty body may never be polled: finish now rather than on drop (which reads as a
    // client that left).
    if http_body::Body::is_end_stream(response.body()) {
        finish.done(Outcome::Complete);
        return response;
    }
    response.map(|body| Body::new(ObservedBody { inner: body, finish }))
}

/// nginx's "client closed request": the client left before any response head was sent.
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

struct Finish {
    observer: Arc<Observer>,
    record: Arc<Record>,
    /// `None` until the handler answered.
    head: Option<Head>,
    done: bool,
}

impl Finish {
    fn done(&mut self, end: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let head = self.head.take().unwrap_or_else(|| Head {
            status: CLIENT_CLOSED,
            at: Instant::now(),
            refused_by: None,
            stream: self.record.data().stream,
        });
        if head.stream && head.status != CLIENT_CLOSED {
            self.observer.metrics.active_streams.dec();
        }
        self.observer.finish(&self.record, &head, end);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.done(Outcome::Cancelled);
    }
}

struct ObservedBody {
    inner: Body,
    finish: Finish,
}

impl http_body::Body for ObservedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            // hyper stops polling a body that says it has ended after its last frame.
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.finish.done(Outcome::Complete),
            Poll::Ready(None) => this.finish.done(Outcome::Complete),
            Poll::Ready(Some(Err(_))) => this.finish.done(Outcome::Failed),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
