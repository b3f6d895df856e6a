//! What `/proc` says about a process: enough to tell whether it still runs,
//! which process group it is in, when it started, and what it used — the
//! last summed over a process group when the node gives no cgroups.

use std::fs;

use crate::usage::parse::{parse_proc_io, parse_proc_status, ticks_to_us};
use crate::usage::{clock_ticks_per_second, Usage, UsageSource};

/// The fields of `/proc/<pid>/stat` the driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: 'R', 'S', 'D', 'Z' (zombie), ...
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: u32,
    /// Field 5: the process group id.
    pub pgid: i32,
    /// Fields 14 and 15: CPU time in user and kernel mode, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Fields 16 and 17: the same for the children it waited for.
    pub cutime: u64,
    pub cstime: u64,
    /// Field 20: the number of threads.
    pub num_threads: u64,
    /// Field 22: start time in clock ticks since boot. Together with the pid
    /// this identifies a process across pid reuse.
    pub start_ticks: u64,
}

// === impl ProcStat ===

impl ProcStat {
    /// Reads `/proc/<pid>/stat`; `None` when the process does not exist.
    pub fn read(pid: u32) -> Option<ProcStat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        ProcStat::parse(&text)
    }

    /// Parses a stat line. The command name (field 2) is in parentheses and
    /// may itself contain spaces and parentheses, so fields are counted from
    /// the last ')'.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3, so field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3).copied();
        // cutime and cstime are signed in the kernel's format; never negative.
        let ticks = |n: usize| -> Option<u64> {
            Some(u64::try_from(field(n)?.parse::<i64>().ok()?).unwrap_or(0))
        };
        Some(ProcStat {
            state: field(3)?.chars().next()?,
            ppid: field(4)?.parse().ok()?,
            pgid: field(5)?.parse().ok()?,
            utime: ticks(14)?,
            stime: ticks(15)?,
            cutime: ticks(16)?,
            cstime: ticks(17)?,
            num_threads: ticks(20)?,
            start_ticks: field(22)?.parse().ok()?,
        })
    }

    /// False for zombies, which are dead and only wait to be reaped.
    pub fn is_running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The live children of `parent`: from `/proc/PID/task/PID/children`
/// where the kernel has it, else by reading every process's parent.
pub(crate) fn children(parent: u32) -> Vec<u32> {
    if let Ok(text) = fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")) {
        return text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| ProcStat::read(pid).is_some_and(|s| s.ppid == parent && s.is_running()))
        .collect()
}

/// True when `pid` exists and is not a zombie.
pub(crate) fn is_running(pid: u32) -> bool {
    ProcStat::read(pid).is_some_and(|s| s.is_running())
}

/// The live processes whose process group is `pgid`, with their stat.
pub(crate) fn group_members(pgid: i32) -> Vec<(u32, ProcStat)> {
    all_members(pgid)
        .into_iter()
        .filter(|(_, stat)| stat.is_running())
        .collect()
}

/// Every process whose process group is `pgid`, zombies included.
fn all_members(pgid: i32) -> Vec<(u32, ProcStat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, ProcStat::read(pid)?)))
        .filter(|(_, stat)| stat.pgid == pgid)
        .collect()
}

/// The usage of the process group `pgid` (none when `None`), summed over its
/// members: CPU times including the children each waited for, `VmRSS` and
/// `VmHWM` of the live ones, `/proc/<pid>/io` where readable (it is not for
/// other users' processes unless we are root), and their threads.
///
/// This scans all of `/proc`, one `stat` read per process on the node, plus
/// `status` and `io` per member.
pub(crate) fn group_usage(pgid: Option<i32>) -> Usage {
    let mut usage = Usage {
        source: UsageSource::Proc,
        ..Usage::default()
    };
    let Some(pgid) = pgid else {
        return usage;
    };
    let per_second = clock_ticks_per_second();
    let mut peak = 0;
    for (pid, stat) in all_members(pgid) {
        // Zombies count for CPU and I/O: they used both before exiting, and
        // only their parent's wait moves the numbers into its own.
        let user = stat.utime.saturating_add(stat.cutime);
        let system = stat.stime.saturating_add(stat.cstime);
        usage.cpu_user_us = usage
            .cpu_user_us
            .saturating_add(ticks_to_us(user, per_second));
        usage.cpu_system_us = usage
            .cpu_system_us
            .saturating_add(ticks_to_us(system, per_second));
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/io")) {
            let io = parse_proc_io(&text);
            usage.io_read_bytes = usage.io_read_bytes.saturating_add(io.read);
            usage.io_write_bytes = usage.io_write_bytes.saturating_add(io.write);
        }
        if !stat.is_running() {
            continue;
        }
        usage.pids = usage.pids.saturating_add(stat.num_threads);
        if let Ok(text) = fs::read_to_string(format!("/proc/{pid}/status")) {
            let memory = parse_proc_status(&text);
            usage.memory_bytes = usage.memory_bytes.saturating_add(memory.rss_bytes);
            peak = peak.max(memory.hwm_bytes);
        }
    }
    usage.memory_peak_bytes = peak.max(usage.memory_bytes);
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_name_with_spaces_and_parentheses() {
        let line = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                ppid: 1,
                pgid: 4242,
                utime: 1,
                stime: 2,
                cutime: 0,
                cstime: 0,
                num_threads: 1,
                start_ticks: 987654
            })
        );
    }

    #[test]
    fn reads_our_own_process() {
        let own = ProcStat::read(std::process::id());
        assert!(own.is_some_and(|s| s.is_running() && s.start_ticks > 0));
    }

    #[test]
    fn truncated_lines_are_rejected() {
        assert_eq!(ProcStat::parse("1 (init) S 0 1"), None);
        assert_eq!(ProcStat::parse("garbage"), None);
    }
}
