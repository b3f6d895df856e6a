//! What subscribers receive: traffic and resource samples, events, and the
//! tags that attribute each of them to a tenant, app, component, link and
//! instance. docs/telemetry.md documents every field with JSON examples.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::hist::Latency;

// === types ===

/// Who a series belongs to.
///
/// - A link series: `component` is the calling component, `link` the name
///   of its output (`db`), `target` the input the link leads to (`db.kv`).
/// - A gateway series: `component` declares the gateway, `link` is
///   `"gateway"`, `target` the input it leads to.
/// - Traffic served by one instance (kind `Instance`, every link and
///   gateway leading to it together): `component` and `target` are the
///   target's, `instance` the instance; no `link`.
/// - A resource series: `instance` is the instance measured.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tags {
    pub tenant: String,
    pub app: String,
    pub component: String,
    /// The link's name (its output terminal), or `"gateway"`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub link: Option<String>,
    /// `"component.input"` the traffic goes to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    /// `"app/component/index"`: the target instance for traffic per
    /// endpoint, the instance itself for resources.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance: Option<String>,
}

/// What a series measures: traffic through a link or a gateway, or one
/// instance (the traffic it served, or its resources).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesKind {
    Link,
    Gateway,
    Instance,
}

/// Counts for one series over one second. Every field is a delta over that
/// second except `connections_active`, a gauge read at its end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// HTTP requests received (zero for TCP).
    pub requests: u64,
    /// HTTP responses sent, by status class, including those the data plane
    /// answers itself (502, 503, 504).
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// Requests or connections that could not be served, by cause.
    pub errors_refused: u64,
    pub errors_reset: u64,
    pub errors_timeout: u64,
    pub errors_no_backend: u64,
    pub errors_other: u64,
    /// Extra endpoints tried after a failure.
    pub retries: u64,
    /// Bytes from the caller, and bytes to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_opened: u64,
    /// Connections open at the end of the second (a gauge).
    pub connections_active: u64,
}

/// One second of traffic through one link or gateway, or served by one
/// instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficSample {
    /// The unix second the data belongs to.
    pub ts: u64,
    pub kind: SeriesKind,
    pub tags: Tags,
    /// `"http"` or `"tcp"`.
    pub protocol: String,
    pub traffic: Traffic,
    /// HTTP: time to the response head. TCP: duration of the connections
    /// that closed in that second.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency: Option<Latency>,
    /// HTTP: time to the last byte of the response.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_total: Option<Latency>,
    /// Time to get an upstream connection (pooled or new).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connect: Option<Latency>,
}

/// One second of one instance's resource use, read from the kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceSample {
    pub ts: u64,
    pub tags: Tags,
    /// `"cgroup-v1"`, `"cgroup-v2"` or `"proc"`.
    pub source: String,
    /// CPU used over the last second; 100 is one core.
    pub cpu_percent: f64,
    /// Totals since the instance started.
    pub cpu_user_ms: u64,
    pub cpu_system_ms: u64,
    pub throttled_periods: u64,
    pub throttled_ms: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory_limit_bytes: Option<u64>,
    pub oom_kills: u64,
    /// Totals since the instance started.
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub pids: u64,
    /// Bytes in the instance's volumes on its node, measured every few
    /// seconds; absent for an instance without volumes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub volume_bytes: Option<u64>,
}

/// What an instance reported of its own load through the platform API
/// (`POST /v1/self/load`). The autoscaler of the leading server takes it
/// as a signal, wherever the instance runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSample {
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    /// `instance` is the reporting instance.
    pub tags: Tags,
    /// 1.0 is at capacity.
    pub utilization: f64,
}

/// Something that happened to an app or instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in milliseconds.
    pub ts_ms: u64,
    pub kind: EventKind,
    pub tenant: String,
    pub app: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance: Option<String>,
    /// A human-readable sentence.
    pub reason: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    SpecApplied,
    AppDown,
    Placement,
    InstanceStarted,
    InstanceReady,
    InstanceUnhealthy,
    InstanceExited,
    InstanceRestarted,
    InstanceStopped,
    HealthChanged,
    /// A component's replica count changed: by the autoscaler, by hand, or
    /// at the component's own request.
    Scaled,
    /// The autoscaler wanted more replicas than a limit allows.
    ScaleLimited,
    Warning,
    /// A server started leading the control loops (servers sharing a NATS
    /// store elect one).
    Leadership,
    /// A node of the pool joined, went down, came back, began or ended
    /// draining, or stopped its instances after losing the cluster.
    Node,
    /// A snapshot of an instance's volumes was taken or restored.
    Snapshot,
}

