//! Tests of the bus. One contract — filtering, bounded buffers with exact
//! drop notices, unsubscribing, waking a waiting subscriber — runs against
//! [`LocalBus`] and against a [`NatsBus`] on a real `nats-server`; more
//! tests cover what only a cluster bus does: carrying messages between
//! nodes.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::testutil::{event, link_tags, resources, traffic, traffic_msg};

fn drain(sub: &mut Subscription) -> Vec<Message> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

fn requests(m: &Message) -> u64 {
    match m {
        Message::Traffic(s) => s.traffic.requests,
        other => panic!("not traffic: {other:?}"),
    }
}

/// The next message, failing the test after 5 s.
#[track_caller]
fn next(sub: &mut Subscription) -> impl std::future::Future<Output = Option<Message>> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .unwrap_or_else(|_| panic!("no message within 5 s at {caller}"))
    }
}

/// What every implementation of [`Bus`] does.
mod contract {
    use super::*;

    pub async fn subscribers_get_only_what_their_filter_wants(bus: Arc<dyn Bus>) {
        let mut shop = bus.subscribe(Topic::Metrics, Filter::all().with_app("shop"), 16);
        let mut blog_gateways = bus.subscribe(
            Topic::Metrics,
            Filter::all()
                .with_tenant("acme")
                .with_app("blog")
                .with_kinds([SeriesKind::Gateway]),
            16,
        );
        let mut events = bus.subscribe(Topic::Events, Filter::all().with_app("shop"), 16);

        let blog = Tags::new("acme", "blog", "lb").with_link("gateway");
        bus.publish(Topic::Metrics, traffic_msg(1, link_tags(), 1));
        bus.publish(
            Topic::Metrics,
            Message::Traffic(traffic(1, SeriesKind::Gateway, blog.clone(), 2)),
        );
        bus.publish(Topic::Metrics, traffic_msg(1, blog.clone(), 3));
        bus.publish(Topic::Events, Message::Event(event("shop", Some("web"))));
        bus.publish(Topic::Events, Message::Event(event("blog", None)));

        assert_eq!(
            drain(&mut shop).iter().map(requests).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(
            drain(&mut blog_gateways)
                .iter()
                .map(requests)
                .collect::<Vec<_>>(),
            [2]
        );
        let events = drain(&mut events);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].app(), Some("shop"));
    }

    pub async fn a_full_subscriber_loses_messages_and_is_told_exactly_how_many(bus: Arc<dyn Bus>) {
        let mut slow = bus.subscribe(Topic::Metrics, Filter::all(), 3);
        let mut fast = bus.subscribe(Topic::Metrics, Filter::all(), 100);

        // The slow one never reads while 10 messages go out: publishing does
        // not wait, and the fast one gets everything.
        for i in 0..10 {
            bus.publish(Topic::Metrics, traffic_msg(i, link_tags(), i));
        }
        assert_eq!(
            drain(&mut fast).iter().map(requests).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );

        // Reading again: what was buffered, then the gap where it was.
        assert_eq!(slow.try_recv().map(|m| requests(&m)), Some(0));
        bus.publish(Topic::Metrics, traffic_msg(10, link_tags(), 10));
        let rest = drain(&mut slow);
        assert_eq!(rest.len(), 4, "{rest:?}");
        assert_eq!(requests(&rest[0]), 1);
        assert_eq!(requests(&rest[1]), 2);
        assert_eq!(rest[2], Message::Dropped { count: 7 });
        assert_eq!(requests(&rest[3]), 10);

        // Nothing more is owed.
        bus.publish(Topic::Metrics, traffic_msg(11, link_tags(), 11));
        assert_eq!(
            drain(&mut slow).iter().map(requests).collect::<Vec<_>>(),
            [11]
        );
    }

    pub async fn a_drained_subscriber_learns_of_losses_without_waiting_for_the_next_message(
        bus: Arc<dyn Bus>,
    ) {
        let mut slow = bus.subscribe(Topic::Metrics, Filter::all(), 2);
        for i in 0..5 {
            bus.publish(Topic::Metrics, traffic_msg(i, link_tags(), i));
        }
        let got = drain(&mut slow);
        assert_eq!(got.len(), 3);
        assert_eq!(got[2], Message::Dropped { count: 3 });
    }

    pub async fn dropping_a_subscription_removes_it(bus: Arc<dyn Bus>) {
        let a = bus.subscribe(Topic::Metrics, Filter::all(), 4);
        let mut b = bus.subscribe(Topic::Events, Filter::all(), 4);
        assert_eq!(bus.subscribers(), 2);
        drop(a);
        assert_eq!(bus.subscribers(), 1);
        bus.publish(Topic::Metrics, traffic_msg(1, link_tags(), 1));
        assert_eq!(b.try_recv(), None);
        drop(b);
        assert_eq!(bus.subscribers(), 0);
    }

    pub async fn recv_waits_for_a_message_and_ends_with_the_bus(bus: Arc<dyn Bus>) {
        let mut sub = bus.subscribe(Topic::Metrics, Filter::all(), 4);
        let publisher = {
            let bus = Arc::clone(&bus);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                bus.publish(Topic::Metrics, traffic_msg(5, link_tags(), 5));
            })
        };
        assert_eq!(next(&mut sub).await.as_ref().map(requests), Some(5));
        publisher.await.unwrap();

        bus.publish(Topic::Metrics, traffic_msg(6, link_tags(), 6));
        drop(bus);
        assert_eq!(
            next(&mut sub).await.as_ref().map(requests),
            Some(6),
            "buffered first"
        );
        assert_eq!(next(&mut sub).await, None);
    }

    pub async fn a_sample_reaches_subscribers_without_its_histogram(bus: Arc<dyn Bus>) {
        let mut sub = bus.subscribe(Topic::Metrics, Filter::all(), 4);
        let hist = crate::LatencyHistogram::new();
        hist.record(Duration::from_millis(3));
        let message = traffic_msg(7, link_tags(), 7);
        bus.publish_sample(message.clone(), Some(&hist.take()));
        assert_eq!(sub.try_recv(), Some(message));
        assert_eq!(sub.try_recv(), None);
    }
}

