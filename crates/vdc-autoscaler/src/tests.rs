use std::time::Duration;

use proptest::prelude::*;
use vdc_spec::{LatencyObjective, Sla};
use vdc_telemetry::Histogram;

use super::*;

fn sla(p99_ms: u64) -> Sla {
    Sla {
        latency: Some(LatencyObjective {
            percentile: 99.0,
            threshold: Duration::from_millis(p99_ms),
        }),
        max_error_ratio: None,
        window: Duration::from_secs(10),
        scale_down_after: Duration::from_secs(30),
    }
}

/// A second of `requests` requests whose latencies spread evenly over
/// `[latency/2, 3·latency/2)`.
fn second(ts: u64, requests: u64, latency: Duration) -> Second {
    let mut h = Histogram::new();
    let us = latency.as_micros() as u64;
    for i in 0..requests {
        h.record_us(us / 2 + us * i / requests.max(1));
    }
    Second {
        ts,
        requests,
        arrivals: requests,
        errors: 0,
        latency: h,
    }
}

fn room(n: u32) -> Room {
    Room {
        quota: n,
        burst: n,
        ..Room::UNLIMITED
    }
}

fn input<'a>(now: u64, sla: &'a Sla, current: u32, seconds: &'a [Second]) -> Input<'a> {
    Input {
        now,
        sla,
        min: 1,
        max: 10,
        current,
        ready: current,
        room: room(100),
        seconds,
        signals: Signals::default(),
    }
}

// === single decisions ===

#[test]
fn a_breach_scales_up_in_proportion_and_says_why() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 420, Duration::from_millis(60)))
        .collect();
    let mut state = State::default();
    let d = decide(&input(100, &sla, 3, &seconds), &mut state);
    assert_eq!(d.direction, Direction::Up);
    // 90 ms over 50 ms: 1.8 times, so 3 → 6 (no rate learnt yet).
    assert_eq!(d.replicas, 6, "{}", d.reason);
    assert!(d.observed.breached);
    assert!(
        d.reason
            .starts_with("p99 90ms > 50ms over 10s at 420 req/s; 3 → 6 replicas"),
        "{}",
        d.reason
    );
}

#[test]
fn a_learnt_rate_sizes_the_scale_up() {
    let sla = sla(50);
    let mut state = State::default();
    // 100 req/s per replica held the objective...
    let calm: Vec<Second> = (1..=10)
        .map(|ts| second(ts, 200, Duration::from_millis(20)))
        .collect();
    let d = decide(&input(10, &sla, 2, &calm), &mut state);
    assert_eq!(d.direction, Direction::Hold, "{}", d.reason);
    assert_eq!(state.good_rate(), Some(100.0));
    // ...so 700 req/s needs 7.
    let busy: Vec<Second> = (11..=20)
        .map(|ts| second(ts, 700, Duration::from_millis(300)))
        .collect();
    let learnt = state.clone();
    let d = decide(&input(20, &sla, 2, &busy), &mut state);
    assert_eq!(d.replicas, 6, "at most double or four more: {}", d.reason);
    let d = decide(&input(20, &sla, 4, &busy), &mut learnt.clone());
    assert_eq!(d.replicas, 7, "{}", d.reason);
}

#[test]
fn too_few_requests_judge_nothing() {
    let sla = sla(50);
    let seconds = vec![second(100, 5, Duration::from_secs(2))];
    let d = decide(&input(100, &sla, 2, &seconds), &mut State::default());
    assert_eq!(d.direction, Direction::Hold);
    assert_eq!(d.observed.latency_us, None);
    assert!(d.reason.contains("not judged"), "{}", d.reason);
}

#[test]
fn one_slow_request_among_few_breaches_nothing() {
    let sla = sla(50);
    let mut seconds = vec![second(100, 150, Duration::from_millis(5))];
    seconds.push(second(99, 1, Duration::from_millis(300)));
    let d = decide(&input(100, &sla, 3, &seconds), &mut State::default());
    assert_eq!(d.direction, Direction::Hold, "{}", d.reason);
    assert!(
        d.reason.contains("151 requests, 200 needed"),
        "{}",
        d.reason
    );
    assert_eq!(requests_to_judge(99.9), 2000);
    assert_eq!(requests_to_judge(50.0), MIN_REQUESTS);
}

