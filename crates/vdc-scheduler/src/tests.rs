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
    }
}

fn demand(id: &str, cpu: u64, mib: u64) -> Demand {
    Demand {
        instance: id.parse().unwrap(),
        resources: res(cpu, mib),
    }
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
