//! The process driver with real processes: these pass with or without root
//! (as root they also run inside cgroups, without checking them; that is
//! `tests/cgroups.rs`).

// Tests fail loudly on purpose: an unwrap here is an assertion.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{gone_soon, is_running, log_containing, read_pid, script, sh};
use vdc_driver::{Driver, DriverError, ExitInfo, Leftover, ProcessDriver};

const GRACE: Duration = Duration::from_secs(5);

#[tokio::test]
async fn output_goes_to_the_log_and_stop_sends_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let spec = sh(dir.path(), "echo hello; echo err >&2; sleep 30");
    let mut handle = driver.start(&spec).await.unwrap();
    let pid = handle.pid();
    assert!(handle.start_ticks().is_some());

    let log = log_containing(&spec.log_file, "err\n");
    assert!(log.contains("hello\n"), "{log:?}");

    let started = Instant::now();
    let exit = handle.stop(GRACE).await;
    assert_eq!(exit, ExitInfo::signal(libc::SIGTERM));
    assert_eq!(exit.to_string(), "killed by signal 15 (SIGTERM)");
    assert!(
        started.elapsed() < GRACE,
        "SIGTERM was obeyed, no need to wait"
    );
    assert!(!is_running(pid));
    // Idempotent: the same answer, at once.
    assert_eq!(handle.stop(GRACE).await, exit);
    assert_eq!(handle.wait().await, exit);
}

#[tokio::test]
async fn the_log_is_appended_to_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let spec = sh(dir.path(), "echo second");
    fs::create_dir_all(spec.log_file.parent().unwrap()).unwrap();
    fs::write(&spec.log_file, "first\n").unwrap();
    let mut handle = driver.start(&spec).await.unwrap();
    assert!(handle.wait().await.success());
    handle.stop(GRACE).await;
    assert_eq!(
        fs::read_to_string(&spec.log_file).unwrap(),
        "first\nsecond\n"
    );
}

#[tokio::test]
async fn sigterm_ignored_means_sigkill_after_the_grace_for_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    // Both the main process and its background child ignore SIGTERM (the
    // disposition is inherited), so only SIGKILL ends them.
    let spec = sh(
        dir.path(),
        "trap '' TERM; sleep 100 & echo $! > grandchild; sleep 100",
    );
    let mut handle = driver.start(&spec).await.unwrap();
    let main = handle.pid();
    let grandchild = read_pid(&dir.path().join("grandchild"));
    assert!(is_running(grandchild));

    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let exit = handle.stop(grace).await;
    assert!(
        started.elapsed() >= grace,
        "SIGKILL came before the grace ended"
    );
    assert_eq!(exit, ExitInfo::signal(libc::SIGKILL));
    assert!(!exit.oom_killed, "we killed it, not the kernel");
    assert!(!is_running(main));
    assert!(
        gone_soon(grandchild),
        "grandchild {grandchild} survived stop"
    );
}

#[tokio::test]
async fn children_left_behind_by_an_exited_main_are_stopped_too() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let spec = sh(dir.path(), "sleep 100 & echo $! > grandchild; exit 4");
    let mut handle = driver.start(&spec).await.unwrap();
    let grandchild = read_pid(&dir.path().join("grandchild"));
    assert_eq!(handle.wait().await, ExitInfo::code(4));
    assert!(is_running(grandchild), "the child outlives its parent");
    assert_eq!(handle.stop(GRACE).await, ExitInfo::code(4));
    assert!(
        gone_soon(grandchild),
        "grandchild {grandchild} survived stop"
    );
}

