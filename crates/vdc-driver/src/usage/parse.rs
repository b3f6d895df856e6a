//! Pure parsers of the kernel's accounting files, over their contents, so
//! that every format is tested on samples without a kernel.
//!
//! They are lenient on purpose: a line they do not understand (a key added
//! by a newer kernel, a device without counters) is skipped, and a missing
//! counter reads as 0 or `None`, never as an error. Only a file that lacks
//! the one thing it exists for (the CPU times of `cpu.stat`) gives `None`.

/// User and system CPU time, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub user_us: u64,
    pub system_us: u64,
}

/// CFS bandwidth throttling counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Throttling {
    pub periods: u64,
    pub throttled_us: u64,
}

/// Bytes read from and written to block devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IoBytes {
    pub read: u64,
    pub write: u64,
}

/// A process's memory from `/proc/<pid>/status`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcMemory {
    /// `VmRSS`: resident now.
    pub rss_bytes: u64,
    /// `VmHWM`: the highest resident set so far.
    pub hwm_bytes: u64,
}

/// Memory limits from here up mean "unlimited": v1 reports no limit as
/// `PAGE_COUNTER_MAX` pages, just under 2^63 bytes (the exact value depends
/// on the page size), and no machine has 4 EiB of memory.
const UNLIMITED_FROM: u64 = 1 << 62;

// === generic formats ===

/// The number after `key` in a flat-keyed file: one "key value" pair per
/// line (`memory.events`, `cpu.stat`, `cpuacct.stat`, `/proc/<pid>/io`,
/// whose keys end in ':').
pub(crate) fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != key {
            return None;
        }
        words.next()?.parse().ok()
    })
}

/// A file holding one number, such as `memory.current` or `pids.current`.
pub(crate) fn parse_single(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `ticks` of `ticks_per_second` in microseconds, rounded down.
pub(crate) fn ticks_to_us(ticks: u64, ticks_per_second: u64) -> u64 {
    // In u128 so that no tick count can overflow before the division.
    let us = u128::from(ticks) * 1_000_000 / u128::from(ticks_per_second.max(1));
    u64::try_from(us).unwrap_or(u64::MAX)
}

// === cpu ===

/// v1 `cpuacct.stat`: "user N\nsystem N" in clock ticks (`USER_HZ`).
pub(crate) fn parse_cpuacct_stat(text: &str, ticks_per_second: u64) -> Option<CpuTimes> {
    Some(CpuTimes {
        user_us: ticks_to_us(flat_keyed(text, "user")?, ticks_per_second),
        system_us: ticks_to_us(flat_keyed(text, "system")?, ticks_per_second),
    })
}

/// v1 `cpuacct.usage_user` and `cpuacct.usage_sys`: one number each, in
/// nanoseconds (Linux 4.11 and later). Preferred to `cpuacct.stat`, whose
/// ticks are 10 ms each.
pub(crate) fn parse_cpuacct_usage(user: &str, system: &str) -> Option<CpuTimes> {
    Some(CpuTimes {
        user_us: parse_single(user)? / 1000,
        system_us: parse_single(system)? / 1000,
    })
}

/// v1 `cpu.stat` of the `cpu` controller: throttling only, `throttled_time`
/// in nanoseconds.
pub(crate) fn parse_cpu_stat_v1(text: &str) -> Throttling {
    Throttling {
        periods: flat_keyed(text, "nr_throttled").unwrap_or(0),
        throttled_us: flat_keyed(text, "throttled_time").unwrap_or(0) / 1000,
    }
}

/// v2 `cpu.stat`: CPU times, always present, and throttling, present only
/// while the `cpu` controller is enabled for the cgroup (else 0).
pub(crate) fn parse_cpu_stat_v2(text: &str) -> Option<(CpuTimes, Throttling)> {
    let times = CpuTimes {
        user_us: flat_keyed(text, "user_usec")?,
        system_us: flat_keyed(text, "system_usec")?,
    };
    let throttling = Throttling {
        periods: flat_keyed(text, "nr_throttled").unwrap_or(0),
        throttled_us: flat_keyed(text, "throttled_usec").unwrap_or(0),
    };
    Some((times, throttling))
}

// === memory ===

/// v2 `memory.events`: the number of processes the OOM killer killed
/// (`oom_kill`, Linux 4.13), 0 when the kernel does not count them.
pub(crate) fn parse_memory_events(text: &str) -> u64 {
    flat_keyed(text, "oom_kill").unwrap_or(0)
}

/// v1 `memory.oom_control`: "oom_kill_disable 0\nunder_oom 0\noom_kill N",
/// the last line since Linux 4.13; 0 without it.
pub(crate) fn parse_memory_oom_control(text: &str) -> u64 {
    flat_keyed(text, "oom_kill").unwrap_or(0)
}

/// v2 `memory.max` ("max" or bytes) or v1 `memory.limit_in_bytes` (bytes,
/// with a huge value for none): the limit, `None` when unlimited.
pub(crate) fn parse_memory_limit(text: &str) -> Option<u64> {
    parse_single(text).filter(|&bytes| bytes < UNLIMITED_FROM)
}

// === io ===

/// v2 `io.stat`: one line per device, "MAJ:MIN rbytes=N wbytes=N rios=N
/// wios=N dbytes=N dios=N", summed over devices.
pub(crate) fn parse_io_stat(text: &str) -> IoBytes {
    let mut io = IoBytes::default();
    for line in text.lines() {
        for field in line.split_whitespace().skip(1) {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "rbytes" => io.read = io.read.saturating_add(value),
                "wbytes" => io.write = io.write.saturating_add(value),
                _ => {}
            }
        }
    }
    io
}

/// v1 `blkio.throttle.io_service_bytes(_recursive)`: "MAJ:MIN Read N",
/// "MAJ:MIN Write N", ... per device and a final "Total N", summed over
/// devices.
pub(crate) fn parse_blkio_service_bytes(text: &str) -> IoBytes {
    let mut io = IoBytes::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [device, op, value] = words[..] else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        if !device.contains(':') {
            continue;
        }
        match op {
            "Read" => io.read = io.read.saturating_add(value),
            "Write" => io.write = io.write.saturating_add(value),
            _ => {}
        }
    }
    io
}

// === /proc ===

/// `/proc/<pid>/status`: `VmRSS` and `VmHWM`, given in kB. Kernel threads
/// and zombies have neither: 0.
pub(crate) fn parse_proc_status(text: &str) -> ProcMemory {
    let kib = |key: &str| {
        text.lines()
            .find_map(|line| {
                let rest = line.strip_prefix(key)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .map_or(0, |k| k.saturating_mul(1024))
    };
    ProcMemory {
        rss_bytes: kib("VmRSS"),
        hwm_bytes: kib("VmHWM"),
    }
}

/// `/proc/<pid>/io`: `read_bytes` and `write_bytes`, what the process (and
/// the children it waited for) made the block layer read and write.
pub(crate) fn parse_proc_io(text: &str) -> IoBytes {
    IoBytes {
        read: flat_keyed(text, "read_bytes:").unwrap_or(0),
        write: flat_keyed(text, "write_bytes:").unwrap_or(0),
    }
}
