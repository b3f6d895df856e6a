//! Reading a leaf's [`Usage`] from its cgroup files, for
//! [`FsCgroups`](super::FsCgroups), and making v1 block I/O accounting count.
//!
//! A missing file reads as "not accounted here" (0 or `None`): controllers
//! may be absent (no blkio hierarchy, an empty v2 hierarchy) and older
//! kernels lack some files (`memory.peak`, `cpuacct.usage_user`). Any other
//! error reading a file that exists is reported with its path.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::CgroupError;
use crate::usage::parse::{
    parse_blkio_service_bytes, parse_cpu_stat_v1, parse_cpu_stat_v2, parse_cpuacct_stat,
    parse_cpuacct_usage, parse_io_stat, parse_memory_events, parse_memory_limit,
    parse_memory_oom_control, parse_single, CpuTimes,
};
use crate::usage::{clock_ticks_per_second, Usage, UsageSource};

/// Where the kernel lists block devices, with their "MAJ:MIN" in `dev`.
pub(super) const SYS_BLOCK: &str = "/sys/block";

/// A v1 leaf's directory in each hierarchy that accounts something, `None`
/// where that controller is not mounted. Co-mounted controllers
/// ("cpu,cpuacct") give the same directory twice.
#[derive(Debug, Default)]
pub(super) struct V1Dirs {
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
    /// Every directory of the leaf, to count its tasks without `pids`.
    pub all: Vec<PathBuf>,
}

// === v1 ===

/// `times` with the same user/system proportions but summing to
/// `total_ns` (when known and the split is not empty).
fn scale_to_total(times: CpuTimes, total_ns: Option<u64>) -> CpuTimes {
    let Some(total_us) = total_ns.map(|ns| ns / 1000) else {
        return times;
    };
    let split = times.user_us.saturating_add(times.system_us);
    if split == 0 {
        return CpuTimes {
            user_us: total_us,
            system_us: 0,
        };
    }
    let user_us = (u128::from(total_us) * u128::from(times.user_us) / u128::from(split)) as u64;
    CpuTimes {
        user_us,
        system_us: total_us - user_us,
    }
}

/// The usage of a v1 leaf, one hierarchy per controller.
pub(super) fn read_v1(dirs: &V1Dirs) -> Result<Usage, CgroupError> {
    let mut usage = Usage {
        source: UsageSource::CgroupV1,
        ..Usage::default()
    };
    if let Some(dir) = &dirs.cpuacct {
        // The nanosecond files when the kernel has them (4.11), else the
        // ticks of cpuacct.stat, which are 10 ms each.
        let precise = match (
            read(&dir.join("cpuacct.usage_user"))?,
            read(&dir.join("cpuacct.usage_sys"))?,
        ) {
            (Some(user), Some(system)) => parse_cpuacct_usage(&user, &system),
            _ => None,
        };
        let times = match precise {
            Some(times) => Some(times),
            None => read(&dir.join("cpuacct.stat"))?
                .and_then(|text| parse_cpuacct_stat(&text, clock_ticks_per_second())),
        };
        // The user/system split comes from tick sampling and can be several
        // percent off in total; `cpuacct.usage` is the scheduler's exact
        // runtime. Keep the split's proportions, scaled to the exact total.
        let total_ns = number(&dir.join("cpuacct.usage"))?;
        set_cpu(
            &mut usage,
            scale_to_total(times.unwrap_or_default(), total_ns),
        );
    }
    if let Some(dir) = &dirs.cpu {
        if let Some(text) = read(&dir.join("cpu.stat"))? {
            let throttling = parse_cpu_stat_v1(&text);
            usage.throttled_periods = throttling.periods;
            usage.throttled_us = throttling.throttled_us;
        }
    }
    if let Some(dir) = &dirs.memory {
        usage.memory_bytes = number(&dir.join("memory.usage_in_bytes"))?.unwrap_or(0);
        usage.memory_peak_bytes = number(&dir.join("memory.max_usage_in_bytes"))?.unwrap_or(0);
        usage.memory_limit_bytes =
            read(&dir.join("memory.limit_in_bytes"))?.and_then(|t| parse_memory_limit(&t));
        usage.oom_kills =
            read(&dir.join("memory.oom_control"))?.map_or(0, |t| parse_memory_oom_control(&t));
    }
    if let Some(dir) = &dirs.blkio {
        // The recursive file (Linux 4.8) also holds the leaf's own I/O; it
        // only differs when an instance makes sub-cgroups of its own.
        let mut text = read(&dir.join("blkio.throttle.io_service_bytes_recursive"))?;
        if text.is_none() {
            text = read(&dir.join("blkio.throttle.io_service_bytes"))?;
        }
        if let Some(text) = text {
            let io = parse_blkio_service_bytes(&text);
            usage.io_read_bytes = io.read;
            usage.io_write_bytes = io.write;
        }
    }
    usage.pids = match dirs.pids.as_ref().map(|d| number(&d.join("pids.current"))) {
        Some(Ok(Some(pids))) => pids,
        Some(Err(e)) => return Err(e),
        // `tasks` lists every thread, as pids.current counts them.
        _ => match dirs.all.iter().find(|d| d.is_dir()) {
            Some(dir) => lines(&dir.join("tasks"))?.unwrap_or(0),
            None => 0,
        },
    };
    usage.memory_peak_bytes = usage.memory_peak_bytes.max(usage.memory_bytes);
    Ok(usage)
}

