//! Publish/subscribe for telemetry and events: the [`Bus`] trait, its
//! in-process implementation [`LocalBus`], and the bounded [`Subscription`]
//! every implementation delivers into.
//!
//! Publishing never waits for a subscriber. Each subscriber has a bounded
//! buffer; when it is full the message is lost *for that subscriber only*,
//! and the subscriber later reads a [`Message::Dropped`] at the exact place
//! of the gap, with the number of messages lost there.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::hist::Histogram;
use crate::model::{Message, SeriesKind, Tags};

mod nats;

pub use nats::{Ingest, NatsBus, NatsBusError};

// === types ===

/// A stream on the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    /// Traffic and resource samples, once a second per series.
    Metrics,
    /// Lifecycle events of apps and instances.
    Events,
}

/// What a subscriber wants; every field set narrows it. `Dropped` notices
/// always pass.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub tenant: Option<String>,
    pub app: Option<String>,
    /// Samples of this component. Events about the whole app (no component)
    /// pass too: they concern the component as well.
    pub component: Option<String>,
    /// Samples of these series kinds (resource samples are `Instance`).
    /// Events have no series kind and are not narrowed by it.
    pub kinds: Option<Vec<SeriesKind>>,
}

/// Publish/subscribe between the collector and whoever listens (API
/// streams, the autoscaler, metering). [`LocalBus`] is the in-process
/// implementation; [`NatsBus`] joins the buses of a cluster's nodes on a
/// NATS subject. Both deliver into [`Subscription`]s, through
/// [`Subscription::channel`].
pub trait Bus: Send + Sync + 'static {
    /// Never blocks and never waits for subscribers: a subscriber whose
    /// buffer is full loses the message, and its next delivery is preceded
    /// by `Message::Dropped { count }`.
    fn publish(&self, topic: Topic, message: Message);

    /// Publishes one second's sample with the histogram it was summarised
    /// from. Subscribers get the message alone; a bus that carries it to
    /// other nodes carries the histogram too, so their windows and
    /// exposition merge latencies exactly.
    fn publish_sample(&self, message: Message, histogram: Option<&Histogram>) {
        let _ = histogram;
        self.publish(Topic::of(&message), message);
    }

    /// A new subscriber buffering up to `capacity` messages (at least one).
    fn subscribe(&self, topic: Topic, filter: Filter, capacity: usize) -> Subscription;

    /// Live subscribers in this process, all topics together.
    fn subscribers(&self) -> usize;
}

/// The receiving end of one subscriber. Dropping it unsubscribes.
pub struct Subscription {
    shared: Arc<Shared>,
}

/// The sending end of one subscriber, held by a bus implementation.
/// Dropping it ends the subscription: `recv` returns `None` once the buffer
/// is drained.
pub struct Delivery {
    shared: Arc<Shared>,
}

/// The in-process bus. Clones share the same subscribers.
#[derive(Clone, Default)]
pub struct LocalBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

struct Subscriber {
    topic: Topic,
    filter: Filter,
    delivery: Delivery,
}

struct Shared {
    capacity: usize,
    state: Mutex<Buffer>,
    notify: Notify,
    /// Cleared when the `Subscription` is dropped; the bus then forgets it.
    receiver_alive: AtomicBool,
}

#[derive(Default)]
struct Buffer {
    queue: VecDeque<Message>,
    /// Messages lost since the last one queued.
    dropped: u64,
    sender_closed: bool,
}

// === impl Topic ===

impl Topic {
    /// The topic a message is published on.
    pub fn of(message: &Message) -> Topic {
        match message {
            Message::Event(_) => Topic::Events,
            _ => Topic::Metrics,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Metrics => "metrics",
            Topic::Events => "events",
        }
    }
}

// === impl Filter ===

