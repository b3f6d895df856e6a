//! Tests of the fake driver: what other crates rely on when they use it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;
use crate::Limits;

fn spec(instance: &str, program: &str) -> LaunchSpec {
    LaunchSpec {
        instance: instance.into(),
        cgroup_name: format!("vdc-test/{}", instance.replace('/', ".")),
        program: program.into(),
        args: vec!["--port".into(), "8080".into()],
        env: vec![("VDC_TOKEN".into(), "t".into())],
        workdir: "/srv".into(),
        nofile: None,
        log_file: "/srv/log".into(),
        limits: Limits::default(),
        confine: None,
    }
}

#[tokio::test]
async fn pids_are_deterministic_and_starts_recorded() {
    let driver = FakeDriver::new();
    let a = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    let b = driver.start(&spec("shop/web/1", "web")).await.unwrap();
    assert_eq!((a.pid(), b.pid()), (1000, 1001));
    assert_eq!(a.start_ticks(), Some(100_000));
    assert!(a.cgroup_paths().is_empty());
    let starts = driver.starts();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1].spec, spec("shop/web/1", "web"));
    assert_eq!(starts[1].pid, 1001);
    assert_eq!(driver.running(), ["shop/web/0", "shop/web/1"]);
    assert_eq!(driver.kind(), "process");
}

#[tokio::test]
async fn a_test_decides_when_an_instance_exits() {
    let driver = FakeDriver::new();
    let mut handle = driver.start(&spec("shop/db/0", "db")).await.unwrap();

    // Nothing happens until the test says so; polling wait is cancel-safe.
    for _ in 0..3 {
        tokio::select! {
            _ = handle.wait() => panic!("the instance exited by itself"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    assert!(driver.exit("shop/db/0", ExitInfo::oom()));
    assert!(
        !driver.exit("shop/db/0", ExitInfo::code(0)),
        "only the first exit counts"
    );
    assert_eq!(handle.wait().await, ExitInfo::oom());
    assert_eq!(handle.wait().await, ExitInfo::oom());
    assert!(driver.running().is_empty());

    // Stopping an exited instance reports how it ended, and is recorded once.
    assert_eq!(handle.stop(Duration::from_secs(3)).await, ExitInfo::oom());
    assert_eq!(handle.stop(Duration::from_secs(3)).await, ExitInfo::oom());
    assert_eq!(
        driver.stops(),
        [FakeStop {
            instance: "shop/db/0".into(),
            pid: 1000,
            grace: Duration::from_secs(3)
        }]
    );
}

#[tokio::test]
async fn stop_ends_a_running_instance_as_sigterm_would() {
    let driver = FakeDriver::new();
    let mut handle = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    assert_eq!(
        handle.stop(Duration::from_secs(1)).await,
        ExitInfo::signal(libc::SIGTERM)
    );

    driver.set_stop_exit(ExitInfo::signal(libc::SIGKILL));
    let mut stubborn = driver.start(&spec("shop/web/1", "web")).await.unwrap();
    assert_eq!(
        stubborn.stop(Duration::from_secs(1)).await,
        ExitInfo::signal(libc::SIGKILL)
    );
}

#[tokio::test]
async fn control_outlives_the_handle() {
    let driver = FakeDriver::new();
    let mut handle = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    let control = driver.control("shop/web/0").unwrap();
    assert_eq!(control.pid(), 1000);
    let waiter = tokio::spawn(async move { handle.wait().await });
    assert!(control.exit(ExitInfo::code(3)));
    assert_eq!(waiter.await.unwrap(), ExitInfo::code(3));
    assert!(control.has_exited());
}

#[tokio::test]
async fn failing_programs_give_a_not_found_spawn_error() {
    let driver = FakeDriver::new();
    driver.fail_program("nope");
    let err = match driver.start(&spec("shop/web/0", "nope")).await {
        Ok(_) => panic!("expected an error"),
        Err(err) => err,
    };
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "cannot start `nope` for shop/web/0: program not found in PATH (fake driver)"
    );
    assert!(driver.starts().is_empty());
    // A failed start does not use up a pid.
    let ok = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    assert_eq!(ok.pid(), 1000);
}

#[tokio::test]
async fn reap_records_and_kills_a_matching_instance() {
    let driver = FakeDriver::new();
    let mut handle = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    let leftover = Leftover {
        pid: handle.pid(),
        start_ticks: handle.start_ticks(),
        cgroup_name: "vdc-test/shop.web.0".into(),
    };
    driver.reap(&leftover).await.unwrap();
    assert_eq!(driver.reaped(), [leftover]);
    assert_eq!(handle.wait().await, ExitInfo::signal(libc::SIGKILL));
}

#[tokio::test]
async fn until_started_waits_for_starts_from_elsewhere() {
    let driver = FakeDriver::new();
    let other = driver.clone();
    let starter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        other
            .start(&spec("shop/web/0", "web"))
            .await
            .map(|h| h.pid())
    });
    driver.until_started(1).await;
    assert_eq!(driver.starts().len(), 1);
    assert_eq!(starter.await.unwrap().unwrap(), 1000);
}

#[test]
fn isolation_is_what_the_test_asked_for() {
    let warned = Isolation::process_group_only("not running as root");
    let driver = FakeDriver::with_isolation(warned.clone());
    assert_eq!(driver.isolation(), &warned);
    assert_eq!(FakeDriver::new().isolation().warning, None);
}

#[tokio::test]
async fn usage_is_what_the_test_sets_and_stop_empties_it() {
    let driver = FakeDriver::new();
    let mut handle = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    assert_eq!(
        handle.usage().unwrap(),
        Usage {
            source: UsageSource::CgroupV2,
            ..Usage::default()
        }
    );
    let usage = Usage {
        source: UsageSource::CgroupV2,
        cpu_user_us: 1_000_000,
        memory_bytes: 64 << 20,
        memory_peak_bytes: 80 << 20,
        pids: 2,
        ..Usage::default()
    };
    let control = driver.control("shop/web/0").unwrap();
    control.set_usage(usage);
    assert_eq!(handle.usage().unwrap(), usage);
    assert_eq!(control.usage(), usage);
    let later = Usage {
        cpu_user_us: 2_000_000,
        ..usage
    };
    assert!(driver.set_usage("shop/web/0", later));
    assert!(!driver.set_usage("shop/db/0", later));
    assert_eq!(handle.usage().unwrap(), later);

    // Like a real instance: the totals stay, nothing is held any more.
    handle.stop(Duration::from_secs(1)).await;
    assert_eq!(
        handle.usage().unwrap(),
        Usage {
            memory_bytes: 0,
            pids: 0,
            ..later
        }
    );

    let driver = FakeDriver::with_isolation(Isolation::process_group_only("not running as root"));
    let handle = driver.start(&spec("shop/web/0", "web")).await.unwrap();
    assert_eq!(handle.usage().unwrap().source, UsageSource::Proc);
}
