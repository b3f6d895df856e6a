//! The balancing set of one target input: its endpoints, their load, passive
//! health, and the power-of-two-choices pick.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use crate::pool::IdlePool;
use crate::stats::{EndpointMeasurement, EndpointMeasurements};

/// How long an endpoint is left out after its first failed connect. Each
/// further failure in a row doubles it, up to [`EJECT_MAX`].
const EJECT_BASE: Duration = Duration::from_secs(1);
const EJECT_MAX: Duration = Duration::from_secs(30);

/// The most endpoints one request may try; `Tried` keeps them inline.
pub(crate) const MAX_TRIES: usize = 8;

// === types ===

/// One ready instance of the target and the address its input listens on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The instance's name, such as `shop/web/0`.
    pub instance: String,
    pub addr: SocketAddr,
}

/// What one endpoint has done since it joined the set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStats {
    /// HTTP requests answered (any status) or TCP connections established.
    pub served: u64,
    /// HTTP requests outstanding or TCP connections open right now.
    pub active: u64,
    /// Failed connects plus HTTP exchanges that broke after connecting.
    pub failures: u64,
    /// Whether passive health currently leaves this endpoint out.
    pub ejected: bool,
}

/// The live balancing set for one target input. Cheap to clone; every
/// listener whose link leads to that input shares one, so load and health are
/// seen across all of them. Readers never lock: the set is swapped whole.
#[derive(Clone)]
pub struct Backends {
    inner: Arc<Inner>,
}

struct Inner {
    target: String,
    set: ArcSwap<Vec<Arc<EndpointState>>>,
    /// Serialises writers so two concurrent `set` calls cannot lose state.
    writer: Mutex<()>,
    /// Ejection deadlines are stored as milliseconds since this instant so
    /// they fit in an atomic.
    epoch: Instant,
}

/// Per-endpoint state that survives `set` as long as the endpoint stays.
pub(crate) struct EndpointState {
    endpoint: Endpoint,
    active: AtomicU64,
    served: AtomicU64,
    failures: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the epoch until which the endpoint is ejected.
    ejected_until: AtomicU64,
    /// Idle HTTP connections to this endpoint, shared by every listener.
    pub(crate) pool: IdlePool,
    /// Requests, responses and latencies of this endpoint.
    measurements: EndpointMeasurements,
}

/// A claim on an endpoint for one request or connection: counts as load
/// while it lives.
pub(crate) struct Lease {
    state: Arc<EndpointState>,
    epoch: Instant,
}

/// The endpoints one request has already tried, so a retry goes elsewhere.
/// Kept inline because it exists for every request.
#[derive(Default)]
pub(crate) struct Tried {
    ids: [usize; MAX_TRIES],
    len: usize,
}

// === impl Backends ===

impl Backends {
    /// An empty set for `target` (such as `shop/web.http`), which names the
    /// target in errors and logs.
    pub fn new(target: impl Into<String>) -> Self {
        Backends {
            inner: Arc::new(Inner {
                target: target.into(),
                set: ArcSwap::from_pointee(Vec::new()),
                writer: Mutex::new(()),
                epoch: Instant::now(),
            }),
        }
    }

