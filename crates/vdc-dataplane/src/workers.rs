//! The data plane's own threads: one single-threaded tokio runtime per worker,
//! by default one worker per CPU the process may run on.
//!
//! Traffic does not share a runtime with the control plane, so a slow
//! control-plane task (a store write, a telemetry round, a snapshot) never
//! holds up a request, and the runtime under the traffic is the cheapest
//! tokio has: a client connection, its request's upstream connection and the
//! timers of both live on one thread, so handing a request from one to the
//! other is a push on a local queue, not a wake-up of another thread. This is
//! the thread-per-core layout of HAProxy and nginx, with tokio.
//!
//! A listener's accept loop runs on one worker and deals the connections it
//! accepts round-robin to all of them.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A worker thread's identity, unique in the process; 0 on threads that are
/// not data plane workers.
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

// === types ===

/// The running workers. Dropping this stops them: each thread leaves
/// `block_on`, and its runtime, with every task on it, is dropped there.
pub(crate) struct Workers {
    set: Arc<WorkerSet>,
    _stops: Vec<oneshot::Sender<()>>,
}

/// The workers' handles, shared with the accept loops. Holding it does not
/// keep the workers running.
pub(crate) struct WorkerSet {
    workers: Box<[Worker]>,
    /// The next worker to get an accepted connection or a listener.
    next: AtomicUsize,
}

pub(crate) struct Worker {
    id: usize,
    handle: Handle,
}

// === impl Workers ===

impl Workers {
    /// Starts `threads` workers (0: one per CPU this process may use).
    pub(crate) fn start(threads: usize) -> io::Result<Workers> {
        let threads = match threads {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::with_capacity(threads);
        let mut stops = Vec::with_capacity(threads);
        for index in 0..threads {
            let (worker, stop) = Worker::start(index)?;
            workers.push(worker);
            stops.push(stop);
        }
        Ok(Workers {
            set: Arc::new(WorkerSet {
                workers: workers.into_boxed_slice(),
                next: AtomicUsize::new(0),
            }),
            _stops: stops,
        })
    }

    pub(crate) fn set(&self) -> &Arc<WorkerSet> {
        &self.set
    }
}

// === impl WorkerSet ===

impl WorkerSet {
    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// The worker whose turn it is.
    pub(crate) fn next(&self) -> &Worker {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.workers[turn % self.workers.len()]
    }
}

/// The identity of the data plane worker running the caller, or 0 outside
/// the workers. Upstream connections remember the worker that opened them,
/// so a request reuses one whose I/O is driven by its own thread.
pub(crate) fn current() -> usize {
    CURRENT.with(Cell::get)
}

// === impl Worker ===

impl Worker {
    fn start(index: usize) -> io::Result<(Worker, oneshot::Sender<()>)> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name(format!("vdc-dataplane-{index}"))
            .spawn(move || {
                CURRENT.with(|c| c.set(id));
                // Either message or a dropped sender means stop.
                let _ = runtime.block_on(stopped);
            })?;
        Ok((Worker { id, handle }, stop))
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Whether the caller runs on this worker.
    pub(crate) fn is_current(&self) -> bool {
        current() == self.id
    }
}