#[test]
fn many_slow_requests_breach_before_the_percentile_can_be_judged() {
    let sla = sla(50);
    // An overloaded replica answers 40 requests a second, all late.
    let seconds = vec![second(100, 40, Duration::from_millis(900))];
    let d = decide(&input(100, &sla, 1, &seconds), &mut State::default());
    assert_eq!(d.direction, Direction::Up, "{}", d.reason);
    // A few slow ones among few do not.
    let mut seconds = vec![second(100, 60, Duration::from_millis(5))];
    seconds.push(second(99, 5, Duration::from_millis(300)));
    let d = decide(&input(100, &sla, 3, &seconds), &mut State::default());
    assert_eq!(d.direction, Direction::Hold, "{}", d.reason);
}

#[test]
fn an_error_objective_breaches_on_errors() {
    let mut sla = sla(50);
    sla.latency = None;
    sla.max_error_ratio = Some(0.01);
    let mut seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 100, Duration::from_millis(5)))
        .collect();
    seconds[9].errors = 30;
    let d = decide(&input(100, &sla, 2, &seconds), &mut State::default());
    assert_eq!(d.direction, Direction::Up, "{}", d.reason);
    assert!(d.reason.contains("errors 3.00% > 1.00%"), "{}", d.reason);
}

#[test]
fn waits_for_new_replicas_before_judging_again() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 400, Duration::from_millis(200)))
        .collect();
    let mut state = State::default();
    let d = decide(&input(100, &sla, 2, &seconds), &mut state);
    assert_eq!((d.direction, d.replicas), (Direction::Up, 4));
    let mut next = input(101, &sla, 4, &seconds);
    next.ready = 2;
    let d = decide(&next, &mut state);
    assert_eq!(d.direction, Direction::Hold);
    assert!(d.reason.contains("2 of 4 ready"), "{}", d.reason);
    // Ready: the old seconds are not judged again.
    next.now = 102;
    next.ready = 4;
    let d = decide(&next, &mut state);
    assert_eq!(d.direction, Direction::Hold, "{}", d.reason);
    // And after the timeout, it judges even if they never got ready.
    let mut state = State::default();
    decide(&input(100, &sla, 2, &seconds), &mut state);
    let mut late = input(100 + SETTLE_TIMEOUT_S, &sla, 4, &seconds);
    late.ready = 2;
    let d = decide(&late, &mut state);
    assert!(!d.reason.contains("ready"), "{}", d.reason);
}

#[test]
fn stops_at_the_quota_and_says_so_once() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 400, Duration::from_millis(200)))
        .collect();
    let mut state = State::default();
    let mut at_quota = input(100, &sla, 3, &seconds);
    at_quota.room = room(3);
    let d = decide(&at_quota, &mut state);
    assert_eq!(d.direction, Direction::Hold);
    assert_eq!(d.limited, Some(Limit::Quota));
    assert!(d.newly_limited);
    assert!(d.reason.contains("the quota reached"), "{}", d.reason);
    at_quota.now = 101;
    let d = decide(&at_quota, &mut state);
    assert_eq!(d.limited, Some(Limit::Quota));
    assert!(!d.newly_limited, "said once");
}

#[test]
fn bursts_past_the_quota_when_allowed() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 400, Duration::from_millis(200)))
        .collect();
    let mut state = State::default();
    let mut i = input(100, &sla, 3, &seconds);
    i.room = Room {
        quota: 3,
        burst: 5,
        ..Room::UNLIMITED
    };
    let d = decide(&i, &mut state);
    assert_eq!((d.direction, d.replicas), (Direction::Up, 5));
    assert_eq!(d.in_burst, 2);
    assert_eq!(d.limited, Some(Limit::Burst), "wanted 6");
    assert!(
        d.reason.contains("2 in burst above the quota"),
        "{}",
        d.reason
    );
}

