//! The lifecycle of an instance as the node observes it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use vdc_spec::TerminalName;

use crate::{InstanceId, Locator, NodeId};

/// Where an instance is in its life. Transitions are driven by the node's
/// supervisor; the guard methods say what each state allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Placed on a node, not started yet.
    Pending,
    /// The process runs; health checks have not passed yet.
    Starting,
    /// Health checks pass; the instance is in the balancing set.
    Ready,
    /// Was ready, now failing health checks; out of the balancing set.
    Unhealthy,
    /// Exited or failed to start; waiting before the next start.
    Backoff,
    /// Being stopped: out of the balancing set, SIGTERM sent.
    Stopping,
    /// Stopped on purpose; about to be forgotten.
    Stopped,
}

impl InstanceState {
    /// Whether the data plane may send traffic to the instance.
    pub fn serves_traffic(self) -> bool {
        matches!(self, InstanceState::Ready)
    }

    /// Whether the instance is on its way out: the reconciler must not count
    /// it towards the replica count.
    pub fn is_leaving(self) -> bool {
        matches!(self, InstanceState::Stopping | InstanceState::Stopped)
    }

    /// Whether a process may be running for this instance.
    pub fn has_process(self) -> bool {
        matches!(
            self,
            InstanceState::Starting
                | InstanceState::Ready
                | InstanceState::Unhealthy
                | InstanceState::Stopping
        )
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InstanceState::Pending => "pending",
            InstanceState::Starting => "starting",
            InstanceState::Ready => "ready",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Backoff => "backoff",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        })
    }
}

/// How the node isolates an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A sandbox of its own (its own unprivileged user without
    /// capabilities, a system-call filter, its own view of the filesystem,
    /// PID, IPC and cgroup namespaces), a cgroup with enforced limits, and
    /// its own network namespace (only its links reachable).
    Namespaces,
    /// As [`Isolation::Namespaces`], but on the node's own network: its
    /// component declares egress.
    Egress,
    /// Own process group and a cgroup with enforced CPU and memory limits;
    /// the host's loopback is shared with other instances.
    Cgroup,
    /// Own process group only: limits are not enforced.
    ProcessGroup,
    /// Served by the data plane: no process.
    Builtin,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isolation::Namespaces => "namespaces",
            Isolation::Egress => "egress",
            Isolation::Cgroup => "cgroup",
            Isolation::ProcessGroup => "process-group",
            Isolation::Builtin => "builtin",
        })
    }
}

/// What a node reports about one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: InstanceId,
    pub node: NodeId,
    pub state: InstanceState,
    /// The app revision this instance was started from.
    pub revision: u64,
    pub pid: Option<u32>,
    /// Where each input listens now.
    pub locators: BTreeMap<TerminalName, Locator>,
    pub restarts: u32,
    /// Unix milliseconds when the current process started.
    pub started_at_ms: Option<u64>,
    /// Unix milliseconds of the last state change.
    pub since_ms: u64,
    pub isolation: Isolation,
    /// How the previous process ended, if one did.
    pub last_exit: Option<String>,
    /// Why the instance is in its state, when it is not obvious (a failing
    /// health check, a start error).
    pub message: Option<String>,
}
