//! The autoscaler's decision for one component: given its SLA, the last
//! seconds of traffic on the input the SLA is on, its replica bounds and the
//! room its tenant has left, how many replicas it should run, and why.
//!
//! **Invariant:** [`decide`] does no I/O and reads no clock: the time is the
//! newest second of telemetry it is given, and everything it remembers
//! between calls is in the [`State`] the caller keeps. The same inputs give
//! the same decision, so recorded telemetry replays exactly in tests.
//!
//! How it decides, in short (docs/sla.md has the long form):
//!
//! - **Up, fast and in proportion.** When the objective is breached over the
//!   judged seconds, the replicas go to what the load needs: the request
//!   rate divided by the highest per-replica rate seen while the objective
//!   held, or, before any such rate is known, the current count times how
//!   far latency is over the threshold. At least one more, at most double
//!   (or four more), like Kubernetes' default scale-up policy.
//! - **Then wait for the new replicas.** Seconds from before the new
//!   replicas were ready are not judged again, so one breach is not
//!   answered twice.
//! - **Down, slowly and with hysteresis.** Only after the objective has held
//!   with room to spare (latency at most half the threshold) for the whole
//!   `scale_down_after` period, to the most replicas any second of that
//!   period needed, never below a per-replica rate at which the objective
//!   was seen breached, and at most halving at once.
//! - **Within bounds.** Never above `max`, the app budget or the tenant
//!   quota; past the quota only into the tenant's burst allowance, and the
//!   decision says how many replicas are in burst.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};
use vdc_spec::Sla;
use vdc_telemetry::Histogram;

/// Fewer requests than this over the judged seconds say nothing: the
/// objective is then neither met nor breached.
pub const MIN_REQUESTS: u64 = 20;

/// Requests over the threshold that breach a latency objective before its
/// percentile can be judged, when they are also more than twice the share
/// the objective allows: an overloaded component answers few requests, and
/// waiting for enough of them would delay the remedy.
pub const SLOW_TO_BREACH_EARLY: u64 = 10;

/// The requests a percentile needs before it is judged: enough that at
/// least two lie beyond it (200 for p99, 2000 for p99.9), so one slow
/// request among few cannot breach an objective by itself.
pub fn requests_to_judge(percentile: f64) -> u64 {
    let beyond = (1.0 - percentile / 100.0).max(1e-6);
    ((2.0 / beyond - 1e-6).ceil() as u64).max(MIN_REQUESTS)
}

/// Latency at or under this share of the threshold counts as room to spare.
pub const CALM_SHARE: f64 = 0.5;

/// How long new replicas may take to become ready before the autoscaler
/// judges the load again anyway.
pub const SETTLE_TIMEOUT_S: u64 = 30;

/// Seconds judged after a change took effect before the next decision, so
/// the queue the old count left behind does not count against the new one.
pub const JUDGE_AFTER_CHANGE_S: u64 = 2;

/// Answering more than this times what arrives means a queue is draining.
const DRAINING_SHARE: f64 = 1.1;

/// The seconds that make up the load "now".
pub const RECENT_S: u64 = 3;

/// How long a learnt per-replica rate is trusted: workloads change.
pub const MEMORY_S: u64 = 600;

/// Scale-down keeps per-replica rates at most this share of the lowest rate
/// at which the objective was seen breached.
const BAD_RATE_MARGIN: f64 = 0.8;

/// Reported utilization is aimed at this level per replica.
const TARGET_UTILIZATION: f64 = 0.8;

// === inputs ===

/// One second of traffic on the input the SLA is on, summed over every
/// instance of the component.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    /// The unix second this covers.
    pub ts: u64,
    /// Requests answered.
    pub requests: u64,
    /// Requests that arrived for the input (the load offered, which an
    /// overloaded component answers less of); 0 when unknown, and
    /// `requests` stands in.
    pub arrivals: u64,
    /// Requests that failed: 5xx answers and broken exchanges.
    pub errors: u64,
    /// Latency of the requests answered in that second.
    pub latency: Histogram,
}

/// The most replicas the component may have, given what everything else
/// reserves. `u32::MAX` where there is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// Within the tenant's quota.
    pub quota: u32,
    /// Within the tenant's quota plus its burst allowance; equal to `quota`
    /// when the tenant has none.
    pub burst: u32,
    /// Within the app's budget.
    pub budget: u32,
    /// Within the free capacity of the pool.
    pub pool: u32,
}