#[test]
fn names_the_tightest_limit() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 400, Duration::from_millis(200)))
        .collect();
    let mut i = input(100, &sla, 3, &seconds);
    i.room.budget = 4;
    i.room.pool = 5;
    let d = decide(&i, &mut State::default());
    assert_eq!(
        (d.replicas, d.limited),
        (4, Some(Limit::Budget)),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("stopped at the app budget"),
        "{}",
        d.reason
    );
}

#[test]
fn never_above_max() {
    let sla = sla(50);
    let seconds: Vec<Second> = (91..=100)
        .map(|ts| second(ts, 400, Duration::from_millis(200)))
        .collect();
    let mut i = input(100, &sla, 8, &seconds);
    i.max = 9;
    let d = decide(&i, &mut State::default());
    assert_eq!((d.replicas, d.limited), (9, Some(Limit::Max)));
}

#[test]
fn scales_down_only_after_a_calm_period() {
    let sla = sla(50);
    let mut state = State::default();
    let mut decisions = Vec::new();
    for now in 1..=40u64 {
        let seconds: Vec<Second> = (1..=now)
            .map(|ts| second(ts, 40, Duration::from_millis(5)))
            .collect();
        decisions.push(decide(&input(now, &sla, 4, &seconds), &mut state));
    }
    let first_down = decisions
        .iter()
        .position(Decision::changes)
        .expect("scales down");
    assert_eq!(first_down + 1, 30, "after scale_down_after");
    let d = &decisions[first_down];
    // 10 req/s per replica is all it has seen hold: one fewer at a time.
    assert_eq!(
        (d.direction, d.replicas),
        (Direction::Down, 3),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("within half the objective"),
        "{}",
        d.reason
    );
}

#[test]
fn a_busy_second_in_the_calm_period_keeps_replicas() {
    let sla = sla(50);
    let mut state = State::default();
    // Learn that 50 req/s per replica is fine.
    let seconds: Vec<Second> = (1..=10)
        .map(|ts| second(ts, 200, Duration::from_millis(10)))
        .collect();
    decide(&input(10, &sla, 4, &seconds), &mut state);
    let mut last = None;
    for now in 11..=45u64 {
        let mut seconds: Vec<Second> = (1..=now)
            .map(|ts| second(ts, 20, Duration::from_millis(5)))
            .collect();
        // One second at the old load, inside the period.
        if now >= 30 {
            seconds[29] = second(30, 200, Duration::from_millis(10));
        }
        last = Some(decide(&input(now, &sla, 4, &seconds), &mut state));
    }
    // The busiest second needed 200 / (50·0.8) = 5 → stays at 4.
    let last = last.expect("decided");
    assert_eq!(last.direction, Direction::Hold, "{}", last.reason);
}

#[test]
fn the_component_can_ask() {
    let sla = sla(50);
    let seconds = vec![second(100, 10, Duration::from_millis(5))];
    let mut i = input(100, &sla, 2, &seconds);
    i.signals.requested = Some(5);
    let d = decide(&i, &mut State::default());
    assert_eq!((d.direction, d.replicas), (Direction::Up, 5));
    assert!(d.reason.contains("asked for 5"), "{}", d.reason);
    i.signals.requested = Some(0);
    let d = decide(&i, &mut State::default());
    assert_eq!((d.direction, d.replicas), (Direction::Down, 1), "min 1");
    i.signals.requested = None;
    i.signals.utilization = Some(3.5);
    let d = decide(&i, &mut State::default());
    assert_eq!((d.direction, d.replicas), (Direction::Up, 5), "3.5 / 0.8");
    assert!(d.reason.contains("350% utilization"), "{}", d.reason);
}

#[test]
fn outside_the_bounds_goes_back_inside() {
    let sla = sla(50);
    let mut i = input(100, &sla, 12, &[]);
    i.max = 6;
    let d = decide(&i, &mut State::default());
    assert_eq!((d.direction, d.replicas), (Direction::Down, 6));
}

