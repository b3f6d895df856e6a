//! One line of the ledger: what one component of one app used and held over
//! one minute.

use serde::{Deserialize, Serialize};

use crate::minute::Minute;

// === types ===

/// One component's usage over one closed minute. Written once to the
/// ledger under [`LedgerEntry::key`] and never changed.
///
/// Quantities are per minute and add up across minutes and components:
/// - `cpu_seconds_used`: CPU time the kernel accounted to the component's
///   instances (user and system), in seconds; one core busy all minute is
///   60.
/// - `cpu_minutes_reserved_*`: reserved cores × seconds held / 60; one
///   instance reserving 500m for the whole minute is 0.5. Split by whether
///   the instance counted within the tenant's quota or above it (burst).
/// - `memory_gib_minutes_reserved_*`: reserved GiB × seconds held / 60,
///   split the same way.
/// - `memory_gib_minutes_used`: the sum over every second observed of each
///   instance's memory in GiB, / 60; an instance holding 512 MiB all
///   minute is 0.5. A second with no observation counts as zero.
/// - `instance_minutes`, `burst_instance_minutes`: instances running ×
///   seconds / 60, and the part of those above the quota.
/// - `requests`, `bytes_in`, `bytes_out`: traffic served by the component
///   (HTTP requests; bytes from and to its callers).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub minute: Minute,
    pub tenant: String,
    pub app: String,
    pub component: String,
    pub cpu_seconds_used: f64,
    pub cpu_minutes_reserved_quota: f64,
    pub cpu_minutes_reserved_burst: f64,
    pub memory_gib_minutes_reserved_quota: f64,
    pub memory_gib_minutes_reserved_burst: f64,
    pub memory_gib_minutes_used: f64,
    pub instance_minutes: f64,
    pub burst_instance_minutes: f64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

// === impl LedgerEntry ===

impl LedgerEntry {
    /// Digits of the minute in a key: zero-padded so that keys of one
    /// component sort by time (ten digits last until the year 21000).
    const MINUTE_DIGITS: usize = 10;

    /// The entry's ledger key, `tenant/app/component/minute` with the minute
    /// zero-padded to ten digits: `acme/shop/web/0028333334`. Unique per
    /// component and minute; writing it only when absent makes a replayed
    /// close harmless.
    pub fn key(&self) -> String {
        Self::key_for(&self.tenant, &self.app, &self.component, self.minute)
    }

    /// The key an entry for this component and minute has.
    pub fn key_for(tenant: &str, app: &str, component: &str, minute: Minute) -> String {
        format!(
            "{tenant}/{app}/{component}/{:0width$}",
            minute.0,
            width = Self::MINUTE_DIGITS
        )
    }

    /// The prefix every key of a tenant's entries starts with: `acme/`.
    pub fn tenant_prefix(tenant: &str) -> String {
        format!("{tenant}/")
    }

    /// True when `other` is for the same component and minute (the same
    /// key), whatever it measured.
    pub fn same_slot(&self, other: &LedgerEntry) -> bool {
        self.minute == other.minute
            && self.tenant == other.tenant
            && self.app == other.app
            && self.component == other.component
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_time_within_a_component() {
        let a = LedgerEntry::key_for("acme", "shop", "web", Minute(9));
        let b = LedgerEntry::key_for("acme", "shop", "web", Minute(10));
        assert_eq!(a, "acme/shop/web/0000000009");
        assert!(a < b);
        assert!(a.starts_with(&LedgerEntry::tenant_prefix("acme")));
    }
}
