//! The data plane's listeners: binding, live reconfiguration, accept loops,
//! and graceful draining on unbind and shutdown.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::future::join_all;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use vdc_spec::Protocol;

use crate::balance::Backends;
use crate::connect::{Binder, Connector, HostBinder, TcpConnector};
use crate::error::DataPlaneError;
use crate::stats::{Counters, CountingIo, ListenerStats, Measurement};
use crate::workers::{WorkerSet, Workers};
use crate::{http, tcp};

/// How long to pause accepting after an error such as running out of file
/// descriptors, so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

// === types ===

/// What a listener does with the traffic it accepts.
#[derive(Clone, Debug)]
pub struct ProxySpec {
    /// The link this listener serves, such as `shop/lb.backend`, for logs.
    pub name: String,
    pub protocol: Protocol,
    pub backends: Backends,
    /// Connections this listener holds at once; past it, new ones are
    /// refused at once (HTTP with a 503). `None`: only the data plane's
    /// own limit applies.
    pub max_connections: Option<usize>,
}

/// Settings shared by all listeners of a data plane.
#[derive(Clone)]
pub struct DataPlaneConfig {
    /// Opens upstream connections. Default: [`TcpConnector`] (2 s timeout).
    pub connector: Arc<dyn Connector>,
    /// How long an HTTP endpoint may take to send the response head before
    /// the client gets a 504. Default 30 s.
    pub response_timeout: Duration,
    /// How many endpoints one request or connection may try when connects
    /// fail. Default 3.
    pub connect_attempts: usize,
    /// How long an HTTP client may take to send a request head. Default 30 s.
    pub header_read_timeout: Duration,
    /// When `bind` moves a key to another address, how long the old
    /// listener's connections get to finish. Default 5 s.
    pub rebind_grace: Duration,
    /// Whether latencies are recorded into histograms (counters always
    /// are). Default on; off only to measure what measuring costs.
    pub measure: bool,
    /// How many threads carry the traffic, each with its own single-threaded
    /// runtime. Default 0: one per CPU this process may use.
    pub threads: usize,
    /// Client connections all listeners hold at once (each proxied one
    /// holds two descriptors); past it, new ones are refused at once, so
    /// that a flood cannot take every descriptor of the process. Default:
    /// no limit.
    pub max_connections: usize,
}

/// One listener as seen from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerInfo {
    pub key: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub stats: ListenerStats,
}

/// What one listener measured: see [`DataPlane::take_measurements`].
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerMeasurement {
    pub key: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub measurement: Measurement,
}

/// Owns the node's listeners. Cheap to clone; clones share the listeners.
/// Dropping the last clone closes every listener and its connections at
/// once; call [`shutdown`](Self::shutdown) first for a graceful stop.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<DataPlaneConfig>,
    /// Client connections held by all listeners.
    open: Arc<AtomicUsize>,
    listeners: Mutex<HashMap<String, Listener>>,
    shut_down: AtomicBool,
    /// Declared last: dropped after the listeners, it stops the threads.
    workers: Workers,
}

struct Listener {
    addr: SocketAddr,
    shared: Arc<ListenerShared>,
    control: watch::Sender<Control>,
    task: JoinHandle<()>,
}

/// What every connection of one listener shares.
pub(crate) struct ListenerShared {
    pub(crate) key: String,
    /// Swapped whole by a rebind; each connection (TCP) or request (HTTP)
    /// reads the current one.
    pub(crate) spec: ArcSwap<ProxySpec>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) config: Arc<DataPlaneConfig>,
    /// Client connections held by this listener, and by all of them.
    open: AtomicUsize,
    all_open: Arc<AtomicUsize>,
}

/// What a listener's tasks are told to do.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Control {
    Serve,
    /// Stop accepting; connections may finish until the deadline.
    Drain {
        deadline: Instant,
    },
}

// === impl DataPlaneConfig ===

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            connector: Arc::new(TcpConnector::default()),
            response_timeout: Duration::from_secs(30),
            connect_attempts: 3,
            header_read_timeout: Duration::from_secs(30),
            rebind_grace: Duration::from_secs(5),
            measure: true,
            threads: 0,
            max_connections: usize::MAX,
        }
    }
}

