//! Unit tests of the accumulator's rules, one per rule.

use std::collections::BTreeMap;

use vdc_spec::{Bytes, MilliCpu, Resources};
use vdc_telemetry::{ResourceSample, SeriesKind, Tags, Traffic, TrafficSample};

use super::*;

/// Minute 28_333_334 starts at this second (2023-11-14T22:14:00Z).
const T0: u64 = 1_700_000_040;
const M0: Minute = Minute(28_333_334);
const GIB: u64 = 1 << 30;

fn web(index: u32) -> Tags {
    Tags::new("acme", "shop", "web").with_instance(format!("shop/web/{index}"))
}

fn resource_sample(ts: u64, tags: Tags, cpu_ms: u64, memory_bytes: u64) -> ResourceSample {
    ResourceSample {
        ts,
        tags,
        source: "cgroup-v2".into(),
        cpu_percent: 0.0,
        // Split between user and system: the meter adds them.
        cpu_user_ms: cpu_ms - cpu_ms / 4,
        cpu_system_ms: cpu_ms / 4,
        throttled_periods: 0,
        throttled_ms: 0,
        memory_bytes,
        memory_peak_bytes: memory_bytes,
        memory_limit_bytes: None,
        oom_kills: 0,
        io_read_bytes: 0,
        io_write_bytes: 0,
        pids: 1,
        volume_bytes: None,
    }
}

fn traffic_sample(ts: u64, kind: SeriesKind, tags: Tags, requests: u64) -> TrafficSample {
    TrafficSample {
        ts,
        kind,
        tags,
        protocol: "http".into(),
        traffic: Traffic {
            requests,
            bytes_in: requests * 100,
            bytes_out: requests * 1000,
            ..Traffic::default()
        },
        latency: None,
        latency_total: None,
        connect: None,
    }
}

fn reservation(instances: u32, burst_instances: u32, millicores: u64, memory: u64) -> Reservation {
    Reservation {
        instances,
        per_instance: Resources {
            cpu: MilliCpu(millicores),
            memory: Bytes(memory),
        },
        burst_instances,
    }
}

fn observe(meter: &mut Accumulator, ts: u64, tags: &Tags, cpu_us: u64, mem: u64) -> Observed {
    match meter.observe_resources(ts, tags, cpu_us, mem) {
        Ok(o) => o,
        Err(e) => panic!("{e}"),
    }
}

fn only(entries: Vec<LedgerEntry>) -> LedgerEntry {
    assert_eq!(entries.len(), 1, "{entries:#?}");
    entries.into_iter().next().unwrap_or_else(|| unreachable!())
}

// --- CPU ---

#[test]
fn cpu_used_is_the_increase_of_the_cumulative_total() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    observe(&mut meter, T0, &tags, 1_000_000, 0);
    observe(&mut meter, T0 + 1, &tags, 1_250_000, 0);
    observe(&mut meter, T0 + 2, &tags, 2_000_000, 0);
    let e = only(meter.close_until(M0.next()));
    // The first total counts from zero (a new instance), then +0.25, +0.75.
    assert_eq!(e.cpu_seconds_used, 2.0);
}

#[test]
fn a_total_that_drops_is_a_new_process_counted_from_zero() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    observe(&mut meter, T0, &tags, 5_000_000, 0);
    observe(&mut meter, T0 + 1, &tags, 6_000_000, 0);
    // Restarted: the new process has used 0.3 s so far.
    observe(&mut meter, T0 + 2, &tags, 300_000, 0);
    observe(&mut meter, T0 + 3, &tags, 800_000, 0);
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.cpu_seconds_used, 5.0 + 1.0 + 0.3 + 0.5);
}

#[test]
fn instances_are_tracked_separately_and_summed_per_component() {
    let mut meter = Accumulator::new();
    observe(&mut meter, T0, &web(0), 1_000_000, 0);
    observe(&mut meter, T0, &web(1), 4_000_000, 0);
    observe(&mut meter, T0 + 1, &web(0), 2_000_000, 0);
    observe(&mut meter, T0 + 1, &web(1), 4_500_000, 0);
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.cpu_seconds_used, 2.0 + 4.5);
}

#[test]
fn one_core_busy_for_three_minutes_is_180_cpu_seconds() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    // Started at T0 + 20; sampled every second with one core busy.
    let start = T0 + 20;
    for k in 1..=180 {
        let sample = resource_sample(start + k, tags.clone(), k * 1000, 64 << 20);
        assert_eq!(
            meter.observe_resource_sample(&sample),
            Ok(Observed::Counted)
        );
    }
    let entries = meter.close_until(Minute(M0.0 + 10));
    assert_eq!(entries.len(), 4, "minutes 0..=3 hold part of the run");
    let per_minute: Vec<f64> = entries.iter().map(|e| e.cpu_seconds_used).collect();
    assert_eq!(per_minute, [39.0, 60.0, 60.0, 21.0]);
    let total: f64 = per_minute.iter().sum();
    assert!((total - 180.0).abs() < 1e-9, "{total}");
    // And no minute used more than one core.
    assert!(per_minute.iter().all(|&s| s <= 60.0));
}