// === a simulated component ===

/// A component whose requests take `base + per_in_flight × in-flight`, as
/// a server whose work is shared among its requests; new replicas become
/// ready one second after they are asked for.
struct Simulation {
    base_ms: f64,
    per_in_flight_ms: f64,
    replicas: u32,
    ready: u32,
    starting: Vec<u64>,
    seconds: Vec<Second>,
    state: State,
    decisions: Vec<(u64, Decision)>,
    p99_ms: Vec<(u64, f64)>,
}

impl Simulation {
    fn new() -> Self {
        Simulation {
            base_ms: 5.0,
            per_in_flight_ms: 10.0,
            replicas: 1,
            ready: 1,
            starting: Vec::new(),
            seconds: Vec::new(),
            state: State::default(),
            decisions: Vec::new(),
            p99_ms: Vec::new(),
        }
    }

    /// Latency at `rate` req/s over the ready replicas, from Little's law:
    /// W = base / (1 − per_in_flight·rate/ready), capped at 5 s.
    fn latency(&self, rate: f64) -> Duration {
        let load = self.per_in_flight_ms / 1000.0 * rate / f64::from(self.ready.max(1));
        let ms = if load >= 0.99 {
            5000.0
        } else {
            (self.base_ms / (1.0 - load)).min(5000.0)
        };
        Duration::from_secs_f64(ms / 1000.0)
    }

    fn run(&mut self, sla: &Sla, from: u64, to: u64, rate: u64) {
        for ts in from..to {
            let latency = self.latency(rate as f64);
            // Overloaded, the replicas answer only what they can; the
            // rest waits in line, but it arrived.
            let capacity = f64::from(self.ready.max(1)) * 1000.0 / self.per_in_flight_ms;
            let answered = (rate as f64).min(capacity * 0.95) as u64;
            let mut s = second(ts, answered, latency);
            s.arrivals = rate;
            self.p99_ms
                .push((ts, s.latency.quantile_us(0.99) as f64 / 1000.0));
            self.seconds.push(s);
            self.seconds.retain(|s| s.ts + 60 > ts);
            let d = decide(
                &Input {
                    now: ts,
                    sla,
                    min: 1,
                    max: 12,
                    current: self.replicas,
                    ready: self.ready,
                    room: room(12),
                    seconds: &self.seconds,
                    signals: Signals::default(),
                },
                &mut self.state,
            );
            if d.changes() {
                if d.replicas > self.replicas {
                    self.starting.extend(std::iter::repeat_n(
                        ts + 1,
                        (d.replicas - self.replicas) as usize,
                    ));
                } else {
                    self.ready = self.ready.min(d.replicas);
                }
                self.replicas = d.replicas;
                self.decisions.push((ts, d));
            }
            let before = self.starting.len();
            self.starting.retain(|at| *at > ts);
            self.ready += (before - self.starting.len()) as u32;
        }
    }

    /// Seconds from `from` until p99 is back under `threshold_ms`.
    fn recovery(&self, from: u64, threshold_ms: f64) -> Option<u64> {
        self.p99_ms
            .iter()
            .filter(|(ts, _)| *ts >= from)
            .find(|(_, p99)| *p99 <= threshold_ms)
            .map(|(ts, _)| ts - from)
    }
}