impl Room {
    /// No limit at all.
    pub const UNLIMITED: Room = Room {
        quota: u32::MAX,
        burst: u32::MAX,
        budget: u32::MAX,
        pool: u32::MAX,
    };
}

/// What the component's own instances said through the platform API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    /// Sum of the utilization the instances report (1.0 is one instance at
    /// its capacity), when they report one.
    pub utilization: Option<f64>,
    /// Replicas an instance asked for, while the request is fresh.
    pub requested: Option<u32>,
}

/// Everything one decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The newest complete second: the decision's clock.
    pub now: u64,
    pub sla: &'a Sla,
    pub min: u32,
    pub max: u32,
    /// Replicas the component is set to run.
    pub current: u32,
    /// Of those, how many are ready.
    pub ready: u32,
    pub room: Room,
    /// Recent seconds, in any order; gaps are seconds without traffic.
    pub seconds: &'a [Second],
    pub signals: Signals,
}

// === outputs ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
    Hold,
}

/// What stopped the replicas short of what the load needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// The component's `max`.
    Max,
    /// The app's budget.
    Budget,
    /// The free capacity of the pool.
    Pool,
    /// The app budget or the tenant quota, and the tenant has no burst
    /// allowance (left).
    Quota,
    /// The end of the tenant's burst allowance.
    Burst,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Max => "the component's max",
            Limit::Budget => "the app budget",
            Limit::Pool => "the pool's free capacity",
            Limit::Quota => "the quota",
            Limit::Burst => "the end of the burst allowance",
        })
    }
}

/// What the judged seconds showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// How many seconds were judged.
    pub seconds: u64,
    pub requests: u64,
    /// Requests offered per second (arrivals).
    pub rate: f64,
    /// The busiest of the last few judged seconds: the load now, where
    /// `rate` still averages in the seconds before a step.
    pub recent_rate: f64,
    /// The SLA's percentile of latency, when there were enough requests.
    pub latency_us: Option<u64>,
    pub error_ratio: f64,
    /// Whether the objective was breached.
    pub breached: bool,
}

/// The replicas the component should run, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub replicas: u32,
    pub direction: Direction,
    /// One line, with the figures behind it: "p99 83ms > 50ms over 10s at
    /// 420 req/s; 3 → 5 replicas".
    pub reason: String,
    /// Set while the load needs more than the limits allow.
    pub limited: Option<Limit>,
    /// True on the first decision of a run of limited ones, so the caller
    /// says it once rather than every second.
    pub newly_limited: bool,
    /// Replicas above the quota, billed at burst prices.
    pub in_burst: u32,
    pub observed: Observed,
}

impl Decision {
    /// Whether the replica count changes.
    pub fn changes(&self) -> bool {
        self.direction != Direction::Hold
    }
}

// === state ===

/// What the autoscaler remembers about one component between decisions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the replicas last changed, and which way.
    last_change: Option<(u64, Direction)>,
    /// The second by which the last change had taken effect; only later
    /// seconds are judged.
    settled_at: Option<u64>,
    /// The highest per-replica rate seen while the objective held, and when.
    good_rate: Option<(f64, u64)>,
    /// The lowest per-replica rate seen while it was breached, and when.
    bad_rate: Option<(f64, u64)>,
    /// Since when the objective has held with room to spare.
    calm_since: Option<u64>,
    /// Per calm second, the replicas the load needed then.
    needs: VecDeque<(u64, u32)>,
    /// Whether the previous decision was limited.
    limited: Option<Limit>,
}

impl State {
    /// The highest per-replica request rate seen while the objective held.
    pub fn good_rate(&self) -> Option<f64> {
        self.good_rate.map(|(r, _)| r)
    }

    /// The lowest per-replica rate seen while the objective was breached.
    pub fn bad_rate(&self) -> Option<f64> {
        self.bad_rate.map(|(r, _)| r)
    }

    /// Notes a change of replicas made outside the autoscaler (`vdc scale`,
    /// a request of the component), so its effect is waited for too.
    pub fn changed_by_hand(&mut self, now: u64, direction: Direction) {
        self.last_change = Some((now, direction));
        self.settled_at = None;
        self.calm_since = None;
        self.needs.clear();
    }
}

// === the decision ===

