//! Serving the API on its listeners, with the limits a public endpoint
//! needs: a cap on connections in all and per client address (past either,
//! the client gets a 503 or a 429 at once and the connection is closed), a
//! deadline for each request head, which also closes a connection idle
//! between requests, and a pause rather than a spin when accepting fails.
//!
//! Written on hyper's connection API rather than `axum::serve`, which has
//! no limits and no timeouts to set.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request head, and how long a
/// connection may sit idle between requests.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long open connections get to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long to pause accepting after an error such as running out of file
/// descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What one listener allows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections held at once.
    pub connections: usize,
    /// Of which one client address may hold this many.
    pub per_client: Option<usize>,
    pub header_read_timeout: Duration,
}

/// The connections one listener holds, in all and per client address.
#[derive(Debug, Default)]
struct Open {
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection, given back when dropped.
struct Slot {
    open: Arc<Open>,
    client: Option<IpAddr>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Full {
    Listener,
    Client,
}

// === impl Open ===

impl Open {
    fn admit(self: &Arc<Self>, client: IpAddr, limits: &Limits) -> Result<Slot, Full> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= limits.connections {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Listener);
        }
        let Some(max) = limits.per_client else {
            return Ok(Slot {
                open: Arc::clone(self),
                client: None,
            });
        };
        let client = client.to_canonical();
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = per_client.entry(client).or_insert(0);
        if *held >= max {
            drop(per_client);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Client);
        }
        *held += 1;
        Ok(Slot {
            open: Arc::clone(self),
            client: Some(client),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(client) = self.client {
            let mut per_client = self
                .open
                .per_client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(held) = per_client.get_mut(&client) {
                *held -= 1;
                if *held == 0 {
                    per_client.remove(&client);
                }
            }
        }
        self.open.total.fetch_sub(1, Ordering::AcqRel);
    }
}

// === serving ===

/// Serves `router` on `listener` until `stop` is cancelled; then lets the
/// open connections finish their request (for up to a few seconds).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let open = Arc::new(Open::default());
    let mut connections = JoinSet::new();
    let mut warned_full = false;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if vdc_dataplane::is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(addr = ?listener.local_addr().ok(), "the API cannot accept connections, pausing: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let slot = match open.admit(peer.ip(), &limits) {
            Ok(slot) => {
                warned_full = false;
                slot
            }
            Err(full) => {
                if full == Full::Listener && !warned_full {
                    tracing::warn!(
                        limit = limits.connections,
                        "the API holds as many connections as it may: refusing more until some close"
                    );
                    warned_full = true;
                }
                refuse(&stream, full);
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let _slot = slot;
            serve_connection(stream, service, limits.header_read_timeout, stop).await;
        });
    }
    drop(listener);
    let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        connections.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    header_read_timeout: Duration,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    // Upgrades: the telemetry streams speak WebSocket too.
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!("API connection ended: {e}");
    }
}

/// Answers a connection past a limit and closes it, without waiting for
/// anything: the answer goes out if the socket takes it at once.
fn refuse(stream: &TcpStream, full: Full) {
    let (status, error) = match full {
        Full::Listener => (
            "503 Service Unavailable",
            "the API holds as many connections as it may: try again shortly",
        ),
        Full::Client => (
            "429 Too Many Requests",
            "too many connections from this address: close some and try again",
        ),
    };
    let body = format!("{{\"error\":\"{error}\"}}");
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(connections: usize, per_client: Option<usize>) -> Limits {
        Limits {
            connections,
            per_client,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }

    #[test]
    fn connections_are_admitted_within_both_limits_and_given_back() {
        let open = Arc::new(Open::default());
        let limits = limits(3, Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = open.admit(a, &limits).unwrap();
        let _second = open.admit(a, &limits).unwrap();
        assert_eq!(open.admit(a, &limits).err(), Some(Full::Client));
        let _third = open.admit(b, &limits).unwrap();
        assert_eq!(open.admit(b, &limits).err(), Some(Full::Listener));
        drop(first);
        let _again = open.admit(a, &limits).unwrap();
        assert_eq!(open.total.load(Ordering::Acquire), 3);
    }

    #[test]
    fn an_ipv4_client_over_ipv6_is_the_same_client() {
        let open = Arc::new(Open::default());
        let limits = limits(10, Some(1));
        let _v4 = open.admit("127.0.0.1".parse().unwrap(), &limits).unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(open.admit(mapped, &limits).err(), Some(Full::Client));
    }

    #[test]
    fn without_a_per_client_limit_only_the_total_counts() {
        let open = Arc::new(Open::default());
        let limits = limits(2, None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<Slot> = (0..2).map(|_| open.admit(a, &limits).unwrap()).collect();
        assert_eq!(open.admit(a, &limits).err(), Some(Full::Listener));
        drop(slots);
        assert_eq!(open.total.load(Ordering::Acquire), 0);
        assert!(open.per_client.lock().unwrap().is_empty());
    }
}
