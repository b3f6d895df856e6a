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
            rtt_us: 0,
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

// === latency ===

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn rtt_us(backends: &Backends, wanted: &Endpoint) -> u64 {
    stats_of(backends, wanted).expect("in the set").rtt_us
}

/// Within 2 µs: the estimate is rounded to nanoseconds when stored and
/// truncated to microseconds when shown.
fn assert_near(got: u64, want: f64) {
    assert!(
        (got as f64 - want).abs() <= 2.0,
        "got {got} µs, want {want:.1}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_sample_counts_at_once_and_fast_ones_only_with_time() {
    let backends = backends(1);
    let web = endpoint(0);
    let lease = pick(&backends);
    lease.observe(ms(1));
    assert_eq!(rtt_us(&backends, &web), 1_000);
    lease.observe(ms(50));
    assert_eq!(rtt_us(&backends, &web), 50_000, "a peak counts in full");
    lease.observe(ms(1));
    assert_eq!(
        rtt_us(&backends, &web),
        50_000,
        "with no time passed, a fast sample weighs nothing"
    );

    // One fast sample a second: the excess over 1 ms shrinks by e^(-1/5)
    // each time, whatever the number of samples.
    let mut previous = 50_000;
    for second in 1..=30 {
        tokio::time::advance(Duration::from_secs(1)).await;
        lease.observe(ms(1));
        let now = rtt_us(&backends, &web);
        assert!(now < previous, "{second} s: {now} µs, before {previous} µs");
        previous = now;
        let want = 1_000.0 + 49_000.0 * (-f64::from(second) / 5.0).exp();
        assert_near(now, want);
    }
    assert!(previous < 1_200, "{previous}");
}

#[tokio::test(start_paused = true)]
async fn without_samples_the_estimate_decays_toward_zero() {
    let backends = backends(1);
    let web = endpoint(0);
    pick(&backends).observe(ms(10));
    tokio::time::advance(DECAY).await;
    assert_near(rtt_us(&backends, &web), 10_000.0 / std::f64::consts::E);
    tokio::time::advance(DECAY).await;
    assert_near(
        rtt_us(&backends, &web),
        10_000.0 / std::f64::consts::E.powi(2),
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_counts_as_at_least_the_current_estimate() {
    let backends = backends(1);
    let web = endpoint(0);
    let lease = pick(&backends);
    lease.observe(ms(20));
    // Failing fast does not make an endpoint look fast...
    lease.failed(ms(1));
    assert_eq!(rtt_us(&backends, &web), 20_000);
    // ...and failing slowly makes it look slow.
    lease.failed(ms(300));
    assert_eq!(rtt_us(&backends, &web), 300_000);
    lease.failed(Duration::from_secs(600));
    assert_eq!(rtt_us(&backends, &web), 30_000_000, "capped");
}

#[tokio::test(start_paused = true)]
async fn a_new_endpoint_starts_at_the_mean_of_those_that_stay() {
    let backends = backends(3);
    pick_exactly(&backends, &endpoint(0)).observe(ms(10));
    pick_exactly(&backends, &endpoint(1)).observe(ms(30));
    pick_exactly(&backends, &endpoint(2)).observe(ms(200));

    // Endpoint 2 leaves as 3 arrives: 3 is average among 0 and 1.
    backends.set(vec![endpoint(0), endpoint(1), endpoint(3)]);
    assert_eq!(rtt_us(&backends, &endpoint(3)), 20_000);
    assert_eq!(rtt_us(&backends, &endpoint(0)), 10_000, "kept");

    // When nobody stays, the mean of those there were; then it decays
    // like any estimate.
    backends.set(vec![endpoint(4)]);
    let mean = (10_000 + 30_000 + 20_000) / 3;
    assert_eq!(rtt_us(&backends, &endpoint(4)), mean);
    tokio::time::advance(DECAY).await;
    assert_near(
        rtt_us(&backends, &endpoint(4)),
        mean as f64 / std::f64::consts::E,
    );

    // Without any sample to go by, no estimate.
    let fresh = Backends::new("shop/web.http");
    fresh.set(vec![endpoint(0)]);
    fresh.set(vec![endpoint(0), endpoint(1)]);
    assert_eq!(rtt_us(&fresh, &endpoint(1)), 0);
}

#[tokio::test(start_paused = true)]
async fn the_lower_cost_of_two_wins() {
    // With two endpoints both are always compared. Endpoint 0 answers in
    // 10 ms, endpoint 1 in 1 ms: 1 takes everything until its outstanding
    // requests bring its cost within the tie margin of 0's (1 ms × 8 is
    // within 25 % of 10 ms × 1).
    let backends = backends(2);
    pick_exactly(&backends, &endpoint(0)).observe(ms(10));
    pick_exactly(&backends, &endpoint(1)).observe(ms(1));
    let mut held = Vec::new();
    for i in 0..7 {
        let lease = pick(&backends);
        assert_eq!(lease.endpoint(), &endpoint(1), "pick {i}");
        held.push(lease);
    }
    // A tie goes to the endpoint with fewer requests in flight.
    let lease = pick(&backends);
    assert_eq!(lease.endpoint(), &endpoint(0));
}

#[tokio::test(start_paused = true)]
async fn near_equal_costs_are_a_tie_settled_by_load_then_at_random() {
    // 1.0 ms and 1.2 ms: noise between equal instances, not a preference.
    let backends = backends(2);
    pick_exactly(&backends, &endpoint(0)).observe(Duration::from_micros(1000));
    pick_exactly(&backends, &endpoint(1)).observe(Duration::from_micros(1200));
    let to_second = (0..400)
        .filter(|_| pick(&backends).endpoint() == &endpoint(1))
        .count();
    assert!((120..=280).contains(&to_second), "{to_second} of 400");
    // With one request in flight on endpoint 0, the tie goes to 1.
    let held = pick_exactly(&backends, &endpoint(0));
    for _ in 0..20 {
        assert_eq!(pick(&backends).endpoint(), &endpoint(1));
    }
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_without_samples_counts_as_average_not_as_free() {
    let backends = backends(2);
    pick_exactly(&backends, &endpoint(0)).observe(ms(10));
    // Endpoint 1 has no sample: it costs the 10 ms of endpoint 0, so with
    // neither busy they tie and share at random.
    let mut to_unknown = 0;
    for _ in 0..200 {
        if pick(&backends).endpoint() == &endpoint(1) {
            to_unknown += 1;
        }
    }
    assert!((50..=150).contains(&to_unknown), "{to_unknown} of 200");
    // Busy, it costs more than the idle one.
    let _busy = pick_exactly(&backends, &endpoint(1));
    for _ in 0..20 {
        assert_eq!(pick(&backends).endpoint(), &endpoint(0));
    }
}

/// Requests arrive every `interval` for `length` of simulated time; each
/// holds its lease for its endpoint's latency and then reports it. Returns
/// the number of requests each endpoint got.
async fn simulate(
    backends: &Backends,
    latency: impl Fn(&Endpoint) -> Duration,
    interval: Duration,
    length: Duration,
) -> Vec<(Endpoint, u32)> {
    let mut counts: Vec<(Endpoint, u32)> =
        backends.endpoints().into_iter().map(|e| (e, 0)).collect();
    let mut in_flight: Vec<(Instant, Duration, Lease)> = Vec::new();
    let end = Instant::now() + length;
    while Instant::now() < end {
        let now = Instant::now();
        let (done, pending): (Vec<_>, Vec<_>) =
            in_flight.into_iter().partition(|(due, _, _)| *due <= now);
        in_flight = pending;
        for (_, rtt, lease) in done {
            lease.observe(rtt);
        }
        let lease = pick(backends);
        let rtt = latency(lease.endpoint());
        if let Some((_, n)) = counts.iter_mut().find(|(e, _)| e == lease.endpoint()) {
            *n += 1;
        }
        in_flight.push((now + rtt, rtt, lease));
        tokio::time::advance(interval).await;
    }
    counts
}

#[tokio::test(start_paused = true)]
async fn simulated_traffic_avoids_the_slow_endpoint() {
    // Four endpoints, one answering in 50 ms, the others in 1 ms; latencies
    // are multiples of the arrival intervals, so each request ends exactly
    // on an arrival.
    let slow = endpoint(3);
    let latency = |e: &Endpoint| if *e == slow { ms(50) } else { ms(1) };
    // Light traffic (100 requests a second: with loads alone to go by, the
    // slow one would be idle and tied at most picks) and heavy traffic
    // (4000 a second: several outstanding everywhere).
    for (interval, length) in [
        (ms(10), Duration::from_secs(30)),
        (Duration::from_micros(250), Duration::from_secs(10)),
    ] {
        let backends = backends(4);
        let counts = simulate(&backends, latency, interval, length).await;
        let total: u32 = counts.iter().map(|(_, n)| n).sum();
        let to_slow = counts
            .iter()
            .find(|(e, _)| *e == slow)
            .map_or(0, |(_, n)| *n);
        let share = f64::from(to_slow) / f64::from(total);
        println!(
            "every {interval:?} for {length:?}: slow got {to_slow} of {total} ({:.2} %), all: {:?}",
            share * 100.0,
            counts.iter().map(|(_, n)| n).collect::<Vec<_>>()
        );
        assert!(share < 0.05, "slow got {to_slow} of {total}: {counts:?}");
        // The others share the rest between them.
        for (endpoint, n) in &counts {
            if *endpoint != slow {
                assert!(*n > total / 5, "{counts:?}");
            }
        }
    }
}

// === draining ===

fn draining(backends: &Backends) -> usize {
    backends
        .inner
        .draining
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len()
}

#[test]
fn in_flight_counts_a_lease_across_its_removal_until_it_ends() {
    let backends = backends(2);
    let web0 = "shop/web/0";
    assert_eq!(backends.in_flight(web0), 0);
    let lease = pick_exactly(&backends, &endpoint(0));
    assert_eq!(backends.in_flight(web0), 1);

    backends.set(vec![endpoint(1)]);
    assert_eq!(backends.in_flight(web0), 1);
    assert_eq!(draining(&backends), 1);
    // Never picked again, nor listed.
    for _ in 0..50 {
        assert_eq!(pick(&backends).endpoint(), &endpoint(1));
    }
    assert_eq!(backends.endpoints(), vec![endpoint(1)]);
    assert_eq!(backends.in_flight("shop/web/1"), 0);

    // Back in the set while the old lease is still out: both count.
    backends.set(vec![endpoint(0), endpoint(1)]);
    let again = pick_exactly(&backends, &endpoint(0));
    assert_eq!(backends.in_flight(web0), 2);
    drop(again);

    drop(lease);
    assert_eq!(backends.in_flight(web0), 0);
    assert_eq!(draining(&backends), 0, "pruned");
}

#[test]
fn an_endpoint_removed_idle_is_not_kept_and_set_prunes_too() {
    let backends = backends(3);
    backends.set(vec![endpoint(2)]);
    assert_eq!(draining(&backends), 0);

    let lease = pick_exactly(&backends, &endpoint(2));
    backends.set(vec![]);
    assert_eq!(draining(&backends), 1);
    drop(lease);
    // Pruned by the next `set` even if nobody asks `in_flight`.
    backends.set(vec![endpoint(0)]);
    assert_eq!(draining(&backends), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pick_on_an_empty_set_waits_for_an_endpoint_for_a_while() {
    let backends = Backends::new("shop/web.http");
    // Nothing comes: false after the wait.
    let started = tokio::time::Instant::now();
    assert!(!backends.wait_for_endpoint(Duration::from_secs(2)).await);
    assert!(started.elapsed() >= Duration::from_secs(2));

    // An endpoint arrives meanwhile: true as soon as it is set.
    let setter = {
        let backends = backends.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            backends.set(vec![Endpoint {
                instance: "shop/web/0".into(),
                addr: "127.0.0.1:1".parse().unwrap(),
            }]);
        })
    };
    let started = tokio::time::Instant::now();
    assert!(backends.wait_for_endpoint(Duration::from_secs(2)).await);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    setter.await.unwrap();
    // With endpoints it does not wait at all.
    assert!(backends.wait_for_endpoint(Duration::ZERO).await);
}
