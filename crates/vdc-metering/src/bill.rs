//! Bills: a tenant's prices applied to the ledger entries of a period, one
//! line per app and component, with reserved CPU and memory split into
//! quota and burst.
//!
//! What is priced is what a tenant *holds*: reserved CPU and memory, the
//! quota part at the quota prices and the burst part at the burst prices.
//! Used CPU and memory, instance-minutes and traffic are reported beside
//! them, for chargeback, and not priced.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::entry::LedgerEntry;
use crate::minute::Minute;
use crate::money::{Money, Qty};

// === types ===

/// A tenant's prices, per minute of one reserved core or one reserved GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    /// One core reserved for one minute, within the quota.
    pub cpu_minute: Money,
    /// One GiB reserved for one minute, within the quota.
    pub gib_minute: Money,
    /// One core reserved for one minute above the quota (burst).
    pub burst_cpu_minute: Money,
    /// One GiB reserved for one minute above the quota (burst).
    pub burst_gib_minute: Money,
}

/// Usage summed over entries, as fixed-point quantities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Ledger entries (component-minutes) summed.
    pub minutes: u64,
    pub cpu_seconds_used: Qty,
    pub cpu_minutes_reserved_quota: Qty,
    pub cpu_minutes_reserved_burst: Qty,
    pub memory_gib_minutes_reserved_quota: Qty,
    pub memory_gib_minutes_reserved_burst: Qty,
    pub memory_gib_minutes_used: Qty,
    pub instance_minutes: Qty,
    pub burst_instance_minutes: Qty,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What usage costs at a set of prices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charges {
    pub cpu_quota: Money,
    pub cpu_burst: Money,
    pub memory_quota: Money,
    pub memory_burst: Money,
    /// `cpu_quota + memory_quota`.
    pub quota: Money,
    /// `cpu_burst + memory_burst`.
    pub burst: Money,
    /// `quota + burst`.
    pub total: Money,
}

/// One component's part of a bill.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillLine {
    pub tenant: String,
    pub app: String,
    pub component: String,
    pub usage: Usage,
    pub charges: Charges,
}

/// The sums of a bill's lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillTotal {
    pub usage: Usage,
    pub charges: Charges,
}

/// The prices applied to the entries of `[from, to)`.
///
/// **Invariant:** every usage field and every charge of `total` is exactly
/// the sum of the lines' (integer sums of fixed-point values), and each
/// line's usage is the sum of its minutes rounded once to six decimals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bill {
    /// The first minute billed.
    pub from: Minute,
    /// The first minute after the period.
    pub to: Minute,
    pub prices: Prices,
    /// One line per tenant, app and component with entries in the period,
    /// in that order.
    pub lines: Vec<BillLine>,
    pub total: BillTotal,
    /// Entries given twice for the same component and minute: only the
    /// first was billed.
    pub duplicates_ignored: u64,
}

/// Float sums of one component's entries, before rounding.
#[derive(Default)]
struct LineSums {
    minutes: u64,
    cpu_seconds_used: f64,
    cpu_minutes_reserved_quota: f64,
    cpu_minutes_reserved_burst: f64,
    memory_gib_minutes_reserved_quota: f64,
    memory_gib_minutes_reserved_burst: f64,
    memory_gib_minutes_used: f64,
    instance_minutes: f64,
    burst_instance_minutes: f64,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
}

// === impl Prices ===

impl Prices {
    /// Prices from millionths of the currency unit (how tenant records
    /// keep them); amounts beyond `i64::MAX` millionths saturate.
    pub fn from_micros(
        cpu_minute: u64,
        gib_minute: u64,
        burst_cpu_minute: u64,
        burst_gib_minute: u64,
    ) -> Prices {
        let m = |v: u64| Money::from_micros(i64::try_from(v).unwrap_or(i64::MAX));
        Prices {
            cpu_minute: m(cpu_minute),
            gib_minute: m(gib_minute),
            burst_cpu_minute: m(burst_cpu_minute),
            burst_gib_minute: m(burst_gib_minute),
        }
    }

    /// What `usage` costs: each reserved quantity times its price, rounded
    /// to a millionth.
    pub fn charge(&self, usage: &Usage) -> Charges {
        let cpu_quota = self.cpu_minute.times(usage.cpu_minutes_reserved_quota);
        let cpu_burst = self
            .burst_cpu_minute
            .times(usage.cpu_minutes_reserved_burst);
        let memory_quota = self
            .gib_minute
            .times(usage.memory_gib_minutes_reserved_quota);
        let memory_burst = self
            .burst_gib_minute
            .times(usage.memory_gib_minutes_reserved_burst);
        let quota = cpu_quota + memory_quota;
        let burst = cpu_burst + memory_burst;
        Charges {
            cpu_quota,
            cpu_burst,
            memory_quota,
            memory_burst,
            quota,
            burst,
            total: quota + burst,
        }
    }
}

// === impl Bill ===

