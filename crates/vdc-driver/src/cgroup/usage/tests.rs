//! Reading usage from directory trees laid out like cgroupfs: v1 with
//! separate and with co-mounted hierarchies, without blkio, and v2; the
//! kernel side is in `tests/usage.rs`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use super::activate_blkio_accounting;
use crate::cgroup::{CgroupName, Cgroups, FsCgroups};
use crate::{CgroupVersion, Limits, Usage, UsageSource};

fn touch(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn name(s: &str) -> CgroupName {
    CgroupName::new(s).unwrap()
}

/// The accounting files of a v1 leaf, each under the hierarchy named in
/// `mounts` for its controller.
fn v1_leaf(root: &Path, mounts: [&str; 5], leaf: &str) {
    let [cpu, cpuacct, memory, pids, blkio] = mounts.map(|m| root.join(m).join(leaf));
    touch(&cpuacct.join("cpuacct.usage_user"), "1500000000\n");
    touch(&cpuacct.join("cpuacct.usage_sys"), "250000000\n");
    touch(&cpuacct.join("cpuacct.stat"), "user 150\nsystem 25\n");
    touch(
        &cpu.join("cpu.stat"),
        "nr_periods 40\nnr_throttled 12\nthrottled_time 900000000\n",
    );
    touch(&memory.join("memory.usage_in_bytes"), "104857600\n");
    touch(&memory.join("memory.max_usage_in_bytes"), "110000000\n");
    touch(&memory.join("memory.limit_in_bytes"), "268435456\n");
    touch(
        &memory.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    touch(&pids.join("pids.current"), "3\n");
    touch(
        &blkio.join("blkio.throttle.io_service_bytes_recursive"),
        "254:0 Read 4096\n254:0 Write 20971520\n254:0 Sync 20975616\n\
         254:0 Async 0\n254:0 Discard 0\n254:0 Total 20975616\nTotal 20975616\n",
    );
}

fn mount(root: &Path, hierarchy: &str) {
    touch(&root.join(hierarchy).join("cgroup.procs"), "");
}

const EXPECTED_V1: Usage = Usage {
    source: UsageSource::CgroupV1,
    cpu_user_us: 1_500_000,
    cpu_system_us: 250_000,
    throttled_periods: 12,
    throttled_us: 900_000,
    memory_bytes: 104_857_600,
    memory_peak_bytes: 110_000_000,
    memory_limit_bytes: Some(268_435_456),
    oom_kills: 1,
    io_read_bytes: 4096,
    io_write_bytes: 20_971_520,
    pids: 3,
};

#[test]
fn v1_reads_each_controller_in_its_own_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for h in ["cpu", "cpuacct", "memory", "pids", "blkio"] {
        mount(root, h);
    }
    v1_leaf(root, ["cpu", "cpuacct", "memory", "pids", "blkio"], "p/a");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.usage(&name("p/a")).unwrap(), EXPECTED_V1);
}

#[test]
fn v1_reads_cpu_and_cpuacct_co_mounted_without_symlinks() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for h in ["cpu,cpuacct", "memory", "pids", "blkio"] {
        mount(root, h);
    }
    v1_leaf(
        root,
        ["cpu,cpuacct", "cpu,cpuacct", "memory", "pids", "blkio"],
        "a",
    );
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert!(cgroups.missing_controllers().is_empty());
    assert!(cgroups
        .paths(&name("a"))
        .contains(&root.join("cpu,cpuacct/a")));
    assert_eq!(cgroups.usage(&name("a")).unwrap(), EXPECTED_V1);
}

#[test]
fn v1_finds_cpuacct_co_mounted_under_the_name_cpu() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    mount(root, "cpu");
    touch(&root.join("cpu/cpuacct.stat"), "user 0\nsystem 0\n");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    touch(&root.join("cpu/a/cpuacct.stat"), "user 150\nsystem 25\n");
    let usage = cgroups.usage(&name("a")).unwrap();
    // Without the nanosecond files, ticks of 1/USER_HZ s.
    let tick = 1_000_000 / crate::usage::clock_ticks_per_second();
    assert_eq!(
        (usage.cpu_user_us, usage.cpu_system_us),
        (150 * tick, 25 * tick)
    );
}

