//! Property tests across the crate: checkpoints change nothing, no minute
//! comes out twice, bills add up, and CPU from cumulative totals is the sum
//! of their increases.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use vdc_spec::{Bytes, MilliCpu, Resources};
use vdc_telemetry::Tags;

use crate::*;

/// Minute 28_333_334 starts here.
const T0: u64 = 1_700_000_040;
const COMPONENTS: [&str; 3] = ["db", "lb", "web"];

// === a script of observations ===

#[derive(Clone, Debug)]
enum Op {
    Resources {
        back: u64,
        comp: usize,
        inst: u32,
        cpu_total_us: u64,
        memory: u64,
    },
    Reservation {
        back: u64,
        comp: usize,
        instances: u32,
        burst: u32,
        millicores: u64,
        memory: u64,
    },
    Traffic {
        back: u64,
        comp: usize,
        link: usize,
        requests: u64,
        bytes: u64,
    },
    /// The clock moves on.
    Tick(u64),
    /// Closes every minute before the current one, minus `lag`.
    Close { lag: u64 },
}

/// How far before "now" an observation is stamped: usually now, sometimes
/// earlier (late or duplicate).
fn back() -> impl Strategy<Value = u64> {
    prop_oneof![8 => Just(0u64), 1 => 0..150u64]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (back(), 0..3usize, 0..3u32, 0..20_000_000u64, 0..(4u64 << 30)).prop_map(
            |(back, comp, inst, cpu_total_us, memory)| Op::Resources {
                back,
                comp,
                inst,
                cpu_total_us,
                memory
            }
        ),
        3 => (back(), 0..3usize, 0..5u32, 0..5u32, 0..4000u64, 0..(8u64 << 30)).prop_map(
            |(back, comp, instances, burst, millicores, memory)| Op::Reservation {
                back,
                comp,
                instances,
                burst: burst.min(instances),
                millicores,
                memory
            }
        ),
        2 => (back(), 0..3usize, 0..2usize, 0..1000u64, 0..1_000_000u64).prop_map(
            |(back, comp, link, requests, bytes)| Op::Traffic {
                back,
                comp,
                link,
                requests,
                bytes
            }
        ),
        4 => (1..40u64).prop_map(Op::Tick),
        1 => (0..3u64).prop_map(|lag| Op::Close { lag }),
    ]
}

/// Runs `ops` from the clock `*now`, returning what the closes emitted.
fn run(meter: &mut Accumulator, now: &mut u64, ops: &[Op]) -> Vec<LedgerEntry> {
    let mut out = Vec::new();
    for op in ops {
        match *op {
            Op::Resources {
                back,
                comp,
                inst,
                cpu_total_us,
                memory,
            } => {
                let c = COMPONENTS[comp];
                let tags = Tags::new("acme", "shop", c).with_instance(format!("shop/{c}/{inst}"));
                let r = meter.observe_resources(*now - back, &tags, cpu_total_us, memory);
                assert!(r.is_ok());
            }
            Op::Reservation {
                back,
                comp,
                instances,
                burst,
                millicores,
                memory,
            } => {
                let r = Reservation {
                    instances,
                    per_instance: Resources {
                        cpu: MilliCpu(millicores),
                        memory: Bytes(memory),
                    },
                    burst_instances: burst,
                };
                let o = meter.observe_reservation(*now - back, "acme", "shop", COMPONENTS[comp], r);
                assert!(o.is_ok());
            }
            Op::Traffic {
                back,
                comp,
                link,
                requests,
                bytes,
            } => {
                let tags = Tags::new("acme", "shop", COMPONENTS[comp]).with_link(["a", "b"][link]);
                meter.observe_traffic(*now - back, &tags, requests, bytes, bytes / 2);
            }
            Op::Tick(s) => *now += s,
            Op::Close { lag } => {
                let until = Minute(Minute::of(*now).0.saturating_sub(lag));
                out.extend(meter.close_until(until));
            }
        }
    }
    out
}

/// Everything left open, closed.
fn flush(meter: &mut Accumulator) -> Vec<LedgerEntry> {
    meter.close_until(Minute(u64::MAX / 60))
}

// === arbitrary ledger entries ===

