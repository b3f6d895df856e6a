//! Telemetry: what vdc measures about traffic and instances, and the
//! machinery that carries it to subscribers: in process, or between a
//! cluster's nodes on NATS.
//!
//! The data plane records every request and connection into a
//! [`LatencyHistogram`] (and atomic counters of its own) on the hot path. A
//! collector takes per-second snapshots ([`LatencyHistogram::take`]), builds
//! [`TrafficSample`]s and [`ResourceSample`]s tagged with tenant, app,
//! component, link and instance, and publishes them as [`Message`]s on a
//! [`Bus`]; subscribers receive them (push). A [`Window`] keeps the last
//! seconds for one-shot queries, and an [`Exposition`] renders cumulative
//! Prometheus text.
//!
//! ```
//! use std::time::Duration;
//! use vdc_telemetry::*;
//!
//! // On the request path.
//! let head = LatencyHistogram::new();
//! head.record(Duration::from_micros(1_200));
//!
//! // Once a second, in the collector.
//! let bus = LocalBus::new();
//! let mut shop = bus.subscribe(Topic::Metrics, Filter::all().with_app("shop"), 1024);
//! let hist = head.take();
//! let sample = TrafficSample {
//!     ts: 1_700_000_000,
//!     kind: SeriesKind::Link,
//!     tags: Tags::new("acme", "shop", "web").with_link("db").with_target("db.kv"),
//!     protocol: "http".into(),
//!     traffic: Traffic { requests: 1, responses_2xx: 1, ..Traffic::default() },
//!     latency: Some(hist.summary()),
//!     latency_total: None,
//!     connect: None,
//! };
//! let mut metrics = Exposition::new();
//! metrics.observe(&Message::Traffic(sample.clone()), Some(&hist));
//! bus.publish(Topic::Metrics, Message::Traffic(sample));
//!
//! // A subscriber.
//! let Some(Message::Traffic(got)) = shop.try_recv() else { panic!("nothing received") };
//! assert_eq!(got.latency.map(|l| l.p50_ms), Some(1.2));
//! assert!(metrics.render(Some("acme")).contains("vdc_requests_total{tenant=\"acme\""));
//! ```
//!
//! Code map:
//! - `hist`: the lock-free histogram, its owned snapshot, latency summaries;
//! - `model`: tags, samples, events, messages: the wire format of streams;
//! - `bus`: the `Bus` trait, `LocalBus`, `NatsBus` (the cluster's, on NATS
//!   subjects), bounded subscriptions and filters;
//! - `window`: recent history and rates over the last seconds;
//! - `prom`: the Prometheus text exposition.
//!
//! **Architecture invariant:** `LatencyHistogram::record` allocates nothing,
//! takes no lock and makes no syscall; publishing never waits for a
//! subscriber (a slow one loses messages and is told how many).

#![forbid(unsafe_code)]

mod bus;
mod hist;
mod model;
mod prom;
#[cfg(test)]
mod testutil;
mod window;

pub use bus::{
    Bus, Delivery, Filter, Ingest, LocalBus, NatsBus, NatsBusError, Subscription, Topic,
};
pub use hist::{Histogram, HistogramError, Latency, LatencyHistogram, BUCKETS, MAX_TRACKABLE_US};
pub use model::{
    Event, EventKind, LoadSample, Message, ResourceSample, SeriesKind, Tags, Traffic, TrafficSample,
};
pub use prom::{escape_label, Exposition, LATENCY_BOUNDS_US};
pub use window::{Rate, ResourceUsage, SeriesRate, TargetSecond, Window};