#[test]
fn v1_without_blkio_or_pids_reads_zero_io_and_counts_tasks() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for h in ["cpu", "cpuacct", "memory"] {
        mount(root, h);
    }
    v1_leaf(root, ["cpu", "cpuacct", "memory", "pids", "blkio"], "a");
    touch(&root.join("cpu/a/tasks"), "10\n11\n12\n13\n");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    let usage = cgroups.usage(&name("a")).unwrap();
    assert_eq!(
        usage,
        Usage {
            io_read_bytes: 0,
            io_write_bytes: 0,
            pids: 4,
            ..EXPECTED_V1
        }
    );
}

#[test]
fn v1_missing_files_read_as_not_accounted() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for h in ["cpu", "cpuacct", "memory", "pids", "blkio"] {
        mount(root, h);
        fs::create_dir_all(root.join(h).join("a")).unwrap();
    }
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(
        cgroups.usage(&name("a")).unwrap(),
        Usage {
            source: UsageSource::CgroupV1,
            ..Usage::default()
        }
    );
}

#[test]
fn v2_reads_the_leaf() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    touch(&root.join("cgroup.controllers"), "cpu io memory pids");
    touch(&root.join("cgroup.subtree_control"), "");
    let leaf = root.join("a");
    touch(
        &leaf.join("cpu.stat"),
        "usage_usec 1750000\nuser_usec 1500000\nsystem_usec 250000\n\
         nr_periods 40\nnr_throttled 12\nthrottled_usec 900000\n",
    );
    touch(&leaf.join("memory.current"), "104857600\n");
    touch(&leaf.join("memory.peak"), "110000000\n");
    touch(&leaf.join("memory.max"), "268435456\n");
    touch(
        &leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
    );
    touch(
        &leaf.join("io.stat"),
        "254:0 rbytes=4096 wbytes=20971520 rios=1 wios=20 dbytes=0 dios=0\n",
    );
    touch(&leaf.join("pids.current"), "3\n");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.version(), CgroupVersion::V2);
    assert_eq!(
        cgroups.usage(&name("a")).unwrap(),
        Usage {
            source: UsageSource::CgroupV2,
            ..EXPECTED_V1
        }
    );

    // Before 5.19 there is no memory.peak; no memory.max means no limit
    // (the memory controller is not enabled); no pids controller, the
    // threads listed are counted.
    for file in ["memory.peak", "memory.max", "pids.current"] {
        fs::remove_file(leaf.join(file)).unwrap();
    }
    touch(&leaf.join("cgroup.threads"), "41\n42\n");
    let usage = cgroups.usage(&name("a")).unwrap();
    assert_eq!(usage.memory_peak_bytes, usage.memory_bytes);
    assert_eq!(usage.memory_limit_bytes, None);
    assert_eq!(usage.pids, 2);
}

#[test]
fn a_missing_leaf_is_an_error_with_its_path() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    mount(root, "memory");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    let err = cgroups.usage(&name("gone")).unwrap_err();
    assert_eq!(err.path, root.join("memory/gone"));
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn creating_a_v1_leaf_turns_on_block_io_accounting_for_every_disk() {
    let sys_block = tempfile::tempdir().unwrap();
    let sys_block = sys_block.path();
    touch(&sys_block.join("vda/dev"), "254:0\n");
    touch(&sys_block.join("vda/size"), "536870912\n");
    touch(&sys_block.join("loop0/dev"), "7:0\n");
    touch(&sys_block.join("loop0/size"), "0\n");
    let leaf = tempfile::tempdir().unwrap();
    let file = leaf.path().join("blkio.throttle.read_bps_device");
    touch(&file, "");
    activate_blkio_accounting(leaf.path(), sys_block);
    // A plain file keeps only the last write; the kernel keeps one line per
    // device, and here there is only one device with a size.
    assert_eq!(fs::read_to_string(&file).unwrap(), "254:0 0");

    // Without the file (no blkio throttling in the kernel) nothing happens.
    let empty = tempfile::tempdir().unwrap();
    activate_blkio_accounting(empty.path(), sys_block);
    assert!(!empty.path().join("blkio.throttle.read_bps_device").exists());
}

#[test]
fn v1_creation_includes_blkio_and_cpuacct() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for h in ["cpu", "cpuacct", "memory", "pids", "freezer", "blkio"] {
        mount(root, h);
    }
    let cgroups = FsCgroups::detect_at(root).unwrap();
    cgroups.create(&name("a"), &Limits::default()).unwrap();
    for h in ["cpuacct", "blkio", "pids"] {
        assert!(root.join(h).join("a").is_dir(), "no leaf in {h}");
    }
}
