//! The telemetry hub: collects what the node measured once a second, keeps
//! recent history and cumulative counters, and publishes every sample and
//! event on the bus for subscribers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;
use vdc_agent::Agent;
use vdc_telemetry::{
    Bus, Event, EventKind, Exposition, Histogram, LocalBus, Message, Topic, Window,
};

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
    bus: LocalBus,
    state: Mutex<State>,
    /// In a cluster: where this node's samples and events go out to the
    /// others.
    outbox: std::sync::OnceLock<crate::bridge::Outbox>,
}

struct State {
    window: Window,
    exposition: Exposition,
    events: VecDeque<Event>,
}

impl Telemetry {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                bus: LocalBus::new(),
                state: Mutex::new(State {
                    window: Window::new(WINDOW_SECONDS),
                    exposition: Exposition::new(),
                    events: VecDeque::new(),
                }),
                outbox: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn bus(&self) -> &LocalBus {
        &self.inner.bus
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
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
        if let Some(outbox) = self.inner.outbox.get() {
            outbox.send(crate::bridge::Outgoing::Event(event.clone()));
        }
        self.ingest_event(event);
    }

    /// Keeps and publishes an event, without sending it to other nodes
    /// (one of theirs, or one just sent).
    pub(crate) fn ingest_event(&self, event: Event) {
        {
            let mut state = self.state();
            if state.events.len() == EVENTS_KEPT {
                state.events.pop_front();
            }
            state.events.push_back(event.clone());
        }
        self.inner.bus.publish(Topic::Events, Message::Event(event));
    }

    /// Sends what this node measures and emits to the other nodes too.
    pub(crate) fn attach(&self, outbox: crate::bridge::Outbox) {
        let _ = self.inner.outbox.set(outbox);
    }

    /// Takes one second's samples (this node's or another's) into the
    /// window and the exposition, and publishes them.
    pub(crate) fn ingest(&self, samples: Vec<(Message, Option<Histogram>)>) {
        {
            let mut state = self.state();
            for (message, histogram) in &samples {
                state
                    .window
                    .push_with_histogram(message, histogram.as_ref());
                state.exposition.observe(message, histogram.as_ref());
            }
        }
        for (message, _) in samples {
            self.inner.bus.publish(Topic::Metrics, message);
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
            if let Some(outbox) = self.inner.outbox.get() {
                if !collected.is_empty() {
                    outbox.send(crate::bridge::Outgoing::Samples(collected.clone()));
                }
            }
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
