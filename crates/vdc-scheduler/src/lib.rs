//! Placement: which node runs each new instance.
//!
//! **Invariant:** `place` is a pure, deterministic function of its inputs: no
//! clock, no randomness, no I/O. The same pool and demands always give the
//! same placements, so decisions can be replayed and tested.
//!
//! The rule, per demand in instance order: the candidates are the nodes
//! that are schedulable, carry every label the demand asks for and have its
//! CPU and memory free; among them the node with the fewest replicas of the
//! same component wins (spread), then the one left with the least free CPU,
//! then memory (best fit: it packs nodes and keeps large holes for large
//! instances), then the first by name. The winner is charged before the next
//! demand.
//!
//! That rule, applied naively, looks at every node for every demand: 10^10
//! steps for a million instances on ten thousand nodes. Instead:
//!
//! - Nodes are numbered in name order, and each distinct set of labels the
//!   demands ask for (none at all is one of them) gets an ordered set of the
//!   schedulable nodes that carry it, keyed by (free CPU, free memory,
//!   number); see the `index` module. The best fit is the first entry at or
//!   after the demand's size with enough memory, found in O(log n) because
//!   every subtree knows the most free memory in it.
//! - Sorted by instance, demands come component by component, and placing
//!   one component changes no other component's spread. While a component
//!   is being placed, the nodes it already runs on leave the shared sets,
//!   which then hold exactly the nodes with none of its replicas (the first
//!   spread level); the nodes it runs on sit in small sets of its own, one
//!   per replica count. A demand asks the shared set first, then each level
//!   in turn. When the component is done, its nodes rejoin the shared sets
//!   with their new free capacity.
//!
//! A placement thus costs a few O(log n) tree operations, whatever the size
//! of the pool, and gives exactly what the naive rule gives (a property test
//! compares them).

#![forbid(unsafe_code)]

mod index;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use vdc_model::{InstanceId, NodeId};
use vdc_spec::{Bytes, MilliCpu, Resources};

use index::{Forest, Key, NIL};

/// A node as the scheduler sees it. Node ids are unique; should one repeat,
/// its last schedulable entry counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub id: NodeId,
    pub capacity: Resources,
    /// Resources already reserved by instances on the node.
    pub allocated: Resources,
    /// False for a node that is draining or down.
    pub schedulable: bool,
    /// What the node offers beyond capacity (`disk = "ssd"`), matched
    /// against the labels demands ask for.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An instance that needs a node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    pub instance: InstanceId,
    pub resources: Resources,
    /// Labels the node must carry, each with exactly this value; empty means
    /// any node.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
    let mut ordered: Vec<&Demand> = demands.iter().collect();
    // In instance order; demands with the same id (a caller's mistake) in
    // the order given, as a stable sort would leave them.
    ordered.sort_unstable_by(|a, b| {
        a.instance
            .cmp(&b.instance)
            .then_with(|| std::ptr::from_ref(*a).cmp(&std::ptr::from_ref(*b)))
    });
    let mut state = State::new(nodes, &ordered);
    let mut prior = state.prior_replicas(existing, &ordered);

    let mut outcome = Outcome {
        placements: Vec::with_capacity(ordered.len()),
        unplaced: Vec::new(),
    };
    let mut start = 0;
    while start < ordered.len() {
        let first = &ordered[start].instance;
        let len = ordered[start..]
            .iter()
            .position(|d| d.instance.component != first.component || d.instance.app != first.app)
            .unwrap_or(ordered.len() - start);
        let end = start + len;
        let on = prior
            .remove(&(first.app.as_str(), first.component.as_str()))
            .unwrap_or_default();
        state.place_component(&ordered[start..end], start, &on, &mut outcome);
        start = end;
    }
    outcome
}

/// Everything `place` keeps while it works.
struct State<'a> {
    /// The pool, one entry per node id, in name order: a node's number is
    /// its index here.
    nodes: Vec<&'a NodeView>,
    free: Vec<Key>,
    /// Whether `place` was given no node at all.
    empty_pool: bool,
    any_schedulable: bool,

    /// The distinct label sets the demands ask for, by constraint number.
    constraints: Vec<&'a BTreeMap<String, String>>,
    /// The constraint number of each demand, in demand order.
    demand_constraint: Vec<u32>,
    /// Whether some node, schedulable or not, carries the constraint's
    /// labels.
    carried: Vec<bool>,
    /// Whether some schedulable node carries them.
    carried_schedulable: Vec<bool>,

    forest: Forest,
    /// Per constraint, the shared set of schedulable nodes carrying it.
    roots: Vec<u32>,
    /// Per node, its entries in the shared sets: `(constraint, handle)`,
    /// the node's share being `memberships[offsets[x]..offsets[x + 1]]`.
    offsets: Vec<u32>,
    memberships: Vec<(u32, u32)>,

    // Scratch for the component being placed.
    /// Replicas of the component per node.
    replicas: Vec<u32>,
    /// The nodes the component runs on (taken out of the shared sets).
    on: Vec<u32>,
    /// The constraints its demands ask for.
    run_constraints: Vec<u32>,
    /// Per constraint of `run_constraints` and replica count, the set of
    /// the component's nodes carrying it that hold that many replicas
    /// (index 0 unused: those nodes are in the shared set).
    levels: Vec<Vec<u32>>,
    /// Per node, its entries in `levels`: `level_entries[start..start + len]`
    /// of `(position in run_constraints, handle)`.
    level_slot: Vec<(u32, u32)>,
    level_entries: Vec<(u32, u32)>,
}

