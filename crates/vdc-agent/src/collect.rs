//! The node's per-second collection: what the data plane measured on every
//! link and gateway (and per target instance), and what the kernel accounted
//! for every instance, as tagged telemetry messages.

use std::collections::HashMap;
use std::time::Duration;

use vdc_dataplane::ListenerStats;
use vdc_reconciler::ListenerKind;
use vdc_telemetry::{Histogram, Message, ResourceSample, SeriesKind, Tags, Traffic, TrafficSample};

use crate::{lock, Agent};

/// One collected message, with the latency histogram it summarises (for
/// consumers that keep cumulative histograms, such as Prometheus).
#[derive(Clone, Debug)]
pub struct Collected {
    pub message: Message,
    pub histogram: Option<Histogram>,
}

/// Cumulative counters seen at the previous collection.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    listeners: HashMap<String, ListenerStats>,
    /// (target, instance) -> (served, responses, errors).
    endpoints: HashMap<(String, String), (u64, [u64; 5], u64)>,
}

impl Agent {
    /// Everything measured since the previous call, stamped with the unix
    /// second `ts`. Meant to be called once a second by one collector.
    pub fn collect(&self, ts: u64) -> Vec<Collected> {
        let mut out = Vec::new();
        let bindings = self.listeners();
        let measurements = self.inner.dataplane.take_measurements();
        let mut previous = lock(&self.inner.collected);
        let mut seen = HashMap::new();

        for m in measurements {
            let Some(binding) = bindings.iter().find(|b| b.plan.key == m.key) else {
                continue;
            };
            let plan = &binding.plan;
            let (kind, component, link) = match &plan.kind {
                ListenerKind::Link { component, link } => {
                    (SeriesKind::Link, component.to_string(), link.to_string())
                }
                ListenerKind::Gateway { component, .. } => (
                    SeriesKind::Gateway,
                    component.to_string(),
                    "gateway".to_owned(),
                ),
            };
            let now = m.measurement.stats;
            let before = previous.listeners.get(&m.key).copied().unwrap_or_default();
            seen.insert(m.key.clone(), now);
            let tags = Tags::new(plan.tenant.as_str(), plan.app.as_str(), component)
                .with_link(link)
                .with_target(plan.target.to_string());
            let head = m.measurement.head;
            out.push(Collected {
                message: Message::Traffic(TrafficSample {
                    ts,
                    kind,
                    tags,
                    protocol: m.protocol.to_string(),
                    traffic: delta(&now, &before),
                    latency: summary(&head),
                    latency_total: summary(&m.measurement.total),
                    connect: summary(&m.measurement.connect),
                }),
                histogram: Some(head),
            });
        }
        previous.listeners = seen;

        // Per target instance, across every listener leading to it.
        let targets: Vec<(crate::TargetKey, vdc_dataplane::Backends)> = lock(&self.inner.targets)
            .iter()
            .map(|(k, b)| (k.clone(), b.clone()))
            .collect();
        let mut seen = HashMap::new();
        for ((app, component, input), backends) in targets {
            let tenant = bindings
                .iter()
                .find(|b| b.plan.app == app)
                .map(|b| b.plan.tenant.to_string())
                .unwrap_or_default();
            let protocol = bindings
                .iter()
                .find(|b| {
                    b.plan.app == app
                        && b.plan.target.component == component
                        && b.plan.target.input == input
                })
                .map(|b| b.plan.protocol.to_string())
                .unwrap_or_default();
            let target = format!("{component}.{input}");
            for (endpoint, m) in backends.take_measurements() {
                let key = (format!("{app}/{target}"), endpoint.instance.clone());
                let (served, responses, errors) =
                    previous.endpoints.get(&key).copied().unwrap_or_default();
                seen.insert(key, (m.served, m.responses, m.errors));
                let d = |now: u64, before: u64| now.saturating_sub(before);
                let traffic = Traffic {
                    requests: if protocol == "http" {
                        d(m.served, served)
                    } else {
                        0
                    },
                    responses_1xx: d(m.responses[0], responses[0]),
                    responses_2xx: d(m.responses[1], responses[1]),
                    responses_3xx: d(m.responses[2], responses[2]),
                    responses_4xx: d(m.responses[3], responses[3]),
                    responses_5xx: d(m.responses[4], responses[4]),
                    errors_other: d(m.errors, errors),
                    connections_opened: if protocol == "tcp" {
                        d(m.served, served)
                    } else {
                        0
                    },
                    ..Traffic::default()
                };
                let tags = Tags::new(tenant.clone(), app.as_str(), component.as_str())
                    .with_target(target.clone())
                    .with_instance(endpoint.instance.clone());
                out.push(Collected {
                    message: Message::Traffic(TrafficSample {
                        ts,
                        kind: SeriesKind::Instance,
                        tags,
                        protocol: protocol.clone(),
                        traffic,
                        latency: summary(&m.head),
                        latency_total: summary(&m.total),
                        connect: None,
                    }),
                    histogram: Some(m.head),
                });
            }
        }
        previous.endpoints = seen;
        drop(previous);

        // Kernel accounting of every instance.
        for slot in lock(&self.inner.instances).values() {
            let Some(reading) = slot.usage else { continue };
            let usage = reading.usage;
            let cpu_percent = match slot.previous_usage {
                Some(prev) if reading.at > prev.at => {
                    let used = usage
                        .cpu_total_us()
                        .saturating_sub(prev.usage.cpu_total_us());
                    let elapsed = reading
                        .at
                        .duration_since(prev.at)
                        .max(Duration::from_millis(1));
                    used as f64 / elapsed.as_micros() as f64 * 100.0
                }
                _ => 0.0,
            };
            let id = &slot.record.status.id;
            out.push(Collected {
                message: Message::Resources(ResourceSample {
                    ts,
                    tags: Tags::new(slot.tenant.as_str(), id.app.as_str(), id.component.as_str())
                        .with_instance(id.to_string()),
                    source: match usage.source {
                        vdc_driver::UsageSource::CgroupV1 => "cgroup-v1",
                        vdc_driver::UsageSource::CgroupV2 => "cgroup-v2",
                        vdc_driver::UsageSource::Proc => "proc",
                    }
                    .to_owned(),
                    cpu_percent: (cpu_percent * 10.0).round() / 10.0,
                    cpu_user_ms: usage.cpu_user_us / 1000,
                    cpu_system_ms: usage.cpu_system_us / 1000,
                    throttled_periods: usage.throttled_periods,
                    throttled_ms: usage.throttled_us / 1000,
                    memory_bytes: usage.memory_bytes,
                    memory_peak_bytes: usage.memory_peak_bytes,
                    memory_limit_bytes: usage.memory_limit_bytes,
                    oom_kills: usage.oom_kills,
                    io_read_bytes: usage.io_read_bytes,
                    io_write_bytes: usage.io_write_bytes,
                    pids: usage.pids,
                    volume_bytes: slot.volume_bytes,
                }),
                histogram: None,
            });
        }
        out
    }
}

