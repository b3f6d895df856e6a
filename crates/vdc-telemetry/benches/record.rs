//! Cost of `LatencyHistogram::record` on one thread and with two threads
//! recording into one histogram, and of the collector's `take`.
//!
//! Run with `cargo bench -p vdc-telemetry`. The target is under 50 ns per
//! record. With two threads the figure is the wall time per record on each
//! thread while both record at once.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use vdc_telemetry::LatencyHistogram;

/// Latencies spread over 100 µs .. ~100 ms, as a busy link would see, from a
/// cheap generator (xorshift) so the generator does not dominate.
struct Latencies(u64);

impl Latencies {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        100 + (self.0 >> 16) % 100_000
    }
}

/// `threads` threads each record `iters` values into one histogram; the
/// time returned is the wall time of the slowest of them.
fn record_on_threads(threads: usize, iters: u64, same_value: bool) -> Duration {
    let h = Arc::new(LatencyHistogram::new());
    let start = Arc::new(Barrier::new(threads));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (h, start) = (Arc::clone(&h), Arc::clone(&start));
                scope.spawn(move || {
                    let mut values = Latencies(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                    start.wait();
                    let began = Instant::now();
                    for _ in 0..iters {
                        let v = if same_value { 1_000 } else { values.next() };
                        h.record_us(black_box(v));
                    }
                    began.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");

    let h = LatencyHistogram::new();
    let mut values = Latencies(0x2545_f491_4f6c_dd1d);
    group.bench_function("1 thread", |b| {
        b.iter(|| h.record_us(black_box(values.next())))
    });
    group.bench_function("1 thread, Duration", |b| {
        b.iter(|| h.record(black_box(Duration::from_micros(values.next()))))
    });
    group.bench_function("2 threads, one histogram", |b| {
        b.iter_custom(|iters| record_on_threads(2, iters, false))
    });
    group.bench_function("2 threads, one histogram, same value", |b| {
        b.iter_custom(|iters| record_on_threads(2, iters, true))
    });
    group.finish();

    // The collector's side: a snapshot of a histogram holding a second of
    // varied traffic (filling it is not timed).
    c.bench_function("take, 10k values", |b| {
        let mut values = Latencies(7);
        b.iter_batched_ref(
            || {
                let h = LatencyHistogram::new();
                for _ in 0..10_000 {
                    h.record_us(values.next());
                }
                h
            },
            |h| h.take(),
            BatchSize::LargeInput,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = record
}
criterion_main!(benches);