// --- memory ---

#[test]
fn memory_used_is_gib_seconds_observed_over_sixty() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    // 1 GiB for 30 observed seconds, then nothing observed: half a
    // GiB-minute, not a full one.
    for s in 0..30 {
        observe(&mut meter, T0 + s, &tags, 0, GIB);
    }
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.memory_gib_minutes_used, 0.5);
}

// --- reservations ---

#[test]
fn reservations_split_quota_and_burst() {
    let mut meter = Accumulator::new();
    // Three instances of 500m and 256 MiB, one above the quota, all minute.
    for s in 0..60 {
        let r = reservation(3, 1, 500, 256 << 20);
        assert_eq!(
            meter.observe_reservation(T0 + s, "acme", "shop", "web", r),
            Ok(Observed::Counted)
        );
    }
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.instance_minutes, 3.0);
    assert_eq!(e.burst_instance_minutes, 1.0);
    assert_eq!(e.cpu_minutes_reserved_quota, 1.0);
    assert_eq!(e.cpu_minutes_reserved_burst, 0.5);
    assert_eq!(e.memory_gib_minutes_reserved_quota, 0.5);
    assert_eq!(e.memory_gib_minutes_reserved_burst, 0.25);
    assert_eq!(e.cpu_seconds_used, 0.0);
}

#[test]
fn a_part_minute_reserves_part_of_a_minute() {
    let mut meter = Accumulator::new();
    for s in 0..15 {
        let r = reservation(1, 0, 2000, GIB);
        let _ = meter.observe_reservation(T0 + 45 + s, "acme", "shop", "db", r);
    }
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.instance_minutes, 0.25);
    assert_eq!(e.cpu_minutes_reserved_quota, 0.5);
    assert_eq!(e.memory_gib_minutes_reserved_quota, 0.25);
}

#[test]
fn more_burst_than_running_instances_is_refused_and_changes_nothing() {
    let mut meter = Accumulator::new();
    let before = meter.clone();
    let err = meter
        .observe_reservation(T0, "acme", "shop", "web", reservation(2, 3, 500, GIB))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reservation for acme/shop/web marks 3 of 2 instances as burst: expected at most as many burst instances as running instances"
    );
    assert_eq!(meter, before);
}

// --- traffic ---

#[test]
fn traffic_is_counted_for_the_component_that_served_it() {
    let mut meter = Accumulator::new();
    let link = Tags::new("acme", "shop", "web")
        .with_link("db")
        .with_target("db.kv");
    let gateway = Tags::new("acme", "shop", "lb")
        .with_link("gateway")
        .with_target("lb.http");
    let served = Tags::new("acme", "shop", "db")
        .with_target("db.kv")
        .with_instance("shop/db/0");
    let o = |m: &mut Accumulator, s| m.observe_traffic_sample(&s);
    assert_eq!(
        o(&mut meter, traffic_sample(T0, SeriesKind::Link, link, 3)),
        Observed::Counted
    );
    assert_eq!(
        o(
            &mut meter,
            traffic_sample(T0, SeriesKind::Gateway, gateway, 5)
        ),
        Observed::Counted
    );
    // The same requests as the link's, seen from the instance: not again.
    assert_eq!(
        o(
            &mut meter,
            traffic_sample(T0, SeriesKind::Instance, served, 3)
        ),
        Observed::Ignored
    );
    let entries = meter.close_until(M0.next());
    let by_component: Vec<(&str, u64, u64, u64)> = entries
        .iter()
        .map(|e| (e.component.as_str(), e.requests, e.bytes_in, e.bytes_out))
        .collect();
    assert_eq!(by_component, [("db", 3, 300, 3000), ("lb", 5, 500, 5000)]);
}

#[test]
fn two_callers_of_one_target_are_two_series() {
    let mut meter = Accumulator::new();
    let from_web = Tags::new("acme", "shop", "web")
        .with_link("db")
        .with_target("db.kv");
    let from_api = Tags::new("acme", "shop", "api")
        .with_link("db")
        .with_target("db.kv");
    for tags in [from_web, from_api] {
        let s = traffic_sample(T0, SeriesKind::Link, tags, 2);
        assert_eq!(meter.observe_traffic_sample(&s), Observed::Counted);
    }
    assert_eq!(only(meter.close_until(M0.next())).requests, 4);
}

