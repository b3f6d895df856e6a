//! Prometheus text exposition (format 0.0.4): cumulative counters, gauges
//! and latency histograms built from the per-second samples.
//!
//! Traffic is labelled by `tenant, app, component, link, target, kind` only,
//! never by instance: the traffic served by the instances of one target
//! input rolls up into one series (`kind="instance"`), so the number of
//! series is bounded by the links, gateways and inputs an app declares.
//! Resources are per instance, with a fixed handful of metrics each.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::hist::Histogram;
use crate::model::{Message, ResourceSample, SeriesKind, Tags, Traffic, TrafficSample};

// === types ===

/// Upper bounds of the `le` buckets of the duration histograms, in µs
/// (0.5 ms to 10 s).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Cumulative state behind `/metrics`: feed it every published sample, and
/// render at any time.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    traffic: BTreeMap<TrafficKey, TrafficState>,
    instances: BTreeMap<InstanceKey, InstanceState>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TrafficKey {
    tenant: String,
    app: String,
    component: String,
    link: Option<String>,
    target: Option<String>,
    kind: SeriesKind,
}

#[derive(Clone, Debug, Default)]
struct TrafficState {
    http: bool,
    /// Accumulated deltas (the gauge field unused).
    totals: Traffic,
    /// The latest `connections_active` of each instance (`None`: a series
    /// without an instance), summed when rendered.
    active: BTreeMap<Option<String>, u64>,
    duration: Option<Buckets>,
}

/// A Prometheus histogram: cumulative counts at [`LATENCY_BOUNDS_US`].
#[derive(Clone, Debug, Default)]
struct Buckets {
    cumulative: [u64; LATENCY_BOUNDS_US.len()],
    count: u64,
    sum_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InstanceKey {
    tenant: String,
    app: String,
    component: String,
    instance: String,
}

#[derive(Clone, Debug, Default)]
struct InstanceState {
    cpu_user_ms: Monotonic,
    cpu_system_ms: Monotonic,
    throttled_ms: Monotonic,
    oom_kills: Monotonic,
    io_read_bytes: Monotonic,
    io_write_bytes: Monotonic,
    memory_bytes: u64,
    memory_peak_bytes: u64,
    memory_limit_bytes: Option<u64>,
    pids: u64,
    volume_bytes: Option<u64>,
}

/// A counter fed with totals that restart from zero when the instance
/// restarts: it keeps growing across restarts, as Prometheus expects.
#[derive(Clone, Copy, Debug, Default)]
struct Monotonic {
    total: u64,
    last_raw: u64,
}

/// One metric family being rendered.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    kind: &'a str,
    lines: String,
}

// === impl Exposition ===

impl Exposition {
    pub fn new() -> Self {
        Exposition::default()
    }

    /// Adds one sample: traffic deltas accumulate into counters, gauges take
    /// the latest value, resource totals feed counters that survive
    /// restarts. `hist` is the histogram behind a traffic sample's
    /// `latency`; without it the duration histogram is not updated.
    /// Events, load reports and drop notices are ignored.
    pub fn observe(&mut self, m: &Message, hist: Option<&Histogram>) {
        match m {
            Message::Traffic(s) => self.observe_traffic(s, hist),
            Message::Resources(s) => self.observe_resources(s),
            Message::Event(_) | Message::Load(_) | Message::Dropped { .. } => {}
        }
    }

