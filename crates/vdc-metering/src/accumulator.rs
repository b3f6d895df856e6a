//! The accumulator: per-second observations in, closed per-minute ledger
//! entries out, with a checkpoint that survives the process.
//!
//! While a minute is open its sums are integers (microseconds of CPU,
//! millicore-seconds, byte-seconds, instance-seconds), so a checkpoint holds
//! them exactly and a restored accumulator continues bit for bit. They are
//! turned into the entry's units only when the minute closes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vdc_spec::Resources;
use vdc_telemetry::{ResourceSample, SeriesKind, Tags, TrafficSample};

use crate::entry::LedgerEntry;
use crate::minute::Minute;

/// The checkpoint format this version writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

/// A series (an instance's CPU total, a component's reservation, a traffic
/// series) not observed for this many minutes before the closed watermark
/// is forgotten. An instance that comes back after that has its CPU total
/// counted from zero again, so the horizon is long: a day.
pub const SERIES_IDLE_MINUTES: u64 = 24 * 60;

/// How long after a minute ends [`Accumulator::close_due`] waits before
/// closing it: telemetry for a second arrives a second or two after it.
pub const CLOSE_GRACE_SECONDS: u64 = 5;

const MICROS_PER_SECOND: f64 = 1e6;
const MILLICORE_SECONDS_PER_CORE_MINUTE: f64 = 60_000.0;
const BYTE_SECONDS_PER_GIB_MINUTE: f64 = 60.0 * (1u64 << 30) as f64;
const SECONDS_PER_MINUTE: f64 = 60.0;

// === types ===

/// What a component holds during one second: how many instances run, what
/// each reserves, and how many of them are above the tenant's quota.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub instances: u32,
    /// What one instance reserves (every instance of a component reserves
    /// the same).
    pub per_instance: Resources,
    /// Of `instances`, how many the tenant holds above its quota, in its
    /// burst allowance. At most `instances`.
    pub burst_instances: u32,
}

/// What became of an observation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Added to its minute.
    Counted,
    /// Its minute was already closed: dropped and counted in
    /// [`Accumulator::late`].
    Late,
    /// Its series already had an observation for that second or a later
    /// one: dropped and counted in [`Accumulator::duplicates`].
    Duplicate,
    /// Not metered by design (traffic an instance served is metered on the
    /// link or gateway that carried it).
    Ignored,
}

/// An observation that cannot be metered; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObserveError {
    #[error("resource observation for {tenant}/{app}/{component} has no instance tag: expected tags.instance such as \"{app}/{component}/0\"")]
    MissingInstance {
        tenant: String,
        app: String,
        component: String,
    },
    #[error("reservation for {tenant}/{app}/{component} marks {burst} of {instances} instances as burst: expected at most as many burst instances as running instances")]
    BurstExceedsInstances {
        tenant: String,
        app: String,
        component: String,
        instances: u32,
        burst: u32,
    },
}

/// A checkpoint that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint version {found} is not supported: expected version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("checkpoint holds an open minute {minute} before its closed watermark {closed_before}: expected open minutes at or after the watermark")]
    OpenBeforeWatermark {
        minute: Minute,
        closed_before: Minute,
    },
}

/// Counters and sizes, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccumulatorStats {
    /// Minutes before this one are closed.
    pub closed_before: Minute,
    pub late: u64,
    pub duplicates: u64,
    /// Component-minutes open.
    pub open_entries: usize,
    /// Instances, reservations and traffic series remembered.
    pub tracked_series: usize,
}

/// Turns per-second observations into per-minute [`LedgerEntry`]s per
/// tenant, app and component. See docs/metering.md for the rules and the
/// contract its caller keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accumulator {
    /// Every minute before this one is closed: observations for them are
    /// late.
    closed_before: Minute,
    late: u64,
    duplicates: u64,
    /// Partial sums of open minutes.
    open: BTreeMap<(Minute, ComponentKey), Sums>,
    /// The last cumulative CPU total seen per instance.
    instances: BTreeMap<InstanceKey, CpuSeen>,
    /// The last second a reservation was observed per component.
    reservations: BTreeMap<ComponentKey, u64>,
    /// The last second observed per traffic series.
    traffic: BTreeMap<Tags, u64>,
}