// --- late and duplicate observations ---

#[test]
fn observations_for_a_closed_minute_are_late_and_dropped() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    observe(&mut meter, T0, &tags, 1_000_000, GIB);
    let first = meter.close_until(M0.next());
    assert_eq!(first.len(), 1);

    let late_second = T0 + 59;
    assert_eq!(
        observe(&mut meter, late_second, &tags, 2_000_000, GIB),
        Observed::Late
    );
    assert_eq!(
        meter.observe_reservation(late_second, "acme", "shop", "web", reservation(1, 0, 1, 1)),
        Ok(Observed::Late)
    );
    assert_eq!(
        meter.observe_traffic(late_second, &Tags::new("acme", "shop", "web"), 1, 1, 1),
        Observed::Late
    );
    assert_eq!(meter.late(), 3);
    assert!(meter.close_until(Minute(M0.0 + 5)).is_empty());
}

#[test]
fn cpu_of_a_late_sample_is_counted_in_the_next_one_not_lost() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    observe(&mut meter, T0 + 58, &tags, 1_000_000, 0);
    let _ = meter.close_until(M0.next());
    // The sample of second 59 comes after the close: dropped, so the next
    // sample's increase covers that second's CPU too.
    assert_eq!(
        observe(&mut meter, T0 + 59, &tags, 1_500_000, 0),
        Observed::Late
    );
    observe(&mut meter, T0 + 60, &tags, 2_000_000, 0);
    let e = only(meter.close_until(Minute(M0.0 + 2)));
    assert_eq!(e.minute, M0.next());
    assert_eq!(e.cpu_seconds_used, 1.0);
}

#[test]
fn a_series_observed_twice_in_a_second_counts_once() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    assert_eq!(observe(&mut meter, T0, &tags, 0, GIB), Observed::Counted);
    assert_eq!(observe(&mut meter, T0, &tags, 0, GIB), Observed::Duplicate);
    // Older than the last one seen: also dropped (it would look like a
    // restart otherwise).
    observe(&mut meter, T0 + 2, &tags, 2_000_000, GIB);
    assert_eq!(
        observe(&mut meter, T0 + 1, &tags, 1_000_000, GIB),
        Observed::Duplicate
    );
    let r = reservation(1, 0, 1000, GIB);
    assert_eq!(
        meter.observe_reservation(T0, "acme", "shop", "web", r),
        Ok(Observed::Counted)
    );
    assert_eq!(
        meter.observe_reservation(T0, "acme", "shop", "web", r),
        Ok(Observed::Duplicate)
    );
    let series = Tags::new("acme", "shop", "web").with_link("db");
    assert_eq!(
        meter.observe_traffic(T0, &series, 1, 0, 0),
        Observed::Counted
    );
    assert_eq!(
        meter.observe_traffic(T0, &series, 1, 0, 0),
        Observed::Duplicate
    );
    assert_eq!(meter.duplicates(), 4);
    let e = only(meter.close_until(M0.next()));
    assert_eq!(e.memory_gib_minutes_used, 2.0 / 60.0);
    assert_eq!(e.cpu_seconds_used, 2.0);
    assert_eq!(e.instance_minutes, 1.0 / 60.0);
    assert_eq!(e.requests, 1);
}

#[test]
fn a_resource_observation_without_an_instance_is_refused() {
    let mut meter = Accumulator::new();
    let err = meter
        .observe_resources(T0, &Tags::new("acme", "shop", "web"), 1, 1)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource observation for acme/shop/web has no instance tag: expected tags.instance such as \"shop/web/0\""
    );
    assert_eq!(meter, Accumulator::new());
}

// --- closing ---

#[test]
fn close_returns_earlier_minutes_in_a_stable_order_and_keeps_the_rest() {
    let mut meter = Accumulator::new();
    let r = reservation(1, 0, 1000, GIB);
    // Fed in time order but not in key order, over three minutes.
    for (ts, component) in [
        (T0 + 5, "web"),
        (T0 + 6, "db"),
        (T0 + 65, "web"),
        (T0 + 66, "db"),
        (T0 + 125, "web"),
    ] {
        let _ = meter.observe_reservation(ts, "acme", "shop", component, r);
    }
    let keys: Vec<String> = meter
        .close_until(Minute(M0.0 + 2))
        .iter()
        .map(LedgerEntry::key)
        .collect();
    assert_eq!(
        keys,
        [
            "acme/shop/db/0028333334",
            "acme/shop/web/0028333334",
            "acme/shop/db/0028333335",
            "acme/shop/web/0028333335",
        ]
    );
    assert_eq!(meter.closed_before(), Minute(M0.0 + 2));
    // Closing an earlier minute again is a no-op, not a rewind.
    assert!(meter.close_until(M0).is_empty());
    assert_eq!(meter.closed_before(), Minute(M0.0 + 2));
    let rest = meter.close_until(Minute(M0.0 + 3));
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].minute, Minute(M0.0 + 2));
}

