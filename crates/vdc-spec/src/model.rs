//! The validated app spec: plain data that every other crate consumes.
//!
//! A [`AppSpec`] can only be built by [`crate::parse`] (or deserialized from
//! a store that only ever held validated specs), so holders may rely on every
//! invariant the validator checks: links point at existing inputs, the link
//! graph is acyclic, replica bounds are ordered, resources fit the budget.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{Bytes, MilliCpu};

// === names ===

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Builds the name after checking [`crate::is_valid_name`].
            pub fn new(s: impl Into<String>) -> Result<Self, crate::NameError> {
                let s = s.into();
                crate::check_name(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// The name of an app, unique within a tenant.
    AppName
);
name_type!(
    /// The name of a tenant.
    TenantName
);
name_type!(
    /// The name of a component within an app.
    ComponentName
);
name_type!(
    /// The name of a terminal (an input or an output/link) of a component.
    TerminalName
);
name_type!(
    /// The name of a volume of a component.
    VolumeName
);

impl TenantName {
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }
}

// === the app ===

/// A validated app: the desired topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: AppName,
    pub tenant: TenantName,
    /// The app's budget; `None` means only the node's capacity limits it.
    pub budget: Option<Budget>,
    pub components: BTreeMap<ComponentName, ComponentSpec>,
    /// The directory relative paths (commands, workdirs) resolve against:
    /// the directory holding the spec file.
    pub base_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub cpu: MilliCpu,
    pub memory: Bytes,
}

/// Resources reserved for one instance of a component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu: MilliCpu,
    pub memory: Bytes,
}

impl Resources {
    /// What a `process` component reserves per instance when its spec gives
    /// no `resources`: a quarter of a core and 128 MiB.
    pub const PROCESS_DEFAULT: Resources = Resources {
        cpu: MilliCpu(250),
        memory: Bytes(128 << 20),
    };

    pub fn times(self, n: u32) -> Resources {
        Resources {
            cpu: MilliCpu(self.cpu.0.saturating_mul(u64::from(n))),
            memory: Bytes(self.memory.0.saturating_mul(u64::from(n))),
        }
    }

    pub fn plus(self, other: Resources) -> Resources {
        Resources {
            cpu: MilliCpu(self.cpu.0.saturating_add(other.cpu.0)),
            memory: Bytes(self.memory.0.saturating_add(other.memory.0)),
        }
    }

    /// True when `self` fits in `limit` on every dimension.
    pub fn fits_in(self, limit: Resources) -> bool {
        self.cpu <= limit.cpu && self.memory <= limit.memory
    }
}

/// How a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Appliance {
    /// A command on the host, isolated by the node (process group, cgroup).
    Process,
    /// A root filesystem from an OCI image, run with the same isolation.
    Container,
    /// An HTTP load balancer served by the data plane itself.
    #[serde(rename = "builtin:http-lb")]
    BuiltinHttpLb,
}

impl Appliance {
    /// True when the data plane serves this appliance: no process is started.
    pub fn is_builtin(self) -> bool {
        matches!(self, Appliance::BuiltinHttpLb)
    }
}

impl fmt::Display for Appliance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Appliance::Process => "process",
            Appliance::Container => "container",
            Appliance::BuiltinHttpLb => "builtin:http-lb",
        })
    }
}

/// One role in an app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub name: ComponentName,
    pub appliance: Appliance,
    /// Program and arguments; empty for built-in appliances. For a
    /// container: the entrypoint, replacing the image's (empty: the
    /// image's).
    pub command: Vec<String>,
    /// A container's image: a registry reference in full
    /// (`docker.io/library/redis:7`), or a local file as
    /// `oci:/ABS/DIR[:TAG]` or `oci-archive:/ABS/FILE[:TAG]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A container's arguments, replacing the image's `cmd` when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Working directory, already resolved against [`AppSpec::base_dir`].
    /// For a container: a path inside it, or empty for the image's.
    pub workdir: PathBuf,
    pub resources: Resources,
    pub replicas: Replicas,
    pub inputs: BTreeMap<TerminalName, InputSpec>,
    /// Outputs: each names the input of another component it reaches.
    pub links: BTreeMap<TerminalName, LinkTarget>,
    pub volumes: BTreeMap<VolumeName, VolumeSpec>,
    pub gateway: Option<GatewaySpec>,
    /// Time between SIGTERM and SIGKILL when an instance is stopped.
    #[serde(with = "duration_ms")]
    pub stop_grace: Duration,
    /// Whether instances may reach beyond their links (the host and the
    /// outside). Off by default: a confined instance reaches only its links.
    #[serde(default)]
    pub egress: bool,
    /// Which nodes may run the component's instances. Records stored before
    /// the field existed read as "any node".
    #[serde(default)]
    pub placement: Placement,
    /// Scheduled snapshots of each instance's volumes, taken by its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPolicy>,
    /// The user the instances run as, when not a user of their own: a
    /// user name of the node, `UID` or `UID:GID`, or `root`. Only what the
    /// admin allowed the tenant is admitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `backup = { every = "1h", keep = 24 }`: a snapshot of each instance's
/// volumes every `every`, keeping the newest `keep` backups per instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    #[serde(with = "duration_ms")]
    pub every: Duration,
    pub keep: u32,
}

impl BackupPolicy {
    /// The shortest `every` allowed.
    pub const MIN_EVERY: Duration = Duration::from_secs(5);
    /// The most backups kept per instance.
    pub const MAX_KEEP: u32 = 1000;
}

impl ComponentSpec {
    /// Time between SIGTERM and SIGKILL when `stop_grace` is not given.
    pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

    /// The name of the implicit input of a `builtin:http-lb` component.
    pub const LB_INPUT: &'static str = "http";