/// Decides the replicas of one component. See the crate documentation.
pub fn decide(input: &Input<'_>, state: &mut State) -> Decision {
    let now = input.now;
    let current = input.current;
    forget_old(state, now);

    // Outside its bounds (the spec changed under it): back inside first.
    let floor = input.min;
    let ceiling = input.max.max(floor);
    if current < floor || current > ceiling {
        let replicas = current.clamp(floor, ceiling);
        let direction = if replicas > current {
            Direction::Up
        } else {
            Direction::Down
        };
        state.changed_by_hand(now, direction);
        return Decision {
            replicas,
            direction,
            reason: format!(
                "{current} replicas is outside min {} and max {}; {current} → {replicas} replicas",
                input.min, input.max
            ),
            limited: None,
            newly_limited: false,
            in_burst: replicas.saturating_sub(input.room.quota),
            observed: Observed::default(),
        };
    }

    // Wait for the last change to take effect.
    if let Some((at, direction)) = state.last_change {
        if state.settled_at.is_none() {
            let ready = direction == Direction::Down || input.ready >= current;
            if ready || now.saturating_sub(at) >= SETTLE_TIMEOUT_S {
                state.settled_at = Some(now);
            } else {
                return hold(
                    input,
                    state,
                    Observed::default(),
                    format!(
                        "waiting for new replicas: {} of {current} ready",
                        input.ready
                    ),
                );
            }
        }
    }

    // After a scale-up, the queue that built up before it drains through
    // the old replicas with the latency it had: while they answer clearly
    // more than arrives, those seconds say nothing about the new count.
    if let Some((at, Direction::Up)) = state.last_change {
        let newest = input.seconds.iter().find(|s| s.ts == now);
        let draining = newest.is_some_and(|s| {
            s.arrivals > 0 && s.requests as f64 > s.arrivals as f64 * DRAINING_SHARE
        });
        if draining && now.saturating_sub(at) < SETTLE_TIMEOUT_S {
            state.settled_at = Some(now);
            let s = newest.map_or((0, 0), |s| (s.requests, s.arrivals));
            // Latency says nothing now, but the load still does: if what
            // arrives needs more replicas than run, at the best rate a
            // replica was seen to hold, add them.
            if let Some(good) = state.good_rate().filter(|g| *g > 0.0) {
                let wanted = replicas_for(s.1 as f64, good);
                if wanted > input.current {
                    let observed = Observed {
                        seconds: 1,
                        requests: s.0,
                        rate: s.1 as f64,
                        recent_rate: s.1 as f64,
                        ..Observed::default()
                    };
                    let p = input
                        .sla
                        .latency
                        .map_or("latency".to_owned(), |o| format_percentile(o.percentile));
                    let why = format!(
                        "{p} not judged while the queue from before the change drains; {} req/s arriving need {wanted} replicas at the {} req/s one was seen to hold",
                        s.1,
                        format_rate(good)
                    );
                    return up_to(input, state, observed, wanted, why);
                }
            }
            return hold(
                input,
                state,
                Observed::default(),
                format!(
                    "the queue from before the change is draining ({} answered, {} arrived in the last second)",
                    s.0, s.1
                ),
            );
        }
    }

    let observed = observe(input, state.settled_at);
    if state.last_change.is_some()
        && state
            .settled_at
            .is_some_and(|at| now.saturating_sub(at) < JUDGE_AFTER_CHANGE_S)
    {
        return hold(
            input,
            state,
            observed,
            "judging the new replica count".to_owned(),
        );
    }
    learn(state, &observed, current, now);
    let what = describe(input.sla, &observed);

    if observed.breached {
        state.calm_since = None;
        state.needs.clear();
        let wanted = wanted_up(input, state, &observed);
        return up_to(input, state, observed, wanted, what);
    }

    // Not breached: what the component itself says comes next.
    if let Some(utilization) = input.signals.utilization {
        let wanted = replicas_for(utilization, TARGET_UTILIZATION);
        if wanted > current {
            let why = format!("instances report {:.0}% utilization", utilization * 100.0);
            return up_to(input, state, observed, wanted, why);
        }
    }
    if let Some(requested) = input.signals.requested {
        if requested > current {
            return up_to(
                input,
                state,
                observed,
                requested,
                format!("the component asked for {requested} replicas"),
            );
        }
        let to = requested.max(floor).max(1);
        if to < current {
            return change(
                input,
                state,
                observed,
                to,
                Direction::Down,
                None,
                format!("the component asked for {requested} replicas"),
            );
        }
    }

    // Scale-down: only after a calm period, to what its busiest second
    // needed.
    if !is_calm(input.sla, &observed) {
        state.calm_since = None;
        state.needs.clear();
        return hold(input, state, observed, format!("{what}; holding"));
    }
    let calm_since = *state.calm_since.get_or_insert(now);
    let need = need_when_calm(input, state, &observed);
    state.needs.push_back((now, need));
    let period = input.sla.scale_down_after.as_secs().max(1);
    while state
        .needs
        .front()
        .is_some_and(|(ts, _)| now.saturating_sub(*ts) >= period)
    {
        state.needs.pop_front();
    }
    let calm_for = now.saturating_sub(calm_since);
    let since_change = state
        .last_change
        .map_or(u64::MAX, |(at, _)| now.saturating_sub(at));
    if calm_for + 1 >= period && since_change >= period {
        let busiest = state.needs.iter().map(|(_, n)| *n).max().unwrap_or(current);
        // The autoscaler never scales to zero by itself: nothing would
        // measure the load that should bring replicas back.
        let to = busiest.max(floor).max(1);
        if to < current {
            let why = format!("{what}, within half the objective for {}s", calm_for + 1);
            return change(input, state, observed, to, Direction::Down, None, why);
        }
    }
    hold(input, state, observed, format!("{what}; holding"))
}

