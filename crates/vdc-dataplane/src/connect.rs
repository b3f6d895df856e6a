//! Where sockets come from: [`Binder`] makes every listener socket and
//! [`Connector`] every upstream connection, so that both can later be made
//! inside an instance's network namespace without touching the proxies.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;

use crate::balance::{Backends, Lease, Tried};
use crate::error::ProxyError;
use crate::stats::Counters;

/// How long [`TcpConnector`] waits for a connect by default. Short, because
/// a connect that hangs is a sign the endpoint is gone, and the request can
/// be retried elsewhere.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

// === traits ===

/// Makes the listening socket for a link's address. The data plane sets it
/// non-blocking itself.
pub trait Binder: Send + Sync {
    fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener>;
}

/// Opens a connection to an endpoint. Given the whole endpoint (not just its
/// address) so an implementation can decide per instance where to connect
/// from, for example from inside the instance's network namespace.
pub trait Connector: Send + Sync + 'static {
    fn connect<'a>(&'a self, endpoint: &'a crate::Endpoint)
        -> BoxFuture<'a, io::Result<TcpStream>>;
}

// === types ===

/// Binds in the host's network namespace.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostBinder;

/// Connects from the host's network namespace, giving up after `timeout`.
#[derive(Clone, Copy, Debug)]
pub struct TcpConnector {
    pub timeout: Duration,
}

// === impls ===

impl Binder for HostBinder {
    fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        // std sets SO_REUSEADDR on Unix, so a restarted agent can take its
        // addresses back while old connections sit in TIME_WAIT.
        TcpListener::bind(addr)
    }
}

impl Default for TcpConnector {
    fn default() -> Self {
        TcpConnector {
            timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

impl Connector for TcpConnector {
    fn connect<'a>(
        &'a self,
        endpoint: &'a crate::Endpoint,
    ) -> BoxFuture<'a, io::Result<TcpStream>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, TcpStream::connect(endpoint.addr)).await {
                Ok(result) => result,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connect timed out after {:?}", self.timeout),
                )),
            }
        })
    }
}

/// Connects to one of `backends`, moving on to another endpoint (and ejecting
/// the failed one) when a connect fails; safe because nothing was sent yet.
/// Tries at most `attempts` endpoints.
pub(crate) async fn connect_any(
    backends: &Backends,
    connector: &dyn Connector,
    attempts: usize,
    counters: &Counters,
) -> Result<(Lease, TcpStream), ProxyError> {
    if !backends.wait_until_ready().await {
        return Err(ProxyError::NoBackend {
            target: backends.target().to_owned(),
        });
    }
    let mut tried = Tried::default();
    let mut last = None;
    while tried.len() < attempts {
        let Some(lease) = backends.pick(&tried) else {
            break;
        };
        if tried.len() > 0 {
            counters.retry();
        }
        tried.push(&lease);
        let attempt = Instant::now();
        match connect_one(&lease, connector).await {
            Ok(stream) => {
                // A connection's only latency sample: how long its connect
                // took. What flows over it afterwards is the client's.
                lease.observe(attempt.elapsed());
                return Ok((lease, stream));
            }
            Err(error) => {
                debug!(target_input = backends.target(), %error, "connect failed, trying another endpoint");
                last = Some(error);
            }
        }
    }
    Err(last.unwrap_or_else(|| ProxyError::NoBackend {
        target: backends.target().to_owned(),
    }))
}

/// Connects to the leased endpoint, recording the outcome in its health: a
/// success clears any ejection, a failure ejects it.
pub(crate) async fn connect_one(
    lease: &Lease,
    connector: &dyn Connector,
) -> Result<TcpStream, ProxyError> {
    match connector.connect(lease.endpoint()).await {
        Ok(stream) => {
            lease.connected();
            // Proxied traffic is already batched by the client; Nagle would
            // only add latency to small requests.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Err(source) => {
            lease.connect_failed();
            Err(ProxyError::Connect {
                endpoint: lease.endpoint().clone(),
                source,
            })
        }
    }
}