impl fmt::Debug for DataPlaneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlaneConfig")
            .field("response_timeout", &self.response_timeout)
            .field("connect_attempts", &self.connect_attempts)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("rebind_grace", &self.rebind_grace)
            .field("measure", &self.measure)
            .field("threads", &self.threads)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

// === impl DataPlane ===

impl DataPlane {
    /// A data plane with the default settings; see [`with_config`](Self::with_config).
    pub fn new() -> Result<Self, DataPlaneError> {
        DataPlane::with_config(DataPlaneConfig::default())
    }

    /// Starts the data plane's worker threads. Fails only when the system
    /// will not give it a thread or a runtime (out of memory, thread or
    /// descriptor limits).
    pub fn with_config(mut config: DataPlaneConfig) -> Result<Self, DataPlaneError> {
        config.connect_attempts = config.connect_attempts.clamp(1, crate::balance::MAX_TRIES);
        let workers =
            Workers::start(config.threads).map_err(|source| DataPlaneError::Workers { source })?;
        Ok(DataPlane {
            inner: Arc::new(Inner {
                config: Arc::new(config),
                open: Arc::new(AtomicUsize::new(0)),
                listeners: Mutex::new(HashMap::new()),
                shut_down: AtomicBool::new(false),
                workers,
            }),
        })
    }

    /// How many threads carry the traffic.
    pub fn threads(&self) -> usize {
        self.inner.workers.set().len()
    }

    /// Listens on `addr` (port 0 picks one) in the host's network namespace
    /// and proxies to `spec.backends`. Returns the bound address.
    ///
    /// Binding a key that is already bound at the same address (or at port 0
    /// on the same IP) replaces its spec live: no rebind, connections stay.
    /// Binding it at another address binds there first and then drains the
    /// old listener, so a failure leaves the old one serving.
    pub async fn bind(
        &self,
        key: &str,
        addr: SocketAddr,
        spec: ProxySpec,
    ) -> Result<SocketAddr, DataPlaneError> {
        self.bind_with(&HostBinder, key, addr, spec).await
    }

    /// [`bind`](Self::bind), with the listening socket made by `binder`.
    pub async fn bind_with(
        &self,
        binder: &dyn Binder,
        key: &str,
        addr: SocketAddr,
        spec: ProxySpec,
    ) -> Result<SocketAddr, DataPlaneError> {
        let shut_down = || DataPlaneError::ShutDown {
            key: key.to_owned(),
            addr,
        };
        if self.inner.shut_down.load(Ordering::Acquire) {
            return Err(shut_down());
        }
        let spec = match self.respec(key, addr, spec) {
            Ok(bound) => return Ok(bound),
            Err(spec) => spec,
        };

        let bind_error = |source: io::Error| DataPlaneError::Bind {
            key: key.to_owned(),
            addr,
            source,
        };
        let std_listener = binder.bind(addr).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let workers = Arc::clone(self.inner.workers.set());
        let worker = workers.next();
        // Registered with the reactor of the worker whose thread accepts.
        let listener = {
            let _in_worker = worker.handle().enter();
            TcpListener::from_std(std_listener).map_err(bind_error)?
        };
        let bound = listener.local_addr().map_err(bind_error)?;

        let shared = Arc::new(ListenerShared {
            key: key.to_owned(),
            spec: ArcSwap::from_pointee(spec),
            counters: Arc::new(Counters::new(self.inner.config.measure)),
            config: Arc::clone(&self.inner.config),
            open: AtomicUsize::new(0),
            all_open: Arc::clone(&self.inner.open),
        });
        let (control, control_rx) = watch::channel(Control::Serve);
        let task = worker.handle().spawn(accept_loop(
            listener,
            Arc::clone(&shared),
            control_rx,
            Arc::clone(&workers),
        ));
        let new = Listener {
            addr: bound,
            shared,
            control,
            task,
        };

        let inserted = {
            let mut listeners = self.lock();
            // Checked again under the lock: a shutdown that ran while we were
            // binding has already emptied the map and would miss this one.
            if self.inner.shut_down.load(Ordering::Acquire) {
                Err(new)
            } else {
                Ok(listeners.insert(key.to_owned(), new))
            }
        };
        let replaced = match inserted {
            Ok(replaced) => replaced,
            Err(new) => {
                new.stop(Duration::ZERO).await;
                return Err(shut_down());
            }
        };
        info!(key, addr = %bound, "listening");
        if let Some(old) = replaced {
            info!(key, old = %old.addr, new = %bound, "moved listener, draining the old address");
            tokio::spawn(old.stop(self.inner.config.rebind_grace));
        }
        Ok(bound)
    }