/// Drops learnt rates nobody has confirmed for a while.
fn forget_old(state: &mut State, now: u64) {
    let old = |at: u64| now.saturating_sub(at) > MEMORY_S;
    if state.good_rate.is_some_and(|(_, at)| old(at)) {
        state.good_rate = None;
    }
    if state.bad_rate.is_some_and(|(_, at)| old(at)) {
        state.bad_rate = None;
    }
}

/// Sums the judged seconds: the SLA's window, from the last settled second.
fn observe(input: &Input<'_>, settled_at: Option<u64>) -> Observed {
    let window = input.sla.window.as_secs().max(1);
    let mut from = input.now.saturating_sub(window - 1);
    if let Some(settled) = settled_at {
        from = from.max(settled.saturating_add(1).min(input.now));
    }
    let recent_from = input.now.saturating_sub(RECENT_S - 1).max(from);
    let mut latency = Histogram::new();
    let (mut requests, mut errors, mut recent, mut arrived) = (0u64, 0u64, 0u64, 0u64);
    for s in input
        .seconds
        .iter()
        .filter(|s| s.ts >= from && s.ts <= input.now)
    {
        requests = requests.saturating_add(s.requests);
        errors = errors.saturating_add(s.errors);
        let offered = if s.arrivals > 0 {
            s.arrivals
        } else {
            s.requests
        };
        arrived = arrived.saturating_add(offered);
        if s.ts >= recent_from {
            recent = recent.max(offered);
        }
        latency.merge(&s.latency);
    }
    let seconds = input.now - from + 1;
    let error_ratio = if requests == 0 {
        0.0
    } else {
        errors as f64 / requests as f64
    };
    let (latency_us, latency_breached) = match input.sla.latency {
        Some(objective) if latency.count() >= MIN_REQUESTS => {
            let q = objective.percentile / 100.0;
            let threshold_us = u64::try_from(objective.threshold.as_micros()).unwrap_or(u64::MAX);
            let at_q = latency.quantile_us(q);
            let slow = latency
                .count()
                .saturating_sub(latency.cumulative(&[threshold_us])[0]);
            let judged = latency.count() >= requests_to_judge(objective.percentile);
            let early = slow >= SLOW_TO_BREACH_EARLY
                && slow as f64 > 2.0 * (1.0 - q) * latency.count() as f64;
            if judged || early {
                (Some(at_q), at_q > threshold_us || early)
            } else {
                (None, false)
            }
        }
        _ => (None, false),
    };
    let errors_breached = match input.sla.max_error_ratio {
        Some(max) => requests >= MIN_REQUESTS && error_ratio > max,
        None => false,
    };
    Observed {
        seconds,
        requests,
        rate: arrived as f64 / seconds as f64,
        recent_rate: recent as f64,
        latency_us,
        error_ratio,
        breached: latency_breached || errors_breached,
    }
}