fn ledger_entry() -> impl Strategy<Value = LedgerEntry> {
    let quantity = || prop_oneof![Just(0.0), 0.0..1000.0f64];
    (
        0..10u64,
        0..3usize,
        (quantity(), quantity(), quantity(), quantity()),
        (quantity(), quantity(), quantity(), quantity()),
        (0..1_000_000u64, 0..1_000_000_000u64, 0..1_000_000_000u64),
    )
        .prop_map(
            |(m, comp, (a, b, c, d), (e, f, g, h), (req, bin, bout))| LedgerEntry {
                minute: Minute(28_333_334 + m),
                tenant: "acme".into(),
                app: if comp == 2 { "blog" } else { "shop" }.into(),
                component: COMPONENTS[comp].into(),
                cpu_seconds_used: a,
                cpu_minutes_reserved_quota: b,
                cpu_minutes_reserved_burst: c,
                memory_gib_minutes_reserved_quota: d,
                memory_gib_minutes_reserved_burst: e,
                memory_gib_minutes_used: f,
                instance_minutes: g,
                burst_instance_minutes: h,
                requests: req,
                bytes_in: bin,
                bytes_out: bout,
            },
        )
}

fn prices() -> impl Strategy<Value = Prices> {
    (0..100_000u64, 0..100_000u64, 0..200_000u64, 0..200_000u64)
        .prop_map(|(a, b, c, d)| Prices::from_micros(a, b, c, d))
}

/// The float fields of an entry, in a fixed order.
fn quantities(e: &LedgerEntry) -> [f64; 8] {
    [
        e.cpu_seconds_used,
        e.cpu_minutes_reserved_quota,
        e.cpu_minutes_reserved_burst,
        e.memory_gib_minutes_reserved_quota,
        e.memory_gib_minutes_reserved_burst,
        e.memory_gib_minutes_used,
        e.instance_minutes,
        e.burst_instance_minutes,
    ]
}

