//! Sample builders shared by the unit tests.

use crate::hist::Latency;
use crate::model::{
    Event, EventKind, Message, ResourceSample, SeriesKind, Tags, Traffic, TrafficSample,
};

/// Tags of the `shop` app's `web.db` link, owned by `acme`.
pub fn link_tags() -> Tags {
    Tags::new("acme", "shop", "web")
        .with_link("db")
        .with_target("db.kv")
}

pub fn traffic(ts: u64, kind: SeriesKind, tags: Tags, requests: u64) -> TrafficSample {
    TrafficSample {
        ts,
        kind,
        tags,
        protocol: "http".to_string(),
        traffic: Traffic {
            requests,
            responses_2xx: requests,
            bytes_in: requests * 100,
            bytes_out: requests * 1000,
            connections_opened: 1,
            connections_active: 2,
            ..Traffic::default()
        },
        latency: None,
        latency_total: None,
        connect: None,
    }
}

pub fn traffic_msg(ts: u64, tags: Tags, requests: u64) -> Message {
    Message::Traffic(traffic(ts, SeriesKind::Link, tags, requests))
}

pub fn resources(ts: u64, tags: Tags) -> ResourceSample {
    ResourceSample {
        ts,
        tags,
        source: "cgroup-v2".to_string(),
        cpu_percent: 12.5,
        cpu_user_ms: 1_500,
        cpu_system_ms: 250,
        throttled_periods: 3,
        throttled_ms: 40,
        memory_bytes: 50 << 20,
        memory_peak_bytes: 64 << 20,
        memory_limit_bytes: Some(256 << 20),
        oom_kills: 0,
        io_read_bytes: 4096,
        io_write_bytes: 8192,
        pids: 4,
        volume_bytes: None,
    }
}

pub fn instance_tags(index: u32) -> Tags {
    Tags::new("acme", "shop", "web").with_instance(format!("shop/web/{index}"))
}

pub fn event(app: &str, component: Option<&str>) -> Event {
    Event {
        ts_ms: 1_700_000_000_123,
        kind: EventKind::InstanceReady,
        tenant: "acme".to_string(),
        app: app.to_string(),
        component: component.map(str::to_string),
        instance: component.map(|c| format!("{app}/{c}/0")),
        reason: "ready after 1 probe".to_string(),
    }
}

pub fn latency(count: u64, p50_ms: f64, max_ms: f64) -> Latency {
    Latency {
        count,
        p50_ms,
        p90_ms: p50_ms,
        p99_ms: max_ms,
        p999_ms: max_ms,
        max_ms,
        mean_ms: p50_ms,
    }
}