    /// Swaps the spec of `key` in place if it is bound at `addr` already.
    /// Gives the spec back if there is no such listener.
    fn respec(
        &self,
        key: &str,
        addr: SocketAddr,
        spec: ProxySpec,
    ) -> Result<SocketAddr, ProxySpec> {
        let listeners = self.lock();
        let Some(listener) = listeners.get(key) else {
            return Err(spec);
        };
        let same_addr =
            listener.addr == addr || (addr.port() == 0 && listener.addr.ip() == addr.ip());
        if !same_addr {
            return Err(spec);
        }
        debug!(key, addr = %listener.addr, link = %spec.name, "listener updated in place");
        listener.shared.spec.store(Arc::new(spec));
        Ok(listener.addr)
    }

    /// Stops accepting on `key` at once; connections in flight get `grace`
    /// to finish (idle HTTP keep-alive connections are closed right away),
    /// then are closed. Returns false if `key` was not bound.
    pub async fn unbind(&self, key: &str, grace: Duration) -> bool {
        let Some(listener) = self.lock().remove(key) else {
            return false;
        };
        info!(key, addr = %listener.addr, ?grace, "unbinding");
        listener.stop(grace).await;
        true
    }

    pub fn listeners(&self) -> Vec<ListenerInfo> {
        let mut infos: Vec<ListenerInfo> = self
            .lock()
            .iter()
            .map(|(key, listener)| ListenerInfo {
                key: key.clone(),
                addr: listener.addr,
                protocol: listener.shared.spec.load().protocol,
                stats: listener.shared.counters.snapshot(),
            })
            .collect();
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        infos
    }

