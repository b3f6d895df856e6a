//! Tests of the bus: filtering, bounded buffers with exact drop notices,
//! unsubscribing, and waking a waiting subscriber.

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

#[test]
fn subscribers_get_only_what_their_filter_wants() {
    let bus = LocalBus::new();
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
fn a_full_subscriber_loses_messages_and_is_told_exactly_how_many() {
    let bus = LocalBus::new();
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

#[test]
fn a_drained_subscriber_learns_of_losses_without_waiting_for_the_next_message() {
    let bus = LocalBus::new();
    let mut slow = bus.subscribe(Topic::Metrics, Filter::all(), 2);
    for i in 0..5 {
        bus.publish(Topic::Metrics, traffic_msg(i, link_tags(), i));
    }
    let got = drain(&mut slow);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], Message::Dropped { count: 3 });
}

#[test]
fn dropping_a_subscription_removes_it() {
    let bus = LocalBus::new();
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

#[tokio::test(start_paused = true)]
async fn recv_waits_for_a_message_and_ends_with_the_bus() {
    let bus = LocalBus::new();
    let mut sub = bus.subscribe(Topic::Metrics, Filter::all(), 4);
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            bus.publish(Topic::Metrics, traffic_msg(5, link_tags(), 5));
        })
    };
    let got = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap();
    assert_eq!(got.as_ref().map(requests), Some(5));
    publisher.await.unwrap();

    bus.publish(Topic::Metrics, traffic_msg(6, link_tags(), 6));
    drop(bus);
    assert_eq!(
        sub.recv().await.as_ref().map(requests),
        Some(6),
        "buffered first"
    );
    assert_eq!(sub.recv().await, None);
}

#[tokio::test]
async fn a_bus_behind_the_trait_object() {
    let bus: std::sync::Arc<dyn Bus> = std::sync::Arc::new(LocalBus::new());
    let mut sub = bus.subscribe(Topic::of(&traffic_msg(1, link_tags(), 1)), Filter::all(), 1);
    bus.publish(Topic::Metrics, traffic_msg(1, link_tags(), 1));
    assert!(sub.recv().await.is_some());
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
