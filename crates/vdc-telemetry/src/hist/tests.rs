//! Tests of the histograms: layout, quantiles against a sorted reference,
//! merging, concurrent records racing `take`, saturation and serde.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// The value of rank `ceil(q × n)` in a sorted sample: what a histogram
/// quantile approximates.
fn reference(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len() as u64;
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    sorted[(rank - 1) as usize]
}

// === layout ===

#[test]
fn layout_covers_every_value_once_with_bounded_width() {
    assert_eq!(BUCKETS, 1408);
    assert_eq!(bucket_index(0), 0);
    assert_eq!(bucket_index(127), 127);
    assert_eq!(bucket_index(128), 128);
    assert_eq!(bucket_index(MAX_TRACKABLE_US), BUCKETS - 1);
    assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
    for index in 0..BUCKETS {
        let (low, high) = (bucket_lowest(index), bucket_highest(index));
        assert_eq!(bucket_index(low), index, "lowest of {index}");
        assert_eq!(bucket_index(high), index, "highest of {index}");
        if index + 1 < BUCKETS {
            assert_eq!(bucket_lowest(index + 1), high + 1, "no gap after {index}");
        }
        // The width relative to the values held is at most 1/64.
        assert!(
            (high - low) * 64 <= low.max(1),
            "bucket {index}: {low}..={high}"
        );
    }
    assert_eq!(bucket_highest(BUCKETS - 1), MAX_TRACKABLE_US);
}

// === quantiles ===

