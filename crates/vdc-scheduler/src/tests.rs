//! Tests of placement: fit, spread, packing, determinism and reasons.

use super::*;
use proptest::prelude::*;

fn res(cpu: u64, mib: u64) -> Resources {
    Resources {
        cpu: MilliCpu(cpu),
        memory: Bytes(mib << 20),
    }
}

fn node(id: &str, cpu: u64, mib: u64) -> NodeView {
    NodeView {
        id: NodeId(id.into()),
        capacity: res(cpu, mib),
        allocated: Resources::default(),
        schedulable: true,
        labels: BTreeMap::new(),
    }
}

fn demand(id: &str, cpu: u64, mib: u64) -> Demand {
    Demand {
        instance: id.parse().unwrap(),
        resources: res(cpu, mib),
        labels: BTreeMap::new(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn labelled(mut n: NodeView, pairs: &[(&str, &str)]) -> NodeView {
    n.labels = labels(pairs);
    n
}

fn wanting(mut d: Demand, pairs: &[(&str, &str)]) -> Demand {
    d.labels = labels(pairs);
    d
}

#[test]
fn places_on_the_only_node_that_fits() {
    let nodes = [node("n1", 500, 512), node("n2", 2000, 4096)];
    let out = place(&nodes, &[], &[demand("shop/db/0", 1000, 1024)]);
    assert_eq!(out.placements[0].node, NodeId("n2".into()));
    assert!(out.unplaced.is_empty());
}

#[test]
fn spreads_replicas_of_a_component() {
    let nodes = [
        node("n1", 4000, 4096),
        node("n2", 4000, 4096),
        node("n3", 4000, 4096),
    ];
    let demands = [
        demand("shop/web/0", 500, 256),
        demand("shop/web/1", 500, 256),
        demand("shop/web/2", 500, 256),
    ];
    let out = place(&nodes, &[], &demands);
    let mut used: Vec<_> = out.placements.iter().map(|p| p.node.0.clone()).collect();
    used.sort();
    assert_eq!(used, ["n1", "n2", "n3"]);
}

#[test]
fn packs_different_components_onto_fuller_nodes() {
    let mut n1 = node("n1", 4000, 4096);
    n1.allocated = res(3000, 1024);
    let nodes = [n1, node("n2", 4000, 4096)];
    let out = place(&nodes, &[], &[demand("shop/db/0", 500, 256)]);
    assert_eq!(out.placements[0].node, NodeId("n1".into()));
}

#[test]
fn unschedulable_nodes_take_nothing() {
    let mut n1 = node("n1", 4000, 4096);
    n1.schedulable = false;
    let out = place(&[n1], &[], &[demand("shop/db/0", 500, 256)]);
    assert!(out.placements.is_empty());
    assert!(
        out.unplaced[0].reason.contains("draining or down"),
        "{:?}",
        out.unplaced
    );
}

#[test]
fn reason_names_the_largest_free_node() {
    let nodes = [node("n1", 1000, 1024), node("n3", 1500, 1024)];
    let out = place(&nodes, &[], &[demand("shop/db/0", 2000, 256)]);
    assert_eq!(
        out.unplaced[0].reason,
        "no node has 2 CPU and 256MiB memory free for shop/db/0; largest free: 1.5 CPU and 1GiB on n3"
    );
}

#[test]
fn charges_nodes_as_it_places() {
    let nodes = [node("n1", 1000, 1024)];
    let demands = [demand("a/x/0", 600, 100), demand("a/x/1", 600, 100)];
    let out = place(&nodes, &[], &demands);
    assert_eq!(out.placements.len(), 1);
    assert_eq!(out.unplaced.len(), 1);
}

#[test]
fn a_label_constraint_picks_the_labelled_node() {
    let nodes = [
        node("n1", 4000, 4096),
        labelled(node("n2", 8000, 8192), &[("disk", "ssd"), ("zone", "a")]),
        labelled(node("n3", 8000, 8192), &[("disk", "hdd")]),
    ];
    let d = wanting(demand("shop/db/0", 500, 256), &[("disk", "ssd")]);
    let out = place(&nodes, &[], &[d, demand("shop/web/0", 500, 256)]);
    assert_eq!(out.placements[0].node, NodeId("n2".into()));
    // Without a constraint the tightest fit wins.
    assert_eq!(out.placements[1].node, NodeId("n1".into()));
}

#[test]
fn spread_comes_before_fit_among_labelled_nodes() {
    let nodes = [
        labelled(node("n1", 1000, 1024), &[("disk", "ssd")]),
        labelled(node("n2", 8000, 8192), &[("disk", "ssd")]),
        node("n3", 500, 512),
    ];
    let existing = [("shop/db/0".parse().unwrap(), NodeId("n1".into()))];
    let d = wanting(demand("shop/db/1", 500, 256), &[("disk", "ssd")]);
    let out = place(&nodes, &existing, &[d]);
    assert_eq!(out.placements[0].node, NodeId("n2".into()));
}

#[test]
fn reason_names_the_labels_and_the_largest_labelled_node() {
    let nodes = [
        labelled(node("n1", 1000, 1024), &[("disk", "ssd")]),
        labelled(node("n3", 1500, 3072), &[("disk", "ssd")]),
        node("n4", 8000, 8192),
    ];
    let d = wanting(demand("shop/db/0", 2000, 512), &[("disk", "ssd")]);
    let out = place(&nodes, &[], &[d]);
    assert_eq!(
        out.unplaced[0].reason,
        "no node has 2 CPU and 512MiB memory free with label disk=ssd for shop/db/0; \
         largest free with disk=ssd: 1.5 CPU and 3GiB on n3"
    );
}

#[test]
fn reason_says_when_no_node_has_the_labels() {
    let mut drained = labelled(node("n2", 4000, 4096), &[("disk", "ssd"), ("zone", "a")]);
    drained.schedulable = false;
    let nodes = [node("n1", 4000, 4096), drained];
    let demands = [
        wanting(demand("shop/db/0", 500, 256), &[("disk", "nvme")]),
        wanting(
            demand("shop/db/1", 500, 256),
            &[("disk", "ssd"), ("zone", "a")],
        ),
    ];
    let out = place(&nodes, &[], &demands);
    let reasons: Vec<&str> = out.unplaced.iter().map(|u| u.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "no node has label disk=nvme for shop/db/0 (0.5 CPU and 256MiB memory)",
            "no schedulable node has labels disk=ssd, zone=a for shop/db/1 \
             (0.5 CPU and 256MiB memory): every node with them is draining or down",
        ]
    );
}

#[test]
fn empty_pool_is_reported() {
    let out = place(&[], &[], &[demand("shop/db/0", 500, 256)]);
    assert_eq!(
        out.unplaced[0].reason,
        "no node in the pool to run shop/db/0 (0.5 CPU and 256MiB memory)"
    );
}

#[test]
fn replicas_pile_up_evenly_once_every_node_has_one() {
    let nodes = [node("n1", 8000, 8192), node("n2", 8000, 8192)];
    let demands: Vec<Demand> = (0..5)
        .map(|i| demand(&format!("a/x/{i}"), 100, 100))
        .collect();
    let out = place(&nodes, &[], &demands);
    let on: Vec<&str> = out.placements.iter().map(|p| p.node.0.as_str()).collect();
    // n2 is fuller after the second replica lands on it, but spread first.
    assert_eq!(on, ["n1", "n2", "n1", "n2", "n1"]);
}

// === the reference ===

/// The rule as written in the module documentation, applied naively: every
/// node is looked at for every demand. `place` must give exactly this.
fn reference(nodes: &[NodeView], existing: &[(InstanceId, NodeId)], demands: &[Demand]) -> Outcome {
    let mut free: BTreeMap<&NodeId, (Resources, &NodeView)> = nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| {
            let f = Resources {
                cpu: MilliCpu(n.capacity.cpu.0.saturating_sub(n.allocated.cpu.0)),
                memory: Bytes(n.capacity.memory.0.saturating_sub(n.allocated.memory.0)),
            };
            (&n.id, (f, n))
        })
        .collect();
    let mut spread: BTreeMap<(String, String), BTreeMap<NodeId, u32>> = BTreeMap::new();
    for (id, node) in existing {
        *spread
            .entry((id.app.to_string(), id.component.to_string()))
            .or_default()
            .entry(node.clone())
            .or_default() += 1;
    }
    let mut ordered: Vec<&Demand> = demands.iter().collect();
    ordered.sort_by(|a, b| a.instance.cmp(&b.instance));
    let has = |n: &NodeView, labels: &BTreeMap<String, String>| {
        labels.iter().all(|(k, v)| n.labels.get(k) == Some(v))
    };

    let mut out = Outcome::default();
    for d in ordered {
        let key = (d.instance.app.to_string(), d.instance.component.to_string());
        let counts = spread.entry(key).or_default();
        let best = free
            .iter()
            .filter(|(_, (f, n))| d.resources.fits_in(*f) && has(n, &d.labels))
            .min_by_key(|(id, (f, _))| {
                let replicas = counts.get(**id).copied().unwrap_or(0);
                (
                    replicas,
                    f.cpu.0 - d.resources.cpu.0,
                    f.memory.0 - d.resources.memory.0,
                    (**id).clone(),
                )
            })
            .map(|(id, _)| (*id).clone());
        let Some(node) = best else {
            let want = format!("{} CPU and {} memory", d.resources.cpu, d.resources.memory);
            let id = &d.instance;
            let named: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let named = named.join(", ");
            let word = if d.labels.len() == 1 {
                "label"
            } else {
                "labels"
            };
            let reason = if nodes.is_empty() {
                format!("no node in the pool to run {id} ({want})")
            } else if d.labels.is_empty() && free.is_empty() {
                format!("no schedulable node for {id} ({want}): every node is draining or down")
            } else if !nodes.iter().any(|n| has(n, &d.labels)) {
                format!("no node has {word} {named} for {id} ({want})")
            } else if !free.values().any(|(_, n)| has(n, &d.labels)) {
                let them = if d.labels.len() == 1 { "it" } else { "them" };
                format!(
                    "no schedulable node has {word} {named} for {id} ({want}): \
                     every node with {them} is draining or down"
                )
            } else {
                let (on, (f, _)) = free
                    .iter()
                    .filter(|(_, (_, n))| has(n, &d.labels))
                    .max_by_key(|(id, (f, _))| (f.cpu, f.memory, std::cmp::Reverse(**id)))
                    .expect("a schedulable node has the labels");
                if d.labels.is_empty() {
                    format!(
                        "no node has {want} free for {id}; largest free: {} CPU and {} on {on}",
                        f.cpu, f.memory
                    )
                } else {
                    format!(
                        "no node has {want} free with {word} {named} for {id}; \
                         largest free with {named}: {} CPU and {} on {on}",
                        f.cpu, f.memory
                    )
                }
            };
            out.unplaced.push(Unplaced {
                instance: d.instance.clone(),
                reason,
            });
            continue;
        };
        if let Some((f, _)) = free.get_mut(&node) {
            f.cpu = MilliCpu(f.cpu.0 - d.resources.cpu.0);
            f.memory = Bytes(f.memory.0 - d.resources.memory.0);
        }
        *counts.entry(node.clone()).or_default() += 1;
        out.placements.push(Placement {
            instance: d.instance.clone(),
            node,
        });
    }
    out
}

// === random pools ===

/// The name of node `i` of a random pool: name order differs from the
/// order nodes are generated in (`n10` before `n3`, `a…` before `n…`).
fn node_name(i: usize) -> String {
    format!("{}{i}", ["n", "a", "zz"][i % 3])
}

const LABELS: [(&str, &str); 5] = [
    ("disk", "ssd"),
    ("disk", "hdd"),
    ("zone", "a"),
    ("zone", "b"),
    ("gpu", "yes"),
];
/// Sizes from a short list so that ties in free capacity are common.
const CPUS: [u64; 6] = [0, 250, 500, 1000, 1500, 4000];
const MIBS: [u64; 6] = [0, 128, 256, 512, 1024, 4096];

fn label_set(bits: u8) -> BTreeMap<String, String> {
    // A later pair with the same key replaces an earlier one.
    LABELS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, (k, v))| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn pool_strategy(max_nodes: usize, names: usize) -> impl Strategy<Value = Vec<NodeView>> {
    prop::collection::vec(
        (
            0..names,
            0..CPUS.len(),
            0..MIBS.len(),
            0u64..3,
            any::<u8>(),
            0u8..10,
        ),
        0..max_nodes,
    )
    .prop_map(|specs| {
        let mut seen = std::collections::BTreeSet::new();
        specs
            .into_iter()
            .filter(|(name, ..)| seen.insert(*name))
            .map(|(name, cpu, mib, used, bits, up)| {
                let mut n = node(&node_name(name), CPUS[cpu] * 2, MIBS[mib] * 2);
                // Partly allocated: nothing, a quarter or three quarters.
                n.allocated = res(
                    CPUS[cpu] * [0, 1, 3][used as usize] / 2,
                    MIBS[mib] * [0, 1, 3][used as usize] / 2,
                );
                n.labels = label_set(bits & 0b1_1111);
                n.schedulable = up < 8;
                n
            })
            .collect()
    })
}

fn demands_strategy(max: usize, components: u32) -> impl Strategy<Value = Vec<Demand>> {
    prop::collection::vec(
        (
            0..2u32,
            0..components,
            0..CPUS.len(),
            0..MIBS.len(),
            0u8..4,
            any::<u8>(),
        ),
        0..max,
    )
    .prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (app, comp, cpu, mib, constrained, bits))| {
                let id = format!("app{app}/c{comp}/{i}");
                let mut d = demand(&id, CPUS[cpu], MIBS[mib]);
                // Odd components and a quarter of the others ask for
                // labels, drawn per demand: a component's demands may ask
                // for different ones.
                if comp % 2 == 1 || constrained == 0 {
                    d.labels = label_set(
                        bits & [0b0_0001, 0b0_0101, 0b1_0000, 0b0_1010][usize::from(constrained)],
                    );
                }
                d
            })
            .collect()
    })
}