    /// The name of the one link of a `builtin:http-lb` component.
    pub const LB_BACKEND: &'static str = "backend";
}

/// Constraints on the nodes that may run a component's instances.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Labels a node must have, each with exactly this value; empty means
    /// any node. Keys and values are 1 to 63 letters, digits, `.`, `_`, `-`
    /// or `/`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Replica count and the bounds autoscaling may move it within.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicas {
    pub count: u32,
    pub min: u32,
    pub max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Http,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Http => "http",
        })
    }
}

/// A terminal a component serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: TerminalName,
    pub protocol: Protocol,
    pub health: HealthCheck,
    /// What the input's users must get; the platform keeps it by steering
    /// traffic and scaling the component within its bounds.
    #[serde(default)]
    pub sla: Option<Sla>,
}

/// A service-level objective on an input: `latency = "p99 <= 50ms"`,
/// optionally `errors = "1%"`, judged over `window`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// At least one of `latency` and `errors` is set.
    pub latency: Option<LatencyObjective>,
    /// The largest share of requests (0 to 1) that may fail: 5xx answers,
    /// refused, reset or timed-out exchanges.
    pub max_error_ratio: Option<f64>,
    /// The period the objective is judged over.
    #[serde(with = "duration_ms")]
    pub window: Duration,
    /// How long the objective must hold with room to spare before replicas
    /// are given back.
    #[serde(with = "duration_ms")]
    pub scale_down_after: Duration,
}

impl Sla {
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
    pub const DEFAULT_SCALE_DOWN_AFTER: Duration = Duration::from_secs(30);
}

/// `pQ <= threshold`: the Q-th percentile of request latency (time to the
/// response's headers, as the data plane measures it) stays at or under the
/// threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyObjective {
    /// Between 0 and 100 exclusive, such as 99.0 or 99.9.
    pub percentile: f64,
    #[serde(with = "duration_ms_f64")]
    pub threshold: Duration,
}

impl fmt::Display for LatencyObjective {
    /// `p99 <= 50ms`, `p99.9 <= 2.5ms`: the form the spec reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.threshold.as_nanos();
        let sub_ms = nanos % 1_000_000;
        if sub_ms == 0 {
            write!(
                f,
                "p{} <= {}",
                self.percentile,
                crate::units::format_duration(self.threshold)
            )
        } else {
            // Fractions of a millisecond, which `format_duration` drops.
            let frac = format!("{sub_ms:06}");
            write!(
                f,
                "p{} <= {}.{}ms",
                self.percentile,
                nanos / 1_000_000,
                frac.trim_end_matches('0')
            )
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Consecutive failures before a ready instance is taken out of balancing.
    pub failures: u32,
    /// How long after a start the first probe waits.
    #[serde(default, with = "duration_ms")]
    pub initial_delay: Duration,
    /// How long a starting instance may fail its probes before its status
    /// says why (a slow starter is not news before that).
    #[serde(default = "HealthCheck::default_start_period", with = "duration_ms")]
    pub start_period: Duration,
}

impl HealthCheck {
    /// The probe settings when an input gives none: a TCP connect every
    /// second, a one-second timeout, three failures in a row.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_FAILURES: u32 = 3;
    pub const DEFAULT_START_PERIOD: Duration = Duration::from_secs(2);

    fn default_start_period() -> Duration {
        Self::DEFAULT_START_PERIOD
    }
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            probe: Probe::Tcp,
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            failures: Self::DEFAULT_FAILURES,
            initial_delay: Duration::ZERO,
            start_period: Self::DEFAULT_START_PERIOD,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Probe {
    /// The input accepts a TCP connection.
    Tcp,
    /// `GET path` answers with a 2xx or 3xx status.
    Http { path: String },
    /// The input, sent `send`, answers with something holding `expect`
    /// (`PING\r\n` and `+PONG` for redis).
    Send { send: String, expect: String },
    /// The command, run inside the instance (its namespaces, its view of the
    /// filesystem, its user), exits with 0 within the timeout. Arguments may
    /// use `${NAME}` for the instance's variables, as its command does.
    Exec { command: Vec<String> },
}

/// Where a link (an output) leads: `component.input`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinkTarget {
    pub component: ComponentName,
    pub input: TerminalName,
}

impl fmt::Display for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.component, self.input)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: VolumeName,
    /// Size limit, where the node's filesystem can enforce one.
    pub size: Option<Bytes>,
    /// Path inside the instance where the volume appears, when the node can
    /// mount it; otherwise the path is passed in `VDC_VOLUME_<NAME>`.
    pub mount: Option<String>,
}

/// An input bound on the node's address: the way in from outside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySpec {
    pub input: TerminalName,
    pub address: IpAddr,
    pub port: u16,
}

// === impl AppSpec ===

impl AppSpec {
    pub fn component(&self, name: &ComponentName) -> Option<&ComponentSpec> {
        self.components.get(name)
    }

    /// The input a link leads to. Always `Some` for a validated spec.
    pub fn link_input(&self, target: &LinkTarget) -> Option<&InputSpec> {
        self.components
            .get(&target.component)?
            .inputs
            .get(&target.input)
    }

    /// Resources the app reserves at its current replica counts (built-in
    /// appliances reserve nothing: the data plane serves them).
    pub fn reserved(&self) -> Resources {
        self.components
            .values()
            .filter(|c| !c.appliance.is_builtin())
            .fold(Resources::default(), |acc, c| {
                acc.plus(c.resources.times(c.replicas.count))
            })
    }
}

// === serde helpers ===

/// Durations that may have fractions of a millisecond (latency thresholds).
pub(crate) mod duration_ms_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default())
    }
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
