//! Unit tests for the balancing set: pick, load, ejection, `set`.

use super::*;

fn endpoint(n: u16) -> Endpoint {
    Endpoint {
        instance: format!("shop/web/{n}"),
        addr: SocketAddr::from(([127, 0, 0, 1], 9000 + n)),
    }
}

fn backends(n: u16) -> Backends {
    let backends = Backends::new("shop/web.http");
    backends.set((0..n).map(endpoint).collect());
    backends
}

fn pick(backends: &Backends) -> Lease {
    backends.pick(&Tried::default()).expect("an endpoint")
}

fn pick_exactly(backends: &Backends, wanted: &Endpoint) -> Lease {
    loop {
        let lease = pick(backends);
        if lease.endpoint() == wanted {
            return lease;
        }
    }
}

fn stats_of(backends: &Backends, wanted: &Endpoint) -> Option<EndpointStats> {
    backends
        .endpoint_stats()
        .into_iter()
        .find(|(e, _)| e == wanted)
        .map(|(_, s)| s)
}

#[test]
fn empty_set_picks_nothing() {
    let backends = Backends::new("shop/web.http");
    assert!(backends.is_empty());
    assert!(backends.pick(&Tried::default()).is_none());
}

#[test]
fn one_endpoint_is_always_used() {
    let backends = backends(1);
    for _ in 0..10 {
        assert_eq!(pick(&backends).endpoint(), &endpoint(0));
    }
}

#[test]
fn the_less_loaded_of_two_wins() {
    let backends = backends(2);
    // With two endpoints both are always compared, so their load never
    // differs by more than one.
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(pick(&backends));
        let active: Vec<u64> = backends
            .endpoint_stats()
            .iter()
            .map(|(_, s)| s.active)
            .collect();
        assert!(active[0].abs_diff(active[1]) <= 1, "{active:?}");
    }
    drop(held);
    assert!(backends.endpoint_stats().iter().all(|(_, s)| s.active == 0));
}

#[test]
fn ties_are_broken_at_random() {
    let backends = backends(3);
    let mut seen = [0u32; 3];
    for _ in 0..300 {
        let lease = pick(&backends);
        seen[usize::from(lease.endpoint().addr.port() - 9000)] += 1;
    }
    assert!(seen.iter().all(|&c| c > 50), "{seen:?}");
}

#[test]
fn tried_endpoints_are_skipped() {
    let backends = backends(3);
    let mut tried = Tried::default();
    let mut got = Vec::new();
    while let Some(lease) = backends.pick(&tried) {
        tried.push(&lease);
        got.push(lease.endpoint().clone());
    }
    got.sort_by_key(|e| e.addr);
    assert_eq!(got, vec![endpoint(0), endpoint(1), endpoint(2)]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_connect_ejects_for_a_growing_while() {
    let backends = backends(2);
    let bad = endpoint(0);
    assert_eq!(
        pick_exactly(&backends, &bad).connect_failed(),
        Duration::from_secs(1)
    );
    for _ in 0..20 {
        assert_ne!(pick(&backends).endpoint(), &bad);
    }
    tokio::time::advance(Duration::from_millis(1100)).await;
    assert_eq!(stats_of(&backends, &bad).map(|s| s.ejected), Some(false));

    // A second failure in a row doubles the ejection; a success clears it.
    let again = pick_exactly(&backends, &bad);
    assert_eq!(again.connect_failed(), Duration::from_secs(2));
    assert_eq!(stats_of(&backends, &bad).map(|s| s.ejected), Some(true));
    again.connected();
    assert_eq!(stats_of(&backends, &bad).map(|s| s.ejected), Some(false));
}

#[tokio::test(start_paused = true)]
async fn when_all_are_ejected_they_are_tried_anyway() {
    let backends = backends(2);
    pick_exactly(&backends, &endpoint(0)).connect_failed();
    pick_exactly(&backends, &endpoint(1)).connect_failed();
    let stats = backends.endpoint_stats();
    assert!(stats.iter().all(|(_, s)| s.ejected), "{stats:?}");
    assert!(backends.pick(&Tried::default()).is_some());
}

#[tokio::test(start_paused = true)]
async fn set_keeps_staying_endpoints_and_resets_returning_ones() {
    let backends = backends(2);
    let lease = pick_exactly(&backends, &endpoint(0));
    lease.served();
    lease.connect_failed();

    // Endpoint 0 stays: its counters, load and ejection stay too.
    backends.set(vec![endpoint(0), endpoint(2), endpoint(2)]);
    assert_eq!(backends.len(), 2);
    assert_eq!(
        stats_of(&backends, &endpoint(0)),
        Some(EndpointStats {
            served: 1,
            active: 1,
            failures: 1,
            ejected: true,
        })
    );
    drop(lease);

    // Removed, then added again: fresh.
    backends.set(vec![endpoint(2)]);
    backends.set(vec![endpoint(0), endpoint(2)]);
    assert_eq!(
        stats_of(&backends, &endpoint(0)),
        Some(EndpointStats::default())
    );
    assert_eq!(backends.endpoints(), vec![endpoint(0), endpoint(2)]);
}
