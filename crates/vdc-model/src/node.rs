//! Nodes of the pool and the stored form of a submitted app.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vdc_spec::{AppSpec, ComponentName, ComponentSpec, Resources};

use crate::NodeId;

/// A machine running the vdc agent, as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// The node's public address, where gateways are reachable.
    pub address: IpAddr,
    pub capacity: Resources,
    pub labels: BTreeMap<String, String>,
    /// The filesystem of the node's data directory, where volumes and
    /// snapshots live, as last measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Disk>,
}

/// Size and free space of a filesystem, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub total_bytes: u64,
    /// Available to unprivileged writers.
    pub free_bytes: u64,
}

/// A node as the pool knows it: what it offers, when it last said it was
/// alive, and whether an operator is emptying it. Written by the node
/// (heartbeats) and by `vdc node drain`, both with compare-and-set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub info: NodeInfo,
    /// Unix milliseconds of the node's last heartbeat.
    pub heartbeat_ms: u64,
    /// Unix milliseconds when the node's agent started.
    pub started_ms: u64,
    /// Set by `vdc node drain`: the node takes no new instances and those it
    /// runs are moved off.
    #[serde(default)]
    pub draining: bool,
    /// Identifies the agent heartbeating under this name (kept in its data
    /// directory), so a second machine cannot take a live node's name.
    #[serde(default)]
    pub incarnation: String,
}

/// What the pool thinks of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeating and taking new instances.
    Ready,
    /// Heartbeating, being emptied, taking no new instances.
    Draining,
    /// No heartbeat for longer than the node timeout: its instances are
    /// placed elsewhere.
    Down,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Ready => "ready",
            NodeState::Draining => "draining",
            NodeState::Down => "down",
        })
    }
}

impl NodeRecord {
    /// The node's state at `now_ms`, given how long a node may stay silent.
    pub fn state(&self, now_ms: u64, timeout_ms: u64) -> NodeState {
        if now_ms.saturating_sub(self.heartbeat_ms) > timeout_ms {
            NodeState::Down
        } else if self.draining {
            NodeState::Draining
        } else {
            NodeState::Ready
        }
    }
}

/// Where the control plane wants an instance to run, and from which
/// revision of its component. Written only by the leading server; each node
/// runs exactly the instances assigned to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: crate::NodeId,
    pub revision: u64,
    pub at_ms: u64,
}

/// `vdc move`: an instance going from one node to another, and how far it
/// got. Each node acts on the phases that are its part (see the server's
/// `moves` module) and advances the record with compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// `app/component/index`.
    pub instance: String,
    pub from: crate::NodeId,
    pub to: crate::NodeId,
    pub phase: MovePhase,
    /// Whether the instance has volumes that travel with it.
    pub stateful: bool,
    pub requested_ms: u64,
    /// The snapshots that carried its volumes: taken while it ran, then the
    /// final one taken once it stopped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// When the instance stopped on `from` (stateful moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_ms: Option<u64>,
    /// From `stopped_ms` to ready on `to`; 0 for a stateless move, which
    /// starts the new copy before the old one stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The steps of a move, in order. Stateless moves go from `Requested` to
/// `Switched` directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MovePhase {
    /// `from` takes a snapshot while the instance runs and uploads it.
    Requested,
    /// `to` downloads it and lays it out as the instance's volumes.
    Staged,
    /// `from` stops the instance, snapshots what changed since, uploads it.
    Seeded,
    /// `to` applies the final snapshot and takes the assignment.
    Stopped,
    /// The instance is assigned to `to`; done once it is ready there.
    Switched,
    Done,
    Failed,
}

impl MoveRecord {
    /// A move just asked for.
    pub fn requested(
        instance: String,
        from: crate::NodeId,
        to: crate::NodeId,
        stateful: bool,
        now_ms: u64,
    ) -> Self {
        MoveRecord {
            instance,
            from,
            to,
            phase: MovePhase::Requested,
            stateful,
            requested_ms: now_ms,
            snapshots: Vec::new(),
            stopped_ms: None,
            downtime_ms: None,
            error: None,
        }
    }
}

impl MovePhase {
    pub fn is_over(self) -> bool {
        matches!(self, MovePhase::Done | MovePhase::Failed)
    }
}