fn existing_strategy(
    max: usize,
    components: u32,
    names: usize,
) -> impl Strategy<Value = Vec<(InstanceId, NodeId)>> {
    // Names past `names` are of nodes outside the pool.
    prop::collection::vec((0..2u32, 0..components, 0..names + 2), 0..max).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (app, comp, name))| {
                let id = format!("app{app}/c{comp}/{}", 1000 + i).parse().unwrap();
                (id, NodeId(node_name(name)))
            })
            .collect()
    })
}

proptest! {
    /// Whatever the pool and demands: no node is ever over-committed, every
    /// demand is either placed or explained, and the result is deterministic
    /// regardless of the order demands arrive in.
    #[test]
    fn never_overcommits_and_is_deterministic(
        caps in prop::collection::vec((0u64..4000, 0u64..4096), 1..5),
        wants in prop::collection::vec((1u64..2000, 1u64..2048), 0..20),
    ) {
        let nodes: Vec<NodeView> = caps.iter().enumerate()
            .map(|(i, (c, m))| node(&format!("n{i}"), *c, *m)).collect();
        let demands: Vec<Demand> = wants.iter().enumerate()
            .map(|(i, (c, m))| demand(&format!("app/c{}/{i}", i % 3), *c, *m)).collect();
        let out = place(&nodes, &[], &demands);
        prop_assert_eq!(out.placements.len() + out.unplaced.len(), demands.len());
        for n in &nodes {
            let used = out.placements.iter().filter(|p| p.node == n.id)
                .filter_map(|p| demands.iter().find(|d| d.instance == p.instance))
                .fold(Resources::default(), |acc, d| acc.plus(d.resources));
            prop_assert!(used.fits_in(n.capacity));
        }
        let mut reversed = demands.clone();
        reversed.reverse();
        prop_assert_eq!(place(&nodes, &[], &reversed), out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The index gives exactly what the naive rule gives, on small pools
    /// with labels, drained nodes, existing replicas, ties and demands that
    /// do not fit.
    #[test]
    fn matches_the_reference(
        nodes in pool_strategy(8, 12),
        existing in existing_strategy(12, 4, 12),
        demands in demands_strategy(30, 4),
    ) {
        prop_assert_eq!(place(&nodes, &existing, &demands), reference(&nodes, &existing, &demands));
    }

    /// The same with many replicas per node, so replicas pile up in levels
    /// and most demands end up not fitting.
    #[test]
    fn matches_the_reference_when_crowded(
        nodes in pool_strategy(5, 8),
        existing in existing_strategy(12, 2, 8),
        demands in demands_strategy(80, 2),
    ) {
        prop_assert_eq!(place(&nodes, &existing, &demands), reference(&nodes, &existing, &demands));
    }

    /// The same on larger pools, where the ordered sets are deep trees.
    #[test]
    fn matches_the_reference_on_larger_pools(
        nodes in pool_strategy(80, 120),
        existing in existing_strategy(60, 6, 120),
        demands in demands_strategy(300, 6),
    ) {
        prop_assert_eq!(place(&nodes, &existing, &demands), reference(&nodes, &existing, &demands));
    }
}