/// A `nats-server` and a directory for it, for as long as a test runs.
struct Nats {
    server: vdc_testkit::NatsServer,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let dir = tempfile::tempdir().unwrap();
        Nats {
            server: vdc_testkit::NatsServer::start(dir.path()),
            _dir: dir,
        }
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.server.url()).await.unwrap()
    }

    async fn bus(&self, node: &str, ingest: Option<Arc<dyn Ingest>>) -> NatsBus {
        NatsBus::connect(self.client().await, "test.bus", node, ingest)
            .await
            .unwrap()
    }
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod local_bus {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    contract::$name(Arc::new(LocalBus::new())).await;
                }
            )*
        }

        mod nats_bus {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let nats = Nats::start();
                    contract::$name(Arc::new(nats.bus("n1", None).await)).await;
                }
            )*
        }
    };
}

contract_tests!(
    subscribers_get_only_what_their_filter_wants,
    a_full_subscriber_loses_messages_and_is_told_exactly_how_many,
    a_drained_subscriber_learns_of_losses_without_waiting_for_the_next_message,
    dropping_a_subscription_removes_it,
    recv_waits_for_a_message_and_ends_with_the_bus,
    a_sample_reaches_subscribers_without_its_histogram,
);

/// What a node's hub would keep of the others' samples.
#[derive(Default)]
struct Kept(Mutex<Vec<(Message, Option<crate::Histogram>)>>);

impl Ingest for Kept {
    fn ingest(&self, message: &Message, histogram: Option<&crate::Histogram>) {
        self.0
            .lock()
            .unwrap()
            .push((message.clone(), histogram.cloned()));
    }
}

