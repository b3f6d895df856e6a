//! Tests of the cgroup file logic against directory trees that look like
//! cgroupfs, so they run anywhere; the kernel side is in `tests/cgroups.rs`.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use super::*;

const V1: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "freezer", "blkio"];

fn touch(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn name(s: &str) -> CgroupName {
    CgroupName::new(s).unwrap()
}

/// A v1 tree with every hierarchy, and the control files of leaf `leaf`.
fn v1_tree(root: &Path, leaf: &str) {
    for c in V1 {
        touch(&root.join(c).join("cgroup.procs"), "");
        touch(&root.join(c).join(leaf).join("cgroup.procs"), "");
    }
    let cpu = root.join("cpu").join(leaf);
    touch(&cpu.join("cpu.cfs_period_us"), "100000");
    touch(&cpu.join("cpu.cfs_quota_us"), "-1");
    let memory = root.join("memory").join(leaf);
    touch(&memory.join("memory.limit_in_bytes"), "9223372036854771712");
    touch(
        &memory.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712",
    );
    touch(&root.join("pids").join(leaf).join("pids.max"), "max");
}

/// A v2 root with `controllers` available, and the files of leaf `leaf`.
fn v2_tree(root: &Path, controllers: &str, leaf: &str) {
    touch(&root.join("cgroup.controllers"), controllers);
    touch(&root.join("cgroup.subtree_control"), "");
    touch(&root.join("cgroup.procs"), "");
    let dir = root.join(leaf);
    if let Some(parent) = Path::new(leaf)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        touch(&root.join(parent).join("cgroup.subtree_control"), "");
    }
    for file in [
        "cgroup.procs",
        "cpu.max",
        "memory.max",
        "memory.swap.max",
        "pids.max",
    ] {
        touch(&dir.join(file), "");
    }
}

#[test]
fn nothing_mounted_means_no_cgroups() {
    let root = tempfile::tempdir().unwrap();
    assert!(FsCgroups::detect_at(root.path()).is_none());
}

#[test]
fn v1_creates_the_leaf_in_every_hierarchy_and_writes_limits() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v1_tree(root, "vdc-t/shop.web.0");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.version(), CgroupVersion::V1);
    assert!(cgroups.missing_controllers().is_empty());

    let leaf = name("vdc-t/shop.web.0");
    let limits = Limits {
        cpu_millis: Some(500),
        memory_bytes: Some(64 << 20),
        pids_max: Some(32),
    };
    cgroups.create(&leaf, &limits).unwrap();
    let expected: Vec<_> = V1
        .iter()
        .map(|c| root.join(c).join("vdc-t/shop.web.0"))
        .collect();
    assert_eq!(cgroups.paths(&leaf), expected);
    assert!(cgroups.exists(&leaf));

    let cpu = root.join("cpu/vdc-t/shop.web.0");
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    let memory = root.join("memory/vdc-t/shop.web.0");
    assert_eq!(read(&memory.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(
        read(&memory.join("memory.memsw.limit_in_bytes")),
        "67108864"
    );
    assert_eq!(read(&root.join("pids/vdc-t/shop.web.0/pids.max")), "32");
}

#[test]
fn v1_co_mounted_controllers_share_one_directory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    touch(&root.join("cpu,cpuacct/cgroup.procs"), "");
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", root.join("cpuacct")).unwrap();
    touch(&root.join("memory/cgroup.procs"), "");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(
        cgroups.paths(&name("x")),
        [root.join("cpu/x"), root.join("memory/x")]
    );
    assert_eq!(cgroups.missing_controllers(), ["pids"]);
    // A limit for a missing controller is skipped, not an error.
    cgroups
        .create(
            &name("x"),
            &Limits {
                pids_max: Some(5),
                ..Limits::default()
            },
        )
        .unwrap();
}

#[test]
fn a_failed_create_leaves_no_leaf_behind() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for c in V1 {
        touch(&root.join(c).join("cgroup.procs"), "");
    }
    let cgroups = FsCgroups::detect_at(root).unwrap();
    // A plain directory has no control files, so the cpu write fails.
    let err = cgroups
        .create(
            &name("a"),
            &Limits {
                cpu_millis: Some(100),
                ..Limits::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.path, root.join("cpu/a/cpu.cfs_period_us"));
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    assert!(!cgroups.exists(&name("a")));
}

#[test]
fn v2_enables_controllers_down_to_the_leaf_and_writes_limits() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v2_tree(root, "cpuset cpu io memory pids", "vdc-t/shop.db.0");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.version(), CgroupVersion::V2);
    assert!(cgroups.missing_controllers().is_empty());
    assert_eq!(
        read(&root.join("cgroup.subtree_control")),
        "+cpu +memory +pids +io"
    );

    let leaf = name("vdc-t/shop.db.0");
    let limits = Limits {
        cpu_millis: Some(1500),
        memory_bytes: Some(1 << 30),
        pids_max: Some(100),
    };
    cgroups.create(&leaf, &limits).unwrap();
    let dir = root.join("vdc-t/shop.db.0");
    assert_eq!(cgroups.paths(&leaf), std::slice::from_ref(&dir));
    assert_eq!(
        read(&root.join("vdc-t/cgroup.subtree_control")),
        "+cpu +memory +pids +io"
    );
    assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
    assert_eq!(read(&dir.join("memory.max")), "1073741824");
    assert_eq!(read(&dir.join("memory.swap.max")), "0");
    assert_eq!(read(&dir.join("pids.max")), "100");
    assert_eq!(cgroups.procs_files(&leaf), [dir.join("cgroup.procs")]);
}