#[test]
fn close_due_waits_a_grace_period_after_the_minute() {
    let mut meter = Accumulator::new();
    observe(&mut meter, T0 + 59, &web(0), 1, 1);
    assert!(meter
        .close_due(T0 + 60 + CLOSE_GRACE_SECONDS - 1)
        .is_empty());
    assert_eq!(meter.close_due(T0 + 60 + CLOSE_GRACE_SECONDS).len(), 1);
    assert_eq!(meter.closed_before(), M0.next());
}

#[test]
fn series_idle_for_a_day_are_forgotten() {
    let mut meter = Accumulator::new();
    let tags = web(0);
    observe(&mut meter, T0, &tags, 5_000_000, 0);
    let _ = meter.observe_reservation(T0, "acme", "shop", "web", reservation(1, 0, 1, 1));
    let _ = meter.observe_traffic(T0, &tags, 1, 1, 1);
    let _ = meter.close_until(Minute(M0.0 + SERIES_IDLE_MINUTES));
    assert_eq!(meter.stats().tracked_series, 3);
    let _ = meter.close_until(Minute(M0.0 + SERIES_IDLE_MINUTES + 1));
    assert_eq!(meter.stats().tracked_series, 0);
}

// --- checkpoints ---

#[test]
fn checkpoint_round_trips_through_json() {
    let mut meter = Accumulator::new();
    observe(&mut meter, T0, &web(0), 1_000_000, GIB);
    let _ = meter.observe_reservation(T0, "acme", "shop", "web", reservation(2, 1, 250, GIB));
    let _ = meter.observe_traffic(
        T0,
        &Tags::new("acme", "shop", "web").with_link("db"),
        1,
        2,
        3,
    );
    let json = serde_json::to_string(&meter.checkpoint()).unwrap_or_default();
    let back: Checkpoint = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(back.version(), CHECKPOINT_VERSION);
    assert_eq!(Accumulator::restore(back), Ok(meter));
}

#[test]
fn restore_refuses_an_unknown_version_or_an_inconsistent_checkpoint() {
    let mut meter = Accumulator::new();
    observe(&mut meter, T0, &web(0), 1, 1);
    let mut value = serde_json::to_value(meter.checkpoint()).unwrap_or_default();
    value["version"] = 99.into();
    let c: Checkpoint = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        Accumulator::restore(c).unwrap_err().to_string(),
        "checkpoint version 99 is not supported: expected version 1"
    );
    value["version"] = 1.into();
    value["closed_before"] = (M0.0 + 1).into();
    let c: Checkpoint = serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        Accumulator::restore(c),
        Err(CheckpointError::OpenBeforeWatermark { .. })
    ));
}

/// The caller's side of a kill -9: entries are written with put-if-absent,
/// then the checkpoint; a restart restores the last checkpoint written.
#[test]
fn a_kill_between_writing_entries_and_the_checkpoint_counts_nothing_twice() {
    let mut ledger: BTreeMap<String, LedgerEntry> = BTreeMap::new();
    let write = |ledger: &mut BTreeMap<String, LedgerEntry>, entries: Vec<LedgerEntry>| {
        for e in entries {
            ledger.entry(e.key()).or_insert(e);
        }
    };
    let r = reservation(1, 0, 1000, GIB);
    let mut meter = Accumulator::new();
    let mut saved = meter.checkpoint();
    for s in 0..65 {
        let _ = meter.observe_reservation(T0 + s, "acme", "shop", "web", r);
        if s == 50 {
            saved = meter.checkpoint();
        }
    }
    // Second 65: minute M0 closes and its entry is written; the process is
    // killed before the next checkpoint.
    write(&mut ledger, meter.close_until(M0.next()));

    let mut restarted = Accumulator::restore(saved).unwrap_or_else(|e| panic!("{e}"));
    // Observations resume at second 70; 51..=69 were only in memory.
    for s in 70..120 {
        let _ = restarted.observe_reservation(T0 + s, "acme", "shop", "web", r);
    }
    // The replayed close emits a partial M0 again: put-if-absent keeps the
    // complete one that was written first.
    write(&mut ledger, restarted.close_until(Minute(M0.0 + 2)));
    let minutes: Vec<(Minute, f64)> = ledger
        .values()
        .map(|e| (e.minute, e.instance_minutes))
        .collect();
    assert_eq!(minutes, [(M0, 1.0), (M0.next(), 50.0 / 60.0)]);
}
