//! The balancing set of one target input: its endpoints, their load and
//! latency, passive health, the power-of-two-choices pick, and the endpoints
//! taken out of the set that still have requests in flight (draining).
//!
//! Load is peak-EWMA, the measure linkerd2-proxy and tower balance on: each
//! endpoint keeps a latency estimate that jumps up to any slower sample at
//! once and otherwise moves toward new samples, and decays toward zero, at a
//! rate set by the time since its last update rather than by the number of
//! samples. An endpoint's cost is that estimate times its outstanding
//! requests plus one, so a slow endpoint is avoided until it has been left
//! alone long enough to be worth trying again, and a fast one is not piled on
//! beyond what its speed justifies.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use crate::http::Conn;
use crate::pool::IdlePool;
use crate::stats::{EndpointMeasurement, EndpointMeasurements};

/// How long an endpoint is left out after its first failed connect. Each
/// further failure in a row doubles it, up to [`EJECT_MAX`].
const EJECT_BASE: Duration = Duration::from_secs(1);
const EJECT_MAX: Duration = Duration::from_secs(30);

/// The most endpoints one request may try; `Tried` keeps them inline.
pub(crate) const MAX_TRIES: usize = 8;

/// How fast a latency estimate forgets: a sample's weight falls to 1/e after
/// this long, whether or not other samples came in meanwhile. A slow sample
/// counts in full at once (the peak); only time brings the estimate down,
/// so a slow endpoint is left alone for a few multiples of this before it is
/// preferred again.
const DECAY: Duration = Duration::from_secs(5);

/// The least latency, in nanoseconds, an estimate counts for in the cost.
/// Without it, endpoints with no estimate at all (no sample anywhere in the
/// set yet) or with estimates decayed to nothing would all cost zero
/// whatever their outstanding load; with it, they are told apart by load.
/// Far below any real round trip, so it changes nothing otherwise.
const RTT_FLOOR_NANOS: f64 = 1_000.0;

/// The most a failed exchange counts for in the estimate, so a long stream
/// that breaks after minutes does not bar its endpoint for longer still.
const MAX_PENALTY: Duration = Duration::from_secs(30);

/// Costs closer than this share are a tie, settled by fewer requests in
/// flight and then at random: between equal instances the difference is
/// noise, and following it would pile serial traffic onto whichever
/// answered a little faster last time. A slow or busy instance costs
/// several times more and is never within the margin.
const TIE_MARGIN: f64 = 0.25;

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
    /// The peak-EWMA latency estimate, decayed to now, in microseconds:
    /// time to the response head (HTTP) or to connect (TCP).
    #[serde(default)]
    pub rtt_us: u64,
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
    /// Endpoints `set` took out while leases on them were still out: picks
    /// never see them, [`Backends::in_flight`] still counts them. Entries
    /// whose last lease has ended are pruned by `set` and `in_flight`. The
    /// lock also serialises writers, so two concurrent `set` calls cannot
    /// lose state; it is never taken on the traffic path.
    draining: Mutex<Vec<Arc<EndpointState>>>,
    /// Ejection deadlines and latency updates are stored as milliseconds
    /// since this instant so they fit in an atomic.
    epoch: Instant,
    /// Woken by every `set`, for connections waiting on an empty set.
    changed: tokio::sync::Notify,
    /// How long a request or connection waits for an endpoint while the
    /// set is empty.
    empty_wait: std::time::Duration,
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
    /// Latency estimate for the balancing cost.
    rtt: PeakEwma,
    /// Set once `set` has taken the endpoint out. A pick that loaded the
    /// set just before and leased this endpoint sees it and picks again.
    removed: AtomicBool,
    /// Idle HTTP connections to this endpoint, shared by every listener.
    pub(crate) pool: IdlePool,
    /// Requests, responses and latencies of this endpoint.
    measurements: EndpointMeasurements,
}