/// One message on a stream.
// The samples are kept inline rather than boxed: a message is built and
// moved a few times a second per series, and unboxed variants keep the type
// easy to construct and match.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    Traffic(TrafficSample),
    Resources(ResourceSample),
    Event(Event),
    Load(LoadSample),
    /// This many messages for the subscriber were lost here because its
    /// buffer was full.
    Dropped {
        count: u64,
    },
}

// === impl Tags ===

impl Tags {
    /// Tags of a component (no link, target or instance yet).
    pub fn new(
        tenant: impl Into<String>,
        app: impl Into<String>,
        component: impl Into<String>,
    ) -> Self {
        Tags {
            tenant: tenant.into(),
            app: app.into(),
            component: component.into(),
            ..Tags::default()
        }
    }

    pub fn with_link(mut self, link: impl Into<String>) -> Self {
        self.link = Some(link.into());
        self
    }

    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The same tags without the instance: the series an instance's traffic
    /// rolls up into.
    pub fn without_instance(&self) -> Tags {
        Tags {
            instance: None,
            ..self.clone()
        }
    }
}

// === impl SeriesKind ===

impl SeriesKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesKind::Link => "link",
            SeriesKind::Gateway => "gateway",
            SeriesKind::Instance => "instance",
        }
    }
}

// === impl Traffic ===

impl Traffic {
    /// Adds `other` field by field, the gauge included: use it to combine
    /// series of the same second (instances into their target). Over time the
    /// gauge is not a sum; windows keep the latest instead.
    pub fn merge(&mut self, other: &Traffic) {
        *self += *other;
    }

    /// Requests or connections that failed, all causes together.
    pub fn errors(&self) -> u64 {
        self.error_causes()
            .iter()
            .fold(0u64, |sum, &(_, n)| sum.saturating_add(n))
    }

    /// Responses by class, `1xx` to `5xx`.
    pub fn responses(&self) -> [(&'static str, u64); 5] {
        [
            ("1xx", self.responses_1xx),
            ("2xx", self.responses_2xx),
            ("3xx", self.responses_3xx),
            ("4xx", self.responses_4xx),
            ("5xx", self.responses_5xx),
        ]
    }

    /// Errors by cause.
    pub fn error_causes(&self) -> [(&'static str, u64); 5] {
        [
            ("refused", self.errors_refused),
            ("reset", self.errors_reset),
            ("timeout", self.errors_timeout),
            ("no_backend", self.errors_no_backend),
            ("other", self.errors_other),
        ]
    }
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, o: Traffic) {
        // Saturating: samples may come from outside the process, and a
        // counter pinned at its maximum beats a panic.
        macro_rules! add {
            ($($field:ident),*) => { $(self.$field = self.$field.saturating_add(o.$field);)* };
        }
        add!(
            requests,
            responses_1xx,
            responses_2xx,
            responses_3xx,
            responses_4xx,
            responses_5xx,
            errors_refused,
            errors_reset,
            errors_timeout,
            errors_no_backend,
            errors_other,
            retries,
            bytes_in,
            bytes_out,
            connections_opened,
            connections_active
        );
    }
}

impl Add for Traffic {
    type Output = Traffic;

    fn add(mut self, o: Traffic) -> Traffic {
        self += o;
        self
    }
}

// === impl Message ===

impl Message {
    /// The tags of a sample; `None` for events and drop notices.
    pub fn tags(&self) -> Option<&Tags> {
        match self {
            Message::Traffic(s) => Some(&s.tags),
            Message::Resources(s) => Some(&s.tags),
            Message::Load(r) => Some(&r.tags),
            Message::Event(_) | Message::Dropped { .. } => None,
        }
    }

    /// The tenant the message belongs to; `None` for drop notices.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Message::Event(e) => Some(&e.tenant),
            Message::Dropped { .. } => None,
            m => m.tags().map(|t| t.tenant.as_str()),
        }
    }

    /// The app the message belongs to; `None` for drop notices.
    pub fn app(&self) -> Option<&str> {
        match self {
            Message::Event(e) => Some(&e.app),
            Message::Dropped { .. } => None,
            m => m.tags().map(|t| t.app.as_str()),
        }
    }

    /// The component, when the message concerns one.
    pub fn component(&self) -> Option<&str> {
        match self {
            Message::Event(e) => e.component.as_deref(),
            Message::Dropped { .. } => None,
            m => m.tags().map(|t| t.component.as_str()),
        }
    }

    /// The kind of series a sample belongs to (resources and load reports
    /// are `Instance`);
    /// `None` for events and drop notices.
    pub fn series_kind(&self) -> Option<SeriesKind> {
        match self {
            Message::Traffic(s) => Some(s.kind),
            Message::Resources(_) | Message::Load(_) => Some(SeriesKind::Instance),
            Message::Event(_) | Message::Dropped { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
