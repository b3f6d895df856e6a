//! The bus of a cluster, on NATS subjects.
//!
//! A [`NatsBus`] is a [`LocalBus`] joined to the other nodes' buses: what
//! this process publishes reaches its own subscribers at once (as on the
//! embedded bus) and goes out on one NATS subject; what the other nodes
//! publish there comes in and reaches the same subscribers, filtered the
//! same way. So a subscriber on any node sees the whole pool.
//!
//! Plain NATS publish/subscribe, not a JetStream stream: these are live
//! streams whose value is in being current; history is the one-minute
//! window each node keeps. Publishing never waits for NATS: outgoing
//! messages queue in a bounded buffer, sent in batches by a task; when NATS
//! falls behind, the batch that does not fit is counted and dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Bus, Filter, LocalBus, Subscription, Topic};
use crate::hist::Histogram;
use crate::model::Message;

/// Messages waiting to go out before new ones are dropped.
const OUTBOX: usize = 16 * 1024;

/// How long NATS may take to confirm the subscription.
const CONFIRM_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Messages sent in one NATS message at most.
const BATCH: usize = 512;

/// Takes what other nodes publish, besides delivering it to subscribers:
/// the telemetry hub keeps their samples (with the histograms subscribers
/// do not get) in its window and exposition, and their events.
pub trait Ingest: Send + Sync + 'static {
    fn ingest(&self, message: &Message, histogram: Option<&Histogram>);
}

/// The cluster bus. Cheap to clone; the last clone dropped leaves NATS.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    local: LocalBus,
    node: String,
    subject: String,
    outbox: mpsc::Sender<Item>,
    /// Messages not sent because the outbox was full.
    lost: AtomicU64,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NatsBusError {
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    #[error("NATS did not confirm the subscription to {subject}: {source}")]
    Confirm {
        subject: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What one node sends at once.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    node: String,
    items: Vec<Item>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Item {
    topic: Topic,
    message: Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    histogram: Option<Histogram>,
}

// === impl NatsBus ===

impl NatsBus {
    /// Joins the bus on `subject` as `node` (a name unique in the pool:
    /// messages carrying it are this process's own and are not taken back
    /// in). When this returns, NATS has the subscription: whatever any node
    /// publishes from now on arrives.
    pub async fn connect(
        client: async_nats::Client,
        subject: impl Into<String>,
        node: impl Into<String>,
        ingest: Option<Arc<dyn Ingest>>,
    ) -> Result<NatsBus, NatsBusError> {
        let subject = subject.into();
        let node = node.into();
        let local = LocalBus::new();
        let incoming =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|source| NatsBusError::Subscribe {
                    subject: subject.clone(),
                    source,
                })?;
        round_trip(&client)
            .await
            .map_err(|source| NatsBusError::Confirm {
                subject: subject.clone(),
                source,
            })?;
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let sender = tokio::spawn(send(client.clone(), subject.clone(), node.clone(), queued));
        let receiver = tokio::spawn(receive(incoming, node.clone(), local.clone(), ingest));
        Ok(NatsBus {
            inner: Arc::new(Inner {
                local,
                node,
                subject,
                outbox,
                lost: AtomicU64::new(0),
                tasks: vec![sender, receiver],
            }),
        })
    }

    /// The name this bus publishes as.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Messages that never left because NATS was behind.
    pub fn lost(&self) -> u64 {
        self.inner.lost.load(Ordering::Relaxed)
    }

    fn send(&self, topic: Topic, message: Message, histogram: Option<Histogram>) {
        let item = Item {
            topic,
            message,
            histogram,
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.inner.outbox.try_send(item) {
            let lost = self.inner.lost.fetch_add(1, Ordering::Relaxed);
            // One warning per thousand, not one per message.
            if lost.is_multiple_of(1000) {
                tracing::warn!(
                    subject = %self.inner.subject,
                    "the cluster bus is behind: {} messages not sent so far",
                    lost + 1
                );
            }
        }
    }
}

impl Bus for NatsBus {
    fn publish(&self, topic: Topic, message: Message) {
        self.send(topic, message.clone(), None);
        self.inner.local.publish(topic, message);
    }

    fn publish_sample(&self, message: Message, histogram: Option<&Histogram>) {
        let topic = Topic::of(&message);
        self.send(topic, message.clone(), histogram.cloned());
        self.inner.local.publish(topic, message);
    }

    fn subscribe(&self, topic: Topic, filter: Filter, capacity: usize) -> Subscription {
        self.inner.local.subscribe(topic, filter, capacity)
    }

    fn subscribers(&self) -> usize {
        self.inner.local.subscribers()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The receiving task holds a clone of the local bus: ending it lets
        // subscriptions see the bus is gone.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("node", &self.inner.node)
            .field("subject", &self.inner.subject)
            .field("subscribers", &self.subscribers())
            .finish()
    }
}

/// Returns once the server has processed everything this client sent
/// before: it answers a message to ourselves only after the commands ahead
/// of it. (`Client::flush` only empties the client's own buffer.)
async fn round_trip(
    client: &async_nats::Client,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    match tokio::time::timeout(CONFIRM_WITHIN, probe.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the connection closed".into()),
        Err(_) => Err(format!("no answer within {CONFIRM_WITHIN:?}").into()),
    }
}

// === tasks ===

/// Sends what is queued, in batches of what has piled up meanwhile.
async fn send(
    client: async_nats::Client,
    subject: String,
    node: String,
    mut queued: mpsc::Receiver<Item>,
) {
    let mut items = Vec::with_capacity(BATCH);
    while queued.recv_many(&mut items, BATCH).await > 0 {
        let batch = Batch {
            node: node.clone(),
            items: std::mem::take(&mut items),
        };
        match serde_json::to_vec(&batch) {
            Ok(bytes) => {
                if let Err(e) = client.publish(subject.clone(), bytes.into()).await {
                    tracing::warn!("cannot publish on {subject}: {e}");
                }
            }
            Err(e) => tracing::error!("cannot encode a bus batch: {e}"),
        }
    }
}

/// Delivers what the other nodes publish.
async fn receive(
    mut incoming: async_nats::Subscriber,
    node: String,
    local: LocalBus,
    ingest: Option<Arc<dyn Ingest>>,
) {
    while let Some(message) = incoming.next().await {
        let batch: Batch = match serde_json::from_slice(&message.payload) {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!("ignoring a malformed message on {}: {e}", message.subject);
                continue;
            }
        };
        if batch.node == node {
            continue;
        }
        for item in batch.items {
            if let Some(ingest) = &ingest {
                ingest.ingest(&item.message, item.histogram.as_ref());
            }
            local.publish(item.topic, item.message);
        }
    }
}
