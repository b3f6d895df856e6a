//! Freezing a running instance so its files hold still, and thawing it:
//! with the cgroup freezer (root, cgroups) and with SIGSTOP to the process
//! group (everywhere).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{cgroup_driver, sh};
use vdc_driver::{Driver, FreezeMethod, FreezeTarget, ProcessDriver};

const GRACE: Duration = Duration::from_secs(5);

/// The main process and a child in its group each bump a counter file
/// every 5 ms.
const WRITERS: &str = "\
    (i=0; while true; do i=$((i+1)); echo $i > child.count; sleep 0.005; done) & \
    i=0; while true; do i=$((i+1)); echo $i > main.count; sleep 0.005; done";

fn counts(dir: &Path) -> (String, String) {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    (read("main.count"), read("child.count"))
}

async fn freeze_holds_everything_still(driver: &ProcessDriver, expected: FreezeMethod) {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), WRITERS);
    let mut handle = driver.start(&spec).await.unwrap();
    let target = FreezeTarget {
        instance: spec.instance.clone(),
        cgroup_name: spec.cgroup_name.clone(),
        pid: handle.pid(),
    };
    // Both writers have started.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while counts(dir.path()).0.is_empty() || counts(dir.path()).1.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writers never wrote"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let method = driver
        .freeze(&target, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(method, expected);
    let frozen = counts(dir.path());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(counts(dir.path()), frozen, "something wrote while frozen");

    driver.thaw(&target, method).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let thawed = counts(dir.path());
    assert_ne!(thawed.0, frozen.0, "the main process did not resume");
    assert_ne!(thawed.1, frozen.1, "the child did not resume");

    // A frozen instance can still be stopped once thawed; stopping after a
    // freeze and thaw ends everything.
    handle.stop(GRACE).await;
}

#[tokio::test]
async fn the_cgroup_freezer_stops_every_process_and_thaws_them() {
    let Some(driver) = cgroup_driver() else {
        return;
    };
    freeze_holds_everything_still(&driver, FreezeMethod::CgroupFreezer).await;
}

#[tokio::test]
async fn without_cgroups_sigstop_stops_the_group_and_sigcont_resumes_it() {
    freeze_holds_everything_still(&ProcessDriver::without_cgroups(), FreezeMethod::Sigstop).await;
}

#[tokio::test]
async fn freezing_a_pid_that_is_not_a_safe_group_is_refused() {
    let driver = ProcessDriver::without_cgroups();
    let target = FreezeTarget {
        instance: "test/sh/0".into(),
        cgroup_name: "vdc-test-none".into(),
        pid: 1,
    };
    let err = driver
        .freeze(&target, Duration::from_secs(1))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("process group 1"), "{err}");
}