    /// The target this set balances over.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Replaces the set. Endpoints that stay keep their counters, load and
    /// ejection; endpoints that are new (or come back after being removed)
    /// start fresh. Duplicates are ignored.
    pub fn set(&self, endpoints: Vec<Endpoint>) {
        let _writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old = self.inner.set.load_full();
        let mut next: Vec<Arc<EndpointState>> = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            if next.iter().any(|s| s.endpoint == endpoint) {
                continue;
            }
            let state = old
                .iter()
                .find(|s| s.endpoint == endpoint)
                .cloned()
                .unwrap_or_else(|| Arc::new(EndpointState::new(endpoint)));
            next.push(state);
        }
        self.inner.set.store(Arc::new(next));
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner
            .set
            .load()
            .iter()
            .map(|s| s.endpoint.clone())
            .collect()
    }

    pub fn endpoint_stats(&self) -> Vec<(Endpoint, EndpointStats)> {
        let now = self.now_ms();
        self.inner
            .set
            .load()
            .iter()
            .map(|s| (s.endpoint.clone(), s.stats(now)))
            .collect()
    }

    /// Each endpoint's measurements since the previous take: cumulative
    /// counters, and the latencies recorded since.
    pub fn take_measurements(&self) -> Vec<(Endpoint, EndpointMeasurement)> {
        self.inner
            .set
            .load()
            .iter()
            .map(|s| (s.endpoint.clone(), s.measurements.take()))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.set.load().is_empty()
    }

    pub fn len(&self) -> usize {
        self.inner.set.load().len()
    }

    /// Picks an endpoint not yet tried: two at random among those not
    /// ejected, keeping the one with less load. When every untried endpoint
    /// is ejected, ejection is ignored rather than failing: it is only a
    /// guess, and a guess that everything is down is worth testing.
    pub(crate) fn pick(&self, tried: &Tried) -> Option<Lease> {
        let set = self.inner.set.load();
        let now = self.now_ms();
        let chosen = p2c(&set, |s| !tried.contains(s) && !s.is_ejected(now))
            .or_else(|| p2c(&set, |s| !tried.contains(s)))?;
        Some(Lease::new(Arc::clone(chosen), self.inner.epoch))
    }

    fn now_ms(&self) -> u64 {
        millis_since(self.inner.epoch)
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("target", &self.inner.target)
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

/// Power of two choices over the endpoints `eligible` accepts. Both indices
/// are drawn at random and the first wins a tie, so ties are broken at
/// random too.
fn p2c(
    set: &[Arc<EndpointState>],
    eligible: impl Fn(&EndpointState) -> bool,
) -> Option<&Arc<EndpointState>> {
    let n = set.iter().filter(|s| eligible(s)).count();
    if n <= 1 {
        return set.iter().find(|s| eligible(s));
    }
    let mut rng = rand::thread_rng();
    let i = rng.gen_range(0..n);
    let mut j = rng.gen_range(0..n - 1);
    if j >= i {
        j += 1;
    }
    let mut candidates = set.iter().filter(|s| eligible(s));
    let lower = candidates.nth(i.min(j))?;
    let upper = candidates.nth(i.max(j) - i.min(j) - 1)?;
    let (first, second) = if i < j {
        (lower, upper)
    } else {
        (upper, lower)
    };
    if second.load() < first.load() {
        Some(second)
    } else {
        Some(first)
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// === impl EndpointState ===

impl EndpointState {
    fn new(endpoint: Endpoint) -> Self {
        EndpointState {
            endpoint,
            active: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            pool: IdlePool::default(),
            measurements: EndpointMeasurements::default(),
        }
    }

    fn load(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    fn is_ejected(&self, now_ms: u64) -> bool {
        now_ms < self.ejected_until.load(Ordering::Relaxed)
    }

    fn stats(&self, now_ms: u64) -> EndpointStats {
        EndpointStats {
            served: self.served.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            ejected: self.is_ejected(now_ms),
        }
    }
}

// === impl Lease ===

impl Lease {
    fn new(state: Arc<EndpointState>, epoch: Instant) -> Self {
        state.active.fetch_add(1, Ordering::Relaxed);
        Lease { state, epoch }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.state.endpoint
    }

    pub(crate) fn pool(&self) -> &IdlePool {
        &self.state.pool
    }

    pub(crate) fn measurements(&self) -> &EndpointMeasurements {
        &self.state.measurements
    }

    /// A connect succeeded: the endpoint is healthy again.
    pub(crate) fn connected(&self) {
        self.state.consecutive_failures.store(0, Ordering::Relaxed);
        self.state.ejected_until.store(0, Ordering::Relaxed);
    }

    /// The request was answered or the connection established.
    pub(crate) fn served(&self) {
        self.state.served.fetch_add(1, Ordering::Relaxed);
    }

    /// The exchange broke after connecting. Counted, but not ejected: the
    /// endpoint is reachable, and the request itself may be at fault.
    pub(crate) fn failed(&self) {
        self.state.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// A connect failed: eject the endpoint for a while, longer on each
    /// failure in a row. Returns how long.
    pub(crate) fn connect_failed(&self) -> Duration {
        self.state.failures.fetch_add(1, Ordering::Relaxed);
        let streak = self
            .state
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .min(16);
        let ejection = EJECT_BASE.saturating_mul(1 << streak).min(EJECT_MAX);
        let until = millis_since(self.epoch)
            .saturating_add(u64::try_from(ejection.as_millis()).unwrap_or(u64::MAX));
        self.state.ejected_until.fetch_max(until, Ordering::Relaxed);
        warn!(
            instance = %self.state.endpoint.instance,
            addr = %self.state.endpoint.addr,
            ?ejection,
            "endpoint ejected after a failed connect"
        );
        ejection
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Tried ===

impl Tried {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, lease: &Lease) {
        if self.len < MAX_TRIES {
            self.ids[self.len] = id(&lease.state);
            self.len += 1;
        }
    }

    fn contains(&self, state: &EndpointState) -> bool {
        self.ids[..self.len].contains(&id(state))
    }
}

/// Identity of an endpoint's state (its address in memory) for `Tried`. If
/// a removed endpoint's state is freed mid-request and its memory reused by a
/// new one, the new one is merely skipped by that request's retries.
fn id(state: &EndpointState) -> usize {
    std::ptr::from_ref(state) as usize
}

#[cfg(test)]
mod tests;
