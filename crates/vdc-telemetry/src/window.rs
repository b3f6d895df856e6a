//! Recent history for one-shot queries (`vdc stats`, the topology view): the
//! last N seconds of samples per series, and rates over the last k of them.
//!
//! The window's clock is the newest `ts` it has been given, not the wall
//! clock, so it is deterministic and replays the same way in tests. A series
//! that has had no sample for N seconds falls out.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::bus::Filter;
use crate::hist::{Histogram, Latency};
use crate::model::{Message, ResourceSample, SeriesKind, Tags, Traffic, TrafficSample};

// === types ===

/// The last N seconds of traffic and resource samples, per series.
///
/// Serializes as its samples (with their histograms), so a server can keep
/// its recent history across a restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "WindowRepr", from = "WindowRepr")]
pub struct Window {
    seconds: u64,
    /// The newest second seen: the window's clock.
    newest: Option<u64>,
    /// The oldest second still covered, so rates over a window that has
    /// just started divide by the seconds it actually saw.
    since: Option<u64>,
    traffic: BTreeMap<(SeriesKind, Tags), VecDeque<TrafficEntry>>,
    resources: BTreeMap<Tags, VecDeque<ResourceSample>>,
}

#[derive(Clone, Debug, PartialEq)]
struct TrafficEntry {
    sample: TrafficSample,
    /// The histogram behind `sample.latency`, when the publisher had it.
    hist: Option<Histogram>,
}

impl TrafficEntry {
    /// Adds another node's measurement of the same series and second.
    fn absorb(&mut self, other: TrafficEntry) {
        self.sample.traffic.merge(&other.sample.traffic);
        match (&mut self.hist, &other.hist) {
            (Some(mine), Some(theirs)) => {
                mine.merge(theirs);
                let merged = mine.summary();
                if merged.count > 0 {
                    self.sample.latency = Some(merged);
                }
            }
            _ => {
                self.hist = None;
                self.sample.latency = worse(self.sample.latency, other.sample.latency);
            }
        }
        self.sample.latency_total = worse(self.sample.latency_total, other.sample.latency_total);
        self.sample.connect = worse(self.sample.connect, other.sample.connect);
    }
}

/// Of two summaries of different samples, the one describing more requests
/// (an upper bound is all a summary allows).
fn worse(a: Option<Latency>, b: Option<Latency>) -> Option<Latency> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.count > a.count { b } else { a }),
        (a, b) => a.or(b),
    }
}

#[derive(Serialize, Deserialize)]
struct WindowRepr {
    seconds: u64,
    #[serde(default)]
    newest: Option<u64>,
    #[serde(default)]
    since: Option<u64>,
    samples: Vec<WindowSample>,
}

#[derive(Serialize, Deserialize)]
struct WindowSample {
    message: Message,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    histogram: Option<Histogram>,
}

/// Traffic of one series over the last seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// The seconds the rates are averaged over.
    pub seconds: u64,
    /// The newest second included.
    pub until: u64,
    /// Totals over the period; `connections_active` is the latest value.
    pub traffic: Traffic,
    pub requests_per_s: f64,
    pub responses_5xx_per_s: f64,
    /// Requests or connections that failed, all causes.
    pub errors_per_s: f64,
    pub connections_per_s: f64,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    /// Latency over the whole period. Exact (to bucket precision) when every
    /// second came with its histogram (`latency_exact`); otherwise built
    /// from the per-second summaries, each quantile being the worst second's,
    /// which bounds the true one from above.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency: Option<Latency>,
    pub latency_exact: bool,
}

/// [`Rate`] of one traffic series, with what identifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesRate {
    pub kind: SeriesKind,
    pub tags: Tags,
    pub protocol: String,
    pub rate: Rate,
}

/// One second of the traffic to one target input, over all its instances.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TargetSecond {
    pub ts: u64,
    /// HTTP requests, or TCP connections, its instances served.
    pub requests: u64,
    /// HTTP requests, or TCP connections, that arrived for it on links and
    /// gateways: the load offered, which a saturated target serves less of.
    pub arrivals: u64,
    /// 5xx answers and exchanges that broke.
    pub errors: u64,
    /// Latency of the answered requests (time to response headers).
    pub latency: Histogram,
}

