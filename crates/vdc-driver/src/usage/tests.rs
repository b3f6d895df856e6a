//! The accounting parsers on samples of each file as the kernel writes it,
//! for v1, v2 and /proc, including older kernels' variants.

#![allow(clippy::unwrap_used)]

use super::parse::*;
use super::*;
use crate::procfs::ProcStat;

// === cpu ===

#[test]
fn cpuacct_stat_ticks_become_microseconds() {
    let text = "user 15234\nsystem 4021\n";
    assert_eq!(
        parse_cpuacct_stat(text, 100),
        Some(CpuTimes {
            user_us: 152_340_000,
            system_us: 40_210_000
        })
    );
    // A kernel with another USER_HZ.
    assert_eq!(
        parse_cpuacct_stat("user 250\nsystem 0\n", 250)
            .unwrap()
            .user_us,
        1_000_000
    );
    assert_eq!(parse_cpuacct_stat("user 1\n", 100), None);
}

#[test]
fn cpuacct_usage_nanoseconds_become_microseconds() {
    assert_eq!(
        parse_cpuacct_usage("152340123456\n", "40210987654\n"),
        Some(CpuTimes {
            user_us: 152_340_123,
            system_us: 40_210_987
        })
    );
    assert_eq!(parse_cpuacct_usage("", "1\n"), None);
}

#[test]
fn ticks_do_not_overflow() {
    assert_eq!(ticks_to_us(150, 100), 1_500_000);
    assert_eq!(ticks_to_us(u64::MAX, 100), u64::MAX);
    assert_eq!(ticks_to_us(7, 0), 7_000_000, "a zero rate is taken as 1");
}

#[test]
fn cpu_stat_v1_gives_throttling() {
    let text = "nr_periods 1204\nnr_throttled 873\nthrottled_time 71234567890\n\
                nr_bursts 0\nburst_time 0\n";
    assert_eq!(
        parse_cpu_stat_v1(text),
        Throttling {
            periods: 873,
            throttled_us: 71_234_567
        }
    );
    // Kernels before 5.14 have no burst lines; a fresh cgroup is all zeros.
    let old = "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n";
    assert_eq!(parse_cpu_stat_v1(old), Throttling::default());
}

#[test]
fn cpu_stat_v2_gives_times_and_throttling() {
    let text = "usage_usec 1523456\nuser_usec 1200000\nsystem_usec 323456\n\
                core_sched.force_idle_usec 0\nnr_periods 1204\nnr_throttled 873\n\
                throttled_usec 71234567\nnr_bursts 0\nburst_usec 0\n";
    assert_eq!(
        parse_cpu_stat_v2(text),
        Some((
            CpuTimes {
                user_us: 1_200_000,
                system_us: 323_456
            },
            Throttling {
                periods: 873,
                throttled_us: 71_234_567
            }
        ))
    );
    // Without the cpu controller only the times are there.
    let bare = "usage_usec 1523456\nuser_usec 1200000\nsystem_usec 323456\n";
    assert_eq!(
        parse_cpu_stat_v2(bare).unwrap().1,
        Throttling::default(),
        "no throttling lines means none"
    );
    assert_eq!(parse_cpu_stat_v2("usage_usec 5\n"), None);
}

// === memory ===

#[test]
fn memory_events_and_oom_control_count_oom_kills() {
    let events = "low 0\nhigh 0\nmax 57\noom 3\noom_kill 2\noom_group_kill 0\n";
    assert_eq!(parse_memory_events(events), 2);
    // Before 4.13 there is no oom_kill line.
    assert_eq!(parse_memory_events("low 0\nhigh 0\nmax 5\noom 1\n"), 0);
    let control = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
    assert_eq!(parse_memory_oom_control(control), 1);
    assert_eq!(
        parse_memory_oom_control("oom_kill_disable 0\nunder_oom 0\n"),
        0
    );
}

#[test]
fn memory_limits_of_both_versions() {
    assert_eq!(parse_memory_limit("max\n"), None);
    assert_eq!(parse_memory_limit("134217728\n"), Some(128 << 20));
    // v1's "unlimited" with 4 KiB and with 64 KiB pages.
    assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
    assert_eq!(parse_memory_limit("9223372036854710272\n"), None);
    assert_eq!(parse_memory_limit(""), None);
}

#[test]
fn single_numbers() {
    assert_eq!(parse_single("104857600\n"), Some(100 << 20));
    assert_eq!(parse_single("max\n"), None);
}

// === io ===

#[test]
fn io_stat_sums_every_device() {
    let text = "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 \
                dbytes=50331648 dios=3021 cost.vrate=100.00 cost.usage=123\n\
                253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
    assert_eq!(
        parse_io_stat(text),
        IoBytes {
            read: 1_459_200 + 90_430_464 + 4096,
            write: 314_773_504 + 299_008_000,
        }
    );
    assert_eq!(parse_io_stat(""), IoBytes::default());
}