/// Work a server asks of another node, for what only that node can do (the
/// volumes of its instances are on its disk): the node runs it in its round
/// and writes the outcome back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTask {
    pub id: String,
    pub node: crate::NodeId,
    pub created_ms: u64,
    pub request: TaskRequest,
    pub state: TaskState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TaskRequest {
    /// Snapshot an instance's volumes.
    Snapshot {
        instance: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Restore a snapshot into an instance's volumes.
    Restore {
        snapshot: String,
        instance: String,
        /// How long to wait for the instance to be ready again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum TaskState {
    Pending,
    /// What the API answers, as JSON.
    Done {
        result: serde_json::Value,
    },
    /// The HTTP status and message the API answers.
    Failed {
        status: u16,
        message: String,
    },
}

/// An app as submitted: the desired state of one app.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    /// This incarnation of the app: given at its first submission, kept
    /// by resubmissions, new after a `down`. Instance tokens name it, so a
    /// later app of the same name (another tenant's, or the same tenant's
    /// after `down`) is not reached with an old token. Empty in records
    /// written before it existed.
    #[serde(default)]
    pub id: String,
    pub spec: AppSpec,
    /// Bumped on every submission that changes the spec.
    pub revision: u64,
    /// The file the spec came from, as the user named it.
    pub file: String,
    /// The spec text as submitted, so it can be shown and exported.
    pub source: String,
    pub submitted_at_ms: u64,
    /// The app revision at which each component's spec last changed; an
    /// instance started from an older revision is replaced.
    pub component_revisions: BTreeMap<ComponentName, u64>,
    /// Set by `down`: the app stays recorded until its instances are gone.
    pub deleting: bool,
    /// Set by `down --purge`: once the instances are gone, every node
    /// deletes the app's volumes (snapshots are kept).
    #[serde(default)]
    pub purge: bool,
    /// Replica counts set after submission (by hand, by the autoscaler or
    /// by the component itself), per component; the spec's count otherwise.
    #[serde(default)]
    pub scale: BTreeMap<ComponentName, Scale>,
    /// Set at submission by a tenant the admin did not allow `root`: a
    /// container of the app whose user is uid 0 in its image (by the
    /// image's choice or a name its `/etc/passwd` maps to 0) does not start.
    /// Containers share the host's kernel and uids, so an image's root is
    /// the node's.
    #[serde(default)]
    pub root_forbidden: bool,
}

/// A component's replica count as set after submission, and whether the
/// autoscaler may change it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub replicas: u32,
    /// `false` after `vdc autoscale … off`: only a person changes replicas.
    pub autoscale: bool,
    /// Who set the count last: "autoscaler", "vdc scale", "instance shop/web/1".
    pub by: String,
    pub at_ms: u64,
}

impl AppRecord {
    /// The record for a new submission, given the app's previous record if
    /// it had one. Only components whose spec changed get the new revision,
    /// so resubmitting an unchanged file restarts nothing.
    ///
    /// A new app gets `incarnation` as its id; a resubmission keeps the id
    /// it has.
    pub fn submit(
        spec: AppSpec,
        file: String,
        source: String,
        now_ms: u64,
        previous: Option<&AppRecord>,
        incarnation: &str,
    ) -> AppRecord {
        let revision = previous.map_or(1, |p| p.revision + 1);
        let id = previous
            .filter(|p| !p.deleting && !p.id.is_empty())
            .map_or_else(|| incarnation.to_owned(), |p| p.id.clone());
        let component_revisions = spec
            .components
            .iter()
            .map(|(name, component)| {
                let unchanged = previous
                    .filter(|p| !p.deleting)
                    .and_then(|p| {
                        Some((
                            p.spec.components.get(name)?,
                            p.component_revisions.get(name)?,
                        ))
                    })
                    .filter(|(old, _)| same_but_replicas(old, component));
                (name.clone(), unchanged.map_or(revision, |(_, rev)| *rev))
            })
            .collect();
        // A count set after submission survives a resubmission that leaves
        // the component's replica fields as they were.
        let scale = previous
            .filter(|p| !p.deleting)
            .map(|p| {
                p.scale
                    .iter()
                    .filter(|(name, _)| {
                        let old = p.spec.components.get(*name).map(|c| c.replicas);
                        let new = spec.components.get(*name).map(|c| c.replicas);
                        old.is_some() && old == new
                    })
                    .map(|(name, scale)| (name.clone(), scale.clone()))
                    .collect()
            })
            .unwrap_or_default();
        AppRecord {
            id,
            spec,
            revision,
            file,
            source,
            submitted_at_ms: now_ms,
            component_revisions,
            deleting: false,
            purge: false,
            scale,
            root_forbidden: false,
        }
    }

    /// How many instances of `component` should run.
    pub fn replicas(&self, component: &ComponentName) -> u32 {
        match (
            self.scale.get(component),
            self.spec.components.get(component),
        ) {
            (Some(scale), _) => scale.replicas,
            (None, Some(c)) => c.replicas.count,
            (None, None) => 0,
        }
    }

    /// Whether the autoscaler may change `component`'s replicas: it has an
    /// SLA, room between `min` and `max`, and nobody turned it off.
    pub fn autoscaled(&self, component: &ComponentName) -> bool {
        let Some(c) = self.spec.components.get(component) else {
            return false;
        };
        let has_sla = c.inputs.values().any(|i| i.sla.is_some());
        has_sla
            && c.replicas.min < c.replicas.max
            && self.scale.get(component).is_none_or(|s| s.autoscale)
    }

    /// Resources the app reserves at its current replica counts (built-in
    /// appliances reserve nothing: the data plane serves them).
    pub fn reserved(&self) -> Resources {
        self.spec
            .components
            .values()
            .filter(|c| !c.appliance.is_builtin())
            .fold(Resources::default(), |acc, c| {
                acc.plus(c.resources.times(self.replicas(&c.name)))
            })
    }

    /// The revision instances of `component` must have been started from.
    pub fn component_revision(&self, component: &ComponentName) -> u64 {
        self.component_revisions
            .get(component)
            .copied()
            .unwrap_or(self.revision)
    }
}

/// Whether two versions of a component differ only in their replica fields,
/// which change how many instances run but not how each runs.
fn same_but_replicas(old: &ComponentSpec, new: &ComponentSpec) -> bool {
    let mut old = old.clone();
    old.replicas = new.replicas;
    old == *new
}
