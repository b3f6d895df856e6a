//! Placement: which node runs each new instance.
//!
//! **Invariant:** `place` is a pure, deterministic function of its inputs: no
//! clock, no randomness, no I/O. The same pool and demands always give the
//! same placements, so decisions can be replayed and tested.
//!
//! The pipeline, per demand in a stable order: filter the nodes that are
//! schedulable and have the free CPU and memory; rank them by spread (fewest
//! replicas of the same component first), then by fit (least free capacity
//! left, which packs nodes and keeps large holes for large instances), then by
//! name; take the first and charge it.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vdc_model::{InstanceId, NodeId};
use vdc_spec::{Bytes, ComponentName, MilliCpu, Resources};

/// A node as the scheduler sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: NodeId,
    pub capacity: Resources,
    /// Resources already reserved by instances on the node.
    pub allocated: Resources,
    /// False for a node that is draining or down.
    pub schedulable: bool,
}

/// An instance that needs a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    pub instance: InstanceId,
    pub resources: Resources,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub instance: InstanceId,
    pub node: NodeId,
}

/// A demand no node can take, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unplaced {
    pub instance: InstanceId,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
}

/// Places `demands` on `nodes`, given where instances already run.
pub fn place(nodes: &[NodeView], existing: &[(InstanceId, NodeId)], demands: &[Demand]) -> Outcome {
    let mut free: BTreeMap<&NodeId, Resources> = nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| (&n.id, free_of(n)))
        .collect();
    // Replicas per (app, component) per node, for spreading.
    let mut spread: BTreeMap<(String, ComponentName), BTreeMap<NodeId, u32>> = BTreeMap::new();
    for (id, node) in existing {
        *spread
            .entry((id.app.to_string(), id.component.clone()))
            .or_default()
            .entry(node.clone())
            .or_default() += 1;
    }

    let mut ordered: Vec<&Demand> = demands.iter().collect();
    ordered.sort_by(|a, b| a.instance.cmp(&b.instance));

    let mut outcome = Outcome::default();
    for demand in ordered {
        let key = (
            demand.instance.app.to_string(),
            demand.instance.component.clone(),
        );
        let counts = spread.entry(key).or_default();
        let best = free
            .iter()
            .filter(|(_, f)| demand.resources.fits_in(**f))
            .min_by_key(|(id, f)| {
                let replicas = counts.get(**id).copied().unwrap_or(0);
                let left_cpu = f.cpu.0 - demand.resources.cpu.0;
                let left_mem = f.memory.0 - demand.resources.memory.0;
                (replicas, left_cpu, left_mem, (**id).clone())
            })
            .map(|(id, _)| (*id).clone());
        match best {
            Some(node) => {
                if let Some(f) = free.get_mut(&node) {
                    f.cpu = MilliCpu(f.cpu.0 - demand.resources.cpu.0);
                    f.memory = Bytes(f.memory.0 - demand.resources.memory.0);
                }
                *counts.entry(node.clone()).or_default() += 1;
                outcome.placements.push(Placement {
                    instance: demand.instance.clone(),
                    node,
                });
            }
            None => outcome.unplaced.push(Unplaced {
                instance: demand.instance.clone(),
                reason: why_unplaced(demand, nodes, &free),
            }),
        }
    }
    outcome
}

fn free_of(node: &NodeView) -> Resources {
    Resources {
        cpu: MilliCpu(node.capacity.cpu.0.saturating_sub(node.allocated.cpu.0)),
        memory: Bytes(
            node.capacity
                .memory
                .0
                .saturating_sub(node.allocated.memory.0),
        ),
    }
}

fn why_unplaced(
    demand: &Demand,
    nodes: &[NodeView],
    free: &BTreeMap<&NodeId, Resources>,
) -> String {
    let want = format!(
        "{} CPU and {} memory",
        demand.resources.cpu, demand.resources.memory
    );
    if nodes.is_empty() {
        return format!("no node in the pool to run {} ({want})", demand.instance);
    }
    if free.is_empty() {
        return format!(
            "no schedulable node for {} ({want}): every node is draining or down",
            demand.instance
        );
    }
    // Name the roomiest node so the user sees how far off the request is.
    let largest = free
        .iter()
        .max_by_key(|(id, f)| (f.cpu, f.memory, std::cmp::Reverse((**id).clone())));
    match largest {
        Some((id, f)) => format!(
            "no node has {want} free for {}; largest free: {} CPU and {} on {id}",
            demand.instance, f.cpu, f.memory
        ),
        None => format!("no node has {want} free for {}", demand.instance),
    }
}

#[cfg(test)]
mod tests;