#[test]
fn blkio_service_bytes_sums_reads_and_writes_of_every_device() {
    let text = "254:0 Read 21008384\n254:0 Write 41951232\n254:0 Sync 62959616\n\
                254:0 Async 0\n254:0 Discard 0\n254:0 Total 62959616\n\
                8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n\
                8:0 Discard 0\n8:0 Total 12288\nTotal 62971904\n";
    assert_eq!(
        parse_blkio_service_bytes(text),
        IoBytes {
            read: 21_008_384 + 4096,
            write: 41_951_232 + 8192,
        }
    );
    // What a cgroup that did no I/O (or a kernel that does not count) shows.
    assert_eq!(parse_blkio_service_bytes("Total 0\n"), IoBytes::default());
}

// === /proc ===

#[test]
fn proc_stat_gives_cpu_ticks_and_threads() {
    let line = "2025 (python3 -c x) R 2021 2021 5764 0 -1 4194304 99 0 0 0 \
                151 23 40 2 20 0 3 0 233744 3133440 412 18446744073709551615 \
                93997468590080 93997468609961 140729932620544 0 0 0 0 0 0 0 0 0 \
                17 0 0 0 0 0 0";
    let stat = ProcStat::parse(line).unwrap();
    assert_eq!((stat.utime, stat.stime), (151, 23));
    assert_eq!((stat.cutime, stat.cstime), (40, 2));
    assert_eq!(stat.num_threads, 3);
    assert_eq!((stat.pgid, stat.start_ticks), (2021, 233744));
    // cutime is signed in the kernel's format; a negative one reads as 0.
    let negative = line.replace(" 151 23 40 2 ", " 151 23 -1 2 ");
    assert_eq!(ProcStat::parse(&negative).unwrap().cutime, 0);
}

#[test]
fn proc_status_gives_resident_memory() {
    let text = "Name:\tpython3\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t2023\n\
                VmPeak:\t  120060 kB\nVmSize:\t  118060 kB\nVmLck:\t       0 kB\n\
                VmPin:\t       0 kB\nVmHWM:\t  110684 kB\nVmRSS:\t  109632 kB\n\
                RssAnon:\t  104112 kB\nRssFile:\t    5520 kB\nRssShmem:\t       0 kB\n\
                Threads:\t1\n";
    assert_eq!(
        parse_proc_status(text),
        ProcMemory {
            rss_bytes: 109_632 * 1024,
            hwm_bytes: 110_684 * 1024,
        }
    );
    // Zombies and kernel threads have no Vm lines.
    let zombie = "Name:\tsh\nState:\tZ (zombie)\nTgid:\t77\nThreads:\t1\n";
    assert_eq!(parse_proc_status(zombie), ProcMemory::default());
}

#[test]
fn proc_io_gives_block_layer_bytes() {
    let text = "rchar: 41968065\nwchar: 41943346\nsyscr: 80\nsyscw: 47\n\
                read_bytes: 81920\nwrite_bytes: 41951232\ncancelled_write_bytes: 0\n";
    assert_eq!(
        parse_proc_io(text),
        IoBytes {
            read: 81_920,
            write: 41_951_232
        }
    );
}

// === Usage ===

#[test]
fn a_stopped_usage_keeps_totals_and_holds_nothing() {
    let usage = Usage {
        source: UsageSource::CgroupV1,
        cpu_user_us: 5,
        cpu_system_us: 7,
        memory_bytes: 100,
        memory_peak_bytes: 200,
        pids: 3,
        io_write_bytes: 9,
        ..Usage::default()
    };
    assert_eq!(usage.cpu_total_us(), 12);
    let stopped = usage.stopped();
    assert_eq!((stopped.memory_bytes, stopped.pids), (0, 0));
    assert_eq!(
        stopped,
        Usage {
            memory_bytes: 0,
            pids: 0,
            ..usage
        }
    );
    assert_eq!(Usage::default().source, UsageSource::Proc);
}

#[test]
fn clock_ticks_come_from_the_system() {
    assert!(clock_ticks_per_second() >= 100);
}

#[test]
fn our_own_process_group_is_summed_from_proc() {
    let pgid = nix::unistd::getpgrp().as_raw();
    let usage = crate::procfs::group_usage(Some(pgid));
    assert_eq!(usage.source, UsageSource::Proc);
    assert!(usage.pids >= 1, "{usage:?}");
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(usage.memory_peak_bytes >= usage.memory_bytes);
    assert_eq!(crate::procfs::group_usage(None), Usage::default());
}
