//! Tenants: who owns apps, what they may reserve, and what they pay.

use std::fmt;

use serde::{Deserialize, Serialize};
use vdc_spec::{Bytes, MilliCpu, Resources, TenantName};

/// Limits on what a tenant's apps may reserve together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub cpu: MilliCpu,
    pub memory: Bytes,
    pub instances: u32,
}

/// What a tenant holds, or asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cpu: MilliCpu,
    pub memory: Bytes,
    pub instances: u32,
}

/// Prices in millionths of the currency unit, so sums are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub cpu_minute_micros: u64,
    pub gib_minute_micros: u64,
    pub burst_cpu_minute_micros: u64,
    pub burst_gib_minute_micros: u64,
}

/// A tenant as stored. The token itself is never stored, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: TenantName,
    /// Hex SHA-256 of the tenant's current token.
    pub token_sha256: String,
    /// `None`: no limit.
    pub quota: Option<Quota>,
    /// How far above the quota the tenant may go, billed at burst prices.
    pub burst: Option<Quota>,
    pub prices: Prices,
    pub created_at_ms: u64,
    pub token_rotated_at_ms: u64,
    /// The users other than their own that the tenant's instances may run
    /// as (a component's `user`): host user names, `UID[:GID]`, `root`.
    /// Set by the admin; empty: none.
    #[serde(default)]
    pub run_as: Vec<String>,
}

/// Whether a request fits a tenant's quota, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the quota.
    Quota,
    /// Above the quota but within the burst allowance.
    Burst,
    /// Beyond both.
    Refused,
}

// === impl Usage ===

impl Usage {
    pub fn of(resources: Resources, instances: u32) -> Usage {
        Usage {
            cpu: resources.cpu,
            memory: resources.memory,
            instances,
        }
    }

    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu: MilliCpu(self.cpu.0.saturating_add(other.cpu.0)),
            memory: Bytes(self.memory.0.saturating_add(other.memory.0)),
            instances: self.instances.saturating_add(other.instances),
        }
    }

    fn fits(self, limit: Quota) -> bool {
        self.cpu <= limit.cpu && self.memory <= limit.memory && self.instances <= limit.instances
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {} memory, {} instances",
            self.cpu, self.memory, self.instances
        )
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} CPU, {} memory, {} instances",
            self.cpu, self.memory, self.instances
        )
    }
}

// === impl Tenant ===

impl Tenant {
    /// Whether `total` (everything the tenant would hold) is admitted.
    pub fn admit(&self, total: Usage) -> Admission {
        let Some(quota) = self.quota else {
            return Admission::Quota;
        };
        if total.fits(quota) {
            return Admission::Quota;
        }
        let Some(burst) = self.burst else {
            return Admission::Refused;
        };
        let ceiling = Quota {
            cpu: MilliCpu(quota.cpu.0.saturating_add(burst.cpu.0)),
            memory: Bytes(quota.memory.0.saturating_add(burst.memory.0)),
            instances: quota.instances.saturating_add(burst.instances),
        };
        if total.fits(ceiling) {
            Admission::Burst
        } else {
            Admission::Refused
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(quota: Option<Quota>, burst: Option<Quota>) -> Tenant {
        Tenant {
            name: TenantName::default_tenant(),
            token_sha256: String::new(),
            quota,
            burst,
            prices: Prices::default(),
            created_at_ms: 0,
            token_rotated_at_ms: 0,
            run_as: Vec::new(),
        }
    }

    fn q(cpu: u64, gib: u64, instances: u32) -> Quota {
        Quota {
            cpu: MilliCpu(cpu),
            memory: Bytes(gib << 30),
            instances,
        }
    }

    fn u(cpu: u64, gib: u64, instances: u32) -> Usage {
        Usage {
            cpu: MilliCpu(cpu),
            memory: Bytes(gib << 30),
            instances,
        }
    }

    #[test]
    fn no_quota_admits_everything() {
        assert_eq!(
            tenant(None, None).admit(u(1_000_000, 1000, 1000)),
            Admission::Quota
        );
    }

    #[test]
    fn every_dimension_counts() {
        let t = tenant(Some(q(4000, 4, 10)), None);
        assert_eq!(t.admit(u(4000, 4, 10)), Admission::Quota);
        assert_eq!(t.admit(u(4001, 4, 10)), Admission::Refused);
        assert_eq!(t.admit(u(4000, 5, 10)), Admission::Refused);
        assert_eq!(t.admit(u(4000, 4, 11)), Admission::Refused);
    }

    #[test]
    fn burst_allowance_admits_above_the_quota_up_to_its_ceiling() {
        let t = tenant(Some(q(4000, 4, 10)), Some(q(2000, 2, 2)));
        assert_eq!(t.admit(u(5000, 4, 10)), Admission::Burst);
        assert_eq!(t.admit(u(6000, 6, 12)), Admission::Burst);
        assert_eq!(t.admit(u(6001, 6, 12)), Admission::Refused);
    }
}