/// Makes the kernel count a v1 leaf's block I/O on every disk in
/// `sys_block`.
///
/// Recent kernels (seen on 6.18) only set up blk-throttle, which keeps the v1
/// `io_service_bytes` counters, for a disk once some cgroup configures a
/// limit on it; until then every cgroup reads 0. Writing "no limit" (0) for each disk
/// into the leaf's own `read_bps_device` sets it up without limiting anyone.
/// It stays set up for the disk until it goes away, at the cost of one check
/// per I/O. Older kernels count anyway, and this changes nothing there.
/// Failures only mean that I/O is not accounted, so they are logged.
pub(super) fn activate_blkio_accounting(leaf: &Path, sys_block: &Path) {
    let file = leaf.join("blkio.throttle.read_bps_device");
    if !file.is_file() {
        return;
    }
    let Ok(disks) = fs::read_dir(sys_block) else {
        return;
    };
    for disk in disks.filter_map(Result::ok).map(|d| d.path()) {
        // Empty loop and zram devices have size 0 and refuse the write.
        let size = fs::read_to_string(disk.join("size")).unwrap_or_default();
        if parse_single(&size).unwrap_or(0) == 0 {
            continue;
        }
        let Ok(dev) = fs::read_to_string(disk.join("dev")) else {
            continue;
        };
        if let Err(e) = super::fs::write_file(&file, &format!("{} 0", dev.trim())) {
            tracing::debug!(disk = %disk.display(), error = %e, "cannot enable block I/O accounting");
        }
    }
}

// === v2 ===

/// The usage of a v2 leaf.
pub(super) fn read_v2(dir: &Path) -> Result<Usage, CgroupError> {
    let mut usage = Usage {
        source: UsageSource::CgroupV2,
        ..Usage::default()
    };
    if let Some((times, throttling)) =
        read(&dir.join("cpu.stat"))?.and_then(|t| parse_cpu_stat_v2(&t))
    {
        set_cpu(&mut usage, times);
        usage.throttled_periods = throttling.periods;
        usage.throttled_us = throttling.throttled_us;
    }
    usage.memory_bytes = number(&dir.join("memory.current"))?.unwrap_or(0);
    usage.memory_peak_bytes = number(&dir.join("memory.peak"))?.unwrap_or(0);
    usage.memory_limit_bytes = read(&dir.join("memory.max"))?.and_then(|t| parse_memory_limit(&t));
    usage.oom_kills = read(&dir.join("memory.events"))?.map_or(0, |t| parse_memory_events(&t));
    if let Some(text) = read(&dir.join("io.stat"))? {
        let io = parse_io_stat(&text);
        usage.io_read_bytes = io.read;
        usage.io_write_bytes = io.write;
    }
    usage.pids = match number(&dir.join("pids.current"))? {
        Some(pids) => pids,
        // Without the pids controller, count the threads the cgroup lists.
        None => lines(&dir.join("cgroup.threads"))?.unwrap_or(0),
    };
    usage.memory_peak_bytes = usage.memory_peak_bytes.max(usage.memory_bytes);
    Ok(usage)
}

// === helpers ===

fn set_cpu(usage: &mut Usage, times: CpuTimes) {
    usage.cpu_user_us = times.user_us;
    usage.cpu_system_us = times.system_us;
}

/// A control file's contents, `None` when it does not exist.
fn read(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::new(path, e)),
    }
}

/// A control file holding one number; `None` when missing or not a number.
fn number(path: &Path) -> Result<Option<u64>, CgroupError> {
    Ok(read(path)?.and_then(|t| parse_single(&t)))
}

/// The number of non-empty lines of a file such as `tasks`.
fn lines(path: &Path) -> Result<Option<u64>, CgroupError> {
    Ok(read(path)?.map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod scale_tests {
    use super::*;

    #[test]
    fn the_split_is_scaled_to_the_exact_total() {
        let split = CpuTimes {
            user_us: 3_000,
            system_us: 1_000,
        };
        let scaled = scale_to_total(split, Some(8_000_000));
        assert_eq!((scaled.user_us, scaled.system_us), (6_000, 2_000));
        let unknown = scale_to_total(split, None);
        assert_eq!((unknown.user_us, unknown.system_us), (3_000, 1_000));
        let empty = scale_to_total(
            CpuTimes {
                user_us: 0,
                system_us: 0,
            },
            Some(5_000),
        );
        assert_eq!((empty.user_us, empty.system_us), (5, 0));
    }
}