impl<'a> State<'a> {
    fn new(input: &'a [NodeView], ordered: &[&'a Demand]) -> Self {
        // One entry per node id, in name order: the last schedulable entry
        // of an id, or its last entry when none is schedulable.
        let mut by_name: Vec<usize> = (0..input.len()).collect();
        by_name.sort_by(|&a, &b| input[a].id.cmp(&input[b].id));
        let nodes: Vec<&NodeView> = by_name
            .chunk_by(|&a, &b| input[a].id == input[b].id)
            .filter_map(|same| {
                let pick = same
                    .iter()
                    .rev()
                    .find(|&&i| input[i].schedulable)
                    .or(same.last())?;
                Some(&input[*pick])
            })
            .collect();
        let free: Vec<Key> = nodes
            .iter()
            .enumerate()
            .map(|(x, n)| Key {
                cpu: n.capacity.cpu.0.saturating_sub(n.allocated.cpu.0),
                mem: n.capacity.memory.0.saturating_sub(n.allocated.memory.0),
                node: x as u32,
            })
            .collect();

        // Distinct constraints, numbered in order of first use.
        let mut numbers: HashMap<&BTreeMap<String, String>, u32> = HashMap::new();
        let mut constraints: Vec<&BTreeMap<String, String>> = Vec::new();
        let mut demand_constraint = Vec::with_capacity(ordered.len());
        let mut last: Option<(&BTreeMap<String, String>, u32)> = None;
        for d in ordered {
            let number = match last {
                Some((labels, number)) if *labels == d.labels => number,
                _ => *numbers.entry(&d.labels).or_insert_with(|| {
                    constraints.push(&d.labels);
                    (constraints.len() - 1) as u32
                }),
            };
            last = Some((&d.labels, number));
            demand_constraint.push(number);
        }

        // The nodes carrying each constraint, through an index of the
        // nodes carrying each label.
        let mut carrying: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        if constraints.iter().any(|c| !c.is_empty()) {
            for (x, n) in nodes.iter().enumerate() {
                for (k, v) in &n.labels {
                    carrying
                        .entry((k.as_str(), v.as_str()))
                        .or_default()
                        .push(x as u32);
                }
            }
        }
        let mut members: Vec<Vec<u32>> = Vec::with_capacity(constraints.len());
        let mut carried = Vec::with_capacity(constraints.len());
        let mut carried_schedulable = Vec::with_capacity(constraints.len());
        for labels in &constraints {
            let matching: Vec<u32> = if labels.is_empty() {
                (0..nodes.len() as u32).collect()
            } else {
                let fewest = labels
                    .iter()
                    .map(|(k, v)| {
                        carrying
                            .get(&(k.as_str(), v.as_str()))
                            .map_or(&[][..], Vec::as_slice)
                    })
                    .min_by_key(|xs| xs.len())
                    .unwrap_or(&[]);
                fewest
                    .iter()
                    .copied()
                    .filter(|&x| carries(nodes[x as usize], labels))
                    .collect()
            };
            carried.push(!matching.is_empty());
            let schedulable: Vec<u32> = matching
                .into_iter()
                .filter(|&x| nodes[x as usize].schedulable)
                .collect();
            carried_schedulable.push(!schedulable.is_empty());
            members.push(schedulable);
        }

        // The shared sets, and each node's entries in them.
        let mut forest = Forest::default();
        let mut roots = vec![NIL; constraints.len()];
        let mut offsets = vec![0u32; nodes.len() + 1];
        for &x in members.iter().flatten() {
            offsets[x as usize + 1] += 1;
        }
        for x in 0..nodes.len() {
            offsets[x + 1] += offsets[x];
        }
        let mut memberships = vec![(0, NIL); offsets[nodes.len()] as usize];
        let mut cursor = offsets.clone();
        for (c, xs) in members.iter().enumerate() {
            for &x in xs {
                let h = forest.alloc(free[x as usize]);
                forest.insert(&mut roots[c], h);
                memberships[cursor[x as usize] as usize] = (c as u32, h);
                cursor[x as usize] += 1;
            }
        }

        State {
            empty_pool: nodes.is_empty(),
            any_schedulable: nodes.iter().any(|n| n.schedulable),
            replicas: vec![0; nodes.len()],
            level_slot: vec![(0, 0); nodes.len()],
            nodes,
            free,
            constraints,
            demand_constraint,
            carried,
            carried_schedulable,
            forest,
            roots,
            offsets,
            memberships,
            on: Vec::new(),
            run_constraints: Vec::new(),
            levels: Vec::new(),
            level_entries: Vec::new(),
        }
    }

    /// For each component with demands, the schedulable nodes its existing
    /// instances run on (once per instance). Instances on nodes outside
    /// the pool or not schedulable cannot change any choice.
    fn prior_replicas<'d>(
        &self,
        existing: &'d [(InstanceId, NodeId)],
        ordered: &[&'d Demand],
    ) -> HashMap<(&'d str, &'d str), Vec<u32>> {
        let mut prior: HashMap<(&str, &str), Vec<u32>> = HashMap::new();
        if existing.is_empty() {
            return prior;
        }
        let mut last: Option<&InstanceId> = None;
        for d in ordered {
            let id = &d.instance;
            if last.is_some_and(|l| l.component == id.component && l.app == id.app) {
                continue;
            }
            last = Some(id);
            prior
                .entry((id.app.as_str(), id.component.as_str()))
                .or_default();
        }
        let number: HashMap<&str, u32> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.schedulable)
            .map(|(x, n)| (n.id.0.as_str(), x as u32))
            .collect();
        for (instance, node) in existing {
            let key = (instance.app.as_str(), instance.component.as_str());
            if let Some(on) = prior.get_mut(&key) {
                if let Some(&x) = number.get(node.0.as_str()) {
                    on.push(x);
                }
            }
        }
        prior
    }

    /// Places the demands of one component (consecutive in instance order;
    /// `first` is the position of the first in the sorted demands), given
    /// the nodes its existing instances run on.
    fn place_component(
        &mut self,
        demands: &[&Demand],
        first: usize,
        prior: &[u32],
        out: &mut Outcome,
    ) {
        let constraints = &self.demand_constraint[first..first + demands.len()];
        self.run_constraints.clear();
        for &c in constraints {
            if !self.run_constraints.contains(&c) {
                self.run_constraints.push(c);
            }
        }
        self.levels.clear();
        self.levels.resize(self.run_constraints.len(), vec![NIL]);
        for &x in prior {
            if self.replicas[x as usize] == 0 {
                self.leave_shared(x);
                self.on.push(x);
            }
            self.replicas[x as usize] += 1;
        }
        for i in 0..self.on.len() {
            self.join_levels(self.on[i]);
        }

        for (i, d) in demands.iter().enumerate() {
            let c = self.demand_constraint[first + i];
            let j = self
                .run_constraints
                .iter()
                .position(|&r| r == c)
                .unwrap_or_default();
            let want = Key {
                cpu: d.resources.cpu.0,
                mem: d.resources.memory.0,
                node: 0,
            };
            match self.best(c, j, want) {
                Some(x) => {
                    self.charge(x, want);
                    out.placements.push(Placement {
                        instance: d.instance.clone(),
                        node: self.nodes[x as usize].id.clone(),
                    });
                }
                None => out.unplaced.push(Unplaced {
                    instance: d.instance.clone(),
                    reason: self.why_unplaced(d, c, j),
                }),
            }
        }

        // Done with the component: its nodes rejoin the shared sets.
        for i in 0..self.on.len() {
            let x = self.on[i];
            let (start, len) = self.level_slot[x as usize];
            for k in start..start + len {
                let (_, h) = self.level_entries[k as usize];
                self.forest.release(h);
            }
            self.replicas[x as usize] = 0;
            self.join_shared(x);
        }
        self.on.clear();
        self.level_entries.clear();
    }

    /// The node for a demand of size `want` asking for constraint `c`
    /// (`j` in this component's list).
    fn best(&self, c: u32, j: usize, want: Key) -> Option<u32> {
        let fit = |root: u32| self.forest.first_fit(root, want, want.mem);
        fit(self.roots[c as usize])
            .or_else(|| self.levels[j].iter().skip(1).find_map(|&root| fit(root)))
            .map(|h| self.forest.key(h).node)
    }

    /// Reserves `want` on node `x` for the component being placed.
    fn charge(&mut self, x: u32, want: Key) {
        let n = x as usize;
        if self.replicas[n] == 0 {
            self.leave_shared(x);
            self.on.push(x);
        } else {
            self.leave_levels(x);
        }
        self.free[n].cpu -= want.cpu;
        self.free[n].mem -= want.mem;
        self.replicas[n] += 1;
        if self.replicas[n] == 1 {
            self.join_levels(x);
        } else {
            self.rejoin_levels(x);
        }
    }

    fn leave_shared(&mut self, x: u32) {
        let n = x as usize;
        for k in self.offsets[n]..self.offsets[n + 1] {
            let (c, h) = self.memberships[k as usize];
            self.forest.remove(&mut self.roots[c as usize], h);
        }
    }

    fn join_shared(&mut self, x: u32) {
        let n = x as usize;
        for k in self.offsets[n]..self.offsets[n + 1] {
            let (c, h) = self.memberships[k as usize];
            self.forest.set_key(h, self.free[n]);
            self.forest.insert(&mut self.roots[c as usize], h);
        }
    }

    /// Gives node `x`, new to the component, entries in the level sets of
    /// the component's constraints it carries.
    fn join_levels(&mut self, x: u32) {
        let n = x as usize;
        let start = self.level_entries.len() as u32;
        let shared = &self.memberships[self.offsets[n] as usize..self.offsets[n + 1] as usize];
        for (j, &c) in self.run_constraints.iter().enumerate() {
            if shared.iter().any(|&(m, _)| m == c) {
                let h = self.forest.alloc(self.free[n]);
                self.level_entries.push((j as u32, h));
            }
        }
        self.level_slot[n] = (start, self.level_entries.len() as u32 - start);
        self.rejoin_levels(x);
    }

    fn leave_levels(&mut self, x: u32) {
        let n = x as usize;
        let level = self.replicas[n] as usize;
        let (start, len) = self.level_slot[n];
        for k in start..start + len {
            let (j, h) = self.level_entries[k as usize];
            self.forest.remove(&mut self.levels[j as usize][level], h);
        }
    }

    /// Puts node `x`'s level entries, with its current free capacity, in
    /// the sets of its current replica count.
    fn rejoin_levels(&mut self, x: u32) {
        let n = x as usize;
        let level = self.replicas[n] as usize;
        let (start, len) = self.level_slot[n];
        for k in start..start + len {
            let (j, h) = self.level_entries[k as usize];
            let sets = &mut self.levels[j as usize];
            if sets.len() <= level {
                sets.resize(level + 1, NIL);
            }
            self.forest.set_key(h, self.free[n]);
            self.forest.insert(&mut sets[level], h);
        }
    }

    fn why_unplaced(&self, demand: &Demand, c: u32, j: usize) -> String {
        let id = &demand.instance;
        let want = format!(
            "{} CPU and {} memory",
            demand.resources.cpu, demand.resources.memory
        );
        if self.empty_pool {
            return format!("no node in the pool to run {id} ({want})");
        }
        let labels = self.constraints[c as usize];
        let named = describe_labels(labels);
        if labels.is_empty() {
            if !self.any_schedulable {
                return format!(
                    "no schedulable node for {id} ({want}): every node is draining or down"
                );
            }
        } else if !self.carried[c as usize] {
            return format!(
                "no node has {} {named} for {id} ({want})",
                label_word(labels)
            );
        } else if !self.carried_schedulable[c as usize] {
            return format!(
                "no schedulable node has {} {named} for {id} ({want}): every node with {} is draining or down",
                label_word(labels),
                if labels.len() == 1 { "it" } else { "them" },
            );
        }
        // Name the roomiest node so the user sees how far off the request
        // is: the shared set holds the nodes without a replica of this
        // component, the level sets the others.
        let largest = std::iter::once(self.roots[c as usize])
            .chain(self.levels[j].iter().skip(1).copied())
            .filter_map(|root| self.forest.largest(root))
            .max_by_key(|k| (k.cpu, k.mem, std::cmp::Reverse(k.node)));
        let Some(largest) = largest else {
            return format!("no node has {want} free for {id}");
        };
        let on = &self.nodes[largest.node as usize].id;
        let (cpu, mem) = (MilliCpu(largest.cpu), Bytes(largest.mem));
        if labels.is_empty() {
            format!("no node has {want} free for {id}; largest free: {cpu} CPU and {mem} on {on}")
        } else {
            format!(
                "no node has {want} free with {} {named} for {id}; largest free with {named}: {cpu} CPU and {mem} on {on}",
                label_word(labels)
            )
        }
    }
}

/// Whether `node` carries every one of `labels` with the same value.
fn carries(node: &NodeView, labels: &BTreeMap<String, String>) -> bool {
    labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
}

/// `disk=ssd, zone=a`.
fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn label_word(labels: &BTreeMap<String, String>) -> &'static str {
    if labels.len() == 1 {
        "label"
    } else {
        "labels"
    }
}

#[cfg(test)]
mod tests;