/// A peak-EWMA latency estimate: updated by every sample without a lock,
/// read (decayed to the present) on every pick without a store.
///
/// Two fields updated separately: a sample racing another may be lost, or
/// pair one's estimate with the other's time. Either costs one sample's
/// worth of accuracy, never a wrong order of magnitude, which is cheaper
/// than a lock on every request.
struct PeakEwma {
    /// The estimate in nanoseconds, as of `updated_ms`.
    nanos: AtomicU64,
    /// Milliseconds since the epoch of the last update.
    updated_ms: AtomicU64,
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

/// How long a connection or request waits for an endpoint when the target
/// has none (an instance restarting or moving): a short gap becomes
/// latency rather than an error.
pub const EMPTY_SET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

// === impl Backends ===

impl Backends {
    /// An empty set for `target` (such as `shop/web.http`), which names the
    /// target in errors and logs.
    pub fn new(target: impl Into<String>) -> Self {
        Self::with_empty_wait(target, EMPTY_SET_WAIT)
    }

    /// A set whose callers fail at once while it is empty: for a forwarder
    /// whose own caller (another node's data plane) retries elsewhere.
    pub fn fail_fast(target: impl Into<String>) -> Self {
        Self::with_empty_wait(target, std::time::Duration::ZERO)
    }

    fn with_empty_wait(target: impl Into<String>, empty_wait: std::time::Duration) -> Self {
        Backends {
            inner: Arc::new(Inner {
                target: target.into(),
                set: ArcSwap::from_pointee(Vec::new()),
                draining: Mutex::new(Vec::new()),
                epoch: Instant::now(),
                changed: tokio::sync::Notify::new(),
                empty_wait,
            }),
        }
    }

    /// Waits, for as long as this set lets callers wait, until it has an
    /// endpoint; true if it has one.
    pub(crate) async fn wait_until_ready(&self) -> bool {
        self.wait_for_endpoint(self.inner.empty_wait).await
    }

    /// The target this set balances over.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Replaces the set. Endpoints that stay keep their counters, load,
    /// latency and ejection; endpoints that are new (or come back after being
    /// removed) start fresh, with the mean latency estimate of the endpoints
    /// that stay (or, if none stays, of those there were): a new replica is
    /// treated as average, neither as free nor as slow. When none of those
    /// has an estimate yet, neither has the new one; until its first sample
    /// a pick counts it at the mean of those that do. Duplicates are
    /// ignored.
    ///
    /// Endpoints taken out are never picked again; their idle upstream
    /// connections are closed at once, and those still busy are closed as
    /// their requests end. While requests or connections on them are in
    /// flight, [`Backends::in_flight`] counts them.
    pub fn set(&self, endpoints: Vec<Endpoint>) {
        let mut draining = self
            .inner
            .draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = self.now_ms();
        let old = self.inner.set.load_full();
        let staying: Vec<&Arc<EndpointState>> = old
            .iter()
            .filter(|s| endpoints.contains(&s.endpoint))
            .collect();
        let mean = if staying.is_empty() {
            mean_rtt(old.iter(), now)
        } else {
            mean_rtt(staying.into_iter(), now)
        };
        let mut next: Vec<Arc<EndpointState>> = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            if next.iter().any(|s| s.endpoint == endpoint) {
                continue;
            }
            let state = old
                .iter()
                .find(|s| s.endpoint == endpoint)
                .cloned()
                .unwrap_or_else(|| Arc::new(EndpointState::new(endpoint, mean, now)));
            next.push(state);
        }
        self.inner.set.store(Arc::new(next));

        let current = self.inner.set.load();
        for state in old.iter() {
            if current.iter().any(|s| Arc::ptr_eq(s, state)) {
                continue;
            }
            // After the store, so that a pick which loaded the old set and
            // leased this endpoint either sees the flag and picks again, or
            // made its lease visible before the flag was set and is counted
            // below. Both sides use SeqCst for that.
            state.removed.store(true, Ordering::SeqCst);
            state.pool.clear();
            if state.active.load(Ordering::SeqCst) > 0 {
                draining.push(Arc::clone(state));
            }
        }
        draining.retain(|s| s.load() > 0);
        drop(draining);
        self.inner.changed.notify_waiters();
    }