    /// Every listener's counters, and the latencies recorded since the
    /// previous call: the per-second input of the telemetry collector.
    pub fn take_measurements(&self) -> Vec<ListenerMeasurement> {
        let mut out: Vec<ListenerMeasurement> = self
            .lock()
            .iter()
            .map(|(key, listener)| ListenerMeasurement {
                key: key.clone(),
                addr: listener.addr,
                protocol: listener.shared.spec.load().protocol,
                measurement: listener.shared.counters.take(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Unbinds every listener with `grace`, all at once; later binds fail.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shut_down.store(true, Ordering::Release);
        let listeners: Vec<Listener> = self.lock().drain().map(|(_, l)| l).collect();
        join_all(listeners.into_iter().map(|l| l.stop(grace))).await;
    }

    /// The lock guards only map edits and reads; it is never held across an
    /// await or on the traffic path.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Listener>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPlane")
            .field("config", &self.inner.config)
            .field("listeners", &self.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

// === impl Listener ===

impl Listener {
    async fn stop(self, grace: Duration) {
        let deadline = deadline_after(Instant::now(), grace);
        self.control.send_replace(Control::Drain { deadline });
        if let Err(error) = self.task.await {
            warn!(key = %self.shared.key, %error, "listener task failed");
        }
    }
}

// === accept loop ===

/// Accepts connections and deals them round-robin to the workers; on a drain,
/// stops accepting and gives the connections until the deadline.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    mut control: watch::Receiver<Control>,
    workers: Arc<WorkerSet>,
) {
    let mut connections = JoinSet::new();
    let deadline = loop {
        tokio::select! {
            deadline = drain_requested(&mut control) => break deadline,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = ConnectionSlot::take(&shared) else {
                        refuse_full(&shared, &stream, peer);
                        continue;
                    };
                    let shared = Arc::clone(&shared);
                    let control = control.clone();
                    let worker = workers.next();
                    if worker.is_current() {
                        connections.spawn(async move {
                            let _slot = slot;
                            serve_connection(shared, stream, peer, control).await;
                        });
                        continue;
                    }
                    // The socket moves to the other worker's reactor: taken
                    // off this one here, registered there on arrival.
                    let moved = stream.into_std();
                    connections.spawn_on(
                        async move {
                            let _slot = slot;
                            serve_moved(shared, moved, peer, control).await;
                        },
                        worker.handle(),
                    );
                }
                Err(error) if is_per_connection(&error) => {
                    debug!(key = %shared.key, %error, "accept failed for one connection");
                }
                Err(error) => {
                    warn!(key = %shared.key, %error, "accept failed, pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = done {
                    warn!(key = %shared.key, %error, "connection task failed");
                }
            }
        }
    };
    // Stop accepting first: new connections are refused from here on.
    drop(listener);
    let open = connections.len();
    let finished = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        info!(key = %shared.key, still_open = connections.len(), of = open, "grace over, closing connections");
        connections.shutdown().await;
    }
}

/// One client connection counted against its listener's limit and the
/// data plane's; given back when dropped.
struct ConnectionSlot {
    shared: Arc<ListenerShared>,
}

impl ConnectionSlot {
    fn take(shared: &Arc<ListenerShared>) -> Option<ConnectionSlot> {
        let all = shared.all_open.fetch_add(1, Ordering::AcqRel);
        let mine = shared.open.fetch_add(1, Ordering::AcqRel);
        let limit = shared.spec.load().max_connections.unwrap_or(usize::MAX);
        let slot = ConnectionSlot {
            shared: Arc::clone(shared),
        };
        (all < shared.config.max_connections && mine < limit).then_some(slot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.shared.all_open.fetch_sub(1, Ordering::AcqRel);
        self.shared.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Turns away a connection past a limit at once: an HTTP client gets a
/// 503 if its socket takes it without waiting, a TCP client a close.
fn refuse_full(shared: &ListenerShared, stream: &TcpStream, peer: SocketAddr) {
    debug!(key = %shared.key, %peer, "connection limit reached, refusing");
    if shared.spec.load().protocol == Protocol::Http {
        const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 39\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many connections: try again shortly";
        let _ = stream.try_write(FULL);
    }
}

/// Resolves when the listener is told to drain, with the deadline; or at
/// once if the data plane that owns it is gone.
pub(crate) async fn drain_requested(control: &mut watch::Receiver<Control>) -> Instant {
    let requested = control
        .wait_for(|c| matches!(c, Control::Drain { .. }))
        .await
        .map(|c| *c);
    match requested {
        Ok(Control::Drain { deadline }) => deadline,
        Ok(Control::Serve) | Err(_) => Instant::now(),
    }
}

/// `after` from `now`; a duration too long to represent (say
/// `Duration::MAX`) means forever, and thirty years will do.
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Accept errors that concern one incoming connection only, not the
/// listening socket: an accept loop goes on at once after these, and
/// pauses after any other (running out of descriptors) so it does not spin.
pub fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// [`serve_connection`] for a socket accepted on another worker.
async fn serve_moved(
    shared: Arc<ListenerShared>,
    stream: io::Result<std::net::TcpStream>,
    peer: SocketAddr,
    control: watch::Receiver<Control>,
) {
    match stream.and_then(TcpStream::from_std) {
        Ok(stream) => serve_connection(shared, stream, peer, control).await,
        Err(error) => {
            debug!(key = %shared.key, %peer, %error, "cannot hand a connection to a worker")
        }
    }
}

async fn serve_connection(
    shared: Arc<ListenerShared>,
    stream: TcpStream,
    peer: SocketAddr,
    control: watch::Receiver<Control>,
) {
    let _open = shared.counters.connection_opened();
    let _ = stream.set_nodelay(true);
    let client = CountingIo::new(stream, Arc::clone(&shared.counters));
    let spec = shared.spec.load_full();
    match spec.protocol {
        Protocol::Tcp => tcp::serve(&shared, &spec, client).await,
        Protocol::Http => {
            drop(spec);
            http::serve(shared, client, peer, control).await;
        }
    }
}