/// Resource use of one instance over the last seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub tags: Tags,
    pub source: String,
    pub seconds: u64,
    pub until: u64,
    /// Mean over the samples in the period; 100 is one core.
    pub cpu_percent: f64,
    /// Latest values.
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory_limit_bytes: Option<u64>,
    pub pids: u64,
    /// Total since the instance started, latest value.
    pub oom_kills: u64,
    /// From the growth of the totals; 0 when the totals went back (a
    /// restart) or there is a single sample.
    pub io_read_bytes_per_s: f64,
    pub io_write_bytes_per_s: f64,
    pub throttled_ms_per_s: f64,
}

// === impl Window ===

impl Window {
    /// A window keeping the last `seconds` seconds (at least one).
    pub fn new(seconds: usize) -> Self {
        Window {
            seconds: (seconds as u64).max(1),
            newest: None,
            since: None,
            traffic: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }

    /// Adds a sample; events and drop notices are ignored. A second sample
    /// for the same series and second replaces the first.
    pub fn push(&mut self, m: &Message) {
        self.push_with_histogram(m, None);
    }

    /// Adds a sample with the histogram behind its `latency`, which makes
    /// latency over several seconds exact.
    pub fn push_with_histogram(&mut self, m: &Message, hist: Option<&Histogram>) {
        let ts = match m {
            Message::Traffic(s) => s.ts,
            Message::Resources(s) => s.ts,
            Message::Event(_) | Message::Load(_) | Message::Dropped { .. } => return,
        };
        if self
            .newest
            .is_some_and(|newest| ts < self.oldest_kept(newest))
        {
            return;
        }
        match m {
            Message::Traffic(s) => {
                let entry = TrafficEntry {
                    sample: s.clone(),
                    hist: hist.cloned(),
                };
                let series = self.traffic.entry((s.kind, s.tags.clone())).or_default();
                // Several nodes measure the same series (a link whose
                // callers run on many nodes): their seconds add up.
                match series.iter_mut().rev().find(|e| e.sample.ts == s.ts) {
                    Some(existing) => existing.absorb(entry),
                    None => insert_by_ts(series, entry, |e| e.sample.ts),
                }
            }
            Message::Resources(s) => {
                let series = self.resources.entry(s.tags.clone()).or_default();
                insert_by_ts(series, s.clone(), |s| s.ts);
            }
            Message::Event(_) | Message::Load(_) | Message::Dropped { .. } => {}
        }
        self.since = Some(self.since.map_or(ts, |since| since.min(ts)));
        if self.newest.is_none_or(|newest| ts > newest) {
            self.newest = Some(ts);
            self.prune(ts);
        }
    }

    /// The newest second seen.
    pub fn newest_ts(&self) -> Option<u64> {
        self.newest
    }

    /// How many series the window holds.
    pub fn len(&self) -> usize {
        self.traffic.len() + self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per series, the most recent sample: traffic series first, then
    /// resources, each in the order of their tags.
    pub fn latest(&self) -> Vec<Message> {
        let traffic = self
            .traffic
            .values()
            .filter_map(|series| series.back())
            .map(|e| Message::Traffic(e.sample.clone()));
        let resources = self
            .resources
            .values()
            .filter_map(|series| series.back())
            .map(|s| Message::Resources(s.clone()));
        traffic.chain(resources).collect()
    }

    /// Traffic of one series over the last `seconds` seconds of the window's
    /// clock; `None` if it had no sample then.
    pub fn traffic_rate(&self, kind: SeriesKind, tags: &Tags, seconds: usize) -> Option<Rate> {
        let series = self.traffic.get(&(kind, tags.clone()))?;
        self.rate(series, seconds)
    }

    /// [`traffic_rate`](Self::traffic_rate) of every series the filter
    /// wants, in the order of their kind and tags.
    pub fn traffic_rates(&self, filter: &Filter, seconds: usize) -> Vec<SeriesRate> {
        self.traffic
            .iter()
            .filter(|((kind, tags), _)| filter.matches_series(*kind, tags))
            .filter_map(|((kind, tags), series)| {
                let rate = self.rate(series, seconds)?;
                Some(SeriesRate {
                    kind: *kind,
                    tags: tags.clone(),
                    protocol: series.back()?.sample.protocol.clone(),
                    rate,
                })
            })
            .collect()
    }

    /// Resource use of every instance the filter wants over the last
    /// `seconds` seconds.
    pub fn resource_usage(&self, filter: &Filter, seconds: usize) -> Vec<ResourceUsage> {
        let Some((start, until, covered)) = self.period(seconds) else {
            return Vec::new();
        };
        self.resources
            .iter()
            .filter(|(tags, _)| filter.matches_series(SeriesKind::Instance, tags))
            .filter_map(|(tags, series)| {
                let last = series.back().filter(|s| s.ts >= start)?;
                let inside: Vec<&ResourceSample> =
                    series.iter().filter(|s| s.ts >= start).collect();
                // The growth of a total over the period needs the sample just
                // before it as the base, when there is one.
                let base = series
                    .iter()
                    .rev()
                    .find(|s| s.ts < start)
                    .or(inside.first().copied())?;
                let span = last.ts.saturating_sub(base.ts);
                let per_s = |now: u64, then: u64| {
                    if span == 0 {
                        0.0
                    } else {
                        now.saturating_sub(then) as f64 / span as f64
                    }
                };
                let cpu = inside.iter().map(|s| s.cpu_percent).sum::<f64>() / inside.len() as f64;
                Some(ResourceUsage {
                    tags: tags.clone(),
                    source: last.source.clone(),
                    seconds: covered,
                    until,
                    cpu_percent: cpu,
                    memory_bytes: last.memory_bytes,
                    memory_peak_bytes: last.memory_peak_bytes,
                    memory_limit_bytes: last.memory_limit_bytes,
                    pids: last.pids,
                    oom_kills: last.oom_kills,
                    io_read_bytes_per_s: per_s(last.io_read_bytes, base.io_read_bytes),
                    io_write_bytes_per_s: per_s(last.io_write_bytes, base.io_write_bytes),
                    throttled_ms_per_s: per_s(last.throttled_ms, base.throttled_ms),
                })
            })
            .collect()
    }

    /// Per second from `from` on, the traffic that reached `target`
    /// (`component.input`) of `app`: what its instances answered (summed
    /// over them) and what arrived for it on the links and gateways leading
    /// there, oldest first. Seconds without traffic are left out.
    pub fn target_seconds(&self, app: &str, target: &str, from: u64) -> Vec<TargetSecond> {
        let mut out: BTreeMap<u64, TargetSecond> = BTreeMap::new();
        let series = self
            .traffic
            .iter()
            .filter(|((_, tags), _)| tags.app == app && tags.target.as_deref() == Some(target));
        for ((kind, _), entries) in series {
            for entry in entries.iter().filter(|e| e.sample.ts >= from) {
                let t = &entry.sample.traffic;
                let second = out.entry(entry.sample.ts).or_insert_with(|| TargetSecond {
                    ts: entry.sample.ts,
                    ..TargetSecond::default()
                });
                if *kind != SeriesKind::Instance {
                    // Counted as they arrive, before any instance answers.
                    second.arrivals += if entry.sample.protocol == "tcp" {
                        t.connections_opened
                    } else {
                        t.requests
                    };
                    continue;
                }
                second.requests += if entry.sample.protocol == "tcp" {
                    t.connections_opened
                } else {
                    t.requests
                };
                second.errors += t.responses_5xx
                    + t.errors_refused
                    + t.errors_reset
                    + t.errors_timeout
                    + t.errors_no_backend
                    + t.errors_other;
                if let Some(hist) = &entry.hist {
                    second.latency.merge(hist);
                }
            }
        }
        out.into_values().collect()
    }

    /// Forgets every series of an app (after `vdc down`).
    pub fn forget_app(&mut self, app: &str) {
        self.traffic.retain(|(_, tags), _| tags.app != app);
        self.resources.retain(|tags, _| tags.app != app);
    }

    // --- internals ---

    /// The oldest second kept when the newest is `newest`.
    fn oldest_kept(&self, newest: u64) -> u64 {
        newest.saturating_sub(self.seconds - 1)
    }

    fn prune(&mut self, newest: u64) {
        let oldest = self.oldest_kept(newest);
        self.traffic.retain(|_, series| {
            while series.front().is_some_and(|e| e.sample.ts < oldest) {
                series.pop_front();
            }
            !series.is_empty()
        });
        self.resources.retain(|_, series| {
            while series.front().is_some_and(|s| s.ts < oldest) {
                series.pop_front();
            }
            !series.is_empty()
        });
        self.since = self.since.map(|since| since.max(oldest));
    }

    /// The last `seconds` seconds, clamped to what the window holds and has
    /// seen: `(first second, last second, number of seconds)`.
    fn period(&self, seconds: usize) -> Option<(u64, u64, u64)> {
        let until = self.newest?;
        let seconds = (seconds as u64).clamp(1, self.seconds);
        let start = until
            .saturating_sub(seconds - 1)
            .max(self.since.unwrap_or(until));
        Some((start, until, (until - start).saturating_add(1)))
    }

    fn rate(&self, series: &VecDeque<TrafficEntry>, seconds: usize) -> Option<Rate> {
        let (start, until, covered) = self.period(seconds)?;
        let inside: Vec<&TrafficEntry> = series.iter().filter(|e| e.sample.ts >= start).collect();
        let last = inside.last()?;
        let mut traffic = Traffic::default();
        for e in &inside {
            traffic += e.sample.traffic;
        }
        traffic.connections_active = last.sample.traffic.connections_active;
        let (latency, latency_exact) = merged_latency(&inside);
        let per_s = |n: u64| n as f64 / covered as f64;
        Some(Rate {
            seconds: covered,
            until,
            traffic,
            requests_per_s: per_s(traffic.requests),
            responses_5xx_per_s: per_s(traffic.responses_5xx),
            errors_per_s: per_s(traffic.errors()),
            connections_per_s: per_s(traffic.connections_opened),
            bytes_in_per_s: per_s(traffic.bytes_in),
            bytes_out_per_s: per_s(traffic.bytes_out),
            latency,
            latency_exact,
        })
    }
}

// === impl WindowRepr ===

impl From<Window> for WindowRepr {
    fn from(w: Window) -> Self {
        let traffic = w.traffic.into_values().flatten().map(|e| WindowSample {
            message: Message::Traffic(e.sample),
            histogram: e.hist,
        });
        let resources = w.resources.into_values().flatten().map(|s| WindowSample {
            message: Message::Resources(s),
            histogram: None,
        });
        WindowRepr {
            seconds: w.seconds,
            newest: w.newest,
            since: w.since,
            samples: traffic.chain(resources).collect(),
        }
    }
}

impl From<WindowRepr> for Window {
    fn from(repr: WindowRepr) -> Self {
        let mut w = Window::new(usize::try_from(repr.seconds).unwrap_or(usize::MAX));
        // The clock first, so that pushing prunes as it did before.
        w.newest = repr.newest;
        w.since = repr.since;
        for s in &repr.samples {
            w.push_with_histogram(&s.message, s.histogram.as_ref());
        }
        w.since = repr.since.or(w.since);
        w
    }
}

/// Keeps a series ordered by second; a sample for a second already held
/// replaces it.
fn insert_by_ts<T>(series: &mut VecDeque<T>, item: T, ts: impl Fn(&T) -> u64) {
    let at = ts(&item);
    match series.iter().rposition(|x| ts(x) <= at) {
        Some(i) if ts(&series[i]) == at => series[i] = item,
        Some(i) => series.insert(i + 1, item),
        None => series.push_front(item),
    }
}

/// Latency over several seconds: merged histograms when every second has
/// one, otherwise an upper bound from the summaries.
fn merged_latency(entries: &[&TrafficEntry]) -> (Option<Latency>, bool) {
    let with_latency: Vec<&&TrafficEntry> = entries
        .iter()
        .filter(|e| e.sample.latency.is_some_and(|l| l.count > 0) || e.hist.is_some())
        .collect();
    if with_latency.is_empty() {
        return (None, false);
    }
    if with_latency.iter().all(|e| e.hist.is_some()) {
        let mut merged = Histogram::new();
        for h in with_latency.iter().filter_map(|e| e.hist.as_ref()) {
            merged.merge(h);
        }
        return (Some(merged.summary()), true);
    }
    let mut out = Latency::default();
    let mut sum_ms = 0.0;
    for l in with_latency.iter().filter_map(|e| e.sample.latency) {
        out.count = out.count.saturating_add(l.count);
        out.p50_ms = out.p50_ms.max(l.p50_ms);
        out.p90_ms = out.p90_ms.max(l.p90_ms);
        out.p99_ms = out.p99_ms.max(l.p99_ms);
        out.p999_ms = out.p999_ms.max(l.p999_ms);
        out.max_ms = out.max_ms.max(l.max_ms);
        sum_ms += l.mean_ms * l.count as f64;
    }
    if out.count > 0 {
        out.mean_ms = (sum_ms / out.count as f64 * 1000.0).round() / 1000.0;
    }
    (Some(out), false)
}

#[cfg(test)]
mod tests;
