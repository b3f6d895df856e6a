//! Idle keep-alive HTTP connections to one endpoint, reused across requests
//! and across every listener that leads to the endpoint.
//!
//! We keep our own small pool of `SendRequest`s instead of hyper-util's
//! legacy `Client` because the proxy must choose the endpoint itself (the
//! balancer does) and must get the request back when a connect fails, to
//! retry it on another endpoint. The legacy client consumes the request on a
//! connect error, which would make that retry impossible for streamed bodies.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::time::Instant;

/// Idle connections kept per endpoint; more than this are closed on return.
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than reused: the
/// upstream has likely given up on it already.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the proxy sends upstream: the client's streamed body, or nothing
/// (which can be rebuilt, so bodyless requests can be replayed).
pub(crate) type RequestBody = Either<Incoming, Empty<Bytes>>;
pub(crate) type Sender = SendRequest<RequestBody>;

// === types ===

#[derive(Default)]
pub(crate) struct IdlePool {
    /// Most recently returned last: reuse is LIFO, so warm connections are
    /// reused and cold ones age out. The lock is held only to push or pop.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

// === impl IdlePool ===

impl IdlePool {
    /// The most recently used connection that can take a request now.
    /// Connections not ready yet (their previous exchange is still winding
    /// down inside hyper) are left for a later request.
    pub(crate) fn checkout(&self) -> Option<Sender> {
        // One clock read per checkout, not one per idle connection: with
        // dozens idle, reading the clock for each showed in profiles.
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|i| i.is_usable(now));
        let position = idle.iter().rposition(|i| i.sender.is_ready())?;
        Some(idle.remove(position).sender)
    }

    /// Drops every idle connection, which closes them.
    pub(crate) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        // Closed outside the lock.
        drop(idle);
    }

    /// Returns a connection whose last response was read to the end.
    pub(crate) fn checkin(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            idle.retain(|i| i.is_usable(now));
            if idle.len() >= MAX_IDLE {
                return;
            }
        }
        idle.push(Idle { sender, since: now });
    }
}

impl Idle {
    fn is_usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < IDLE_TIMEOUT
    }
}
