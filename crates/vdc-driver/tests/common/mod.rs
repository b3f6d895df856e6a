//! Helpers shared by the tests that run real processes.

// Each test file uses a different subset of these helpers, and they fail
// loudly on purpose: an unwrap here is an assertion.
#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vdc_driver::{Driver, LaunchSpec, Limits, ProcessDriver};

/// A spec running `sh -c script` in `dir`, logging to `dir/logs/out.log`,
/// with a cgroup name unique to this test process.
pub fn sh(dir: &Path, script: &str) -> LaunchSpec {
    LaunchSpec {
        instance: "test/sh/0".into(),
        cgroup_name: unique_cgroup(),
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        workdir: dir.to_owned(),
        nofile: None,
        log_file: dir.join("logs/out.log"),
        limits: Limits::default(),
        confine: None,
    }
}

pub fn unique_cgroup() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "vdc-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// True when `pid` exists and is not a zombie (a dead process not yet reaped
/// by its parent, which is not ours to wait for).
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("X");
    !matches!(state, "Z" | "X")
}

/// Waits until `path` holds a whole line and returns it trimmed.
pub fn read_line_when_written(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `path` holds a pid and returns it.
pub fn read_pid(path: &Path) -> u32 {
    let line = read_line_when_written(path);
    line.parse()
        .unwrap_or_else(|_| panic!("{} holds `{line}`, not a pid", path.display()))
}

/// Waits until the log contains `needle`, and returns the log.
pub fn log_containing(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}; it holds {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to a few seconds) for `pid` to be gone.
pub fn gone_soon(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A script file in `dir`, for processes whose quoting would be unreadable
/// inline.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    path
}

/// The driver with cgroups, or `None` after printing why the test is skipped.
pub fn cgroup_driver() -> Option<ProcessDriver> {
    let driver = ProcessDriver::detect();
    match driver.isolation().cgroups {
        Some(_) => Some(driver),
        None => {
            println!(
                "skipped: this test needs cgroups ({})",
                driver
                    .isolation()
                    .warning
                    .as_deref()
                    .unwrap_or("unavailable")
            );
            None
        }
    }
}

/// The path of python3, or `None` after printing that the test is skipped.
pub fn python3() -> Option<String> {
    let found = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .map(str::to_owned)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("python3"))
                    .find(|p| p.exists())
                    .map(|p| p.display().to_string())
            })
        });
    if found.is_none() {
        println!("skipped: this test needs python3");
    }
    found
}
