//! The TCP proxy: one client connection, one upstream connection, bytes
//! copied both ways until both sides are done.

use tokio::io::{AsyncRead, AsyncWrite};
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
    let (lease, mut upstream) = match connected {
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