#[test]
fn v2_tiny_cpu_limits_are_raised_to_the_kernel_minimum() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v2_tree(root, "cpu memory pids", "a");
    let cgroups = FsCgroups::detect_at(root).unwrap();
    cgroups
        .create(
            &name("a"),
            &Limits {
                cpu_millis: Some(1),
                ..Limits::default()
            },
        )
        .unwrap();
    assert_eq!(read(&root.join("a/cpu.max")), "1000 100000");
}

#[test]
fn v2_reports_controllers_it_cannot_use() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v2_tree(root, "cpu memory", "a");
    fs::remove_file(root.join("a/pids.max")).unwrap();
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.missing_controllers(), ["pids"]);
    cgroups
        .create(
            &name("a"),
            &Limits {
                pids_max: Some(5),
                ..Limits::default()
            },
        )
        .unwrap();
}

#[test]
fn pids_are_the_union_of_every_hierarchy() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v1_tree(root, "a");
    fs::write(root.join("cpu/a/cgroup.procs"), "12\n7\n").unwrap();
    fs::write(root.join("memory/a/cgroup.procs"), "7\n0\nnot-a-pid\n30\n").unwrap();
    let cgroups = FsCgroups::detect_at(root).unwrap();
    assert_eq!(cgroups.pids(&name("a")).unwrap(), [7, 12, 30]);
    assert!(cgroups.pids(&name("missing")).unwrap().is_empty());
}

#[test]
fn remove_takes_empty_leaves_and_tolerates_missing_ones() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for c in V1 {
        touch(&root.join(c).join("cgroup.procs"), "");
        fs::create_dir_all(root.join(c).join("p/a")).unwrap();
    }
    fs::create_dir_all(root.join("cpu/p/b")).unwrap();
    let cgroups = FsCgroups::detect_at(root).unwrap();
    fs::remove_dir(root.join("pids/p/a")).unwrap();
    cgroups.remove(&name("p/a")).unwrap();
    assert!(!cgroups.exists(&name("p/a")));
    // The parent goes with its last instance, and stays while it has others.
    assert!(!root.join("memory/p").exists());
    assert!(root.join("cpu/p/b").is_dir());

    // A leaf that still has something in it is reported with its path.
    fs::create_dir_all(root.join("cpu/b/child")).unwrap();
    let err = cgroups.remove(&name("b")).unwrap_err();
    assert_eq!(err.path, root.join("cpu/b"));
    assert!(!err.is_busy(), "only EBUSY means processes remain");
}

#[test]
fn oom_counters_come_from_the_kernel_files() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v2_tree(root, "cpu memory pids", "a");
    let v2 = FsCgroups::detect_at(root).unwrap();
    assert_eq!(v2.oom_counter(&name("a")), None);
    fs::write(
        root.join("a/memory.events"),
        "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
    )
    .unwrap();
    assert_eq!(v2.oom_counter(&name("a")), Some(OomCounter::Kills(1)));

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    v1_tree(root, "a");
    let v1 = FsCgroups::detect_at(root).unwrap();
    touch(&root.join("memory/a/memory.failcnt"), "4\n");
    assert_eq!(v1.oom_counter(&name("a")), Some(OomCounter::LimitHits(4)));
    touch(
        &root.join("memory/a/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    );
    assert_eq!(v1.oom_counter(&name("a")), Some(OomCounter::Kills(3)));
}

#[test]
fn oom_counters_rise() {
    let kills = OomCounter::Kills(2);
    assert!(kills.rose_since(Some(OomCounter::Kills(1))));
    assert!(!kills.rose_since(Some(OomCounter::Kills(2))));
    assert!(kills.rose_since(None));
    assert!(!OomCounter::Kills(0).rose_since(None));
    assert!(!kills.rose_since(Some(OomCounter::LimitHits(0))));
    assert!(OomCounter::LimitHits(1).rose_since(Some(OomCounter::LimitHits(0))));
    assert!(kills.is_exact() && !OomCounter::LimitHits(1).is_exact());
}

#[test]
fn cgroup_names_cannot_leave_the_tree() {
    assert_eq!(name("vdc-7f3a/shop.web.0").parent(), Some("vdc-7f3a"));
    assert_eq!(name("shop.web.0").parent(), None);
    for (bad, reason) in [
        ("", "expected non-empty components"),
        ("/abs", "expected non-empty components"),
        ("a/", "expected non-empty components"),
        ("a/b/c", "expected at most one '/'"),
        ("..", "expected no '.' or '..' components"),
        ("a/..", "expected no '.' or '..' components"),
        ("a\nb", "expected no control characters"),
    ] {
        let err = CgroupName::new(bad).unwrap_err();
        assert_eq!(err.reason, reason, "{bad:?}");
    }
    assert_eq!(
        CgroupName::new("a/b/c").unwrap_err().to_string(),
        "invalid cgroup name `a/b/c`: expected at most one '/'"
    );
}