#[tokio::test]
async fn wait_reports_the_exit_code_and_is_cancel_safe() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut handle = driver
        .start(&sh(dir.path(), "sleep 0.3; exit 3"))
        .await
        .unwrap();
    let mut polls = 0;
    let exit = loop {
        tokio::select! {
            exit = handle.wait() => break exit,
            _ = tokio::time::sleep(Duration::from_millis(20)) => polls += 1,
        }
    };
    assert!(polls > 1, "wait was cancelled {polls} times");
    assert_eq!(exit, ExitInfo::code(3));
    assert_eq!(exit.to_string(), "exited with code 3");
    assert_eq!(handle.wait().await, exit);
    assert_eq!(handle.stop(GRACE).await, exit);
}

#[tokio::test]
async fn env_args_and_workdir_reach_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut spec = sh(dir.path(), r#"echo "$GREETING $1 in $(pwd)""#);
    spec.args.push("arg0".into());
    spec.args.push("world".into());
    spec.env.push(("GREETING".into(), "hello".into()));
    let mut handle = driver.start(&spec).await.unwrap();
    assert!(handle.wait().await.success());
    handle.stop(GRACE).await;
    let workdir = fs::canonicalize(dir.path()).unwrap();
    assert_eq!(
        fs::read_to_string(&spec.log_file).unwrap(),
        format!("hello world in {}\n", workdir.display())
    );
}

#[tokio::test]
async fn a_relative_program_is_found_in_the_workdir() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let tool = script(&bin, "tool", "echo from tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = sh(dir.path(), "");
    spec.program = "bin/tool".into();
    spec.args.clear();
    let mut handle = driver.start(&spec).await.unwrap();
    assert!(handle.wait().await.success());
    handle.stop(GRACE).await;
    assert_eq!(fs::read_to_string(&spec.log_file).unwrap(), "from tool\n");
}

fn start_error(result: Result<Box<dyn vdc_driver::InstanceHandle>, DriverError>) -> DriverError {
    match result {
        Ok(handle) => panic!("expected an error, started pid {}", handle.pid()),
        Err(err) => err,
    }
}

