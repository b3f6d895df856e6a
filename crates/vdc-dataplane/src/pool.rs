//! Idle keep-alive HTTP connections to one endpoint, reused across requests
//! and across every listener that leads to the endpoint.
//!
//! The proxy chooses the endpoint itself (the balancer does) and drives
//! each exchange in the client connection's task (see `http::upstream`),
//! so the pool is just a stack of idle connections per endpoint.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::http::Conn;
use crate::workers;

/// Idle connections kept per endpoint; more than this are closed on return.
const MAX_IDLE: usize = 64;
/// An idle connection older than this is closed rather than reused: the
/// upstream has likely given up on it already.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

// === types ===

#[derive(Default)]
pub(crate) struct IdlePool {
    /// Most recently returned last: reuse is LIFO, so warm connections are
    /// reused and cold ones age out. The lock is held only to push or pop.
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

// === impl IdlePool ===

impl IdlePool {
    /// The most recently used connection that is still open, preferably one
    /// driven by the caller's worker (then the request and its response
    /// never leave the thread).
    ///
    /// `now` is the caller's recent reading of the clock: reading it here
    /// for each checkout (let alone each idle connection) showed in
    /// profiles.
    pub(crate) fn checkout(&self, now: Instant) -> Option<Conn> {
        let here = workers::current();
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
                // The oldest are at the front; stale ones are dropped.
                let stale = idle
                    .iter()
                    .position(|i| now.saturating_duration_since(i.since) < IDLE_TIMEOUT)
                    .unwrap_or(idle.len());
                idle.drain(..stale);
                let position = idle
                    .iter()
                    .rposition(|i| i.conn.worker() == here)
                    .or_else(|| idle.len().checked_sub(1))?;
                idle.remove(position)
            };
            // Checked outside the lock: it may cost a system call.
            if idle.conn.is_open() {
                return Some(idle.conn);
            }
        }
    }

    /// Drops every idle connection, which closes them.
    pub(crate) fn clear(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        // Closed outside the lock.
        drop(idle);
    }

    /// Returns a connection whose last response was read to the end, at
    /// `now`.
    pub(crate) fn checkin(&self, conn: Conn, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE {
            // The oldest goes: it is the likeliest to be closed upstream.
            idle.remove(0);
        }
        idle.push(Idle { conn, since: now });
    }
}
