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

use vdc_telemetry::{Histogram, LatencyHistogram};

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
    /// That endpoint's own measurements, when it was reached.
    pub per_endpoint: Option<&'a EndpointMeasurements>,
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

/// Latency histograms of one listener or endpoint. Recording is a handful
/// of relaxed atomic adds: no lock, no allocation.
#[derive(Default)]
pub(crate) struct Latencies {
    /// HTTP: until the response head; TCP: how long the connection lasted.
    head: LatencyHistogram,
    /// HTTP: until the last byte of the response.
    total: LatencyHistogram,
    /// Until an upstream connection was ready.
    connect: LatencyHistogram,
}

/// What one listener measured since the previous take: its cumulative
/// counters and the latencies of the requests and connections that ended
/// since.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Measurement {
    pub stats: ListenerStats,
    /// HTTP: time to the response head. TCP: connection duration.
    pub head: Histogram,
    /// HTTP: time to the last byte (empty for TCP).
    pub total: Histogram,
    /// Time until an upstream connection was ready.
    pub connect: Histogram,
}

/// The same for one endpoint (a target instance), across every listener
/// leading to it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EndpointMeasurement {
    /// Requests and connections that reached the endpoint (cumulative).
    pub served: u64,
    /// Responses by status class 1xx..5xx (cumulative).
    pub responses: [u64; 5],
    /// Exchanges that broke after reaching it (cumulative).
    pub errors: u64,
    pub head: Histogram,
    pub total: Histogram,
}

/// The live form of [`EndpointMeasurement`], kept in each endpoint's state.
#[derive(Default)]
pub(crate) struct EndpointMeasurements {
    served: AtomicU64,
    responses: [AtomicU64; 5],
    errors: AtomicU64,
    latencies: Latencies,
}

/// The live counters behind [`ListenerStats`].
#[derive(Default)]
pub(crate) struct Counters {
    /// Whether latencies are recorded (counters always are).
    measure: bool,
    latencies: Latencies,
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

impl std::fmt::Debug for EndpointMeasurements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointMeasurements")
            .field("served", &self.served.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Latencies {
    fn record(&self, timings: &Timings) {
        if let Some(head) = timings.head {
            self.head.record(head);
            self.total.record(timings.total);
        } else {
            // A TCP connection: its whole life is its latency.
            self.head.record(timings.total);
        }
        if let Some(upstream) = timings.upstream {
            self.connect.record(upstream);
        }
    }
}

impl EndpointMeasurements {
    pub(crate) fn take(&self) -> EndpointMeasurement {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EndpointMeasurement {
            served: get(&self.served),
            responses: std::array::from_fn(|i| get(&self.responses[i])),
            errors: get(&self.errors),
            head: self.latencies.head.take(),
            total: self.latencies.total.take(),
        }
    }
}

impl Counters {
    pub(crate) fn new(measure: bool) -> Self {
        Counters {
            measure,
            ..Counters::default()
        }
    }

    /// The counters now and the latencies recorded since the last take.
    pub(crate) fn take(&self) -> Measurement {
        Measurement {
            stats: self.snapshot(),
            head: self.latencies.head.take(),
            total: self.latencies.total.take(),
            connect: self.latencies.connect.take(),
        }
    }

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
        if !self.measure {
            return;
        }
        // Only exchanges that got an answer have a latency worth comparing;
        // failures are counted above by cause.
        let answered =
            outcome.error.is_none() && outcome.status.is_none_or(|s| !(502..=504).contains(&s));
        if answered {
            self.latencies.record(&outcome.timings);
        }
        if let Some(endpoint) = outcome.per_endpoint {
            endpoint.served.fetch_add(1, Ordering::Relaxed);
            if let Some(status) = outcome.status {
                let class = usize::from(status / 100).clamp(1, 5) - 1;
                endpoint.responses[class].fetch_add(1, Ordering::Relaxed);
            }
            if outcome.error.is_some() {
                endpoint.errors.fetch_add(1, Ordering::Relaxed);
            } else {
                endpoint.latencies.record(&outcome.timings);
            }
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
