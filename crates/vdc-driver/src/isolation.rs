//! How well a driver can isolate instances on this node.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The cgroup interface in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// One hierarchy per controller under `/sys/fs/cgroup/<controller>`.
    V1,
    /// The unified hierarchy at `/sys/fs/cgroup`.
    V2,
}

/// What a driver can enforce, reported once per node so that operators see
/// when limits in their app specs are not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The cgroup version used for limits and for killing whole instances, or
    /// `None` when instances only get their own process group.
    pub cgroups: Option<CgroupVersion>,
    /// One line for humans when some limits cannot be enforced, such as "not
    /// running as root: cpu and memory limits are not enforced (instances run
    /// in their own process group only)".
    pub warning: Option<String>,
}

// === impl CgroupVersion ===

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1",
            CgroupVersion::V2 => "cgroup v2",
        })
    }
}

// === impl Isolation ===

impl Isolation {
    /// Process groups only, with `reason` saying why.
    pub fn process_group_only(reason: &str) -> Isolation {
        Isolation {
            cgroups: None,
            warning: Some(format!(
                "{reason}: cpu and memory limits are not enforced \
                 (instances run in their own process group only)"
            )),
        }
    }

    /// True when limits are enforced and instances are tracked by cgroup.
    pub fn has_cgroups(&self) -> bool {
        self.cgroups.is_some()
    }
}