/// The accumulator's whole state, serializable (JSON or anything serde
/// writes). Opaque: restore it with [`Accumulator::restore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    version: u32,
    closed_before: Minute,
    late: u64,
    duplicates: u64,
    open: Vec<OpenSums>,
    instances: Vec<InstanceSeen>,
    reservations: Vec<ReservationSeen>,
    traffic: Vec<TrafficSeen>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct ComponentKey {
    tenant: String,
    app: String,
    component: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct InstanceKey {
    component: ComponentKey,
    instance: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CpuSeen {
    last_ts: u64,
    cpu_total_us: u64,
}

/// One component's partial sums over one open minute, in integer units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sums {
    cpu_used_us: u64,
    cpu_reserved_quota_millicore_s: u64,
    cpu_reserved_burst_millicore_s: u64,
    memory_reserved_quota_byte_s: u64,
    memory_reserved_burst_byte_s: u64,
    memory_used_byte_s: u64,
    instance_s: u64,
    burst_instance_s: u64,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct OpenSums {
    minute: Minute,
    key: ComponentKey,
    sums: Sums,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InstanceSeen {
    key: InstanceKey,
    last_ts: u64,
    cpu_total_us: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ReservationSeen {
    key: ComponentKey,
    last_ts: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TrafficSeen {
    series: Tags,
    last_ts: u64,
}

// === impl Accumulator ===

impl Accumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// One second of one instance: its cumulative CPU total (user and
    /// system, in microseconds, since the instance's process started) and
    /// its memory now. `tags.instance` names the instance.
    ///
    /// The CPU counted for the second is the increase of the total since
    /// the instance's previous observation. A total lower than the previous
    /// one is a new process (the instance restarted): the new total is
    /// counted from zero. The first total seen of an instance is counted
    /// from zero too (it just started, or a restored checkpoint would have
    /// known it). The memory counts as held for this one second.
    pub fn observe_resources(
        &mut self,
        ts: u64,
        tags: &Tags,
        cpu_total_us: u64,
        memory_bytes: u64,
    ) -> Result<Observed, ObserveError> {
        let Some(instance) = tags.instance.as_deref() else {
            return Err(ObserveError::MissingInstance {
                tenant: tags.tenant.clone(),
                app: tags.app.clone(),
                component: tags.component.clone(),
            });
        };
        if let Some(dropped) = self.late_check(ts) {
            return Ok(dropped);
        }
        let component = ComponentKey::of(&tags.tenant, &tags.app, &tags.component);
        let key = InstanceKey {
            component: component.clone(),
            instance: instance.to_owned(),
        };
        let used_us = match self.instances.get(&key) {
            Some(seen) if ts <= seen.last_ts => {
                self.duplicates += 1;
                return Ok(Observed::Duplicate);
            }
            Some(seen) if cpu_total_us >= seen.cpu_total_us => cpu_total_us - seen.cpu_total_us,
            // Never seen, or the total went down: a process counted from zero.
            _ => cpu_total_us,
        };
        self.instances.insert(
            key,
            CpuSeen {
                last_ts: ts,
                cpu_total_us,
            },
        );
        let sums = self.sums(ts, component);
        add(&mut sums.cpu_used_us, used_us);
        add(&mut sums.memory_used_byte_s, memory_bytes);
        Ok(Observed::Counted)
    }

    /// [`Accumulator::observe_resources`] from a telemetry sample: CPU is
    /// `cpu_user_ms + cpu_system_ms`, memory `memory_bytes`.
    pub fn observe_resource_sample(
        &mut self,
        sample: &ResourceSample,
    ) -> Result<Observed, ObserveError> {
        let cpu_total_us = sample
            .cpu_user_ms
            .saturating_add(sample.cpu_system_ms)
            .saturating_mul(1000);
        self.observe_resources(sample.ts, &sample.tags, cpu_total_us, sample.memory_bytes)
    }

    /// One second of what a component holds. Call once per component and
    /// second, with every instance the component runs on any node.
    pub fn observe_reservation(
        &mut self,
        ts: u64,
        tenant: &str,
        app: &str,
        component: &str,
        reservation: Reservation,
    ) -> Result<Observed, ObserveError> {
        let Reservation {
            instances,
            per_instance,
            burst_instances,
        } = reservation;
        if burst_instances > instances {
            return Err(ObserveError::BurstExceedsInstances {
                tenant: tenant.to_owned(),
                app: app.to_owned(),
                component: component.to_owned(),
                instances,
                burst: burst_instances,
            });
        }
        if let Some(dropped) = self.late_check(ts) {
            return Ok(dropped);
        }
        let key = ComponentKey::of(tenant, app, component);
        if let Some(&last) = self.reservations.get(&key) {
            if ts <= last {
                self.duplicates += 1;
                return Ok(Observed::Duplicate);
            }
        }
        self.reservations.insert(key.clone(), ts);
        let quota = u64::from(instances - burst_instances);
        let burst = u64::from(burst_instances);
        let (cpu, memory) = (per_instance.cpu.0, per_instance.memory.0);
        let sums = self.sums(ts, key);
        add(&mut sums.instance_s, u64::from(instances));
        add(&mut sums.burst_instance_s, burst);
        add(
            &mut sums.cpu_reserved_quota_millicore_s,
            quota.saturating_mul(cpu),
        );
        add(
            &mut sums.cpu_reserved_burst_millicore_s,
            burst.saturating_mul(cpu),
        );
        add(
            &mut sums.memory_reserved_quota_byte_s,
            quota.saturating_mul(memory),
        );
        add(
            &mut sums.memory_reserved_burst_byte_s,
            burst.saturating_mul(memory),
        );
        Ok(Observed::Counted)
    }

    /// One second of one traffic series (the deltas of that second),
    /// counted for `tags.component`. `tags` as a whole identifies the
    /// series, for duplicate detection.
    pub fn observe_traffic(
        &mut self,
        ts: u64,
        tags: &Tags,
        requests: u64,
        bytes_in: u64,
        bytes_out: u64,
    ) -> Observed {
        let component = tags.component.clone();
        self.traffic_for(ts, tags, component, (requests, bytes_in, bytes_out))
    }

    /// A telemetry traffic sample, counted for the component that *served*
    /// it: a link or gateway sample counts for the component of its
    /// `target` (`db` for `db.kv`); instance samples are ignored, because
    /// the same requests were carried by a link or gateway.
    pub fn observe_traffic_sample(&mut self, sample: &TrafficSample) -> Observed {
        if sample.kind == SeriesKind::Instance {
            return Observed::Ignored;
        }
        let served_by = sample
            .tags
            .target
            .as_deref()
            .and_then(|t| t.split('.').next())
            .filter(|c| !c.is_empty())
            .unwrap_or(&sample.tags.component)
            .to_owned();
        let t = &sample.traffic;
        self.traffic_for(
            sample.ts,
            &sample.tags,
            served_by,
            (t.requests, t.bytes_in, t.bytes_out),
        )
    }

    /// Closes every minute before `minute` and returns their entries,
    /// ordered by minute, tenant, app and component. Observations for
    /// those minutes that arrive later are late. Closing is monotonic:
    /// asking for an earlier minute than before returns nothing.
    pub fn close_until(&mut self, minute: Minute) -> Vec<LedgerEntry> {
        if minute <= self.closed_before {
            return Vec::new();
        }
        let still_open = self.open.split_off(&(minute, ComponentKey::default()));
        let closed = std::mem::replace(&mut self.open, still_open);
        self.closed_before = minute;
        self.forget_idle_series();
        closed
            .into_iter()
            .map(|((minute, key), sums)| sums.entry(minute, key))
            .collect()
    }

    /// Closes the minutes that ended at least [`CLOSE_GRACE_SECONDS`]
    /// before the unix second `now` (the caller's clock): at 12:01:05 the
    /// minute 12:00 closes.
    pub fn close_due(&mut self, now: u64) -> Vec<LedgerEntry> {
        self.close_until(Minute::of(now.saturating_sub(CLOSE_GRACE_SECONDS)))
    }

    /// The whole state, to be written to the store.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            closed_before: self.closed_before,
            late: self.late,
            duplicates: self.duplicates,
            open: self
                .open
                .iter()
                .map(|((minute, key), sums)| OpenSums {
                    minute: *minute,
                    key: key.clone(),
                    sums: *sums,
                })
                .collect(),
            instances: self
                .instances
                .iter()
                .map(|(key, seen)| InstanceSeen {
                    key: key.clone(),
                    last_ts: seen.last_ts,
                    cpu_total_us: seen.cpu_total_us,
                })
                .collect(),
            reservations: self
                .reservations
                .iter()
                .map(|(key, &last_ts)| ReservationSeen {
                    key: key.clone(),
                    last_ts,
                })
                .collect(),
            traffic: self
                .traffic
                .iter()
                .map(|(series, &last_ts)| TrafficSeen {
                    series: series.clone(),
                    last_ts,
                })
                .collect(),
        }
    }

    /// An accumulator in exactly the state `checkpoint` was taken in.
    pub fn restore(checkpoint: Checkpoint) -> Result<Accumulator, CheckpointError> {
        if checkpoint.version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version {
                found: checkpoint.version,
                expected: CHECKPOINT_VERSION,
            });
        }
        if let Some(early) = checkpoint
            .open
            .iter()
            .find(|o| o.minute < checkpoint.closed_before)
        {
            return Err(CheckpointError::OpenBeforeWatermark {
                minute: early.minute,
                closed_before: checkpoint.closed_before,
            });
        }
        Ok(Accumulator {
            closed_before: checkpoint.closed_before,
            late: checkpoint.late,
            duplicates: checkpoint.duplicates,
            open: checkpoint
                .open
                .into_iter()
                .map(|o| ((o.minute, o.key), o.sums))
                .collect(),
            instances: checkpoint
                .instances
                .into_iter()
                .map(|i| {
                    (
                        i.key,
                        CpuSeen {
                            last_ts: i.last_ts,
                            cpu_total_us: i.cpu_total_us,
                        },
                    )
                })
                .collect(),
            reservations: checkpoint
                .reservations
                .into_iter()
                .map(|r| (r.key, r.last_ts))
                .collect(),
            traffic: checkpoint
                .traffic
                .into_iter()
                .map(|t| (t.series, t.last_ts))
                .collect(),
        })
    }

    /// Observations dropped because their minute was closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Observations dropped because their series had already been observed
    /// at that second or later.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Every minute before this one is closed.
    pub fn closed_before(&self) -> Minute {
        self.closed_before
    }

    pub fn stats(&self) -> AccumulatorStats {
        AccumulatorStats {
            closed_before: self.closed_before,
            late: self.late,
            duplicates: self.duplicates,
            open_entries: self.open.len(),
            tracked_series: self.instances.len() + self.reservations.len() + self.traffic.len(),
        }
    }

    // --- helpers ---

    /// `Some(Late)` (and counts it) when `ts` falls in a closed minute.
    fn late_check(&mut self, ts: u64) -> Option<Observed> {
        if Minute::of(ts) < self.closed_before {
            self.late += 1;
            Some(Observed::Late)
        } else {
            None
        }
    }

    fn traffic_for(
        &mut self,
        ts: u64,
        series: &Tags,
        component: String,
        (requests, bytes_in, bytes_out): (u64, u64, u64),
    ) -> Observed {
        if let Some(dropped) = self.late_check(ts) {
            return dropped;
        }
        match self.traffic.get_mut(series) {
            Some(last) if ts <= *last => {
                self.duplicates += 1;
                return Observed::Duplicate;
            }
            Some(last) => *last = ts,
            None => {
                self.traffic.insert(series.clone(), ts);
            }
        }
        let key = ComponentKey {
            tenant: series.tenant.clone(),
            app: series.app.clone(),
            component,
        };
        let sums = self.sums(ts, key);
        add(&mut sums.requests, requests);
        add(&mut sums.bytes_in, bytes_in);
        add(&mut sums.bytes_out, bytes_out);
        Observed::Counted
    }

    fn sums(&mut self, ts: u64, key: ComponentKey) -> &mut Sums {
        self.open.entry((Minute::of(ts), key)).or_default()
    }

    /// Forgets series idle for [`SERIES_IDLE_MINUTES`] before the watermark,
    /// so that the state does not grow with every instance ever run.
    fn forget_idle_series(&mut self) {
        let keep_from = Minute(self.closed_before.0.saturating_sub(SERIES_IDLE_MINUTES));
        let recent = |ts: u64| Minute::of(ts) >= keep_from;
        self.instances.retain(|_, seen| recent(seen.last_ts));
        self.reservations.retain(|_, &mut last| recent(last));
        self.traffic.retain(|_, &mut last| recent(last));
    }
}

