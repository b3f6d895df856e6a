//! The reconciler: compares desired state (apps as submitted) with actual
//! state (instances as nodes report them) and returns the actions that
//! converge them.
//!
//! **Invariant:** the reconciler does no I/O and keeps no memory between
//! calls. It is level-triggered: given the same desired and actual state it
//! returns the same plan, whatever happened before, so a restarted control
//! plane picks up where things are.

#![forbid(unsafe_code)]

mod wiring;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use vdc_model::{AppRecord, InstanceId, InstanceStatus, NodeId, NodeInfo};
use vdc_scheduler::{Demand, NodeView, Unplaced};
use vdc_spec::{AppName, Resources};

pub use wiring::{wiring, ListenerKind, ListenerPlan};

/// One step towards the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Start a missing instance on a node.
    Start {
        instance: InstanceId,
        node: NodeId,
        revision: u64,
    },
    /// Stop an instance that is no longer wanted.
    Stop {
        instance: InstanceId,
        node: NodeId,
        reason: StopReason,
    },
    /// Restart an instance in place from a newer revision of its component.
    Replace {
        instance: InstanceId,
        node: NodeId,
        revision: u64,
    },
    /// Drop the record of an app whose `down` has completed.
    Forget { app: AppName },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// The app is being taken down.
    AppDeleted,
    /// The component was removed from the app.
    ComponentRemoved,
    /// The replica count went below this instance's index.
    ScaledDown,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::AppDeleted => "app taken down",
            StopReason::ComponentRemoved => "component removed from the app",
            StopReason::ScaledDown => "scaled down",
        })
    }
}

/// What the reconciler wants done, and what it could not place.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub unplaced: Vec<Unplaced>,
}

/// Computes the actions that bring `instances` to what `apps` declare, on
/// `nodes`. `draining` nodes take no new instances.
pub fn reconcile(
    apps: &[AppRecord],
    instances: &[InstanceStatus],
    nodes: &[NodeInfo],
    draining: &BTreeSet<NodeId>,
) -> Plan {
    let by_app: BTreeMap<&AppName, &AppRecord> = apps.iter().map(|a| (&a.spec.name, a)).collect();
    let mut plan = Plan::default();
    let mut demands = Vec::new();
    let mut present: BTreeSet<&InstanceId> = BTreeSet::new();

    // Instances that exist: keep, replace or stop each.
    for status in instances {
        present.insert(&status.id);
        if status.state.is_leaving() {
            continue;
        }
        let id = &status.id;
        let stop = |reason| Action::Stop {
            instance: id.clone(),
            node: status.node.clone(),
            reason,
        };
        let Some(app) = by_app.get(&id.app).filter(|a| !a.deleting) else {
            plan.actions.push(stop(StopReason::AppDeleted));
            continue;
        };
        let Some(component) = app.spec.components.get(&id.component) else {
            plan.actions.push(stop(StopReason::ComponentRemoved));
            continue;
        };
        if component.appliance.is_builtin() {
            plan.actions.push(stop(StopReason::ComponentRemoved));
        } else if id.index >= app.replicas(&id.component) {
            plan.actions.push(stop(StopReason::ScaledDown));
        } else {
            let revision = app.component_revision(&id.component);
            if status.revision < revision {
                plan.actions.push(Action::Replace {
                    instance: id.clone(),
                    node: status.node.clone(),
                    revision,
                });
            }
        }
    }

    // Instances that should exist and do not: place them.
    for app in apps.iter().filter(|a| !a.deleting) {
        for component in app.spec.components.values() {
            if component.appliance.is_builtin() {
                continue;
            }
            for index in 0..app.replicas(&component.name) {
                let id = InstanceId::new(app.spec.name.clone(), component.name.clone(), index);
                if !present.contains(&id) {
                    demands.push(Demand {
                        instance: id,
                        resources: component.resources,
                        labels: component.placement.labels.clone(),
                    });
                }
            }
        }
    }
    if !demands.is_empty() {
        let outcome = vdc_scheduler::place(
            &node_views(apps, instances, nodes, draining),
            &instances
                .iter()
                .filter(|s| !s.state.is_leaving())
                .map(|s| (s.id.clone(), s.node.clone()))
                .collect::<Vec<_>>(),
            &demands,
        );
        for placement in outcome.placements {
            let revision = by_app
                .get(&placement.instance.app)
                .map_or(0, |a| a.component_revision(&placement.instance.component));
            plan.actions.push(Action::Start {
                instance: placement.instance,
                node: placement.node,
                revision,
            });
        }
        plan.unplaced = outcome.unplaced;
    }

    // Apps whose down has completed.
    for app in apps.iter().filter(|a| a.deleting) {
        if !instances.iter().any(|s| s.id.app == app.spec.name) {
            plan.actions.push(Action::Forget {
                app: app.spec.name.clone(),
            });
        }
    }
    plan
}

/// The pool as the scheduler sees it: capacity minus what running instances
/// reserve (leaving instances still hold their resources until gone). One
/// pass over the instances, whatever the size of the pool.
fn node_views(
    apps: &[AppRecord],
    instances: &[InstanceStatus],
    nodes: &[NodeInfo],
    draining: &BTreeSet<NodeId>,
) -> Vec<NodeView> {
    // The first record of each app name, as a linear search would find.
    let mut by_name: HashMap<&AppName, &AppRecord> = HashMap::with_capacity(apps.len());
    for app in apps {
        by_name.entry(&app.spec.name).or_insert(app);
    }
    let mut allocated: HashMap<&NodeId, Resources> = HashMap::with_capacity(nodes.len());
    for status in instances {
        let Some(component) = by_name
            .get(&status.id.app)
            .and_then(|app| app.spec.components.get(&status.id.component))
        else {
            continue;
        };
        let total = allocated.entry(&status.node).or_default();
        *total = total.plus(component.resources);
    }
    nodes
        .iter()
        .map(|node| NodeView {
            id: node.id.clone(),
            capacity: node.capacity,
            allocated: allocated.get(&node.id).copied().unwrap_or_default(),
            schedulable: !draining.contains(&node.id),
            labels: node.labels.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests;
