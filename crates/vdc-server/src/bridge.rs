//! The bus of a cluster: every node publishes what it measured each second,
//! and every lifecycle event it emits, on a NATS subject; every server and
//! agent subscribes and takes the others' messages into its own hub, so any
//! server's streams, `/metrics`, windows and autoscaler see the whole pool.
//!
//! Plain NATS publish/subscribe, not a JetStream stream: these are live
//! streams whose value is in being current, and a subscriber that was away
//! has the one-minute window of whoever it asks.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vdc_telemetry::{Event, Histogram, Message};

use crate::telemetry::Telemetry;

/// The subject every node publishes on.
const SUBJECT: &str = "vdc.bus";

/// Batches waiting to be published before new ones are dropped (with a
/// warning): publishing never waits for NATS.
const QUEUE: usize = 256;

/// What one node sends at once.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    node: String,
    #[serde(default)]
    samples: Vec<Sample>,
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sample {
    message: Message,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    histogram: Option<Histogram>,
}

/// The sending side, held by the hub.
#[derive(Clone, Debug)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Outgoing>,
}

#[derive(Debug)]
pub(crate) enum Outgoing {
    Samples(Vec<(Message, Option<Histogram>)>),
    Event(Event),
}

impl Outbox {
    pub(crate) fn send(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(outgoing) {
            tracing::warn!("the cluster bus is behind: a batch of telemetry was dropped");
        }
    }
}

/// Connects `telemetry` to the cluster bus: what it measures and emits goes
/// out, what other nodes publish comes in. Runs until `shutdown`.
pub(crate) async fn connect(
    client: async_nats::Client,
    node: String,
    telemetry: Telemetry,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut subscriber = client.subscribe(SUBJECT).await?;
    let (tx, mut rx) = mpsc::channel(QUEUE);
    telemetry.attach(Outbox { tx });

    let publisher = {
        let (client, node, shutdown) = (client.clone(), node.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let outgoing = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    o = rx.recv() => match o { Some(o) => o, None => return },
                };
                let batch = match outgoing {
                    Outgoing::Samples(samples) => Batch {
                        node: node.clone(),
                        samples: samples
                            .into_iter()
                            .map(|(message, histogram)| Sample { message, histogram })
                            .collect(),
                        events: Vec::new(),
                    },
                    Outgoing::Event(event) => Batch {
                        node: node.clone(),
                        samples: Vec::new(),
                        events: vec![event],
                    },
                };
                match serde_json::to_vec(&batch) {
                    Ok(bytes) => {
                        if let Err(e) = client.publish(SUBJECT, bytes.into()).await {
                            tracing::warn!("cannot publish on the cluster bus: {e}");
                        }
                    }
                    Err(e) => tracing::error!("cannot encode a bus batch: {e}"),
                }
            }
        })
    };

    use futures_util::StreamExt;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = subscriber.next() => match m { Some(m) => m, None => break },
        };
        let batch: Batch = match serde_json::from_slice(&message.payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("ignoring a malformed message on {SUBJECT}: {e}");
                continue;
            }
        };
        if batch.node == node {
            continue;
        }
        telemetry.ingest(
            batch
                .samples
                .into_iter()
                .map(|s| (s.message, s.histogram))
                .collect(),
        );
        for event in batch.events {
            telemetry.ingest_event(event);
        }
    }
    publisher.abort();
    Ok(())
}
