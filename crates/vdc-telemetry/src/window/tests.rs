//! Tests of the window: expiry, replacement, rates over the last seconds,
//! merged latency, resource use, forgetting an app, serde of the results.

use super::*;
use crate::testutil::{instance_tags, latency, link_tags, resources, traffic, traffic_msg};

fn gateway_tags() -> Tags {
    Tags::new("acme", "shop", "lb")
        .with_link("gateway")
        .with_target("web.http")
}

#[test]
fn keeps_the_last_n_seconds_per_series() {
    let mut w = Window::new(3);
    w.push(&Message::Resources(resources(105, instance_tags(0))));
    for ts in 100..110 {
        w.push(&traffic_msg(ts, link_tags(), ts));
    }
    // The resource series stopped at 105, out of the window 107..=109.
    assert_eq!(w.newest_ts(), Some(109));
    assert_eq!(w.len(), 1);
    let latest = w.latest();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0], traffic_msg(109, link_tags(), 109));

    // Too old to matter: ignored.
    w.push(&traffic_msg(50, link_tags(), 1));
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 10).unwrap();
    assert_eq!(rate.seconds, 3);
    assert_eq!(rate.traffic.requests, 107 + 108 + 109);
}

#[test]
fn samples_of_the_same_second_add_up_and_order_is_kept() {
    // Two nodes measure the same link in second 5.
    let mut w = Window::new(10);
    w.push(&traffic_msg(5, link_tags(), 1));
    w.push(&traffic_msg(3, link_tags(), 2));
    w.push(&traffic_msg(4, link_tags(), 3));
    w.push(&traffic_msg(5, link_tags(), 4));
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 10).unwrap();
    assert_eq!(rate.traffic.requests, 1 + 2 + 3 + 4);
    let Message::Traffic(mut both) = traffic_msg(5, link_tags(), 5) else {
        unreachable!()
    };
    both.traffic.connections_opened = 2;
    both.traffic.connections_active = 4;
    assert_eq!(w.latest(), vec![Message::Traffic(both)]);
    assert_eq!(rate.seconds, 3, "the window saw 3..=5 only");
}

#[test]
fn latency_histograms_of_the_same_second_merge() {
    let mut w = Window::new(10);
    let mut fast = Histogram::new();
    fast.record_us(1_000);
    let mut slow = Histogram::new();
    slow.record_us(100_000);
    for (h, requests) in [(&fast, 1), (&slow, 1)] {
        let Message::Traffic(mut s) = traffic_msg(5, link_tags(), requests) else {
            unreachable!()
        };
        s.latency = Some(h.summary());
        w.push_with_histogram(&Message::Traffic(s), Some(h));
    }
    let Some(Message::Traffic(s)) = w.latest().into_iter().next() else {
        panic!("no sample")
    };
    let latency = s.latency.unwrap();
    assert_eq!(latency.count, 2);
    assert!(latency.max_ms >= 99.0, "{latency:?}");
}

#[test]
fn rates_over_the_last_seconds() {
    let mut w = Window::new(60);
    for ts in 1..=10 {
        let mut s = traffic(ts, SeriesKind::Link, link_tags(), 10);
        s.traffic.errors_timeout = ts % 2;
        s.traffic.responses_5xx = ts % 2;
        s.traffic.connections_active = ts;
        w.push(&Message::Traffic(s));
    }
    // Seconds 6..=10: 50 requests, errors in seconds 7 and 9.
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 5).unwrap();
    assert_eq!(rate.seconds, 5);
    assert_eq!(rate.until, 10);
    assert_eq!(rate.traffic.requests, 50);
    assert_eq!(rate.requests_per_s, 10.0);
    assert_eq!(rate.errors_per_s, 2.0 / 5.0);
    assert_eq!(rate.responses_5xx_per_s, 2.0 / 5.0);
    assert_eq!(rate.bytes_in_per_s, 1000.0);
    assert_eq!(rate.bytes_out_per_s, 10_000.0);
    assert_eq!(rate.connections_per_s, 1.0);
    assert_eq!(
        rate.traffic.connections_active, 10,
        "the gauge is the latest"
    );
    assert_eq!(rate.latency, None);

    // A series that went quiet before the period has no rate.
    w.push(&traffic_msg(20, gateway_tags(), 1));
    assert_eq!(w.traffic_rate(SeriesKind::Link, &link_tags(), 5), None);
    // Quiet seconds count as zero.
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 60).unwrap();
    assert_eq!(rate.seconds, 20);
    assert_eq!(rate.requests_per_s, 100.0 / 20.0);
}

#[test]
fn latency_is_exact_with_histograms_and_an_upper_bound_without() {
    let mut w = Window::new(10);
    let mut all = Histogram::new();
    for ts in 1..=3u64 {
        let mut h = Histogram::new();
        for v in 0..100 {
            h.record_us(ts * 1000 + v);
        }
        all.merge(&h);
        let mut s = traffic(ts, SeriesKind::Link, link_tags(), 100);
        s.latency = Some(h.summary());
        w.push_with_histogram(&Message::Traffic(s), Some(&h));
    }
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 10).unwrap();
    assert!(rate.latency_exact);
    assert_eq!(rate.latency, Some(all.summary()));

    let mut w = Window::new(10);
    for (ts, p50, max) in [(1, 1.0, 5.0), (2, 3.0, 4.0)] {
        let mut s = traffic(ts, SeriesKind::Link, link_tags(), 10);
        s.latency = Some(latency(10, p50, max));
        w.push(&Message::Traffic(s));
    }
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 10).unwrap();
    assert!(!rate.latency_exact);
    let l = rate.latency.unwrap();
    assert_eq!(
        (l.count, l.p50_ms, l.max_ms, l.mean_ms),
        (20, 3.0, 5.0, 2.0)
    );
}

