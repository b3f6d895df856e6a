//! What a listener has done: atomic counters, their snapshot, the outcome of
//! each request or connection with its timings, and byte counting on the
//! client socket.
//!
//! Every request and every proxied connection ends in exactly one call to
//! [`Recorder::record`] with an [`Outcome`]. That call is the seam for
//! per-request measurements (latency histograms, telemetry streams): add a
//! recorder there, and the proxies need not change.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::balance::Endpoint;
use crate::error::ErrorClass;

// === types ===

/// A snapshot of one listener's counters since it was bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerStats {
    pub connections_total: u64,
    pub connections_active: u64,
    /// HTTP requests received (zero for TCP listeners).
    pub requests: u64,
    /// HTTP responses sent, by status class, including the 502, 503 and 504
    /// the data plane answers itself.
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Requests or connections that could not be served, by cause.
    pub errors_no_backend: u64,
    pub errors_refused: u64,
    pub errors_reset: u64,
    pub errors_timeout: u64,
    pub errors_other: u64,
    /// Extra endpoints tried after a failed connect (whether or not the
    /// retry then succeeded).
    pub retries: u64,
    /// Bytes read from clients and written to them, headers included.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Whether an outcome is for one HTTP request or one TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutcomeKind {
    Request,
    Connection,
}

/// How one request or proxied connection ended, produced once when it ends.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub kind: OutcomeKind,
    /// The endpoint that served it (or last failed it), if any.
    pub endpoint: Option<&'a Endpoint>,
    /// The status the client got (HTTP only).
    pub status: Option<u16>,
    /// Why it could not be served, if it could not.
    pub error: Option<ErrorClass>,
    pub timings: Timings,
}

/// Durations measured from when the request (or connection) arrived.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Timings {
    /// Until an upstream connection was ready (pooled or new).
    pub upstream: Option<Duration>,
    /// Until the response head arrived (HTTP only).
    pub head: Option<Duration>,
    /// Until the response body ended or the connection closed.
    pub total: Duration,
}

/// Receives every outcome. Must not block or allocate: it runs on the
/// traffic path.
pub(crate) trait Recorder: Send + Sync {
    fn record(&self, outcome: &Outcome<'_>);
}

/// The live counters behind [`ListenerStats`].
#[derive(Default)]
pub(crate) struct Counters {
    connections_total: AtomicU64,
    connections_active: AtomicU64,
    requests: AtomicU64,
    responses: [AtomicU64; 5],
    errors: [AtomicU64; ErrorClass::ALL.len()],
    retries: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Counts one open client connection while it lives.
pub(crate) struct OpenConnection(Arc<Counters>);

/// A client socket that counts the bytes through it.
pub(crate) struct CountingIo<T> {
    inner: T,
    counters: Arc<Counters>,
}

// === impl Counters ===

impl Counters {
    pub(crate) fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        self.connections_active.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ListenerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let error = |class: ErrorClass| get(&self.errors[class.index()]);
        ListenerStats {
            connections_total: get(&self.connections_total),
            connections_active: get(&self.connections_active),
            requests: get(&self.requests),
            responses_1xx: get(&self.responses[0]),
            responses_2xx: get(&self.responses[1]),
            responses_3xx: get(&self.responses[2]),
            responses_4xx: get(&self.responses[3]),
            responses_5xx: get(&self.responses[4]),
            errors_no_backend: error(ErrorClass::NoBackend),
            errors_refused: error(ErrorClass::Refused),
            errors_reset: error(ErrorClass::Reset),
            errors_timeout: error(ErrorClass::Timeout),
            errors_other: error(ErrorClass::Other),
            retries: get(&self.retries),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
        }
    }
}

impl Recorder for Counters {
    fn record(&self, outcome: &Outcome<'_>) {
        // An access log, off unless asked for; `enabled!` keeps the cost to
        // one check when it is off.
        if tracing::enabled!(tracing::Level::TRACE) {
            tracing::trace!(
                kind = ?outcome.kind,
                instance = outcome.endpoint.map(|e| e.instance.as_str()),
                status = outcome.status,
                error = ?outcome.error,
                upstream = ?outcome.timings.upstream,
                head = ?outcome.timings.head,
                total = ?outcome.timings.total,
                "done"
            );
        }
        if let Some(status) = outcome.status {
            let class = usize::from(status / 100).clamp(1, 5) - 1;
            self.responses[class].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(error) = outcome.error {
            self.errors[error.index()].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl CountingIo ===

impl<T> CountingIo<T> {
    pub(crate) fn new(inner: T, counters: Arc<Counters>) -> Self {
        CountingIo { inner, counters }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            this.counters
                .bytes_in
                .fetch_add(read as u64, Ordering::Relaxed);
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.count_written(&result);
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.count_written(&result);
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> CountingIo<T> {
    fn count_written(&self, result: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(written)) = result {
            self.counters
                .bytes_out
                .fetch_add(*written as u64, Ordering::Relaxed);
        }
    }
}