impl Filter {
    /// Everything.
    pub fn all() -> Self {
        Filter::default()
    }

    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn with_app(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    pub fn with_component(mut self, component: impl Into<String>) -> Self {
        self.component = Some(component.into());
        self
    }

    pub fn with_kinds(mut self, kinds: impl Into<Vec<SeriesKind>>) -> Self {
        self.kinds = Some(kinds.into());
        self
    }

    pub fn matches(&self, m: &Message) -> bool {
        if let Message::Dropped { .. } = m {
            return true;
        }
        if let Some(tenant) = &self.tenant {
            if m.tenant() != Some(tenant.as_str()) {
                return false;
            }
        }
        if let Some(app) = &self.app {
            if m.app() != Some(app.as_str()) {
                return false;
            }
        }
        if let Some(component) = &self.component {
            match m.component() {
                Some(c) if c != component => return false,
                None if !matches!(m, Message::Event(_)) => return false,
                _ => {}
            }
        }
        if let (Some(kinds), Some(kind)) = (&self.kinds, m.series_kind()) {
            if !kinds.contains(&kind) {
                return false;
            }
        }
        true
    }

    /// Whether a series of this kind and these tags is wanted.
    pub fn matches_series(&self, kind: SeriesKind, tags: &Tags) -> bool {
        let wanted = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        wanted(&self.tenant, &tags.tenant)
            && wanted(&self.app, &tags.app)
            && wanted(&self.component, &tags.component)
            && self
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(&kind))
    }
}

// === impl Subscription ===

impl Subscription {
    /// A subscription buffering up to `capacity` messages (at least one),
    /// and the handle a bus delivers into.
    pub fn channel(capacity: usize) -> (Subscription, Delivery) {
        let shared = Arc::new(Shared {
            capacity: capacity.max(1),
            state: Mutex::new(Buffer::default()),
            notify: Notify::new(),
            receiver_alive: AtomicBool::new(true),
        });
        let delivery = Delivery {
            shared: Arc::clone(&shared),
        };
        (Subscription { shared }, delivery)
    }

    /// The next message, waiting for one; `None` once the bus is gone and
    /// the buffer is drained. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            {
                let mut buffer = self.shared.lock();
                if let Some(m) = buffer.pop() {
                    return Some(m);
                }
                if buffer.sender_closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a delivery
            // between the check above and this await is not missed.
            self.shared.notify.notified().await;
        }
    }

    /// The next message if one is buffered.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.shared.lock().pop()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.receiver_alive.store(false, Ordering::Release);
        self.shared.lock().queue.clear();
    }
}

// === impl Delivery ===

impl Delivery {
    /// Offers one message without waiting. Returns `false` once the
    /// subscription has been dropped (the caller should forget it); a
    /// message lost to a full buffer still returns `true`.
    pub fn deliver(&self, message: Message) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut buffer = self.shared.lock();
        if buffer.queue.len() >= self.shared.capacity {
            buffer.dropped = buffer.dropped.saturating_add(1);
            return true;
        }
        if buffer.dropped > 0 {
            // The notice may take the buffer one over its capacity: it is
            // small, and it belongs exactly here.
            let count = std::mem::take(&mut buffer.dropped);
            buffer.queue.push_back(Message::Dropped { count });
        }
        buffer.queue.push_back(message);
        drop(buffer);
        self.shared.notify.notify_one();
        true
    }

    /// Whether the subscription has been dropped.
    pub fn is_closed(&self) -> bool {
        !self.shared.receiver_alive.load(Ordering::Acquire)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.shared.lock().sender_closed = true;
        self.shared.notify.notify_one();
    }
}

// === impl Shared ===

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic elsewhere while holding the lock leaves a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Buffer {
    fn pop(&mut self) -> Option<Message> {
        if let Some(m) = self.queue.pop_front() {
            return Some(m);
        }
        // Losses after the last queued message: report them now rather than
        // when the next message arrives.
        match std::mem::take(&mut self.dropped) {
            0 => None,
            count => Some(Message::Dropped { count }),
        }
    }
}

// === impl LocalBus ===

impl LocalBus {
    pub fn new() -> Self {
        LocalBus::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Bus for LocalBus {
    fn publish(&self, topic: Topic, message: Message) {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.delivery.is_closed());
        // Clone for all matching subscribers but the last, which gets the
        // message itself.
        let matching: Vec<&Subscriber> = subscribers
            .iter()
            .filter(|s| s.topic == topic && s.filter.matches(&message))
            .collect();
        if let Some((last, others)) = matching.split_last() {
            for s in others {
                s.delivery.deliver(message.clone());
            }
            last.delivery.deliver(message);
        }
    }

    fn subscribers(&self) -> usize {
        let mut subscribers = self.lock();
        subscribers.retain(|s| !s.delivery.is_closed());
        subscribers.len()
    }

    fn subscribe(&self, topic: Topic, filter: Filter, capacity: usize) -> Subscription {
        let (subscription, delivery) = Subscription::channel(capacity);
        self.lock().push(Subscriber {
            topic,
            filter,
            delivery,
        });
        subscription
    }
}

impl std::fmt::Debug for LocalBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBus")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("capacity", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