#[tokio::test]
async fn what_one_node_publishes_reaches_the_filtered_subscribers_of_the_others_once() {
    let nats = Nats::start();
    let a = nats.bus("a", None).await;
    let kept = Arc::new(Kept::default());
    let b = nats.bus("b", Some(kept.clone() as Arc<dyn Ingest>)).await;
    let mut on_a = a.subscribe(Topic::Metrics, Filter::all(), 16);
    let mut shop_on_b = b.subscribe(Topic::Metrics, Filter::all().with_app("shop"), 16);
    let mut events_on_b = b.subscribe(Topic::Events, Filter::all(), 16);

    let blog = Tags::new("acme", "blog", "lb").with_link("gateway");
    a.publish(Topic::Metrics, traffic_msg(1, blog, 1));
    let hist = crate::LatencyHistogram::new();
    hist.record(Duration::from_micros(1_500));
    let hist = hist.take();
    a.publish_sample(traffic_msg(1, link_tags(), 2), Some(&hist));
    a.publish(Topic::Events, Message::Event(event("shop", None)));

    assert_eq!(next(&mut shop_on_b).await.as_ref().map(requests), Some(2));
    let got = next(&mut events_on_b).await.unwrap();
    assert_eq!(got.app(), Some("shop"));

    // The hub of b kept all three, the sample with its histogram.
    {
        let kept = kept.0.lock().unwrap();
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[1].1.as_ref(), Some(&hist));
        assert_eq!(kept[0].1, None);
    }

    // a's own subscriber had both samples at once, and never again from
    // NATS: wait for a marker that went out after them.
    a.publish(Topic::Metrics, traffic_msg(2, link_tags(), 99));
    assert_eq!(next(&mut shop_on_b).await.as_ref().map(requests), Some(99));
    assert_eq!(
        drain(&mut on_a).iter().map(requests).collect::<Vec<_>>(),
        [1, 2, 99]
    );
    assert_eq!(b.node(), "b");
    assert_eq!(a.lost(), 0);
}

#[tokio::test]
async fn a_slow_subscriber_on_another_node_is_told_exactly_what_it_lost() {
    let nats = Nats::start();
    let a = nats.bus("a", None).await;
    let b = nats.bus("b", None).await;
    let mut slow = b.subscribe(Topic::Metrics, Filter::all(), 3);
    let mut witness = b.subscribe(Topic::Metrics, Filter::all(), 100);
    for i in 0..10 {
        a.publish(Topic::Metrics, traffic_msg(i, link_tags(), i));
    }
    // Deliveries are in order, to every subscriber of a message before the
    // next: once the witness has the last, the slow one was offered all.
    for i in 0..10 {
        assert_eq!(next(&mut witness).await.as_ref().map(requests), Some(i));
    }
    let got = drain(&mut slow);
    assert_eq!(
        got.iter().take(3).map(requests).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(got[3..], [Message::Dropped { count: 7 }]);
}

#[tokio::test]
async fn garbage_on_the_subject_is_ignored() {
    let nats = Nats::start();
    let client = nats.client().await;
    let b = nats.bus("b", None).await;
    let a = nats.bus("a", None).await;
    let mut sub = b.subscribe(Topic::Metrics, Filter::all(), 16);
    client.publish("test.bus", "not json".into()).await.unwrap();
    client
        .publish(
            "test.bus",
            r#"{"node":"x","items":[{"topic":"nope"}]}"#.into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    a.publish(Topic::Metrics, traffic_msg(1, link_tags(), 1));
    assert_eq!(next(&mut sub).await.as_ref().map(requests), Some(1));
    assert_eq!(sub.try_recv(), None);
}

#[test]
fn filter_rules() {
    let web = Message::Traffic(traffic(1, SeriesKind::Link, link_tags(), 1));
    let res = Message::Resources(resources(1, Tags::new("acme", "shop", "db")));
    let app_event = Message::Event(event("shop", None));
    let db_event = Message::Event(event("shop", Some("db")));
    let dropped = Message::Dropped { count: 1 };

    let db = Filter::all().with_component("db");
    assert!(!db.matches(&web));
    assert!(db.matches(&res));
    assert!(
        db.matches(&app_event),
        "app-wide events concern every component"
    );
    assert!(db.matches(&db_event));
    assert!(db.matches(&dropped));

    let other_tenant = Filter::all().with_tenant("globex");
    assert!(!other_tenant.matches(&web));
    assert!(!other_tenant.matches(&app_event));
    assert!(other_tenant.matches(&dropped));

    let instances = Filter::all().with_kinds([SeriesKind::Instance]);
    assert!(!instances.matches(&web));
    assert!(instances.matches(&res));
    assert!(instances.matches(&db_event), "events have no series kind");

    assert!(Filter::all().matches_series(SeriesKind::Link, &link_tags()));
    assert!(!instances.matches_series(SeriesKind::Link, &link_tags()));
}

#[test]
fn a_delivery_after_the_subscription_is_gone_says_so() {
    let (sub, delivery) = Subscription::channel(0);
    assert!(delivery.deliver(Message::Dropped { count: 0 }));
    assert!(delivery.deliver(Message::Traffic(traffic(
        1,
        SeriesKind::Link,
        link_tags(),
        1
    ))));
    drop(sub);
    assert!(delivery.is_closed());
    assert!(!delivery.deliver(Message::Dropped { count: 0 }));
}