impl Bill {
    /// Applies `prices` to the entries whose minute is in `[from, to)`.
    /// Pass one tenant's entries (prices are per tenant); lines still carry
    /// the tenant so that nothing is merged by mistake. Entries may come in
    /// any order; a second entry for the same component and minute is
    /// ignored and counted in `duplicates_ignored`.
    pub fn compute(entries: &[LedgerEntry], prices: &Prices, from: Minute, to: Minute) -> Bill {
        // Sort by component then minute so that float sums do not depend on
        // the order the store listed the entries in.
        let mut in_period: Vec<&LedgerEntry> = entries
            .iter()
            .filter(|e| from <= e.minute && e.minute < to)
            .collect();
        in_period.sort_by(|a, b| {
            (&a.tenant, &a.app, &a.component, a.minute).cmp(&(
                &b.tenant,
                &b.app,
                &b.component,
                b.minute,
            ))
        });
        let before = in_period.len();
        in_period.dedup_by(|later, first| later.same_slot(first));
        let duplicates_ignored = (before - in_period.len()) as u64;

        let mut sums: BTreeMap<(&str, &str, &str), LineSums> = BTreeMap::new();
        for e in in_period {
            sums.entry((&e.tenant, &e.app, &e.component))
                .or_default()
                .add(e);
        }
        let lines: Vec<BillLine> = sums
            .into_iter()
            .map(|((tenant, app, component), s)| {
                let usage = s.usage();
                BillLine {
                    tenant: tenant.to_owned(),
                    app: app.to_owned(),
                    component: component.to_owned(),
                    charges: prices.charge(&usage),
                    usage,
                }
            })
            .collect();
        let total = BillTotal {
            usage: lines
                .iter()
                .map(|l| l.usage)
                .fold(Usage::default(), Usage::plus),
            charges: lines
                .iter()
                .map(|l| l.charges)
                .fold(Charges::default(), Charges::plus),
        };
        Bill {
            from,
            to,
            prices: *prices,
            lines,
            total,
            duplicates_ignored,
        }
    }
}

// === impl Usage ===

impl Usage {
    /// Field-by-field sum (saturating).
    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            minutes: self.minutes.saturating_add(o.minutes),
            cpu_seconds_used: self.cpu_seconds_used + o.cpu_seconds_used,
            cpu_minutes_reserved_quota: self.cpu_minutes_reserved_quota
                + o.cpu_minutes_reserved_quota,
            cpu_minutes_reserved_burst: self.cpu_minutes_reserved_burst
                + o.cpu_minutes_reserved_burst,
            memory_gib_minutes_reserved_quota: self.memory_gib_minutes_reserved_quota
                + o.memory_gib_minutes_reserved_quota,
            memory_gib_minutes_reserved_burst: self.memory_gib_minutes_reserved_burst
                + o.memory_gib_minutes_reserved_burst,
            memory_gib_minutes_used: self.memory_gib_minutes_used + o.memory_gib_minutes_used,
            instance_minutes: self.instance_minutes + o.instance_minutes,
            burst_instance_minutes: self.burst_instance_minutes + o.burst_instance_minutes,
            requests: self.requests.saturating_add(o.requests),
            bytes_in: self.bytes_in.saturating_add(o.bytes_in),
            bytes_out: self.bytes_out.saturating_add(o.bytes_out),
        }
    }
}

// === impl Charges ===

impl Charges {
    /// Field-by-field sum (saturating).
    pub fn plus(self, o: Charges) -> Charges {
        Charges {
            cpu_quota: self.cpu_quota + o.cpu_quota,
            cpu_burst: self.cpu_burst + o.cpu_burst,
            memory_quota: self.memory_quota + o.memory_quota,
            memory_burst: self.memory_burst + o.memory_burst,
            quota: self.quota + o.quota,
            burst: self.burst + o.burst,
            total: self.total + o.total,
        }
    }
}

// === impl LineSums ===

impl LineSums {
    fn add(&mut self, e: &LedgerEntry) {
        self.minutes += 1;
        self.cpu_seconds_used += e.cpu_seconds_used;
        self.cpu_minutes_reserved_quota += e.cpu_minutes_reserved_quota;
        self.cpu_minutes_reserved_burst += e.cpu_minutes_reserved_burst;
        self.memory_gib_minutes_reserved_quota += e.memory_gib_minutes_reserved_quota;
        self.memory_gib_minutes_reserved_burst += e.memory_gib_minutes_reserved_burst;
        self.memory_gib_minutes_used += e.memory_gib_minutes_used;
        self.instance_minutes += e.instance_minutes;
        self.burst_instance_minutes += e.burst_instance_minutes;
        self.requests = self.requests.saturating_add(e.requests);
        self.bytes_in = self.bytes_in.saturating_add(e.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(e.bytes_out);
    }

    fn usage(&self) -> Usage {
        Usage {
            minutes: self.minutes,
            cpu_seconds_used: Qty::from_f64(self.cpu_seconds_used),
            cpu_minutes_reserved_quota: Qty::from_f64(self.cpu_minutes_reserved_quota),
            cpu_minutes_reserved_burst: Qty::from_f64(self.cpu_minutes_reserved_burst),
            memory_gib_minutes_reserved_quota: Qty::from_f64(
                self.memory_gib_minutes_reserved_quota,
            ),
            memory_gib_minutes_reserved_burst: Qty::from_f64(
                self.memory_gib_minutes_reserved_burst,
            ),
            memory_gib_minutes_used: Qty::from_f64(self.memory_gib_minutes_used),
            instance_minutes: Qty::from_f64(self.instance_minutes),
            burst_instance_minutes: Qty::from_f64(self.burst_instance_minutes),
            requests: self.requests,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        }
    }
}

#[cfg(test)]
mod tests;