proptest! {
    #[test]
    fn quantiles_within_bucket_precision(
        values in prop::collection::vec(0u64..=MAX_TRACKABLE_US, 1..500),
        q in 0.0f64..=1.0,
    ) {
        let mut h = Histogram::new();
        for &v in &values {
            h.record_us(v);
        }
        let mut sorted = values.clone();
        sorted.sort_unstable();
        let want = reference(&sorted, q);
        let got = h.quantile_us(q);
        prop_assert!(got >= want, "q={q}: got {got} < reference {want}");
        prop_assert!(got - want <= want / 64, "q={q}: got {got}, reference {want}");
        prop_assert_eq!(h.count(), values.len() as u64);
        prop_assert_eq!(h.sum_us(), values.iter().sum::<u64>());
        prop_assert_eq!(h.max_us(), *sorted.last().unwrap());
    }

    #[test]
    fn merge_equals_recording_everything_into_one(
        a in prop::collection::vec(0u64..200_000_000, 0..200),
        b in prop::collection::vec(0u64..200_000_000, 0..200),
    ) {
        let (mut ha, mut hb, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for &v in &a {
            ha.record_us(v);
            all.record_us(v);
        }
        for &v in &b {
            hb.record_us(v);
            all.record_us(v);
        }
        ha.merge(&hb);
        prop_assert_eq!(&ha, &all);
    }

    #[test]
    fn atomic_and_owned_histograms_agree(values in prop::collection::vec(any::<u64>(), 0..200)) {
        let atomic = LatencyHistogram::new();
        let mut owned = Histogram::new();
        for &v in &values {
            // The sum wraps the same way in both.
            atomic.record_us(v);
            owned.record_us(v);
        }
        prop_assert_eq!(atomic.take(), owned);
        prop_assert!(atomic.take().is_empty());
    }

    #[test]
    fn serde_round_trip(values in prop::collection::vec(0u64..1_000_000_000, 0..100)) {
        let mut h = Histogram::new();
        for &v in &values {
            h.record_us(v);
        }
        let json = serde_json::to_string(&h).unwrap();
        prop_assert_eq!(serde_json::from_str::<Histogram>(&json).unwrap(), h);
    }
}

#[test]
fn exact_below_128_us_and_capped_at_max() {
    let mut h = Histogram::new();
    for v in 1..=100 {
        h.record_us(v);
    }
    assert_eq!(h.quantile_us(0.5), 50);
    assert_eq!(h.quantile_us(0.99), 99);
    assert_eq!(h.quantile_us(1.0), 100);
    assert_eq!(h.quantile_us(0.0), 1);
    assert_eq!(h.quantile_us(f64::NAN), 1);

    // 1000 µs sits in a bucket 1000..=1007; the maximum caps the upper edge.
    let mut h = Histogram::new();
    h.record_us(1000);
    assert_eq!(h.quantile_us(0.5), 1000);
    h.record_us(1001);
    assert_eq!(h.quantile_us(1.0), 1001);
}

#[test]
fn empty_is_zero() {
    let h = Histogram::new();
    assert!(h.is_empty());
    assert_eq!(h.quantile_us(0.5), 0);
    assert_eq!(h.summary(), Latency::default());
    assert_eq!(h.cumulative(&[1, 2]), vec![0, 0]);
}

#[test]
fn values_above_range_saturate_and_keep_max() {
    let h = LatencyHistogram::new();
    h.record(Duration::from_secs(500));
    h.record(Duration::from_secs(1000));
    h.record(Duration::MAX);
    h.record_us(10);
    let snap = h.take();
    assert_eq!(snap.count(), 4);
    assert_eq!(snap.max_us(), u64::MAX);
    assert_eq!(snap.buckets().last().map(|(_, _, n)| n), Some(3));
    // A quantile in the saturated bucket is the maximum, not its edge.
    assert_eq!(snap.quantile_us(0.5), u64::MAX);
    assert_eq!(snap.quantile_us(0.25), 10);

    let mut owned = Histogram::new();
    owned.record_us(200_000_000);
    assert_eq!(owned.quantile_us(0.5), 200_000_000);
}

#[test]
fn summary_in_milliseconds_with_three_decimals() {
    let mut h = Histogram::new();
    for v in [100, 200, 300, 1_500, 2_000_000] {
        h.record_us(v);
    }
    let l = h.summary();
    assert_eq!(l.count, 5);
    // 300 µs lies in the bucket 300..=303, whose upper edge is reported.
    assert_eq!(l.p50_ms, 0.303);
    assert_eq!(l.max_ms, 2000.0);
    assert_eq!(l.p999_ms, 2000.0);
    // (100 + 200 + 300 + 1500 + 2000000) / 5 = 400420 µs.
    assert_eq!(l.mean_ms, 400.42);
    assert_eq!(Latency::from(&h), l);
}

#[test]
fn cumulative_counts_at_bounds() {
    let mut h = Histogram::new();
    for v in [100, 500, 501, 999, 1_000, 5_000, 20_000_000] {
        h.record_us(v);
    }
    // 500 and 501 share the bucket 500..=503, counted at le=500.
    assert_eq!(
        h.cumulative(&[99, 100, 500, 1_000, 10_000, 10_000_000, u64::MAX]),
        vec![0, 1, 3, 5, 6, 6, 7]
    );
}

// === concurrency ===

#[test]
fn records_racing_take_are_never_lost_or_doubled() {
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 200_000;
    let h = Arc::new(LatencyHistogram::new());
    let done = Arc::new(AtomicBool::new(false));
    let taker = {
        let (h, done) = (Arc::clone(&h), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut total = Histogram::new();
            let mut takes = 0u64;
            while !done.load(Ordering::Acquire) {
                let snap = h.take();
                // Every snapshot is consistent on its own.
                assert_eq!(snap.count(), snap.buckets().map(|(_, _, n)| n).sum::<u64>());
                if let Some((low, _, _)) = snap.buckets().last() {
                    assert!(snap.max_us() >= low);
                }
                total.merge(&snap);
                takes += 1;
            }
            total.merge(&h.take());
            (total, takes)
        })
    };
    let recorders: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    h.record_us((i * 7 + t) % 5_000_000);
                }
            })
        })
        .collect();
    for r in recorders {
        r.join().unwrap();
    }
    done.store(true, Ordering::Release);
    let (total, takes) = taker.join().unwrap();
    assert!(takes > 1, "take ran {takes} times");

    let mut want = Histogram::new();
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            want.record_us((i * 7 + t) % 5_000_000);
        }
    }
    assert_eq!(total.count(), THREADS * PER_THREAD);
    assert_eq!(total.sum_us(), want.sum_us());
    assert_eq!(total.max_us(), want.max_us());
    assert!(total.buckets().eq(want.buckets()));
}

// === serde ===

#[test]
fn json_shape() {
    let mut h = Histogram::new();
    for v in [600, 1_290, 1_300] {
        h.record_us(v);
    }
    expect_test::expect![[
        r#"{"count":3,"sum_us":3190,"max_us":1300,"buckets":[[600,1],[1280,1],[1296,1]]}"#
    ]]
    .assert_eq(&serde_json::to_string(&h).unwrap());
}

#[test]
fn bad_json_is_refused() {
    let err = |json: &str| {
        serde_json::from_str::<Histogram>(json)
            .unwrap_err()
            .to_string()
    };
    assert!(
        err(r#"{"count":1,"sum_us":1,"max_us":1,"buckets":[[129,1]]}"#)
            .contains("bucket 129 µs is not the lowest value of a bucket")
    );
    assert!(
        err(r#"{"count":2,"sum_us":1,"max_us":1,"buckets":[[5,1],[5,1]]}"#)
            .contains("increasing order")
    );
    assert!(
        err(r#"{"count":1,"sum_us":1,"max_us":1,"buckets":[[5,1],[6,1]]}"#)
            .contains("count 1 does not match the bucket total 2")
    );
}