#[tokio::test]
async fn a_missing_program_is_a_clear_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();

    let mut spec = sh(dir.path(), "");
    spec.program = "vdc-no-such-program".into();
    spec.env.push(("PATH".into(), "/usr/bin:/bin".into()));
    let err = start_error(driver.start(&spec).await);
    assert!(matches!(err, DriverError::Spawn { .. }), "{err:?}");
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        "cannot start `vdc-no-such-program` for test/sh/0: \
         program not found in PATH (/usr/bin:/bin)"
    );

    spec.program = "./missing".into();
    let err = start_error(driver.start(&spec).await);
    assert_eq!(
        err.to_string(),
        format!(
            "cannot start `./missing` for test/sh/0: program not found: {}/./missing does not exist",
            dir.path().display()
        )
    );

    let not_executable = script(dir.path(), "plain", "true");
    spec.program = not_executable.display().to_string();
    let err = start_error(driver.start(&spec).await);
    assert!(
        err.to_string().ends_with("plain is not executable"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_workdir_is_a_clear_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut spec = sh(dir.path(), "true");
    spec.workdir = dir.path().join("nope");
    let err = start_error(driver.start(&spec).await);
    assert!(err.is_not_found());
    assert_eq!(
        err.to_string(),
        format!(
            "cannot start `sh` for test/sh/0: working directory {}/nope does not exist",
            dir.path().display()
        )
    );
}

#[tokio::test]
async fn a_bad_cgroup_name_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut spec = sh(dir.path(), "touch ran");
    spec.cgroup_name = "../../etc".into();
    let err = start_error(driver.start(&spec).await);
    assert!(matches!(err, DriverError::Cgroup { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid cgroup name"), "{err}");
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn an_unwritable_log_is_a_log_file_error() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut spec = sh(dir.path(), "true");
    // A directory where the file should be fails for root too.
    spec.log_file = dir.path().to_owned();
    let err = start_error(driver.start(&spec).await);
    assert!(matches!(err, DriverError::LogFile { .. }), "{err:?}");
    assert!(err.to_string().starts_with("cannot open log file"), "{err}");
}

#[tokio::test]
async fn reap_kills_a_leftover_of_a_previous_run() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let spec = sh(dir.path(), "sleep 100 & echo $! > grandchild; sleep 100");
    let handle = driver.start(&spec).await.unwrap();
    let grandchild = read_pid(&dir.path().join("grandchild"));
    let leftover = Leftover {
        pid: handle.pid(),
        start_ticks: handle.start_ticks(),
        cgroup_name: spec.cgroup_name.clone(),
    };
    let paths = handle.cgroup_paths();
    // The agent "crashes": the handle is gone, the instance runs on.
    drop(handle);
    assert!(is_running(leftover.pid));

    // A new agent finds it through what the old one persisted.
    let restarted = ProcessDriver::detect();
    restarted.reap(&leftover).await.unwrap();
    assert!(
        gone_soon(leftover.pid),
        "leftover {} survived",
        leftover.pid
    );
    assert!(gone_soon(grandchild), "grandchild {grandchild} survived");
    assert!(paths.iter().all(|p| !p.exists()), "cgroup left: {paths:?}");
    // Nothing left is not an error.
    restarted.reap(&leftover).await.unwrap();
}

#[tokio::test]
async fn reap_leaves_a_process_that_only_shares_the_pid_alone() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ProcessDriver::detect();
    let mut handle = driver.start(&sh(dir.path(), "sleep 100")).await.unwrap();
    let leftover = Leftover {
        pid: handle.pid(),
        // As if the pid had been reused by a process started at another time.
        start_ticks: handle.start_ticks().map(|t| t + 1),
        cgroup_name: common::unique_cgroup(),
    };
    driver.reap(&leftover).await.unwrap();
    assert!(
        is_running(handle.pid()),
        "reap killed a process that is not ours"
    );
    handle.stop(GRACE).await;
}

#[tokio::test]
async fn without_cgroups_isolation_says_what_is_missing() {
    let driver = ProcessDriver::without_cgroups();
    assert_eq!(driver.kind(), "process");
    let isolation = driver.isolation();
    assert_eq!(isolation.cgroups, None);
    assert_eq!(
        isolation.warning.as_deref(),
        Some(
            "cgroups are disabled: cpu and memory limits are not enforced \
             (instances run in their own process group only)"
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let mut handle = driver.start(&sh(dir.path(), "sleep 100")).await.unwrap();
    assert!(handle.cgroup_paths().is_empty());
    assert_eq!(handle.stop(GRACE).await, ExitInfo::signal(libc::SIGTERM));
}

#[tokio::test]
async fn detect_reports_its_isolation() {
    let isolation = ProcessDriver::detect().isolation().clone();
    println!("isolation on this node: {isolation:?}");
    if nix::unistd::geteuid().is_root() {
        // As root on a node without cgroups, the warning must say so.
        assert!(isolation.cgroups.is_some() || isolation.warning.is_some());
    } else {
        assert_eq!(isolation.cgroups, None);
        assert!(isolation
            .warning
            .as_deref()
            .is_some_and(|w| w.starts_with("not running as root")));
    }
}

#[tokio::test]
async fn reap_kills_what_is_left_of_the_group_when_the_leader_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    // Without cgroups, so that only the process group can find the child.
    let driver = ProcessDriver::without_cgroups();
    let spec = sh(dir.path(), "sleep 100 & echo $! > grandchild; exit 0");
    let mut handle = driver.start(&spec).await.unwrap();
    let grandchild = read_pid(&dir.path().join("grandchild"));
    assert_eq!(handle.wait().await, ExitInfo::code(0));
    let leftover = Leftover {
        pid: handle.pid(),
        start_ticks: handle.start_ticks(),
        cgroup_name: spec.cgroup_name.clone(),
    };
    drop(handle);
    assert!(is_running(grandchild));

    driver.reap(&leftover).await.unwrap();
    assert!(
        gone_soon(grandchild),
        "grandchild {grandchild} survived reap"
    );
}