/// Remembers the per-replica rate as good or bad. A good rate at or above
/// the remembered bad one means the workload changed: the bad one goes, and
/// the other way round.
fn learn(state: &mut State, observed: &Observed, replicas: u32, now: u64) {
    let replicas = f64::from(replicas.max(1));
    if observed.requests < MIN_REQUESTS {
        return;
    }
    if observed.breached {
        // What breached is the load now, not the window's average of it.
        let per_replica = observed.recent_rate.max(observed.rate) / replicas;
        if per_replica <= 0.0 {
            return;
        }
        let rate = state
            .bad_rate
            .map_or(per_replica, |(r, _)| r.min(per_replica));
        state.bad_rate = Some((rate, now));
        if state.good_rate.is_some_and(|(g, _)| g >= rate) {
            state.good_rate = None;
        }
    } else {
        // What held is at least the window's average: the lower figure.
        let per_replica = observed.rate.min(observed.recent_rate) / replicas;
        if per_replica <= 0.0 {
            return;
        }
        let rate = state
            .good_rate
            .map_or(per_replica, |(r, _)| r.max(per_replica));
        state.good_rate = Some((rate, now));
        if state.bad_rate.is_some_and(|(b, _)| b <= rate) {
            state.bad_rate = None;
        }
    }
}

/// Replicas the load needs after a breach.
fn wanted_up(input: &Input<'_>, state: &State, observed: &Observed) -> u32 {
    let current = input.current.max(1);
    let by_rate = state
        .good_rate()
        .filter(|g| *g > 0.0)
        .map(|g| replicas_for(observed.rate.max(observed.recent_rate), g));
    let by_ratio = {
        let over = match (input.sla.latency, observed.latency_us) {
            (Some(objective), Some(us)) => {
                us as f64 / objective.threshold.as_micros().max(1) as f64
            }
            _ => 1.0,
        };
        let over_errors = match input.sla.max_error_ratio {
            Some(max) if max > 0.0 => observed.error_ratio / max,
            _ => 1.0,
        };
        replicas_for(
            f64::from(current) * over.max(over_errors).clamp(1.0, 2.0),
            1.0,
        )
    };
    let wanted = by_rate.unwrap_or(by_ratio);
    let step_cap = (current * 2).max(current + 4);
    let mut wanted = wanted.clamp(input.current + 1, step_cap);
    if let Some(utilization) = input.signals.utilization {
        wanted = wanted.max(replicas_for(utilization, TARGET_UTILIZATION));
    }
    wanted
}

/// Replicas a calm second needs.
fn need_when_calm(input: &Input<'_>, state: &State, observed: &Observed) -> u32 {
    let current = input.current;
    if observed.requests == 0 {
        return input.min;
    }
    // Latency has room to spare, so one fewer is worth trying even when
    // the rates learnt so far (seen at lighter load) say otherwise; the
    // rate a breach was seen at keeps it from trying twice.
    let one_fewer = current.saturating_sub(1);
    let mut need = match state.good_rate().filter(|g| *g > 0.0) {
        Some(good) => replicas_for(observed.rate, good * TARGET_UTILIZATION).min(one_fewer),
        None => one_fewer,
    };
    if let Some(bad) = state.bad_rate().filter(|b| *b > 0.0) {
        // Stay clear of a per-replica rate known to breach.
        need = need.max(replicas_for(observed.rate, bad * BAD_RATE_MARGIN));
    }
    if let Some(utilization) = input.signals.utilization {
        need = need.max(replicas_for(utilization, TARGET_UTILIZATION));
    }
    if let Some(requested) = input.signals.requested {
        // What the component asked for lately is a floor.
        need = need.max(requested);
    }
    need.clamp(input.min, current.max(input.min))
}

/// Whether the objective holds with room to spare.
fn is_calm(sla: &Sla, observed: &Observed) -> bool {
    if observed.requests == 0 {
        return true;
    }
    let latency_calm = match (sla.latency, observed.latency_us) {
        (Some(objective), Some(us)) => {
            (us as f64) <= objective.threshold.as_micros() as f64 * CALM_SHARE
        }
        // Too few requests to judge a percentile: light load.
        _ => true,
    };
    let errors_calm = match sla.max_error_ratio {
        Some(max) => observed.error_ratio <= max * CALM_SHARE,
        None => true,
    };
    latency_calm && errors_calm
}