fn usage_quantities(u: &Usage) -> [Qty; 8] {
    [
        u.cpu_seconds_used,
        u.cpu_minutes_reserved_quota,
        u.cpu_minutes_reserved_burst,
        u.memory_gib_minutes_reserved_quota,
        u.memory_gib_minutes_reserved_burst,
        u.memory_gib_minutes_used,
        u.instance_minutes,
        u.burst_instance_minutes,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (1) A checkpoint, serialized and restored anywhere in the stream,
    /// changes nothing that comes out.
    #[test]
    fn checkpoint_and_restore_anywhere_give_identical_entries(
        ops in prop::collection::vec(op(), 0..300),
        split in any::<prop::sample::Index>(),
    ) {
        let k = split.index(ops.len() + 1);

        let mut straight = Accumulator::new();
        let mut now = T0;
        let mut expected = run(&mut straight, &mut now, &ops);
        expected.extend(flush(&mut straight));

        let mut first = Accumulator::new();
        let mut now = T0;
        let mut got = run(&mut first, &mut now, &ops[..k]);
        let json = serde_json::to_string(&first.checkpoint()).unwrap();
        let checkpoint: Checkpoint = serde_json::from_str(&json).unwrap();
        let mut second = Accumulator::restore(checkpoint).unwrap();
        prop_assert_eq!(&second, &first);
        got.extend(run(&mut second, &mut now, &ops[k..]));
        got.extend(flush(&mut second));

        prop_assert_eq!(got, expected);
        prop_assert_eq!(second.stats(), straight.stats());
    }

    /// (2) No minute of a component is emitted twice, and every entry is
    /// for a minute that was open when it was closed.
    #[test]
    fn no_minute_is_emitted_twice(ops in prop::collection::vec(op(), 0..300)) {
        let mut meter = Accumulator::new();
        let mut now = T0;
        let mut seen = BTreeSet::new();
        let mut watermark = Minute(0);
        for chunk in ops.chunks(7) {
            let closed = run(&mut meter, &mut now, chunk);
            for e in &closed {
                prop_assert!(seen.insert(e.key()), "emitted twice: {}", e.key());
                prop_assert!(e.minute >= watermark, "{} was already closed", e.key());
            }
            watermark = watermark.max(meter.closed_before());
        }
        for e in flush(&mut meter) {
            prop_assert!(seen.insert(e.key()), "emitted twice: {}", e.key());
        }
    }

    /// (3) A bill's totals are exactly the sums of its lines, each line's
    /// charges add up, and the usage totals are the sums of the minutes in
    /// the period (to the six decimals a line is rounded to).
    #[test]
    fn bill_totals_are_the_sums_of_lines_and_minutes(
        entries in prop::collection::vec(ledger_entry(), 0..120),
        prices in prices(),
        from in 0..12u64,
        len in 0..12u64,
    ) {
        let (from, to) = (Minute(28_333_334 + from), Minute(28_333_334 + from + len));
        let bill = Bill::compute(&entries, &prices, from, to);

        let lines_usage = bill.lines.iter().map(|l| l.usage).fold(Usage::default(), Usage::plus);
        let lines_charges = bill.lines.iter().map(|l| l.charges).fold(Charges::default(), Charges::plus);
        prop_assert_eq!(bill.total.usage, lines_usage);
        prop_assert_eq!(bill.total.charges, lines_charges);
        let line_total: Money = bill.lines.iter().map(|l| l.charges.total).sum();
        prop_assert_eq!(bill.total.charges.total, line_total);
        for l in bill.lines.iter().chain(std::iter::once(&BillLine {
            tenant: String::new(), app: String::new(), component: String::new(),
            usage: bill.total.usage, charges: bill.total.charges,
        })) {
            let c = l.charges;
            prop_assert_eq!(c.quota, c.cpu_quota + c.memory_quota);
            prop_assert_eq!(c.burst, c.cpu_burst + c.memory_burst);
            prop_assert_eq!(c.total, c.quota + c.burst);
        }

        // The minutes of the period, first of each key.
        let mut minutes = BTreeMap::new();
        for e in entries.iter().filter(|e| from <= e.minute && e.minute < to) {
            minutes.entry(e.key()).or_insert(e);
        }
        prop_assert_eq!(bill.total.usage.minutes, minutes.len() as u64);
        prop_assert_eq!(
            bill.duplicates_ignored,
            entries.iter().filter(|e| from <= e.minute && e.minute < to).count() as u64
                - minutes.len() as u64
        );
        prop_assert_eq!(bill.total.usage.requests, minutes.values().map(|e| e.requests).sum::<u64>());
        prop_assert_eq!(bill.total.usage.bytes_in, minutes.values().map(|e| e.bytes_in).sum::<u64>());
        prop_assert_eq!(bill.total.usage.bytes_out, minutes.values().map(|e| e.bytes_out).sum::<u64>());
        let totals = usage_quantities(&bill.total.usage);
        for (i, total) in totals.iter().enumerate() {
            let sum: f64 = minutes.values().map(|e| quantities(e)[i]).sum();
            // Each line rounds once to a millionth; floats add a little.
            let tolerance = (bill.lines.len() as f64) * 0.5e-6 + sum * 1e-12 + 1e-9;
            prop_assert!(
                (total.as_f64() - sum).abs() <= tolerance,
                "field {}: total {} vs sum of minutes {}", i, total, sum
            );
        }
    }

    /// (4) CPU seconds from cumulative totals are the sum of the positive
    /// increments, a total that drops (a restart) counting from zero, and
    /// no closing in between changes that.
    #[test]
    fn cpu_is_the_sum_of_increments_with_restarts(
        samples in prop::collection::vec((0..2u32, 1..30u64, 0..50_000_000u64, any::<bool>()), 1..300),
    ) {
        let mut meter = Accumulator::new();
        let mut now = T0;
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        let mut expected_us = 0u64;
        let mut entries = Vec::new();
        for (inst, dt, total, close) in samples {
            now += dt;
            let tags = Tags::new("acme", "shop", "web").with_instance(format!("shop/web/{inst}"));
            let o = meter.observe_resources(now, &tags, total, 0).unwrap();
            prop_assert_eq!(o, Observed::Counted);
            let prev = last.insert(inst, total).unwrap_or(0);
            expected_us += if total >= prev { total - prev } else { total };
            if close {
                // Every minute before now's: never makes a later sample late.
                entries.extend(meter.close_until(Minute::of(now)));
            }
        }
        entries.extend(flush(&mut meter));
        let got_us: u64 = entries.iter().map(|e| (e.cpu_seconds_used * 1e6).round() as u64).sum();
        prop_assert_eq!(got_us, expected_us);
        prop_assert_eq!(meter.late(), 0);
    }
}