    /// The exposition text; only one tenant's series when `tenant` is given.
    pub fn render(&self, tenant: Option<&str>) -> String {
        let wanted = |t: &str| tenant.is_none_or(|want| want == t);
        let traffic: Vec<_> = self
            .traffic
            .iter()
            .filter(|(k, _)| wanted(&k.tenant))
            .collect();
        let instances: Vec<_> = self
            .instances
            .iter()
            .filter(|(k, _)| wanted(&k.tenant))
            .collect();
        let mut out = String::new();

        let mut requests = Family::new("vdc_requests_total", "HTTP requests received.", "counter");
        let mut responses = Family::new(
            "vdc_responses_total",
            "HTTP responses sent, by status class.",
            "counter",
        );
        let mut errors = Family::new(
            "vdc_errors_total",
            "Requests or connections that could not be served, by cause.",
            "counter",
        );
        let mut retries = Family::new(
            "vdc_retries_total",
            "Extra endpoints tried after a failure.",
            "counter",
        );
        let mut bytes = Family::new(
            "vdc_bytes_total",
            "Bytes from the caller (in) and to it (out).",
            "counter",
        );
        let mut opened = Family::new("vdc_connections_total", "Connections opened.", "counter");
        let mut active = Family::new("vdc_connections_active", "Connections open now.", "gauge");
        let mut request_duration = Family::new(
            "vdc_request_duration_seconds",
            "HTTP time from request to response head.",
            "histogram",
        );
        let mut connection_duration = Family::new(
            "vdc_connection_duration_seconds",
            "TCP connection duration, counted when the connection closes.",
            "histogram",
        );
        for (key, state) in &traffic {
            let labels = key.labels();
            let t = &state.totals;
            if state.http {
                requests.int(&labels, &[], t.requests);
                for (class, n) in t.responses() {
                    responses.int(&labels, &[("class", class)], n);
                }
            }
            for (cause, n) in t.error_causes() {
                errors.int(&labels, &[("cause", cause)], n);
            }
            retries.int(&labels, &[], t.retries);
            bytes.int(&labels, &[("direction", "in")], t.bytes_in);
            bytes.int(&labels, &[("direction", "out")], t.bytes_out);
            opened.int(&labels, &[], t.connections_opened);
            active.int(&labels, &[], state.active.values().sum());
            if let Some(buckets) = &state.duration {
                let family = if state.http {
                    &mut request_duration
                } else {
                    &mut connection_duration
                };
                family.histogram(&labels, buckets);
            }
        }
        for family in [
            requests,
            responses,
            errors,
            retries,
            bytes,
            opened,
            active,
            request_duration,
            connection_duration,
        ] {
            family.write_to(&mut out);
        }

        let mut cpu = Family::new(
            "vdc_instance_cpu_seconds_total",
            "CPU time used by the instance, by mode.",
            "counter",
        );
        let mut throttled = Family::new(
            "vdc_instance_cpu_throttled_seconds_total",
            "Time the instance was throttled by its CPU limit.",
            "counter",
        );
        let mut memory = Family::new(
            "vdc_instance_memory_bytes",
            "Memory used by the instance.",
            "gauge",
        );
        let mut peak = Family::new(
            "vdc_instance_memory_peak_bytes",
            "Highest memory use of the instance.",
            "gauge",
        );
        let mut limit = Family::new(
            "vdc_instance_memory_limit_bytes",
            "Memory limit of the instance, when it has one.",
            "gauge",
        );
        let mut ooms = Family::new(
            "vdc_instance_oom_kills_total",
            "Processes of the instance killed for lack of memory.",
            "counter",
        );
        let mut io = Family::new(
            "vdc_instance_io_bytes_total",
            "Bytes read from and written to block devices by the instance.",
            "counter",
        );
        let mut pids = Family::new(
            "vdc_instance_pids",
            "Processes and threads of the instance.",
            "gauge",
        );
        let mut volumes = Family::new(
            "vdc_instance_volume_bytes",
            "Bytes in the instance's volumes on its node.",
            "gauge",
        );
        for (key, s) in &instances {
            let labels = key.labels();
            if let Some(bytes) = s.volume_bytes {
                volumes.int(&labels, &[], bytes);
            }
            cpu.seconds(&labels, &[("mode", "user")], s.cpu_user_ms.total, 1_000);
            cpu.seconds(&labels, &[("mode", "system")], s.cpu_system_ms.total, 1_000);
            throttled.seconds(&labels, &[], s.throttled_ms.total, 1_000);
            memory.int(&labels, &[], s.memory_bytes);
            peak.int(&labels, &[], s.memory_peak_bytes);
            if let Some(bytes) = s.memory_limit_bytes {
                limit.int(&labels, &[], bytes);
            }
            ooms.int(&labels, &[], s.oom_kills.total);
            io.int(&labels, &[("direction", "read")], s.io_read_bytes.total);
            io.int(&labels, &[("direction", "write")], s.io_write_bytes.total);
            pids.int(&labels, &[], s.pids);
        }
        for family in [cpu, throttled, memory, peak, limit, ooms, io, pids, volumes] {
            family.write_to(&mut out);
        }
        out
    }

    /// Forgets every series of an app (after `vdc down`).
    pub fn forget_app(&mut self, app: &str) {
        self.traffic.retain(|k, _| k.app != app);
        self.instances.retain(|k, _| k.app != app);
    }

    /// Forgets one instance (after a scale-down), and its share of the
    /// connection gauges.
    pub fn forget_instance(&mut self, instance: &str) {
        self.instances.retain(|k, _| k.instance != instance);
        for state in self.traffic.values_mut() {
            state.active.retain(|i, _| i.as_deref() != Some(instance));
        }
    }

    fn observe_traffic(&mut self, s: &TrafficSample, hist: Option<&Histogram>) {
        let state = self
            .traffic
            .entry(TrafficKey::new(s.kind, &s.tags))
            .or_default();
        state.http = s.protocol == "http";
        state.totals += s.traffic;
        state
            .active
            .insert(s.tags.instance.clone(), s.traffic.connections_active);
        if let Some(h) = hist.filter(|h| !h.is_empty()) {
            let buckets = state.duration.get_or_insert_with(Buckets::default);
            for (total, n) in buckets
                .cumulative
                .iter_mut()
                .zip(h.cumulative(&LATENCY_BOUNDS_US))
            {
                *total = total.saturating_add(n);
            }
            buckets.count = buckets.count.saturating_add(h.count());
            buckets.sum_us = buckets.sum_us.saturating_add(h.sum_us());
        }
    }

