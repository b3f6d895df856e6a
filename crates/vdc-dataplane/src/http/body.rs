//! The response body sent to clients: an endpoint's body streamed through
//! (finishing the request when it ends), or a short local error message.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::balance::Lease;
use crate::error::{ErrorClass, ProxyError};
use crate::listener::ListenerShared;
use crate::stats::{Outcome, OutcomeKind, Recorder, Timings};

use super::upstream::{Conn, UpstreamBody};

// === types ===

pub(crate) struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Upstream {
        body: UpstreamBody,
        /// Taken when the body ends, fails or is dropped.
        finish: Option<Finish>,
    },
    Local(Full<Bytes>),
}

/// Everything needed to close the books on one proxied request once its
/// response body is done. Holding the lease keeps the request counted as
/// outstanding on its endpoint until then.
pub(crate) struct Finish {
    pub(crate) shared: Arc<ListenerShared>,
    pub(crate) lease: Lease,
    pub(crate) status: StatusCode,
    pub(crate) started: Instant,
    pub(crate) upstream_ready: Duration,
    pub(crate) head: Duration,
}

enum End {
    /// Read to the end; the connection, if it can carry another request.
    Complete(Option<Conn>),
    /// The endpoint broke off the body.
    Failed(ErrorClass),
    /// The client went away first; the connection cannot be reused.
    Abandoned,
}

// === impl ResponseBody ===

impl ResponseBody {
    pub(crate) fn upstream(body: UpstreamBody, finish: Finish) -> Self {
        ResponseBody {
            kind: Kind::Upstream {
                body,
                finish: Some(finish),
            },
        }
    }

    /// A plain-text response the data plane gives itself, naming the cause.
    pub(crate) fn local(status: StatusCode, error: &ProxyError) -> Response<ResponseBody> {
        let body = ResponseBody {
            kind: Kind::Local(Full::new(Bytes::from(format!("{error}\n")))),
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Local(full) => Pin::new(full)
                .poll_frame(cx)
                .map_err(|never| match never {}),
            Kind::Upstream { body, finish } => {
                let frame = match ready!(body.poll_data(cx)) {
                    Ok(Some(data)) => {
                        // hyper may not poll again once the body says it
                        // has ended.
                        if body.is_end_stream() {
                            end(finish, End::Complete(body.take_reusable()));
                        }
                        Some(Ok(Frame::data(data)))
                    }
                    Ok(None) => {
                        end(finish, End::Complete(body.take_reusable()));
                        None
                    }
                    Err(error) => {
                        end(finish, End::Failed(error.class()));
                        Some(Err(error.into()))
                    }
                };
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(full) => full.is_end_stream(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(full) => full.size_hint(),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper drops a body without polling it when it is known to be
        // empty (a HEAD response, a 204), so an ended body counts as
        // complete here too.
        if let Kind::Upstream { body, finish } = &mut self.kind {
            let how = if body.is_end_stream() {
                End::Complete(body.take_reusable())
            } else {
                End::Abandoned
            };
            end(finish, how);
        }
    }
}

fn end(finish: &mut Option<Finish>, how: End) {
    if let Some(finish) = finish.take() {
        finish.end(how);
    }
}

// === impl Finish ===

impl Finish {
    fn end(self, how: End) {
        let now = Instant::now();
        let error = match how {
            End::Complete(conn) => {
                if let Some(conn) = conn {
                    self.lease.checkin(conn, now);
                }
                None
            }
            End::Failed(class) => {
                self.lease.failed(self.started.elapsed());
                Some(class)
            }
            End::Abandoned => None,
        };
        self.shared.counters.record(&Outcome {
            kind: OutcomeKind::Request,
            endpoint: Some(self.lease.endpoint()),
            per_endpoint: Some(self.lease.measurements()),
            status: Some(self.status.as_u16()),
            error,
            timings: Timings {
                upstream: Some(self.upstream_ready),
                head: Some(self.head),
                total: now.saturating_duration_since(self.started),
            },
        });
    }
}
