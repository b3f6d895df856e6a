//! Resource usage of an instance as the kernel accounts it: the [`Usage`]
//! record handed to the agent, and the parsers of the cgroup and `/proc`
//! files it is read from.
//!
//! Where the numbers come from, and so what they cover, depends on the node:
//!
//! - **cgroup v2**: `cpu.stat`, `memory.current`, `memory.peak`,
//!   `memory.max`, `memory.events`, `io.stat` and `pids.current` of the
//!   instance's leaf;
//! - **cgroup v1**: the same leaf in each controller's hierarchy
//!   (`cpuacct.usage_user`/`usage_sys` or `cpuacct.stat`, `cpu.stat`,
//!   `memory.usage_in_bytes`, `memory.max_usage_in_bytes`,
//!   `memory.limit_in_bytes`, `memory.oom_control`,
//!   `blkio.throttle.io_service_bytes_recursive`, `pids.current`);
//! - **/proc**, without cgroups: the sum over the live processes of the
//!   instance's process group, which misses what exited without being waited
//!   for by another member of the group (see [`UsageSource::Proc`]).
//!
//! With a cgroup every counter covers every process the instance ever ran,
//! including children that exited, and only grows while the leaf exists.

pub(crate) mod parse;

use std::sync::OnceLock;

use nix::unistd::{sysconf, SysconfVar};
use serde::{Deserialize, Serialize};

/// Resource usage of one instance, read from the kernel.
///
/// CPU, I/O and OOM counters are totals since the instance started; memory
/// and pids are the current values. Counters that the node does not account
/// (no blkio controller, a kernel without `memory.events`, ...) are 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Where the numbers were read from, which says what they cover.
    pub source: UsageSource,
    /// CPU time spent in user mode, in microseconds.
    pub cpu_user_us: u64,
    /// CPU time spent in the kernel on the instance's behalf, in microseconds.
    pub cpu_system_us: u64,
    /// CFS periods in which the instance used up its CPU quota and was made
    /// to wait (`cpu.stat` `nr_throttled`); 0 without a CPU limit or cgroup.
    pub throttled_periods: u64,
    /// Time the instance spent waiting for its next CPU quota, in
    /// microseconds (v1 `throttled_time`, v2 `throttled_usec`).
    pub throttled_us: u64,
    /// Memory in use now. With a cgroup this is what the kernel charges
    /// against the memory limit — anonymous memory, page cache and kernel
    /// memory of the instance — so that it compares with
    /// [`memory_limit_bytes`](Usage::memory_limit_bytes): v2
    /// `memory.current`, v1 `memory.usage_in_bytes` as is (page cache is not
    /// subtracted, for the same number on both versions). From /proc it is
    /// the sum of the processes' resident sets (`VmRSS`), which counts shared
    /// pages once per process and no page cache.
    pub memory_bytes: u64,
    /// The highest [`memory_bytes`](Usage::memory_bytes) seen: v2
    /// `memory.peak` (Linux 5.19), v1 `memory.max_usage_in_bytes`; from /proc
    /// the largest `VmHWM` of one process. Never below `memory_bytes`, and
    /// never lower than an earlier reading of the same handle.
    pub memory_peak_bytes: u64,
    /// The memory limit in force, `None` when unlimited or unknown.
    pub memory_limit_bytes: Option<u64>,
    /// Processes killed by the OOM killer in the instance (v2
    /// `memory.events`, v1 `memory.oom_control` since Linux 4.13; else 0).
    pub oom_kills: u64,
    /// Bytes read from block devices, summed over devices: direct and
    /// page-cache-missing reads; reads served from the page cache are free.
    pub io_read_bytes: u64,
    /// Bytes written to block devices, summed over devices. With cgroup v1
    /// only writes issued by the instance itself count (direct I/O, `fsync`);
    /// dirty pages written back later by the kernel are charged to the root.
    pub io_write_bytes: u64,
    /// Tasks (processes and threads) now in the instance, which is what
    /// [`Limits::pids_max`](crate::Limits::pids_max) limits. A cgroup also
    /// counts exited processes that their parent has not reaped yet, since
    /// they still hold their pid; /proc counts live tasks only.
    pub pids: u64,
}

/// Where a [`Usage`] was read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UsageSource {
    /// The instance's cgroup, one directory per v1 controller hierarchy.
    #[serde(rename = "cgroup-v1")]
    CgroupV1,
    /// The instance's cgroup in the unified hierarchy.
    #[serde(rename = "cgroup-v2")]
    CgroupV2,
    /// `/proc`, summed over the processes now in the instance's process
    /// group, because the node gives no cgroups. A process's CPU time and
    /// I/O include those of the children it waited for, so a shell's
    /// commands stay counted after they exit; but what exits without being
    /// waited for by a member of the group (the main process, once the driver
    /// reaps it; orphans, which init reaps) drops out of the totals, and a
    /// process that left the group (`setsid`) is not seen at all. The totals
    /// can therefore go down between two readings.
    #[default]
    #[serde(rename = "proc")]
    Proc,
}

// === impl Usage ===

impl Usage {
    /// All CPU time, user and system, in microseconds.
    pub fn cpu_total_us(&self) -> u64 {
        self.cpu_user_us.saturating_add(self.cpu_system_us)
    }

    /// The usage of an instance after it stopped: the totals stay, nothing
    /// is in use any more.
    pub(crate) fn stopped(self) -> Usage {
        Usage {
            memory_bytes: 0,
            pids: 0,
            ..self
        }
    }
}

/// The kernel's `USER_HZ`, the unit of `cpuacct.stat` and `/proc/<pid>/stat`
/// CPU times; 100 on every Linux architecture we know, which is also the
/// fallback when `sysconf` cannot tell.
pub(crate) fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests;