fn summary(h: &Histogram) -> Option<vdc_telemetry::Latency> {
    (!h.is_empty()).then(|| h.summary())
}

/// Per-second deltas of a listener's cumulative counters.
fn delta(now: &ListenerStats, before: &ListenerStats) -> Traffic {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    Traffic {
        requests: d(now.requests, before.requests),
        responses_1xx: d(now.responses_1xx, before.responses_1xx),
        responses_2xx: d(now.responses_2xx, before.responses_2xx),
        responses_3xx: d(now.responses_3xx, before.responses_3xx),
        responses_4xx: d(now.responses_4xx, before.responses_4xx),
        responses_5xx: d(now.responses_5xx, before.responses_5xx),
        errors_refused: d(now.errors_refused, before.errors_refused),
        errors_reset: d(now.errors_reset, before.errors_reset),
        errors_timeout: d(now.errors_timeout, before.errors_timeout),
        errors_no_backend: d(now.errors_no_backend, before.errors_no_backend),
        errors_other: d(now.errors_other, before.errors_other),
        retries: d(now.retries, before.retries),
        bytes_in: d(now.bytes_in, before.bytes_in),
        bytes_out: d(now.bytes_out, before.bytes_out),
        connections_opened: d(now.connections_total, before.connections_total),
        connections_active: now.connections_active,
    }
}