#[test]
fn a_stepped_load_is_followed_up_quickly_and_down_without_flapping() {
    let sla = sla(50);
    let mut sim = Simulation::new();
    sim.run(&sla, 1, 31, 40);
    assert!(sim.decisions.is_empty(), "40 req/s fits one replica");
    sim.run(&sla, 31, 91, 300);
    sim.run(&sla, 91, 151, 600);
    sim.run(&sla, 151, 331, 40);

    for (ts, d) in &sim.decisions {
        println!("{ts:>4} {:?} {}", d.direction, d.reason);
    }
    let first = sim.recovery(31, 50.0).expect("recovers from 300 req/s");
    let second = sim.recovery(91, 50.0).expect("recovers from 600 req/s");
    assert!(first <= 5, "p99 back under 50 ms {first} s after the step");
    assert!(
        second <= 5,
        "p99 back under 50 ms {second} s after the step"
    );
    // Once recovered, it stays under while the load holds.
    for (ts, p99) in &sim.p99_ms {
        if (31 + first + 1..91).contains(ts) || (91 + second + 1..151).contains(ts) {
            assert!(*p99 <= 50.0, "p99 {p99} ms at {ts} after recovering");
        }
    }
    assert_eq!(sim.replicas, 1, "back to min when load drops");
    // No flapping: while the load is constant, an overshoot may be given
    // back, but nothing given back is taken again.
    for phase in [(31, 91), (91, 151), (151, 331)] {
        let directions: Vec<Direction> = sim
            .decisions
            .iter()
            .filter(|(ts, _)| (phase.0..phase.1).contains(ts))
            .map(|(_, d)| d.direction)
            .collect();
        let first_down = directions.iter().position(|d| *d == Direction::Down);
        assert!(
            first_down.is_none_or(|i| !directions[i..].contains(&Direction::Up)),
            "{phase:?}: {directions:?}"
        );
    }
    assert!(
        sim.decisions.len() <= 10,
        "{} decisions",
        sim.decisions.len()
    );
}

#[test]
fn a_recorded_run_replays_the_same() {
    let sla = sla(50);
    let run = || {
        let mut sim = Simulation::new();
        sim.run(&sla, 1, 40, 40);
        sim.run(&sla, 40, 100, 450);
        sim.run(&sla, 100, 200, 40);
        sim.decisions
    };
    assert_eq!(run(), run());
}

// === properties ===

fn arb_seconds() -> impl Strategy<Value = Vec<(u64, u64, u64, u64)>> {
    prop::collection::vec((0u64..20, 0u64..2000, 0u64..100, 1u64..500_000), 0..20)
}

proptest! {
    #[test]
    fn decisions_stay_within_bounds_and_room(
        raw in arb_seconds(),
        min in 0u32..4,
        extra in 0u32..8,
        current in 0u32..14,
        ready_short in 0u32..3,
        quota in 0u32..12,
        burst_extra in 0u32..4,
        utilization in prop::option::of(0.0f64..20.0),
        requested in prop::option::of(0u32..30),
        p99_ms in 1u64..500,
    ) {
        let sla = sla(p99_ms);
        let max = (min + extra).max(1);
        let seconds: Vec<Second> = raw
            .iter()
            .map(|(ts, requests, errors, us)| {
                let mut s = second(100 - ts, *requests, Duration::from_micros(*us));
                s.errors = (*errors).min(*requests);
                s
            })
            .collect();
        let room = Room { quota, burst: quota + burst_extra, ..Room::UNLIMITED };
        let i = Input {
            now: 100,
            sla: &sla,
            min,
            max,
            current,
            ready: current.saturating_sub(ready_short),
            room,
            seconds: &seconds,
            signals: Signals { utilization, requested },
        };
        let mut state = State::default();
        let d = decide(&i, &mut state);
        let again = decide(&i, &mut State::default());
        prop_assert_eq!(&d, &again, "deterministic");
        if (min..=max).contains(&current) {
            prop_assert!(d.replicas <= max.max(current));
            prop_assert!(d.replicas >= min.min(current));
            if d.direction == Direction::Up {
                prop_assert!(d.replicas <= room.burst.max(current), "{}", d.reason);
            }
            if d.observed.breached {
                prop_assert!(d.direction != Direction::Down, "{}", d.reason);
            }
        } else {
            prop_assert!((min..=max.max(min)).contains(&d.replicas));
        }
        match d.direction {
            Direction::Up => prop_assert!(d.replicas > current),
            Direction::Down => prop_assert!(d.replicas < current),
            Direction::Hold => prop_assert_eq!(d.replicas, current),
        }
    }
}
