//! The TCP proxy: one client connection, one upstream connection, bytes
//! copied both ways until both sides are done.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use crate::connect::connect_any;
use crate::listener::{ListenerShared, ProxySpec};
use crate::stats::{Outcome, OutcomeKind, Recorder, Timings};

/// Per-direction copy buffer. Larger than tokio's 8 KiB default so bulk
/// transfers take fewer syscalls.
const COPY_BUFFER: usize = 64 * 1024;

/// Proxies `client` to one endpoint of `spec` until both directions are
/// closed. A half-close from either side is passed on to the other.
pub(crate) async fn serve<C>(shared: &ListenerShared, spec: &ProxySpec, mut client: C)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let connected = connect_any(
        &spec.backends,
        shared.config.connector.as_ref(),
        shared.config.connect_attempts,
        &shared.counters,
    )
    .await;
    let (lease, upstream) = match connected {
        Ok(connected) => connected,
        Err(error) => {
            debug!(listener = %shared.key, link = %spec.name, %error, "closing client connection");
            shared.counters.record(&Outcome {
                kind: OutcomeKind::Connection,
                endpoint: error.endpoint(),
                per_endpoint: None,
                status: None,
                error: Some(error.class()),
                timings: Timings {
                    total: started.elapsed(),
                    ..Timings::default()
                },
            });
            // Dropping the client socket closes it: the clearest signal a
            // TCP client can get that nobody is there.
            return;
        }
    };
    lease.served();
    let upstream_ready = started.elapsed();
    let mut upstream = Batched::new(upstream);
    let copied = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        COPY_BUFFER,
        COPY_BUFFER,
    )
    .await;
    if let Err(error) = &copied {
        // Either side may have reset; the connection is over either way and
        // neither the client nor the endpoint is to blame for certain, so it
        // is logged rather than counted as a failure.
        debug!(listener = %shared.key, link = %spec.name, instance = %lease.endpoint().instance, %error, "connection ended with an error");
    }
    shared.counters.record(&Outcome {
        kind: OutcomeKind::Connection,
        endpoint: Some(lease.endpoint()),
        per_endpoint: Some(lease.measurements()),
        status: None,
        error: None,
        timings: Timings {
            upstream: Some(upstream_ready),
            head: None,
            total: started.elapsed(),
        },
    });
}

/// A socket whose writes wait for one turn of the task queue: bytes read
/// from the client in one turn of the event loop are written upstream
/// together, so the endpoint (often on the same CPU) is woken once for the
/// lot rather than once per connection. See `http::upstream` for the same
/// on HTTP requests.
struct Batched<T> {
    inner: T,
    /// Whether this write has had its turn already.
    waited: bool,
}

impl<T> Batched<T> {
    fn new(inner: T) -> Self {
        Batched {
            inner,
            waited: false,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !this.waited {
            // To the back of the queue: the tasks woken with this one run
            // first.
            this.waited = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if written.is_ready() {
            this.waited = false;
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