    fn observe_resources(&mut self, s: &ResourceSample) {
        let key = InstanceKey {
            tenant: s.tags.tenant.clone(),
            app: s.tags.app.clone(),
            component: s.tags.component.clone(),
            instance: s.tags.instance.clone().unwrap_or_default(),
        };
        let state = self.instances.entry(key).or_default();
        state.cpu_user_ms.update(s.cpu_user_ms);
        state.cpu_system_ms.update(s.cpu_system_ms);
        state.throttled_ms.update(s.throttled_ms);
        state.oom_kills.update(s.oom_kills);
        state.io_read_bytes.update(s.io_read_bytes);
        state.io_write_bytes.update(s.io_write_bytes);
        state.memory_bytes = s.memory_bytes;
        state.memory_peak_bytes = s.memory_peak_bytes;
        state.memory_limit_bytes = s.memory_limit_bytes;
        state.pids = s.pids;
        if s.volume_bytes.is_some() {
            state.volume_bytes = s.volume_bytes;
        }
    }
}

// === impl TrafficKey, InstanceKey ===

impl TrafficKey {
    fn new(kind: SeriesKind, tags: &Tags) -> Self {
        TrafficKey {
            tenant: tags.tenant.clone(),
            app: tags.app.clone(),
            component: tags.component.clone(),
            link: tags.link.clone(),
            target: tags.target.clone(),
            kind,
        }
    }

    fn labels(&self) -> Vec<(&str, &str)> {
        let mut labels = vec![
            ("tenant", self.tenant.as_str()),
            ("app", self.app.as_str()),
            ("component", self.component.as_str()),
        ];
        if let Some(link) = &self.link {
            labels.push(("link", link));
        }
        if let Some(target) = &self.target {
            labels.push(("target", target));
        }
        labels.push(("kind", self.kind.as_str()));
        labels
    }
}

impl InstanceKey {
    fn labels(&self) -> Vec<(&str, &str)> {
        vec![
            ("tenant", self.tenant.as_str()),
            ("app", self.app.as_str()),
            ("component", self.component.as_str()),
            ("instance", self.instance.as_str()),
        ]
    }
}

// === impl Monotonic ===

impl Monotonic {
    fn update(&mut self, raw: u64) {
        // A total that went back means the instance restarted and counts
        // from zero again: all of it is new.
        let delta = raw.checked_sub(self.last_raw).unwrap_or(raw);
        self.total = self.total.saturating_add(delta);
        self.last_raw = raw;
    }
}

// === impl Family ===

impl<'a> Family<'a> {
    fn new(name: &'a str, help: &'a str, kind: &'a str) -> Self {
        Family {
            name,
            help,
            kind,
            lines: String::new(),
        }
    }

    fn int(&mut self, labels: &[(&str, &str)], extra: &[(&str, &str)], value: u64) {
        self.sample("", labels, extra, &value.to_string());
    }

    /// A value kept in 1/`per_second` units, rendered in seconds.
    fn seconds(
        &mut self,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: u64,
        per_second: u64,
    ) {
        self.sample("", labels, extra, &fraction(value, per_second));
    }

    fn histogram(&mut self, labels: &[(&str, &str)], buckets: &Buckets) {
        for (bound, n) in LATENCY_BOUNDS_US.iter().zip(buckets.cumulative) {
            let le = fraction(*bound, 1_000_000);
            self.sample("_bucket", labels, &[("le", &le)], &n.to_string());
        }
        let count = buckets.count.to_string();
        self.sample("_bucket", labels, &[("le", "+Inf")], &count);
        self.sample("_sum", labels, &[], &fraction(buckets.sum_us, 1_000_000));
        self.sample("_count", labels, &[], &count);
    }

    fn sample(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: &[(&str, &str)],
        value: &str,
    ) {
        let _ = write!(self.lines, "{}{suffix}{{", self.name);
        for (i, (name, value)) in labels.iter().chain(extra).enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(self.lines, "{sep}{name}=\"{}\"", escape_label(value));
        }
        let _ = writeln!(self.lines, "}} {value}");
    }

    fn write_to(self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, escape_help(self.help));
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        out.push_str(&self.lines);
    }
}

/// `value / per` as an exact decimal (`1500 / 1000` → `1.5`), without the
/// rounding of a float division.
fn fraction(value: u64, per: u64) -> String {
    let (whole, rest) = (value / per, value % per);
    if rest == 0 {
        return whole.to_string();
    }
    let digits = per.ilog10() as usize;
    let decimals = format!("{rest:0digits$}");
    format!("{whole}.{}", decimals.trim_end_matches('0'))
}

/// A label value: backslash, double quote and newline escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