/// Scales up towards `wanted`, as far as the limits allow.
fn up_to(
    input: &Input<'_>,
    state: &mut State,
    observed: Observed,
    wanted: u32,
    why: String,
) -> Decision {
    let current = input.current;
    let room = input.room;
    let tenant = if room.burst > room.quota {
        (room.burst, Limit::Burst)
    } else {
        (room.quota, Limit::Quota)
    };
    // The tightest limit names the reason; none takes away what runs.
    let (allowed, binding) = [
        (input.max, Limit::Max),
        (room.budget, Limit::Budget),
        (room.pool, Limit::Pool),
        tenant,
    ]
    .into_iter()
    .min_by_key(|(n, _)| *n)
    .unwrap_or((input.max, Limit::Max));
    let allowed = allowed.max(current);
    let (replicas, limit) = if wanted <= allowed {
        (wanted, None)
    } else {
        (allowed, Some(binding))
    };
    if replicas <= current {
        let before = state.limited;
        let mut decision = hold(
            input,
            state,
            observed,
            format!(
                "{why}; {current} replicas and no more allowed: {} reached (wanted {wanted})",
                limit.unwrap_or(Limit::Max)
            ),
        );
        decision.limited = limit.or(Some(Limit::Max));
        decision.newly_limited = before != decision.limited;
        state.limited = decision.limited;
        return decision;
    }
    change(input, state, observed, replicas, Direction::Up, limit, why)
}

fn change(
    input: &Input<'_>,
    state: &mut State,
    observed: Observed,
    replicas: u32,
    direction: Direction,
    limit: Option<Limit>,
    why: String,
) -> Decision {
    let current = input.current;
    let in_burst = replicas.saturating_sub(input.room.quota);
    let mut reason = format!("{why}; {current} → {replicas} replicas");
    if in_burst > 0 {
        reason.push_str(&format!(" ({in_burst} in burst above the quota)"));
    }
    if let Some(limit) = limit {
        reason.push_str(&format!("; stopped at {limit}"));
    }
    let newly_limited = limit.is_some() && state.limited != limit;
    state.limited = limit;
    state.last_change = Some((input.now, direction));
    state.settled_at = None;
    state.calm_since = None;
    state.needs.clear();
    Decision {
        replicas,
        direction,
        reason,
        limited: limit,
        newly_limited,
        in_burst,
        observed,
    }
}

fn hold(input: &Input<'_>, state: &mut State, observed: Observed, reason: String) -> Decision {
    state.limited = None;
    Decision {
        replicas: input.current,
        direction: Direction::Hold,
        reason,
        limited: None,
        newly_limited: false,
        in_burst: input.current.saturating_sub(input.room.quota),
        observed,
    }
}

/// The smallest count of replicas that keeps `load / replicas <= each`.
fn replicas_for(load: f64, each: f64) -> u32 {
    // NaN and non-positive loads need nothing.
    if load.is_nan() || each.is_nan() || load <= 0.0 || each <= 0.0 {
        return 0;
    }
    let n = (load / each - 1e-9).ceil();
    if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n.max(0.0) as u32
    }
}

/// "p99 83ms > 50ms over 10s at 420 req/s".
fn describe(sla: &Sla, o: &Observed) -> String {
    let mut parts = Vec::new();
    if let Some(objective) = sla.latency {
        let p = format_percentile(objective.percentile);
        let threshold = format_us(objective.threshold.as_micros() as f64);
        match o.latency_us {
            Some(us) => {
                let op = if us as u128 > objective.threshold.as_micros() {
                    ">"
                } else {
                    "<="
                };
                parts.push(format!("{p} {} {op} {threshold}", format_us(us as f64)));
            }
            None => parts.push(format!(
                "{p} not judged ({} requests, {} needed)",
                o.requests,
                requests_to_judge(objective.percentile)
            )),
        }
    }
    if let Some(max) = sla.max_error_ratio {
        let op = if o.error_ratio > max { ">" } else { "<=" };
        parts.push(format!(
            "errors {:.2}% {op} {:.2}%",
            o.error_ratio * 100.0,
            max * 100.0
        ));
    }
    let now = if o.recent_rate > o.rate * 1.2 {
        format!(", {} req/s now", format_rate(o.recent_rate))
    } else {
        String::new()
    };
    format!(
        "{} over {}s at {} req/s{now}",
        parts.join(", "),
        o.seconds,
        format_rate(o.rate)
    )
}

fn format_percentile(p: f64) -> String {
    format!("p{p}")
}

fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.0}ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{us:.0}µs")
    }
}

fn format_rate(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

#[cfg(test)]
mod tests;
