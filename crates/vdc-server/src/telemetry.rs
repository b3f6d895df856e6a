//! The telemetry hub: collects what the node measured once a second, keeps
//! recent history and cumulative counters, and publishes every sample and
//! event on the bus for subscribers.
//!
//! In a cluster the bus is a [`NatsBus`]: what this node publishes reaches
//! the other nodes' subscribers too, and what they publish comes in, both to
//! this node's subscribers and (with histograms) into this hub's window and
//! exposition. So any server's streams, `/metrics`, windows, metering and
//! autoscaler see the whole pool.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use vdc_agent::Agent;
use vdc_telemetry::{
    Bus, Event, EventKind, Exposition, Histogram, Ingest, LocalBus, Message, NatsBus, NatsBusError,
    Topic, Window,
};

/// The NATS subject a cluster's buses meet on.
const SUBJECT: &str = "vdc.bus";

/// Seconds of history kept for one-shot views (stats, topology).
const WINDOW_SECONDS: usize = 60;

/// How far into each second the collector takes the second before it.
pub(crate) const COLLECT_AFTER: Duration = Duration::from_millis(5);
/// Events kept for `vdc events` without `-f`.
const EVENTS_KEPT: usize = 1000;

/// Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

struct Inner {
    bus: Arc<dyn Bus>,
    /// Shared with what takes in the other nodes' messages.
    state: Arc<Mutex<State>>,
}

struct State {
    window: Window,
    exposition: Exposition,
    events: VecDeque<Event>,
}

/// Takes the other nodes' samples and events into the hub.
struct Remote {
    state: Arc<Mutex<State>>,
}

impl Ingest for Remote {
    fn ingest(&self, message: &Message, histogram: Option<&Histogram>) {
        let mut state = lock(&self.state);
        match message {
            Message::Event(event) => state.keep_event(event.clone()),
            Message::Traffic(_) | Message::Resources(_) => state.observe(message, histogram),
            Message::Load(_) | Message::Dropped { .. } => {}
        }
    }
}

impl State {
    fn new() -> Self {
        State {
            window: Window::new(WINDOW_SECONDS),
            exposition: Exposition::new(),
            events: VecDeque::new(),
        }
    }

    fn keep_event(&mut self, event: Event) {
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn observe(&mut self, message: &Message, histogram: Option<&Histogram>) {
        self.window.push_with_histogram(message, histogram);
        self.exposition.observe(message, histogram);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Telemetry {
    /// A hub on the in-process bus.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                bus: Arc::new(LocalBus::new()),
                state: Arc::new(Mutex::new(State::new())),
            }),
        }
    }

    /// A hub on the cluster bus, as node `node`.
    pub async fn on_nats(client: async_nats::Client, node: &str) -> Result<Self, NatsBusError> {
        let state = Arc::new(Mutex::new(State::new()));
        let remote = Arc::new(Remote {
            state: Arc::clone(&state),
        });
        let bus = NatsBus::connect(client, SUBJECT, node, Some(remote)).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                bus: Arc::new(bus),
                state,
            }),
        })
    }

    pub fn bus(&self) -> &dyn Bus {
        self.inner.bus.as_ref()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Records and publishes a lifecycle event.
    pub fn event(
        &self,
        kind: EventKind,
        tenant: &str,
        app: &str,
        component: Option<&str>,
        instance: Option<&str>,
        reason: impl Into<String>,
    ) {
        let event = Event {
            ts_ms: now_ms(),
            kind,
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            component: component.map(str::to_owned),
            instance: instance.map(str::to_owned),
            reason: reason.into(),
        };
        tracing::debug!(?event.kind, app, instance, "{}", event.reason);
        self.state().keep_event(event.clone());
        self.inner.bus.publish(Topic::Events, Message::Event(event));
    }

    /// Takes one second of this node's samples into the window and the
    /// exposition, and publishes them.
    pub(crate) fn ingest(&self, samples: Vec<(Message, Option<Histogram>)>) {
        {
            let mut state = self.state();
            for (message, histogram) in &samples {
                state.observe(message, histogram.as_ref());
            }
        }
        for (message, histogram) in samples {
            self.inner.bus.publish_sample(message, histogram.as_ref());
        }
    }

    /// The most recent events, oldest first, that `keep` accepts.
    pub fn recent_events(&self, keep: impl Fn(&Event) -> bool, limit: usize) -> Vec<Event> {
        let state = self.state();
        let matching: Vec<&Event> = state.events.iter().filter(|e| keep(e)).collect();
        matching[matching.len().saturating_sub(limit)..]
            .iter()
            .map(|e| (*e).clone())
            .collect()
    }

    /// Runs `f` with the recent history.
    pub fn with_window<T>(&self, f: impl FnOnce(&Window) -> T) -> T {
        f(&self.state().window)
    }

    /// Prometheus text for everything, or one tenant.
    pub fn prometheus(&self, tenant: Option<&str>) -> String {
        self.state().exposition.render(tenant)
    }

    /// Drops the history of an app that is gone.
    pub fn forget_app(&self, app: &str) {
        let mut state = self.state();
        state.window.forget_app(app);
        state.exposition.forget_app(app);
    }

    /// Collects once a second, just after each second ends, until shutdown.
    pub async fn run_collector(self, agent: Agent, shutdown: CancellationToken) {
        loop {
            // Wake a few milliseconds into the next second so the second
            // being stamped is over.
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(until_next_second(COLLECT_AFTER)) => {}
            }
            let ts = now_s().saturating_sub(1);
            let collected: Vec<(Message, Option<Histogram>)> = agent
                .collect(ts)
                .into_iter()
                .map(|c| (c.message, c.histogram))
                .collect();
            self.ingest(collected);
        }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

/// The current unix second.
pub(crate) fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long until `offset` into the next wall-clock second: loops that work
/// on each second's data wake there (the collector 5 ms in, the autoscaler
/// after it).
pub(crate) fn until_next_second(offset: Duration) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    Duration::from_secs(1).saturating_sub(into) + offset
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