// === impl ComponentKey ===

impl ComponentKey {
    fn of(tenant: &str, app: &str, component: &str) -> Self {
        ComponentKey {
            tenant: tenant.to_owned(),
            app: app.to_owned(),
            component: component.to_owned(),
        }
    }
}

// === impl Sums ===

impl Sums {
    fn entry(self, minute: Minute, key: ComponentKey) -> LedgerEntry {
        let per = |v: u64, unit: f64| v as f64 / unit;
        LedgerEntry {
            minute,
            tenant: key.tenant,
            app: key.app,
            component: key.component,
            cpu_seconds_used: per(self.cpu_used_us, MICROS_PER_SECOND),
            cpu_minutes_reserved_quota: per(
                self.cpu_reserved_quota_millicore_s,
                MILLICORE_SECONDS_PER_CORE_MINUTE,
            ),
            cpu_minutes_reserved_burst: per(
                self.cpu_reserved_burst_millicore_s,
                MILLICORE_SECONDS_PER_CORE_MINUTE,
            ),
            memory_gib_minutes_reserved_quota: per(
                self.memory_reserved_quota_byte_s,
                BYTE_SECONDS_PER_GIB_MINUTE,
            ),
            memory_gib_minutes_reserved_burst: per(
                self.memory_reserved_burst_byte_s,
                BYTE_SECONDS_PER_GIB_MINUTE,
            ),
            memory_gib_minutes_used: per(self.memory_used_byte_s, BYTE_SECONDS_PER_GIB_MINUTE),
            instance_minutes: per(self.instance_s, SECONDS_PER_MINUTE),
            burst_instance_minutes: per(self.burst_instance_s, SECONDS_PER_MINUTE),
            requests: self.requests,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

// === impl Checkpoint ===

impl Checkpoint {
    /// Every minute before this one was closed when the checkpoint was
    /// taken.
    pub fn closed_before(&self) -> Minute {
        self.closed_before
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

/// Sums saturate: a counter pinned at its maximum beats a panic or a wrap.
fn add(sum: &mut u64, v: u64) {
    *sum = sum.saturating_add(v);
}

#[cfg(test)]
mod tests;
