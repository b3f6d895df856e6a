//! Tests of the message model: JSON shapes, round trips and accessors.

use expect_test::{expect, Expect};

use super::*;
use crate::testutil::{event, instance_tags, latency, link_tags, resources, traffic};

fn check_json(m: &Message, want: Expect) {
    let json = serde_json::to_string_pretty(m).unwrap();
    want.assert_eq(&json);
    let back: Message = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, m, "round trip");
}

#[test]
fn traffic_json() {
    let mut s = traffic(1_700_000_000, SeriesKind::Link, link_tags(), 120);
    s.latency = Some(latency(120, 1.2, 9.5));
    check_json(
        &Message::Traffic(s),
        expect![[r#"
        {
          "type": "traffic",
          "ts": 1700000000,
          "kind": "link",
          "tags": {
            "tenant": "acme",
            "app": "shop",
            "component": "web",
            "link": "db",
            "target": "db.kv"
          },
          "protocol": "http",
          "traffic": {
            "requests": 120,
            "responses_1xx": 0,
            "responses_2xx": 120,
            "responses_3xx": 0,
            "responses_4xx": 0,
            "responses_5xx": 0,
            "errors_refused": 0,
            "errors_reset": 0,
            "errors_timeout": 0,
            "errors_no_backend": 0,
            "errors_other": 0,
            "retries": 0,
            "bytes_in": 12000,
            "bytes_out": 120000,
            "connections_opened": 1,
            "connections_active": 2
          },
          "latency": {
            "count": 120,
            "p50_ms": 1.2,
            "p90_ms": 1.2,
            "p99_ms": 9.5,
            "p999_ms": 9.5,
            "max_ms": 9.5,
            "mean_ms": 1.2
          }
        }"#]],
    );
}

#[test]
fn endpoint_traffic_json() {
    let tags = Tags::new("acme", "shop", "db")
        .with_target("db.kv")
        .with_instance("shop/db/0");
    let mut s = traffic(1_700_000_000, SeriesKind::Instance, tags, 3);
    s.protocol = "tcp".to_string();
    s.traffic.requests = 0;
    s.traffic.responses_2xx = 0;
    s.traffic.bytes_in = 0;
    s.traffic.bytes_out = 0;
    s.traffic.connections_opened = 3;
    s.traffic.connections_active = 0;
    s.traffic.errors_refused = 1;
    check_json(
        &Message::Traffic(s),
        expect![[r#"
        {
          "type": "traffic",
          "ts": 1700000000,
          "kind": "instance",
          "tags": {
            "tenant": "acme",
            "app": "shop",
            "component": "db",
            "target": "db.kv",
            "instance": "shop/db/0"
          },
          "protocol": "tcp",
          "traffic": {
            "requests": 0,
            "responses_1xx": 0,
            "responses_2xx": 0,
            "responses_3xx": 0,
            "responses_4xx": 0,
            "responses_5xx": 0,
            "errors_refused": 1,
            "errors_reset": 0,
            "errors_timeout": 0,
            "errors_no_backend": 0,
            "errors_other": 0,
            "retries": 0,
            "bytes_in": 0,
            "bytes_out": 0,
            "connections_opened": 3,
            "connections_active": 0
          }
        }"#]],
    );
}

#[test]
fn resources_json() {
    check_json(
        &Message::Resources(resources(1_700_000_000, instance_tags(0))),
        expect![[r#"
        {
          "type": "resources",
          "ts": 1700000000,
          "tags": {
            "tenant": "acme",
            "app": "shop",
            "component": "web",
            "instance": "shop/web/0"
          },
          "source": "cgroup-v2",
          "cpu_percent": 12.5,
          "cpu_user_ms": 1500,
          "cpu_system_ms": 250,
          "throttled_periods": 3,
          "throttled_ms": 40,
          "memory_bytes": 52428800,
          "memory_peak_bytes": 67108864,
          "memory_limit_bytes": 268435456,
          "oom_kills": 0,
          "io_read_bytes": 4096,
          "io_write_bytes": 8192,
          "pids": 4
        }"#]],
    );
}

#[test]
fn event_json() {
    check_json(
        &Message::Event(event("shop", Some("web"))),
        expect![[r#"
        {
          "type": "event",
          "ts_ms": 1700000000123,
          "kind": "instance-ready",
          "tenant": "acme",
          "app": "shop",
          "component": "web",
          "instance": "shop/web/0",
          "reason": "ready after 1 probe"
        }"#]],
    );
    let mut down = event("shop", None);
    down.kind = EventKind::AppDown;
    down.reason = "vdc down".to_string();
    check_json(
        &Message::Event(down),
        expect![[r#"
        {
          "type": "event",
          "ts_ms": 1700000000123,
          "kind": "app-down",
          "tenant": "acme",
          "app": "shop",
          "reason": "vdc down"
        }"#]],
    );
}

#[test]
fn dropped_json() {
    check_json(
        &Message::Dropped { count: 7 },
        expect![[r#"
        {
          "type": "dropped",
          "count": 7
        }"#]],
    );
}

#[test]
fn event_kinds_are_kebab_case() {
    let kinds = [
        EventKind::SpecApplied,
        EventKind::AppDown,
        EventKind::Placement,
        EventKind::InstanceStarted,
        EventKind::InstanceReady,
        EventKind::InstanceUnhealthy,
        EventKind::InstanceExited,
        EventKind::InstanceRestarted,
        EventKind::InstanceStopped,
        EventKind::HealthChanged,
        EventKind::Warning,
    ];
    let names: Vec<String> = kinds
        .iter()
        .map(|k| serde_json::to_string(k).unwrap())
        .collect();
    expect![[r#""spec-applied" "app-down" "placement" "instance-started" "instance-ready" "instance-unhealthy" "instance-exited" "instance-restarted" "instance-stopped" "health-changed" "warning""#]].assert_eq(&names.join(" "));
}

#[test]
fn missing_optional_tags_read_as_none() {
    let tags: Tags =
        serde_json::from_str(r#"{"tenant":"acme","app":"shop","component":"web"}"#).unwrap();
    assert_eq!(tags, Tags::new("acme", "shop", "web"));
}

#[test]
fn accessors() {
    let t = Message::Traffic(traffic(1, SeriesKind::Gateway, link_tags(), 1));
    assert_eq!(t.tags(), Some(&link_tags()));
    assert_eq!(t.tenant(), Some("acme"));
    assert_eq!(t.app(), Some("shop"));
    assert_eq!(t.component(), Some("web"));
    assert_eq!(t.series_kind(), Some(SeriesKind::Gateway));

    let r = Message::Resources(resources(1, instance_tags(1)));
    assert_eq!(r.series_kind(), Some(SeriesKind::Instance));
    assert_eq!(
        r.tags().and_then(|t| t.instance.as_deref()),
        Some("shop/web/1")
    );

    let e = Message::Event(event("shop", None));
    assert_eq!(
        (e.tags(), e.tenant(), e.component()),
        (None, Some("acme"), None)
    );

    let d = Message::Dropped { count: 1 };
    assert_eq!((d.tags(), d.tenant(), d.series_kind()), (None, None, None));
}

#[test]
fn traffic_adds_field_by_field() {
    let a = traffic(1, SeriesKind::Link, link_tags(), 10).traffic;
    let b = traffic(1, SeriesKind::Link, link_tags(), 5).traffic;
    let sum = a + b;
    assert_eq!(sum.requests, 15);
    assert_eq!(sum.bytes_out, 15_000);
    assert_eq!(sum.connections_active, 4);
    let mut merged = a;
    merged.merge(&b);
    assert_eq!(merged, sum);

    let full = Traffic {
        errors_timeout: u64::MAX,
        errors_other: 1,
        ..Traffic::default()
    };
    assert_eq!((full + full).errors_timeout, u64::MAX, "saturates");
    assert_eq!(full.errors(), u64::MAX);
}

#[test]
fn without_instance_keeps_the_rest() {
    let tags = link_tags().with_instance("shop/db/0");
    assert_eq!(tags.without_instance(), link_tags());
}