    /// Waits, for at most `within`, until the set has an endpoint; true if
    /// it has one. A request or connection that finds no endpoint (an
    /// instance restarting, moving to another node, scaled from zero) waits
    /// here for one instead of failing at once.
    pub async fn wait_for_endpoint(&self, within: std::time::Duration) -> bool {
        // The traffic path: one atomic load when there are endpoints.
        if !self.inner.set.load().is_empty() {
            return true;
        }
        if within.is_zero() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `set` in between wakes us.
            notified.as_mut().enable();
            if !self.inner.set.load().is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return !self.inner.set.load().is_empty();
            }
        }
    }

    /// How many requests (HTTP) or connections (TCP) are in flight on the
    /// endpoints of `instance` (see [`Endpoint::instance`]), whether they are
    /// still in the set or were taken out by [`Backends::set`] and are
    /// draining. Once an instance is out of the set this only goes down;
    /// at zero it can be stopped without cutting anything off.
    pub fn in_flight(&self, instance: &str) -> u64 {
        let mut draining = self
            .inner
            .draining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        draining.retain(|s| s.load() > 0);
        // Under the lock, so an endpoint moving from the set to the
        // draining list is not counted twice or missed.
        let set = self.inner.set.load();
        set.iter()
            .chain(draining.iter())
            .filter(|s| s.endpoint.instance == instance)
            .map(|s| s.load())
            .sum()
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
    /// ejected, keeping the one with the lower cost (latency estimate times
    /// outstanding requests plus one). When every untried endpoint is
    /// ejected, ejection is ignored rather than failing: it is only a guess,
    /// and a guess that everything is down is worth testing.
    pub(crate) fn pick(&self, tried: &Tried) -> Option<Lease> {
        loop {
            let set = self.inner.set.load();
            let now = self.now_ms();
            let chosen = p2c(&set, now, |s| !tried.contains(s) && !s.is_ejected(now))
                .or_else(|| p2c(&set, now, |s| !tried.contains(s)))?;
            let lease = Lease::new(Arc::clone(chosen), self.inner.epoch);
            // `set` took it out between our load and the lease (see there):
            // the set stored by then no longer holds it, so the next round
            // picks from that one.
            if !chosen.removed.load(Ordering::SeqCst) {
                return Some(lease);
            }
        }
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

/// Power of two choices over the endpoints `eligible` accepts, keeping the
/// one that costs less at `now_ms`. Both indices are drawn at random and the
/// first wins a tie, so ties are broken at random too.
fn p2c(
    set: &[Arc<EndpointState>],
    now_ms: u64,
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
    // An endpoint without a sample yet counts as average: as free, it would
    // draw every request until its first answer, however slow that is.
    // Computed only when needed, which is rarely after the first answers.
    let mut average = None;
    let mut cost = |s: &EndpointState| {
        let rtt = s
            .rtt
            .estimate(now_ms)
            .unwrap_or_else(|| *average.get_or_insert_with(|| mean_rtt(set.iter(), now_ms)));
        s.cost(rtt)
    };
    let (a, b) = (cost(first), cost(second));
    if b < a * (1.0 - TIE_MARGIN) {
        Some(second)
    } else if a < b * (1.0 - TIE_MARGIN) || first.load() <= second.load() {
        Some(first)
    } else {
        Some(second)
    }
}

/// The mean of the estimates of those of `states` that have one, decayed to
/// `now_ms`, in nanoseconds; zero for none.
fn mean_rtt<'a>(states: impl Iterator<Item = &'a Arc<EndpointState>>, now_ms: u64) -> f64 {
    let (sum, count) = states
        .filter_map(|s| s.rtt.estimate(now_ms))
        .fold((0.0, 0u32), |(sum, count), rtt| (sum + rtt, count + 1));
    if count == 0 {
        0.0
    } else {
        sum / f64::from(count)
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// === impl EndpointState ===

impl EndpointState {
    /// A fresh endpoint whose latency estimate starts at `rtt_nanos`.
    fn new(endpoint: Endpoint, rtt_nanos: f64, now_ms: u64) -> Self {
        EndpointState {
            endpoint,
            active: AtomicU64::new(0),
            served: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            rtt: PeakEwma::new(rtt_nanos, now_ms),
            removed: AtomicBool::new(false),
            pool: IdlePool::default(),
            measurements: EndpointMeasurements::default(),
        }
    }

    fn load(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// What sending one more request here is expected to cost, given its
    /// latency estimate in nanoseconds: that latency, as if every request
    /// already outstanding were ahead of this one.
    fn cost(&self, rtt_nanos: f64) -> f64 {
        // Outstanding counts are far below 2^53: exact as an f64.
        let queue = self.load().saturating_add(1) as f64;
        rtt_nanos.max(RTT_FLOOR_NANOS) * queue
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
            rtt_us: (self.rtt.decayed(now_ms) / 1_000.0) as u64,
        }
    }
}

// === impl PeakEwma ===

impl PeakEwma {
    fn new(nanos: f64, now_ms: u64) -> Self {
        PeakEwma {
            nanos: AtomicU64::new(to_nanos(nanos)),
            updated_ms: AtomicU64::new(now_ms),
        }
    }

    /// The estimate decayed to `now_ms`, or `None` before the first sample
    /// (when the endpoint started without one).
    fn estimate(&self, now_ms: u64) -> Option<f64> {
        if self.nanos.load(Ordering::Relaxed) == 0 {
            None
        } else {
            Some(self.decayed(now_ms))
        }
    }

    /// The estimate decayed toward zero by the time since its last update;
    /// zero before the first sample.
    fn decayed(&self, now_ms: u64) -> f64 {
        let since = now_ms.saturating_sub(self.updated_ms.load(Ordering::Relaxed));
        let nanos = self.nanos.load(Ordering::Relaxed) as f64;
        nanos * weight(since)
    }

    /// Takes a sample: one slower than the estimate as last updated replaces
    /// it (the peak); a faster one is blended in, the old estimate keeping
    /// the weight that the time since its update leaves it. Fast samples
    /// thus bring a peak down with time, not with their number.
    fn observe(&self, sample: Duration, now_ms: u64) {
        let since = now_ms.saturating_sub(self.updated_ms.load(Ordering::Relaxed));
        let old = self.nanos.load(Ordering::Relaxed) as f64;
        let sample = nanos(sample) as f64;
        let next = if sample > old {
            sample
        } else {
            let w = weight(since);
            old * w + sample * (1.0 - w)
        };
        // Racing observers may overwrite each other here; see the type.
        self.nanos.store(to_nanos(next), Ordering::Relaxed);
        self.updated_ms.fetch_max(now_ms, Ordering::Relaxed);
    }
}

/// How much of an estimate is left after `since_ms` without samples.
fn weight(since_ms: u64) -> f64 {
    let since = since_ms as f64;
    let decay = DECAY.as_millis() as f64;
    (-since / decay).exp()
}

fn to_nanos(nanos: f64) -> u64 {
    // `as` saturates (and maps NaN to 0), which is what an estimate wants.
    nanos.round() as u64
}

// === impl Lease ===

impl Lease {
    fn new(state: Arc<EndpointState>, epoch: Instant) -> Self {
        // SeqCst against `removed`; see `Backends::set`.
        state.active.fetch_add(1, Ordering::SeqCst);
        Lease { state, epoch }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.state.endpoint
    }

    pub(crate) fn pool(&self) -> &IdlePool {
        &self.state.pool
    }

    /// Returns a connection whose last response was read to the end to the
    /// endpoint's pool, unless the endpoint has left the set: then it is
    /// dropped, which closes it.
    pub(crate) fn checkin(&self, conn: Conn, now: Instant) {
        if self.state.removed.load(Ordering::Relaxed) {
            return;
        }
        self.state.pool.checkin(conn, now);
        // `set` flags the endpoint before it clears the pool, under the
        // pool's lock: if that clear came before our push, the flag is
        // visible now, and the connection must not stay behind.
        if self.state.removed.load(Ordering::Relaxed) {
            self.state.pool.clear();
        }
    }

    /// A latency sample for the balancing cost: the time to the response
    /// head (HTTP) or to connect (TCP).
    pub(crate) fn observe(&self, rtt: Duration) {
        self.state.rtt.observe(rtt, millis_since(self.epoch));
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

    /// The exchange broke after connecting, `elapsed` into it. Counted, but
    /// not ejected: the endpoint is reachable, and the request itself may be
    /// at fault. Its latency estimate takes the elapsed time as a sample, or
    /// keeps its current value if that is more, so an endpoint that fails
    /// fast does not look fast.
    pub(crate) fn failed(&self, elapsed: Duration) {
        self.state.failures.fetch_add(1, Ordering::Relaxed);
        let now = millis_since(self.epoch);
        let current = Duration::from_nanos(to_nanos(self.state.rtt.decayed(now)));
        self.state
            .rtt
            .observe(elapsed.min(MAX_PENALTY).max(current), now);
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
