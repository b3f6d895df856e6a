//! The process driver's cgroups, against the kernel. These need root and a
//! writable cgroup filesystem; elsewhere each test says why it is skipped.

// Tests fail loudly on purpose: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::{cgroup_driver, gone_soon, is_running, read_pid, sh};
use vdc_driver::{CgroupVersion, Driver, ExitInfo, Leftover, Limits, ProcessDriver};

const GRACE: Duration = Duration::from_secs(5);

fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The directory of `controller` among an instance's cgroup paths.
fn dir_of<'a>(paths: &'a [std::path::PathBuf], file: &str) -> &'a Path {
    paths
        .iter()
        .find(|p| p.join(file).exists())
        .unwrap_or_else(|| panic!("no cgroup in {paths:?} has {file}"))
}

#[tokio::test]
async fn the_instance_runs_in_its_cgroup_under_its_limits() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "sleep 100");
    // A parent shared by all instances of one agent, as the agent names them.
    let parent = format!("{}-parent", common::unique_cgroup());
    spec.cgroup_name = format!("{parent}/shop.web.0");
    spec.limits = Limits {
        cpu_millis: Some(250),
        memory_bytes: Some(128 << 20),
        pids_max: Some(64),
    };
    let mut handle = driver.start(&spec).await.unwrap();
    let pid = handle.pid().to_string();
    let paths = handle.cgroup_paths();
    assert!(!paths.is_empty());
    for path in &paths {
        assert!(path.ends_with(&spec.cgroup_name), "{}", path.display());
        let procs = read(path, "cgroup.procs").unwrap();
        assert!(
            procs.lines().any(|l| l == pid),
            "{pid} not in {}: {procs}",
            path.display()
        );
    }
    match driver.isolation().cgroups {
        Some(CgroupVersion::V2) => {
            let leaf = &paths[0];
            assert_eq!(read(leaf, "cpu.max").as_deref(), Some("25000 100000"));
            assert_eq!(read(leaf, "memory.max").as_deref(), Some("134217728"));
            assert_eq!(read(leaf, "pids.max").as_deref(), Some("64"));
            if let Some(swap) = read(leaf, "memory.swap.max") {
                assert_eq!(swap, "0");
            }
        }
        _ => {
            let cpu = dir_of(&paths, "cpu.cfs_quota_us");
            assert_eq!(read(cpu, "cpu.cfs_quota_us").as_deref(), Some("25000"));
            assert_eq!(read(cpu, "cpu.cfs_period_us").as_deref(), Some("100000"));
            let memory = dir_of(&paths, "memory.limit_in_bytes");
            assert_eq!(
                read(memory, "memory.limit_in_bytes").as_deref(),
                Some("134217728")
            );
            if let Some(memsw) = read(memory, "memory.memsw.limit_in_bytes") {
                assert_eq!(memsw, "134217728");
            }
            let pids = dir_of(&paths, "pids.max");
            assert_eq!(read(pids, "pids.max").as_deref(), Some("64"));
        }
    }
    handle.stop(GRACE).await;
    for path in &paths {
        assert!(!path.exists(), "{} left after stop", path.display());
        let parent = path.parent().unwrap();
        assert!(
            !parent.exists(),
            "{} left after its last instance",
            parent.display()
        );
    }
}

#[tokio::test]
async fn a_child_that_left_the_process_group_is_still_stopped() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // setsid puts the child in a new session and process group, out of reach
    // of a signal to the instance's group; only the cgroup still holds it.
    let spec = sh(
        dir.path(),
        "setsid sh -c 'echo $$ > escaped; exec sleep 100' & sleep 100",
    );
    let mut handle = driver.start(&spec).await.unwrap();
    let escaped = read_pid(&dir.path().join("escaped"));
    let stat = fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap();
    let pgid: u32 = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pgid, handle.pid(), "the child did not leave the group");
    let paths = handle.cgroup_paths();

    assert_eq!(handle.stop(GRACE).await, ExitInfo::signal(libc::SIGTERM));
    assert!(gone_soon(escaped), "escaped child {escaped} survived stop");
    for path in &paths {
        assert!(!path.exists(), "{} left after stop", path.display());
    }
}

#[tokio::test]
async fn reap_finds_escaped_children_through_the_cgroup() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(
        dir.path(),
        "setsid sh -c 'echo $$ > escaped; exec sleep 100' & exit 0",
    );
    let mut handle = driver.start(&spec).await.unwrap();
    let escaped = read_pid(&dir.path().join("escaped"));
    assert_eq!(handle.wait().await, ExitInfo::code(0));
    let leftover = Leftover {
        pid: handle.pid(),
        start_ticks: handle.start_ticks(),
        cgroup_name: spec.cgroup_name.clone(),
    };
    let paths = handle.cgroup_paths();
    drop(handle);

    driver.reap(&leftover).await.unwrap();
    assert!(gone_soon(escaped), "escaped child {escaped} survived reap");
    for path in &paths {
        assert!(!path.exists(), "{} left after reap", path.display());
    }
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_reported_as_oom() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    let Some(python) = common::python3() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "");
    spec.program = python;
    spec.args = vec![
        "-c".into(),
        "import time; data = b'x' * (200 << 20); time.sleep(30)".into(),
    ];
    spec.limits.memory_bytes = Some(64 << 20);
    let mut handle = driver.start(&spec).await.unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the instance outlived its memory limit");
    assert_eq!(exit, ExitInfo::oom(), "{exit}");
    assert_eq!(exit.to_string(), "killed by the kernel: out of memory");
    assert_eq!(handle.stop(GRACE).await, exit);
    assert!(!is_running(handle.pid()));
}

#[tokio::test]
async fn cgroup_v2_tracks_and_kills_escaped_children() {
    // Hybrid nodes mount an empty v2 hierarchy next to v1: it holds no
    // controllers, so no limits, but it groups and kills processes as a v2
    // node does, which exercises the v2 code against the kernel.
    let unified = Path::new("/sys/fs/cgroup/unified");
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: this test needs root");
        return;
    }
    let Some(cgroups) = vdc_driver::cgroup::FsCgroups::detect_at(unified) else {
        println!("skipped: no cgroup v2 hierarchy at {}", unified.display());
        return;
    };
    let driver = ProcessDriver::with_cgroups(std::sync::Arc::new(cgroups));
    assert_eq!(driver.isolation().cgroups, Some(CgroupVersion::V2));
    println!("isolation: {:?}", driver.isolation());

    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(
        dir.path(),
        "setsid sh -c 'echo $$ > escaped; exec sleep 100' & sleep 100",
    );
    spec.cgroup_name = format!("{}-v2/web.0", common::unique_cgroup());
    let mut handle = match driver.start(&spec).await {
        Ok(handle) => handle,
        Err(e) => {
            println!("skipped: cannot use {}: {e}", unified.display());
            return;
        }
    };
    let escaped = read_pid(&dir.path().join("escaped"));
    let paths = handle.cgroup_paths();
    assert_eq!(paths, [unified.join(&spec.cgroup_name)]);
    let procs = read(&paths[0], "cgroup.procs").unwrap();
    for pid in [handle.pid(), escaped] {
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {procs}"
        );
    }

    assert_eq!(handle.stop(GRACE).await, ExitInfo::signal(libc::SIGTERM));
    assert!(gone_soon(escaped), "escaped child {escaped} survived stop");
    assert!(!paths[0].exists());
    assert!(!paths[0].parent().unwrap().exists());
}
