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

/// How one instance is confined, layer by layer, as its node applies it.
/// Each layer is reported as it is: a node that cannot enforce limits (no
/// cgroup filesystem visible) still gives its instances their own
/// namespaces, and says so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "IsolationRepr")]
pub struct Isolation {
    /// Where the instance is on the network.
    pub network: Network,
    /// Its own PID, IPC and cgroup namespaces: it sees only its own
    /// processes (the program is pid 2 under a small init).
    pub pid_namespace: bool,
    /// A cgroup with the spec's CPU, memory and task limits, enforced by
    /// the kernel (and by which the whole instance is killed).
    pub cgroup_limits: bool,
    /// Its own view of the filesystem: the node's software and its working
    /// directory read-only, its volumes, private `/tmp` and home; never the
    /// node's data directory.
    pub filesystem_view: bool,
    /// An unprivileged user of its own (not root), without capabilities,
    /// with `no_new_privs` and a system-call filter.
    pub unprivileged: bool,
}

/// Where an instance is on the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Network {
    /// Its own network namespace with only a loopback interface: it
    /// reaches exactly the links its spec declares.
    Own,
    /// The node's network, because its component declares `egress`.
    Egress,
    /// The node's network, shared with the node and other instances
    /// (instances are not confined on this node).
    #[default]
    Host,
}

/// What older nodes reported: one word for the whole.
#[derive(Deserialize)]
#[serde(untagged)]
enum IsolationRepr {
    Layers {
        network: Network,
        #[serde(default)]
        pid_namespace: bool,
        #[serde(default)]
        cgroup_limits: bool,
        #[serde(default)]
        filesystem_view: bool,
        #[serde(default)]
        unprivileged: bool,
    },
    Word(String),
}

impl From<IsolationRepr> for Isolation {
    fn from(repr: IsolationRepr) -> Self {
        match repr {
            IsolationRepr::Layers {
                network,
                pid_namespace,
                cgroup_limits,
                filesystem_view,
                unprivileged,
            } => Isolation {
                network,
                pid_namespace,
                cgroup_limits,
                filesystem_view,
                unprivileged,
            },
            IsolationRepr::Word(word) => {
                let confined = matches!(word.as_str(), "namespaces" | "egress");
                Isolation {
                    network: match word.as_str() {
                        "namespaces" => Network::Own,
                        "egress" => Network::Egress,
                        _ => Network::Host,
                    },
                    pid_namespace: confined,
                    cgroup_limits: confined || word == "cgroup",
                    filesystem_view: confined,
                    unprivileged: confined,
                }
            }
        }
    }
}

impl Isolation {
    /// Every layer: an instance confined on a node with cgroups.
    pub const CONFINED: Isolation = Isolation {
        network: Network::Own,
        pid_namespace: true,
        cgroup_limits: true,
        filesystem_view: true,
        unprivileged: true,
    };

    /// Nothing but its own process group.
    pub const PROCESS_GROUP: Isolation = Isolation {
        network: Network::Host,
        pid_namespace: false,
        cgroup_limits: false,
        filesystem_view: false,
        unprivileged: false,
    };
}

/// The layers in a few letters, as `vdc ps` shows them:
/// `net+pid+cgroup+fs+user` for a fully confined instance, `egress+…` for
/// one on the node's network by its spec, `process-group` when nothing
/// but its own process group separates it.
impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let network = match self.network {
            Network::Own => Some("net"),
            Network::Egress => Some("egress"),
            Network::Host => None,
        };
        let layers: Vec<&str> = [
            network,
            self.pid_namespace.then_some("pid"),
            self.cgroup_limits.then_some("cgroup"),
            self.filesystem_view.then_some("fs"),
            self.unprivileged.then_some("user"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if layers.is_empty() {
            f.write_str("process-group")
        } else {
            f.write_str(&layers.join("+"))
        }
    }
}

#[cfg(test)]
mod isolation_tests {
    use super::*;

    #[test]
    fn layers_read_as_they_are() {
        assert_eq!(Isolation::CONFINED.to_string(), "net+pid+cgroup+fs+user");
        assert_eq!(Isolation::PROCESS_GROUP.to_string(), "process-group");
        let no_cgroups = Isolation {
            cgroup_limits: false,
            ..Isolation::CONFINED
        };
        assert_eq!(no_cgroups.to_string(), "net+pid+fs+user");
        let egress_as_root = Isolation {
            network: Network::Egress,
            unprivileged: false,
            ..Isolation::CONFINED
        };
        assert_eq!(egress_as_root.to_string(), "egress+pid+cgroup+fs");
    }

    #[test]
    fn json_names_every_layer_and_reads_the_older_word() {
        let json = serde_json::to_value(Isolation::CONFINED).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "network": "own",
                "pid_namespace": true,
                "cgroup_limits": true,
                "filesystem_view": true,
                "unprivileged": true,
            })
        );
        let back: Isolation = serde_json::from_value(json).unwrap();
        assert_eq!(back, Isolation::CONFINED);
        for (word, shown) in [
            ("namespaces", "net+pid+cgroup+fs+user"),
            ("egress", "egress+pid+cgroup+fs+user"),
            ("cgroup", "cgroup"),
            ("process-group", "process-group"),
            ("builtin", "process-group"),
        ] {
            let read: Isolation = serde_json::from_value(serde_json::json!(word)).unwrap();
            assert_eq!(read.to_string(), shown, "{word}");
        }
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
    /// The process vdc supervises: the instance's init when it is confined
    /// (its end is the instance's end), the program itself otherwise.
    pub pid: Option<u32>,
    /// The program's own pid on its node, once known; the same as `pid`
    /// when no init stands between.
    #[serde(default)]
    pub program_pid: Option<u32>,
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
    /// The image a container runs from, as the node's store names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}