#[test]
fn traffic_rates_follow_the_filter() {
    let mut w = Window::new(10);
    w.push(&traffic_msg(1, link_tags(), 1));
    w.push(&Message::Traffic(traffic(
        1,
        SeriesKind::Gateway,
        gateway_tags(),
        2,
    )));
    w.push(&traffic_msg(
        1,
        Tags::new("acme", "blog", "web").with_link("db"),
        3,
    ));
    let gateways = w.traffic_rates(&Filter::all().with_kinds([SeriesKind::Gateway]), 5);
    assert_eq!(gateways.len(), 1);
    assert_eq!(gateways[0].tags, gateway_tags());
    assert_eq!(gateways[0].protocol, "http");
    assert_eq!(w.traffic_rates(&Filter::all().with_app("shop"), 5).len(), 2);

    let json = serde_json::to_string(&gateways).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<SeriesRate>>(&json).unwrap(),
        gateways
    );
}

#[test]
fn resource_usage_over_the_last_seconds() {
    let mut w = Window::new(30);
    for ts in 1..=10u64 {
        let mut s = resources(ts, instance_tags(0));
        s.cpu_percent = ts as f64 * 10.0;
        s.io_read_bytes = ts * 1000;
        s.io_write_bytes = ts * 10;
        s.throttled_ms = ts;
        s.memory_bytes = ts << 20;
        w.push(&Message::Resources(s));
    }
    let usage = w.resource_usage(&Filter::all(), 4);
    assert_eq!(usage.len(), 1);
    let u = &usage[0];
    assert_eq!((u.seconds, u.until), (4, 10));
    assert_eq!(u.cpu_percent, (70.0 + 80.0 + 90.0 + 100.0) / 4.0);
    assert_eq!(u.memory_bytes, 10 << 20);
    assert_eq!(u.io_read_bytes_per_s, 1000.0);
    assert_eq!(u.io_write_bytes_per_s, 10.0);
    assert_eq!(u.throttled_ms_per_s, 1.0);

    // A restart resets the totals: no negative rate.
    let mut s = resources(11, instance_tags(0));
    s.io_read_bytes = 0;
    w.push(&Message::Resources(s));
    assert_eq!(
        w.resource_usage(&Filter::all(), 2)[0].io_read_bytes_per_s,
        0.0
    );

    let json = serde_json::to_string(&usage).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<ResourceUsage>>(&json).unwrap(),
        usage
    );
}

#[test]
fn forget_app_removes_its_series() {
    let mut w = Window::new(10);
    w.push(&traffic_msg(1, link_tags(), 1));
    w.push(&Message::Resources(resources(1, instance_tags(0))));
    w.push(&traffic_msg(1, Tags::new("acme", "blog", "web"), 1));
    w.push(&Message::Dropped { count: 3 });
    assert_eq!(w.len(), 3);
    w.forget_app("shop");
    assert_eq!(w.len(), 1);
    assert_eq!(w.latest()[0].app(), Some("blog"));
}

#[test]
fn an_empty_window_answers_nothing() {
    let w = Window::new(0);
    assert!(w.is_empty());
    assert!(w.latest().is_empty());
    assert_eq!(w.traffic_rate(SeriesKind::Link, &link_tags(), 5), None);
    assert!(w.resource_usage(&Filter::all(), 5).is_empty());
}

#[test]
fn serde_round_trip_keeps_samples_histograms_and_clock() {
    let mut w = Window::new(5);
    for ts in 1..=8 {
        let mut h = Histogram::new();
        h.record_us(ts * 100);
        let mut s = traffic(ts, SeriesKind::Gateway, gateway_tags(), ts);
        s.latency = Some(h.summary());
        w.push_with_histogram(&Message::Traffic(s), Some(&h));
        w.push(&Message::Resources(resources(ts, instance_tags(0))));
    }
    w.push(&traffic_msg(8, link_tags(), 1));
    let json = serde_json::to_string(&w).unwrap();
    let back: Window = serde_json::from_str(&json).unwrap();
    assert_eq!(back, w);
    assert_eq!(
        back.traffic_rate(SeriesKind::Gateway, &gateway_tags(), 5),
        w.traffic_rate(SeriesKind::Gateway, &gateway_tags(), 5)
    );
}

#[test]
fn a_sample_from_far_in_the_future_does_not_break_the_window() {
    let mut w = Window::new(5);
    w.push(&traffic_msg(1, link_tags(), 1));
    w.push(&traffic_msg(u64::MAX, link_tags(), 2));
    let rate = w.traffic_rate(SeriesKind::Link, &link_tags(), 5).unwrap();
    assert_eq!((rate.seconds, rate.traffic.requests), (5, 2));
}
